"""The Client as users meet it: async with, clock=, repr, typed options, lease_id= everywhere,
one meaning of timeout (v3 and v2 alike), clear errors for bad constructor arguments."""

from __future__ import annotations

import inspect
import typing
from typing import Any, AsyncIterator, cast

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol

from txetcd import (
    Client,
    ClientClosed,
    Delete,
    Get,
    LeaseId,
    MessageTooLarge,
    Put,
    RequestTooLarge,
    Session,
    Timeout,
    TooLarge,
    Txn,
)
from txetcd import _client as client_module
from txetcd import v2 as etcd2
from txetcd._client import TransportName
from txetcd._txn import SortOrderName
from txetcd.testing import EtcdServer


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


@pytest_twisted.async_yield_fixture
async def silent_url() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never says a word."""
    port = reactor().listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port.getHost().port}"
    finally:
        await port.stopListening()


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoints,named", [(2379, "int"), (b"http://127.0.0.1:2379", "bytes"), (None, "NoneType")]
)
def test_endpoints_of_the_wrong_type_name_the_type(endpoints: Any, named: str) -> None:
    with pytest.raises(TypeError, match=f"endpoints must be a URL .* not {named}$"):
        Client(endpoints)
    with pytest.raises(TypeError, match="each endpoint must be a URL \\(str\\), not int"):
        Client(["http://127.0.0.1:2379", 2380])  # type: ignore[list-item]


def test_repr_names_transport_and_endpoints_but_no_secret() -> None:
    client = Client(["http://127.0.0.1:2379", "http://root:s3cret@127.0.0.2:2379"], timeout=1)
    text = repr(client)
    assert text == "<txetcd.Client grpc http://127.0.0.1:2379, http://127.0.0.2:2379>"
    assert "s3cret" not in text and "root" not in text
    gateway = Client("http://127.0.0.1:2379", transport="gateway")
    assert repr(gateway) == "<txetcd.Client gateway http://127.0.0.1:2379>"


def test_options_are_typed_keywords() -> None:
    for name in ("get", "get_prefix", "get_range", "put", "delete"):
        parameters = inspect.signature(getattr(Client, name)).parameters.values()
        assert all(p.kind is not p.VAR_KEYWORD for p in parameters), name
    for op in (Get, Put, Delete):
        parameters = inspect.signature(op.__init__).parameters.values()
        assert all(p.kind is not p.VAR_KEYWORD for p in parameters), op
    options = set(inspect.signature(Client.get).parameters) - {"self", "key", "range_end", "prefix"}
    assert set(inspect.signature(Client.get_prefix).parameters) == options | {"self", "prefix"}
    assert set(inspect.signature(Client.get_range).parameters) == options | {"self", "start", "end"}
    hints = typing.get_type_hints(Client.get, vars(client_module))
    assert SortOrderName in typing.get_args(hints["sort_order"])
    assert typing.get_args(TransportName) == ("grpc", "gateway")
    client = Client("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(TypeError, match="limt"):
        client.get_prefix(b"p/", limt=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="sort_order"):
        client.get_range(b"a", b"b", sort_order="upwards")  # type: ignore[arg-type]


# -- one meaning of timeout ----------------------------------------------------------------------


@pytest.mark.parametrize("given,meant", [(None, None), (0, None), (0.0, None), (2, 2.0)])
def test_timeout_none_and_zero_mean_no_deadline_in_v3_and_v2(given: Any, meant: Any) -> None:
    assert Client("http://127.0.0.1:9", timeout=given).timeout == meant
    assert etcd2.Client(read_timeout=given).read_timeout == meant


@pytest.mark.parametrize("given,exc", [(-1, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_timeouts_are_refused_alike_in_v3_and_v2(given: Any, exc: type) -> None:
    with pytest.raises(exc):
        Client("http://127.0.0.1:9", timeout=given)
    with pytest.raises(exc):
        etcd2.Client(read_timeout=given)
    client = Client("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(exc):
        client.get(b"k", timeout=given)
    v2 = etcd2.Client(port=9, reactor=task.Clock())
    with pytest.raises(exc):
        v2.get("/k", timeout=given)


# -- async with and clock= -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_async_with_closes_the_client(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    async with Client(etcd_server.endpoint, reactor=reactor(), timeout=10) as client:
        await client.put(etcd_prefix + b"k", b"v")
    assert "closed" in repr(client)
    with pytest.raises(ClientClosed):
        await client.get(etcd_prefix + b"k")


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_deadlines_run_on_the_given_clock(silent_url: str, transport: Any) -> None:
    clock = task.Clock()
    # (the connect timeout, on the same clock, is set beyond the test: a silent server would
    # otherwise fail the calls at connect_timeout, as a connection it never accepted)
    client = Client(
        silent_url,
        reactor=reactor(),
        clock=clock,
        timeout=5,
        connect_timeout=100_000,
        transport=transport,
    )
    assert client.clock is clock and client.reactor is reactor()
    d = client.get(b"k")
    no_deadline = client.get(b"k", timeout=0)
    await task.deferLater(reactor(), 0.05, lambda: None)  # connected: the server says nothing
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    with pytest.raises(Timeout):
        await d
    clock.advance(10_000)
    assert not no_deadline.called
    await client.close()
    with pytest.raises(ClientClosed):
        await no_deadline


@pytest_twisted.ensureDeferred
async def test_keepalive_loop_runs_on_the_given_clock(etcd_server: EtcdServer) -> None:
    clock = task.Clock()
    client = Client(etcd_server.endpoint, reactor=reactor(), clock=clock, timeout=10)
    try:
        grant = await client.grant(30)
        kept = client.keepalive(grant)  # the grant's TTL: no need to repeat it
        assert kept.ttl == grant.ttl
        while not clock.getDelayedCalls():  # the first refresh is answered, the next timed
            await task.deferLater(reactor(), 0.01, lambda: None)
        assert min(c.getTime() for c in clock.getDelayedCalls()) <= grant.ttl / 3
        kept.stop()
        await client.revoke(grant)
    finally:
        await client.close()


# -- leases, named the same everywhere ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_lease_id_takes_ids_grants_keepalives_and_sessions(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    async with Client(etcd_server.endpoint, reactor=reactor(), timeout=10) as client:
        grant = await client.grant(60)
        await client.put(etcd_prefix + b"a", b"1", lease_id=grant)
        await client.put(etcd_prefix + b"b", b"2", lease_id=grant.id)
        await client.put(etcd_prefix + b"c", b"3", lease=grant)  # the old spelling
        kept = client.keepalive(grant)
        result = await client.txn(
            [LeaseId(etcd_prefix + b"a") == grant], [Put(etcd_prefix + b"d", b"4", lease_id=kept)]
        )
        assert result.succeeded
        ttl = await client.time_to_live(grant, keys=True)
        assert sorted(ttl.keys) == [etcd_prefix + k for k in (b"a", b"b", b"c", b"d")]
        kept.stop()
        await client.keepalive_once(kept)
        await client.revoke(grant)
        assert not await client.get_prefix(etcd_prefix)

        own = await client.grant(60, lease_id=grant.id + 1)
        assert own.id == grant.id + 1
        old = await client.grant(60, id=grant.id + 2)
        assert old.id == grant.id + 2
        for lease in (own, old):
            await client.revoke(lease.id)

        async with Session(client, ttl=60) as session:
            await client.put(etcd_prefix + b"s", b"x", lease_id=session)
            (kv,) = await client.get(etcd_prefix + b"s")
            assert kv.lease == session.lease_id


class NotStarted:
    """A lease holder (a Session before its grant is answered) that holds no lease yet."""

    lease_id = None


def test_lease_id_misuse_is_refused_before_sending() -> None:
    client = Client("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(TypeError, match="not both"):
        client.put(b"k", b"v", lease_id=1, lease=2)
    with pytest.raises(TypeError, match="not both"):
        Put(b"k", b"v", lease_id=1, lease=2)
    with pytest.raises(TypeError, match="not both"):
        client.grant(5, lease_id=1, id=2)
    with pytest.raises(TypeError, match="lease_id must be an int, not str"):
        client.put(b"k", b"v", lease_id="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the NotStarted holds no lease"):
        client.put(b"k", b"v", lease_id=NotStarted())
    with pytest.raises(TypeError):
        client.revoke(None)  # type: ignore[arg-type]
    assert client.clock.getDelayedCalls() == []


def test_op_and_compare_reprs_are_the_code_that_makes_them() -> None:
    assert repr(Put(b"k", b"v", lease_id=5)) == "Put(b'k', b'v', lease_id=5)"
    assert repr(Put("k", "v", prev_kv=True)) == "Put(b'k', b'v', prev_kv=True)"
    assert repr(Put(b"k", ignore_value=True, lease_id=3)) == (
        "Put(b'k', lease_id=3, ignore_value=True)"
    )
    assert repr(Put(b"k", b"x" * 100)).endswith("...(100 bytes))")
    assert repr(Get(b"k")) == "Get(b'k')"
    assert repr(Get(b"p/", prefix=True, limit=3, sort_order="descend")) == (
        "Get(b'p/', prefix=True, limit=3, sort_order='descend')"
    )
    assert repr(Get(b"", prefix=True)) == "Get(b'', prefix=True)"
    assert repr(Get(b"a", b"z", keys_only=True, revision=9)) == (
        "Get(b'a', b'z', revision=9, keys_only=True)"
    )
    assert repr(Delete(b"k", prev_kv=True)) == "Delete(b'k', prev_kv=True)"
    assert repr(Delete(b"a", b"m")) == "Delete(b'a', b'm')"
    from txetcd import CreateRevision, Value, Version

    assert repr(Value(b"k") == b"v") == "Value(b'k') == b'v'"
    assert repr(Version(b"p/", prefix=True) > 0) == "Version(b'p/', prefix=True) > 0"
    assert repr(CreateRevision(b"a", b"c") != 3) == "CreateRevision(b'a', b'c') != 3"
    assert repr(LeaseId(b"k") < 9) == "LeaseId(b'k') < 9"
    assert repr(Value(b"k")) == "Value(b'k')"
    nested = Txn([Value(b"k") == b"v"], [Put(b"k", b"w"), Txn([], [Get(b"q")])], [Delete(b"k")])
    assert repr(nested) == (
        "Txn([Value(b'k') == b'v'], [Put(b'k', b'w'), Txn([], [Get(b'q')], [])], [Delete(b'k')])"
    )


# -- value too large -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_one_class_to_catch_for_too_large(
    etcd_server: EtcdServer, etcd_prefix: bytes, transport: Any
) -> None:
    """Over --max-request-bytes (1.5 MiB) etcd says RequestTooLarge; over gRPC's receive limit
    (2 MiB) gRPC says MessageTooLarge; both are TooLarge, on both transports."""
    async with Client(etcd_server.endpoint, reactor=reactor(), transport=transport) as client:
        for size, cls in ((1536 * 1024 + 10, RequestTooLarge), (2 * 1024 * 1024, MessageTooLarge)):
            with pytest.raises(TooLarge) as info:
                await client.put(etcd_prefix + b"big", b"x" * size)
            assert type(info.value) is cls
            with pytest.raises(cls):
                await client.txn([], [Put(etcd_prefix + b"big", b"x" * size)])
        assert not await client.get_prefix(etcd_prefix)  # nothing was written


@pytest_twisted.ensureDeferred
async def test_watches_run_on_the_given_clock(silent_url: str) -> None:
    clock = task.Clock()
    client = Client(silent_url, reactor=reactor(), clock=clock, timeout=5)
    watch = client.watch(b"k")
    assert client._watch_hub is not None and client._watch_hub.clock is clock
    watch.cancel()
    await client.close()


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_connections_are_not_logged_one_line_each(
    etcd_server: EtcdServer, transport: Any
) -> None:
    """A service's log is not filled with Twisted's "Starting factory" line per connection."""
    from twisted.internet import reactor
    from twisted.logger import ILogObserver, globalLogPublisher

    events: list[Any] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        client = Client(etcd_server.endpoint, reactor=reactor, transport=transport)
        await client.get(b"k")
        await client.close()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not [e for e in events if "factory" in str(e.get("log_format", ""))]
