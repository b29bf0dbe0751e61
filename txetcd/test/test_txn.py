"""Transactions against a real etcd: every compare target and operator, branches, nesting."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import pytest_twisted

from txetcd import (
    Client,
    Compare,
    CreateRevision,
    Delete,
    DeleteResult,
    DuplicateKey,
    Get,
    LeaseId,
    ModRevision,
    Put,
    PutResult,
    RangeResult,
    TooManyOperations,
    Txn,
    TxnResult,
    Value,
    Version,
)
from txetcd.test.helpers import (
    etcd_client,  # noqa: F401  (both transports)
    grant_lease,
    grpc_channel,
)


async def holds(client: Client, compare: Compare) -> bool:
    result = await client.txn([compare])
    return result.succeeded


@pytest_twisted.ensureDeferred
async def test_success_and_failure_branches(etcd_client: Client, etcd_prefix: bytes) -> None:
    a = etcd_prefix + b"a"
    await etcd_client.put(a, b"10")
    r = await etcd_client.txn(
        compare=[Value(a) == b"10"],
        success=[Put(a, b"11", prev_kv=True)],
        failure=[Get(a)],
    )
    assert isinstance(r, TxnResult)
    assert r.succeeded is True
    (put,) = r.responses
    assert isinstance(put, PutResult)
    assert put.prev_kv is not None and put.prev_kv.value == b"10"
    assert put.header.revision == r.header.revision
    # The same again: the compare fails, the failure branch runs, and it is data, not an error.
    r = await etcd_client.txn([Value(a) == b"10"], [Put(a, b"11")], [Get(a)])
    assert r.succeeded is False
    (got,) = r.responses
    assert isinstance(got, RangeResult) and got.value == b"11"


@pytest_twisted.ensureDeferred
async def test_create_if_absent(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"once"
    first = await etcd_client.txn([CreateRevision(key) == 0], [Put(key, b"first")])
    second = await etcd_client.txn([CreateRevision(key) == 0], [Put(key, b"second")])
    assert (first.succeeded, second.succeeded) == (True, False)
    assert second.responses == ()
    assert (await etcd_client.get(key)).value == b"first"


@pytest_twisted.ensureDeferred
async def test_every_target_and_operator(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    lease = await grant_lease(etcd_client)
    await etcd_client.put(key, b"m")
    w = await etcd_client.put(key, b"m", lease=lease)  # version 2
    kv = (await etcd_client.get(key)).kvs[0]
    cases: list[tuple[Callable[..., Any], object, str, bool]] = []
    for target, actual, lower, higher in (
        (Value, kv.value, b"a", b"z"),
        (Version, kv.version, 1, 3),
        (CreateRevision, kv.create_revision, kv.create_revision - 1, kv.create_revision + 1),
        (ModRevision, w.header.revision, w.header.revision - 1, w.header.revision + 1),
        (LeaseId, lease, lease - 1, lease + 1),
    ):
        cases += [
            (target, actual, "eq", True),
            (target, lower, "eq", False),
            (target, lower, "ne", True),
            (target, actual, "ne", False),
            (target, higher, "lt", True),
            (target, actual, "lt", False),
            (target, lower, "gt", True),
            (target, actual, "gt", False),
        ]
    for make, operand, op, expected in cases:
        cmp = getattr(make(key), op)(operand)
        assert await holds(etcd_client, cmp) is expected, (cmp, expected)
    # the operator sugar builds the same compares
    assert await holds(etcd_client, Version(key) == 2)
    assert await holds(etcd_client, Version(key) != 1)
    assert await holds(etcd_client, Version(key) < 3)
    assert await holds(etcd_client, Version(key) > 1)


@pytest_twisted.ensureDeferred
async def test_range_compares(etcd_client: Client, etcd_prefix: bytes) -> None:
    await etcd_client.put(etcd_prefix + b"a", b"1")
    await etcd_client.put(etcd_prefix + b"b", b"2")
    # every key of the range must match
    assert await holds(etcd_client, Version(etcd_prefix, prefix=True) > 0)
    assert not await holds(etcd_client, Value(etcd_prefix, prefix=True) == b"1")
    assert await holds(
        etcd_client, Value(etcd_prefix + b"a", etcd_prefix + b"b") == b"1"
    )  # [a, b) holds only a
    # an empty range compares as one all-zero key
    assert await holds(etcd_client, Version(etcd_prefix + b"zz/", prefix=True) == 0)
    # a VALUE compare on a missing key is false whatever the operator
    assert not await holds(etcd_client, Value(etcd_prefix + b"missing") != b"x")


@pytest_twisted.ensureDeferred
async def test_delete_and_nested_txn(etcd_client: Client, etcd_prefix: bytes) -> None:
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await etcd_client.put(a, b"1")
    await etcd_client.put(b, b"20")
    r = await etcd_client.txn(
        [Version(a) > 0],
        [
            Txn([Value(b) == b"20"], [Put(b, b"21"), Get(b)], [Delete(b)]),
            Get(a, keys_only=True),
        ],
    )
    assert r.succeeded
    inner, outer_get = r.responses
    assert isinstance(inner, TxnResult) and inner.succeeded
    assert isinstance(inner.responses[0], PutResult)
    assert isinstance(inner.responses[1], RangeResult) and inner.responses[1].value == b"21"
    assert isinstance(outer_get, RangeResult) and outer_get.kvs[0].value == b""
    # the nested failure branch: a delete with prev_kv
    r = await etcd_client.txn([], [Txn([Value(b) == b"20"], [], [Delete(b, prev_kv=True)])])
    inner = r.responses[0]
    assert isinstance(inner, TxnResult) and not inner.succeeded
    deleted = inner.responses[0]
    assert isinstance(deleted, DeleteResult)
    assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"21"


@pytest_twisted.ensureDeferred
async def test_empty_txn_succeeds(etcd_client: Client) -> None:
    r = await etcd_client.txn()
    assert r.succeeded and r.responses == ()


@pytest_twisted.ensureDeferred
async def test_txn_server_limits(etcd_client: Client, etcd_prefix: bytes) -> None:
    a = etcd_prefix + b"a"
    with pytest.raises(DuplicateKey) as e:
        await etcd_client.txn([], [Put(a, b"1"), Put(a, b"2")])
    assert e.value.code == 3
    with pytest.raises(DuplicateKey):
        await etcd_client.txn([], [Delete(a), Put(a, b"2")])
    # a range and a put of the same key are allowed; the range sees the old value
    await etcd_client.put(a, b"old")
    r = await etcd_client.txn([], [Get(a), Put(a, b"new")])
    assert isinstance(r.responses[0], RangeResult) and r.responses[0].value == b"old"
    ops = [Put(etcd_prefix + b"%d" % i, b"x") for i in range(129)]
    with pytest.raises(TooManyOperations):
        await etcd_client.txn([], ops)
    r = await etcd_client.txn([], ops[:128])
    assert r.succeeded and len(r.responses) == 128


def test_compares_do_not_mutate_and_reject_bad_operands() -> None:
    target = Value(b"k")
    c1 = target == b"a"
    c2 = target == b"b"
    assert c1 is not c2
    assert c1.to_protobuf().value == b"a" and c2.to_protobuf().value == b"b"
    assert repr(c1) == "Value(b'k') == b'a'"
    with pytest.raises(TypeError):
        Value(b"k") == 1  # noqa: B015
    with pytest.raises(TypeError):
        Version(b"k") == b"1"  # noqa: B015
    with pytest.raises(TypeError):
        Version(b"k") == True  # noqa: B015,E712
    with pytest.raises(ValueError):
        Version(b"")
    pb = (ModRevision(b"a", b"b") > 5).to_protobuf()
    assert (pb.key, pb.range_end, pb.mod_revision, pb.result, pb.target) == (b"a", b"b", 5, 1, 2)
    pb = (LeaseId(b"p/", prefix=True) != 7).to_protobuf()
    assert (pb.range_end, pb.lease, pb.result, pb.target) == (b"p0", 7, 3, 4)


def test_txn_argument_types_checked_before_sending() -> None:
    client = Client("http://127.0.0.1:9", timeout=1)  # never connects: nothing may be sent
    with pytest.raises(TypeError, match="Compare"):
        client.txn([True])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single"):
        client.txn(Value(b"k") == b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="operations"):
        client.txn([], [b"not an op"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single"):
        client.txn([], Put(b"k", b"v"))  # type: ignore[arg-type]
    assert grpc_channel(client).connection is None and grpc_channel(client)._connecting is None
