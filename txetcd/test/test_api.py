"""The public surface: re-exports, argument checking before sending, error translation."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from twisted.internet import task

import txetcd
from txetcd import (
    _authadmin,
    _client,
    _cluster,
    _errors,
    _keepalive,
    _lease,
    _lockservice,
    _maintenance,
    _snapshot,
    _txn,
    _types,
    _watch,
)
from txetcd._args import prefix_range_end
from txetcd._errors import error_from_status
from txetcd.concurrency import _election, _lock, _mirror, _namespace, _registry, _session, _stm
from txetcd.test.helpers import grpc_channel


def test_root_only_reexports() -> None:
    """Every public name is the very object from its private module, and is documented."""
    modules = (
        _authadmin,
        _client,
        _cluster,
        _errors,
        _keepalive,
        _lease,
        _lockservice,
        _maintenance,
        _mirror,
        _session,
        _snapshot,
        _txn,
        _types,
        _watch,
        _lock,
        _election,
        _stm,
        _namespace,
        _registry,
    )
    for name in txetcd.__all__:
        if name == "__version__":
            continue
        obj = getattr(txetcd, name)
        homes = [m for m in modules if getattr(m, name, None) is obj]
        assert homes, f"txetcd.{name} is not re-exported from a private module"
        assert inspect.getdoc(obj), f"txetcd.{name} has no docstring"
    source = inspect.getsource(txetcd)
    assert "def " not in source and "class " not in source


def test_every_public_method_documented() -> None:
    for name, member in inspect.getmembers(txetcd.Client, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.getdoc(member), name


@pytest.fixture
def offline() -> txetcd.Client:
    """A client that must never connect (its clock never runs and port 9 is discard)."""
    return txetcd.Client("http://127.0.0.1:9", reactor=_NoNetworkReactor(), timeout=1)


class _NoNetworkReactor(task.Clock):
    def connectTCP(self, *a: Any, **kw: Any) -> Any:  # pragma: no cover - must not be reached
        raise AssertionError("a bad argument was sent to the network")


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda c: c.get(b""), ValueError),
        (lambda c: c.get(None), TypeError),
        (lambda c: c.get(5), TypeError),
        (lambda c: c.get(b"k", limit=-1), ValueError),
        (lambda c: c.get(b"k", limit="3"), TypeError),
        (lambda c: c.get(b"k", revision=True), TypeError),
        (lambda c: c.get(b"k", sort_order="up"), ValueError),
        (lambda c: c.get(b"k", sort_target=9), ValueError),
        (lambda c: c.get(b"k", sort_target=1.5), TypeError),
        (lambda c: c.get(b"k", serializable=1), TypeError),
        (lambda c: c.get(b"k", bogus=1), TypeError),
        (lambda c: c.get(b"k", prefix=True, range_end=b"z"), TypeError),
        (lambda c: c.get_range(b"a", 3), TypeError),
        (lambda c: c.put(b"", b"v"), ValueError),
        (lambda c: c.put(b"k", None), TypeError),
        (lambda c: c.put(b"k", 12), TypeError),
        (lambda c: c.put(b"k", b"v", lease="1"), TypeError),
        (lambda c: c.put(b"k", b"v", ignore_value=True), ValueError),
        (lambda c: c.put(b"k", b"v", ignore_lease=True, lease=3), ValueError),
        (lambda c: c.put(b"k", b"v", prev_kv="yes"), TypeError),
        (lambda c: c.put(b"k", b"v", timeout="1"), TypeError),
        (lambda c: c.put(b"k", b"v", timeout=-1), ValueError),
        (lambda c: c.delete(b""), ValueError),
        (lambda c: c.delete_prefix(7), TypeError),
        (lambda c: c.compact(-1), ValueError),
        (lambda c: c.compact(5, physical="no"), TypeError),
        (lambda c: c.get(b"k", revision=2**63), ValueError),
    ],
)
def test_bad_arguments_raise_before_sending(offline: txetcd.Client, call: Any, exc: type) -> None:
    with pytest.raises(exc):
        call(offline)
    assert grpc_channel(offline).connection is None and grpc_channel(offline)._connecting is None
    assert offline.reactor.getDelayedCalls() == []


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="scheme"):
        txetcd.Client("ftp://127.0.0.1:2379")
    with pytest.raises(TypeError):
        txetcd.Client([b"http://127.0.0.1:2379"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        txetcd.Client([])
    with pytest.raises(ValueError, match="keepalive"):
        txetcd.Client("http://127.0.0.1:2379", keepalive_interval=1)
    assert txetcd.Client("127.0.0.1:4001").endpoints == ["http://127.0.0.1:4001"]


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"a/") == b"a0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


@pytest.mark.parametrize(
    "code,message,cls,also",
    [
        (
            11,
            "etcdserver: mvcc: required revision has been compacted",
            txetcd.RevisionCompacted,
            (),
        ),
        (11, "etcdserver: mvcc: required revision is a future revision", txetcd.FutureRevision, ()),
        (
            3,
            "etcdserver: too many operations in txn request",
            txetcd.TooManyOperations,
            (ValueError,),
        ),
        (3, "etcdserver: request is too large", txetcd.RequestTooLarge, ()),
        (
            8,
            "grpc: received message larger than max (2200010 vs. 2097152)",
            txetcd.MessageTooLarge,
            (),
        ),
        (8, "etcdserver: mvcc: database space exceeded", txetcd.DatabaseSpaceExceeded, ()),
        (3, "etcdserver: duplicate key given in txn request", txetcd.DuplicateKey, ()),
        (3, "etcdserver: key is not provided", txetcd.EmptyKey, (ValueError,)),
        (3, "etcdserver: key not found", txetcd.KeyNotFound, (KeyError,)),
        (14, "etcdserver: no leader", txetcd.NoLeader, (txetcd.Unavailable,)),
        (14, "etcdserver: request timed out", txetcd.RequestTimedOut, ()),
        (14, "etcdserver: rpc not supported for learner", txetcd.LearnerNotSupported, ()),
        (14, "something else", txetcd.Unavailable, ()),
        (16, "etcdserver: invalid auth token", txetcd.InvalidAuthToken, (txetcd.AuthError,)),
        (3, "etcdserver: user name is empty", txetcd.UserNameEmpty, (txetcd.AuthError,)),
        (7, "etcdserver: permission denied", txetcd.PermissionDenied, (txetcd.AuthError,)),
        (5, "etcdserver: requested lease not found", txetcd.LeaseNotFound, ()),
        (9, "etcdserver: lease already exists", txetcd.LeaseExists, ()),
        (11, "etcdserver: too large lease TTL", txetcd.LeaseTTLTooLarge, (txetcd.OutOfRange,)),
        (11, "some future out-of-range message", txetcd.OutOfRange, ()),
        (2, "election: no leader", txetcd.NoElectionLeader, (txetcd.ServerError,)),
        (2, "election: not leader", txetcd.NotElectionLeader, (txetcd.ConcurrencyError,)),
        (2, "election: something new", txetcd.Internal, ()),
        (99, "???", txetcd.Internal, ()),
    ],
)
def test_error_table(code: int, message: str, cls: type, also: tuple[type, ...]) -> None:
    err = error_from_status(code, message)
    assert type(err) is cls
    assert isinstance(err, txetcd.EtcdError) and isinstance(err, txetcd.ServerError)
    for base in also:
        assert isinstance(err, base)
    assert err.code == code and err.message == message == str(err)


def test_uncertain_write_errors_are_outcome_unknown() -> None:
    err = error_from_status(14, "etcdserver: request timed out", mutation=True)
    assert isinstance(err, txetcd.OutcomeUnknown)
    assert isinstance(err.cause, txetcd.RequestTimedOut)
    for code, message in (
        (14, "etcdserver: leader changed"),
        (14, "etcdserver: server stopped"),
        (2, "context deadline exceeded"),
        (4, "anything"),
        (1, "context canceled"),
    ):
        err = error_from_status(code, message, mutation=True)
        assert isinstance(err, txetcd.OutcomeUnknown), message
        assert isinstance(err.cause, txetcd.ServerError) and err.cause.message == message
        assert not isinstance(error_from_status(code, message), txetcd.OutcomeUnknown)
    assert not isinstance(
        error_from_status(14, "etcdserver: no leader", mutation=True), txetcd.OutcomeUnknown
    )  # refused before any proposal
    assert not issubclass(txetcd.LeaseTTLTooLarge, txetcd.RevisionError)
    # a read that timed out on the server is just that
    assert type(error_from_status(14, "etcdserver: request timed out")) is txetcd.RequestTimedOut
    # a definite rejection of a write is not uncertain
    assert (
        type(error_from_status(3, "etcdserver: duplicate key given in txn request", mutation=True))
        is txetcd.DuplicateKey
    )
    assert issubclass(txetcd.WriteTimeout, txetcd.OutcomeUnknown)
    assert issubclass(txetcd.WriteTimeout, txetcd.Timeout)
    assert issubclass(txetcd.ConnectionFailed, ConnectionError)
