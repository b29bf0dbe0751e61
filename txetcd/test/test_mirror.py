"""Mirror against a real etcd: listing, live changes, breaks, and a resync after compaction."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import task

from txetcd import Client, Mirror, MirrorChange
from txetcd.test.helpers import grpc_channel, watching_again, within
from txetcd.testing import EtcdServer


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


async def until(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor(), 0.02, lambda: None)
    raise AssertionError("condition not reached in time")


async def same_as_server(client: Client, mirror: Mirror) -> bool:
    listing = await client.get_prefix(mirror.prefix)
    return {kv.key: kv for kv in listing.kvs} == mirror.kvs


@pytest_twisted.ensureDeferred
async def test_mirror_lists_then_follows(etcd_client: Client, etcd_prefix: bytes) -> None:
    await etcd_client.put(etcd_prefix + b"a", b"1")
    await etcd_client.put(etcd_prefix + b"b", b"2")
    changes: List[MirrorChange] = []
    mirror = Mirror(etcd_client, etcd_prefix, on_change=changes.append)
    assert await mirror.ready is mirror
    assert dict(mirror) == {etcd_prefix + b"a": b"1", etcd_prefix + b"b": b"2"}
    assert changes == []  # the first listing is not reported as changes
    await etcd_client.put(etcd_prefix + b"a", b"1b")
    await etcd_client.delete(etcd_prefix + b"b")
    r = await etcd_client.put(etcd_prefix + b"c", b"3")
    await etcd_client.put(b"outside/" + etcd_prefix, b"ignored")
    await until(lambda: mirror.revision >= r.header.revision)
    assert dict(mirror) == {etcd_prefix + b"a": b"1b", etcd_prefix + b"c": b"3"}
    assert [(c.key[-1:], c.old and c.old.value, c.new and c.new.value) for c in changes] == [
        (b"a", b"1", b"1b"),
        (b"b", b"2", None),
        (b"c", None, b"3"),
    ]
    assert not any(c.resync for c in changes)
    assert await same_as_server(etcd_client, mirror)
    mirror.close()
    await mirror.done
    assert mirror.closed


@pytest_twisted.ensureDeferred
async def test_mirror_survives_cuts_and_resyncs_after_compaction(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    watcher = Client(etcd_server.endpoint, reactor=reactor())
    writer = Client(etcd_server.endpoint, reactor=reactor())
    try:
        for i in range(5):
            await writer.put(etcd_prefix + b"%d" % i, b"v0")
        changes: List[MirrorChange] = []
        mirror = Mirror(watcher, etcd_prefix, on_change=changes.append)
        await mirror.ready
        # connection cuts: the watch resumes, nothing is missed
        for round_ in range(5):
            await writer.put(etcd_prefix + b"%d" % (round_ % 5), b"v%d" % (round_ + 1))
            grpc_channel(watcher).connection.transport.abortConnection()  # type: ignore[union-attr]
            await watching_again(watcher, round_ + 1)
        last = await writer.put(etcd_prefix + b"end", b"x")
        await until(lambda: mirror.revision >= last.header.revision)
        assert await same_as_server(writer, mirror)
        assert mirror.resyncs == 0
        # now let history it has not seen be compacted away while it is disconnected
        hub = watcher._watch_hub
        assert hub is not None
        hub.backoff_initial = 2.0  # hold the resume back while the writer works
        grpc_channel(watcher).connection.transport.abortConnection()  # type: ignore[union-attr]
        await writer.put(etcd_prefix + b"0", b"changed")
        await writer.delete(etcd_prefix + b"1")
        await writer.put(etcd_prefix + b"new", b"born")
        await writer.put(etcd_prefix + b"new", b"born twice")
        done = await writer.put(etcd_prefix + b"2", b"changed too")
        await writer.compact(done.header.revision)
        hub.backoff_initial = 0.05
        await until(lambda: mirror.resyncs == 1 and mirror.revision >= done.header.revision)
        assert await same_as_server(writer, mirror)
        resynced = {c.key[len(etcd_prefix) :]: c for c in changes if c.resync}
        assert set(resynced) == {b"0", b"1", b"2", b"new"}
        assert resynced[b"1"].new is None and resynced[b"1"].old is not None
        born = resynced[b"new"]
        assert born.old is None and born.new is not None and born.new.value == b"born twice"
        # and it keeps following afterwards
        again = await writer.put(etcd_prefix + b"later", b"y")
        await until(lambda: mirror.revision >= again.header.revision)
        assert mirror[etcd_prefix + b"later"] == b"y"
        mirror.close()
    finally:
        await watcher.close()
        await writer.close()


def test_mirror_arguments() -> None:
    client = Client("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(TypeError):
        Mirror(client, 5)
    with pytest.raises(TypeError):
        Mirror(client, b"p/", on_change="no")  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_mirror_of_an_unreachable_etcd_fails_ready() -> None:
    import socket

    from txetcd import ConnectionFailed
    from txetcd.test.helpers import txetcd_timers

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    client = Client(endpoint, reactor=reactor(), timeout=0.5)
    try:
        mirror = Mirror(client, b"p/")
        ready = mirror.ready
        ready.addTimeout(10, reactor())  # fails the test instead of hanging
        with pytest.raises(ConnectionFailed) as e:
            await ready
        assert endpoint in str(e.value)
        assert mirror.closed
        with pytest.raises(ConnectionFailed):
            await mirror.done
    finally:
        await client.close()
    assert txetcd_timers(reactor()) == []


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_a_mirror_whose_client_is_closed_ends_instead_of_going_stale(
    etcd_server: EtcdServer, transport: Any
) -> None:
    from twisted.internet import reactor

    client = Client(etcd_server.endpoint, reactor=reactor, transport=transport)
    mirror = Mirror(client, b"mirror-closed-client/")
    await mirror.ready
    assert not mirror.closed
    await client.close()
    await within(mirror.done, 10)  # fires (cleanly) once the client's close ended its watch
    assert mirror.closed
