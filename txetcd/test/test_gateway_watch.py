"""Watches over the JSON gateway: one HTTP request per watch, the same exactly-once resume."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted

from txetcd import Client, Put, RevisionCompacted
from txetcd.test.helpers import Batches, reactor, sleep, txetcd_timers
from txetcd.testing import EtcdServer, TCPProxy


@pytest_twisted.ensureDeferred
async def test_gateway_watch_batches_and_options(etcd_server: EtcdServer) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor(), transport="gateway")
    try:
        got = Batches()
        w = client.watch(b"gww/", prefix=True, prev_kv=True, callback=got)
        created = await w.created
        await client.put(b"gww/a", b"1")
        t = await client.txn([], [Put(b"gww/a", b"2"), Put(b"gww/b", b"3")])
        await client.delete(b"gww/a")
        await got.wait(4)
        assert [len(b.events) for b in got.batches] == [1, 2, 1]
        assert got.batches[1].revision == t.header.revision > created
        assert [(e.type.name, e.key, e.value) for e in got.events] == [
            ("PUT", b"gww/a", b"1"),
            ("PUT", b"gww/a", b"2"),
            ("PUT", b"gww/b", b"3"),
            ("DELETE", b"gww/a", b""),
        ]
        assert got.events[3].prev_kv is not None and got.events[3].prev_kv.value == b"2"
        # async for, with a filter, on a second request of its own
        w2 = client.watch(b"gww/b", filters=["nodelete"])
        await w2.created
        await client.delete(b"gww/b")
        await client.put(b"gww/b", b"4")
        async for batch in w2:
            assert [e.value for e in batch.events] == [b"4"]
            break
        w.cancel()
        w2.cancel()
        await w.done
    finally:
        await client.close()
    assert txetcd_timers(reactor()) == []


@pytest_twisted.ensureDeferred
async def test_gateway_watch_compacted(etcd_server: EtcdServer) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor(), transport="gateway")
    try:
        old = await client.put(b"gwc/k", b"old")
        new = await client.put(b"gwc/k", b"new")
        await client.compact(new.header.revision)
        w = client.watch(b"gwc/k", start_revision=old.header.revision)
        with pytest.raises(RevisionCompacted) as e:
            await w.done
        assert e.value.compact_revision == new.header.revision
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_gateway_watch_resumes_exactly_once_across_resets(etcd_server: EtcdServer) -> None:
    proxy = TCPProxy("127.0.0.1", etcd_server.client_port, reactor=reactor()).start()
    watcher = Client(proxy.endpoint, reactor=reactor(), transport="gateway")
    writer = Client(etcd_server.endpoint, reactor=reactor())
    try:
        got = Batches()
        w = watcher.watch(b"gwr/", prefix=True, callback=got)
        await w.created
        expected: List[bytes] = []
        for round_ in range(6):
            for i in range(20):
                value = b"%d-%d" % (round_, i)
                await writer.put(b"gwr/k%d" % (i % 4), value)
                expected.append(value)
            before = proxy.connections_total
            proxy.reset()
            for _ in range(500):  # until the watch is back on a new connection
                hub = watcher._watch_hub
                if (
                    proxy.connections_total > before
                    and hub
                    and hub.solo
                    and hub.solo[0].established
                ):
                    break
                await sleep(0.01)
        await got.wait(len(expected), timeout=20)
        await sleep(0.3)
        assert [e.value for e in got.events] == expected
        assert watcher._watch_hub is not None and watcher._watch_hub.restarts >= 6
        w.cancel()
    finally:
        await watcher.close()
        await writer.close()
        await proxy.stop()
    assert txetcd_timers(reactor()) == []


@pytest.mark.parametrize("http", ["pool", "treq"])
@pytest_twisted.ensureDeferred
async def test_gateway_slow_consumer_pauses_its_connection(
    etcd_server: EtcdServer, http: str
) -> None:
    """Past max_backlog the watch's HTTP/1.1 connection stops being read (TCP back-pressure),
    unary calls go on, and once the consumer catches up everything arrives in order."""
    from twisted.internet import defer

    http_client: Any = None
    if http == "treq":
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        pool = HTTPConnectionPool(reactor())
        pool.retryAutomatically = False
        http_client = HTTPClient(Agent(reactor(), pool=pool))
    client = Client(
        etcd_server.endpoint, reactor=reactor(), transport="gateway", http_client=http_client
    )
    prefix = b"gw-backpressure/" + http.encode() + b"/"
    gate: defer.Deferred[None] = defer.Deferred()
    seen: List[bytes] = []

    def slow(batch: Any) -> "defer.Deferred[None]":
        seen.extend(e.value for e in batch.events)
        return gate if len(seen) == 1 else defer.succeed(None)

    try:
        w = client.watch(prefix, prefix=True, callback=slow, max_backlog=4)
        await w.created
        for i in range(30):
            await client.put(prefix + b"p", b"%02d" % i)
        await sleep(0.3)
        (stream,) = client._watch_hub.solo  # type: ignore[union-attr]
        gw: Any = stream.grpc
        assert seen == [b"00"]
        assert gw.paused and gw._handle.paused  # the connection is no longer read
        assert gw._handle._transport is not None
        gate.callback(None)
        await sleep(0.5)
        assert seen == [b"%02d" % i for i in range(30)]
        assert not gw.paused and not gw._handle.paused
        w.cancel()
    finally:
        await client.close()
