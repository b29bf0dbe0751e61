"""Watches against a real etcd: both consumption styles, options, resume, compaction, pressure."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, task

from txetcd import (
    Client,
    Delete,
    Event,
    EventType,
    Put,
    RevisionCompacted,
    Watch,
    WatchBatch,
)
from txetcd.test.helpers import Batches, grpc_channel, reactor, txetcd_timers, watching_again
from txetcd.testing import EtcdServer


def summary(events: List[Event]) -> List[Tuple[str, bytes, bytes]]:
    return [(e.type.name, e.key, e.value) for e in events]


@pytest_twisted.ensureDeferred
async def test_callback_gets_batches_per_revision(etcd_client: Client, etcd_prefix: bytes) -> None:
    got = Batches()
    w = etcd_client.watch(etcd_prefix, prefix=True, callback=got)
    created = await w.created
    assert created > 0
    a, b = etcd_prefix + b"a", etcd_prefix + b"b"
    await etcd_client.put(a, b"1")
    t = await etcd_client.txn([], [Put(a, b"2"), Put(b, b"3")])  # two events, one revision
    await etcd_client.delete(a)
    await got.wait(4)
    assert [len(batch.events) for batch in got.batches] == [1, 2, 1]
    assert got.batches[1].revision == t.header.revision
    assert all(e.revision == got.batches[1].revision for e in got.batches[1].events)
    assert summary(got.events) == [
        ("PUT", a, b"1"),
        ("PUT", a, b"2"),
        ("PUT", b, b"3"),
        ("DELETE", a, b""),
    ]
    assert got.events[0].prev_kv is None
    revs = [batch.revision for batch in got.batches]
    assert revs == sorted(revs) and revs[0] > created
    assert w.revision == revs[-1]
    w.cancel()
    await w.done  # fires with None on cancel
    assert w.ended


@pytest_twisted.ensureDeferred
async def test_async_for_and_options(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    w = etcd_client.watch(key, prev_kv=True, filters=["nodelete"])
    await w.created
    await etcd_client.put(key, b"one")
    await etcd_client.delete(key)  # filtered out
    await etcd_client.put(key, b"two")
    seen: List[Event] = []
    async for batch in w:
        seen.extend(batch.events)
        if len(seen) == 2:
            w.cancel()
    assert summary(seen) == [("PUT", key, b"one"), ("PUT", key, b"two")]
    assert seen[0].prev_kv is None  # created: no previous state
    assert seen[1].prev_kv is None  # deleted in between: nothing before "two"
    await w.done  # fires with None on cancel
    assert w.ended


@pytest_twisted.ensureDeferred
async def test_range_and_noput_filter_and_prev_kv_on_delete(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    got = Batches()
    w = etcd_client.watch(
        etcd_prefix + b"b",
        range_end=etcd_prefix + b"d",
        filters=["noput"],
        prev_kv=True,
        callback=got,
    )
    await w.created
    for name in (b"a", b"b", b"c", b"d"):
        await etcd_client.put(etcd_prefix + name, b"v-" + name)
    await etcd_client.delete(etcd_prefix, prefix=True)
    await got.wait(2)
    assert [(e.type, e.key[-1:]) for e in got.events] == [
        (EventType.DELETE, b"b"),
        (EventType.DELETE, b"c"),
    ]
    assert [e.prev_kv.value for e in got.events if e.prev_kv] == [b"v-b", b"v-c"]
    assert len(got.batches) == 1  # one range delete is one revision
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_start_revision_replays_history(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"h"
    first = await etcd_client.put(key, b"1")
    await etcd_client.put(key, b"2")
    await etcd_client.put(key, b"3")
    got = Batches()
    w = etcd_client.watch(key, start_revision=first.header.revision, callback=got)
    await got.wait(3)
    assert [e.value for e in got.events] == [b"1", b"2", b"3"]
    assert [b.revision for b in got.batches] == [
        first.header.revision,
        first.header.revision + 1,
        first.header.revision + 2,
    ]
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_compacted_start_fails_once_with_compact_revision(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor())
    try:
        key = etcd_prefix + b"c"
        old = await client.put(key, b"old")
        new = await client.put(key, b"new")
        await client.compact(new.header.revision)
        got = Batches()
        w = client.watch(key, start_revision=old.header.revision, callback=got)
        with pytest.raises(RevisionCompacted) as e:
            await w.done
        assert e.value.compact_revision == new.header.revision
        assert got.batches == []
        await client.put(key, b"after")  # nothing more arrives for the ended watch
        await task.deferLater(reactor(), 0.2, lambda: None)
        assert got.batches == []
        # the same error from an async for
        w2 = client.watch(key, start_revision=old.header.revision)
        with pytest.raises(RevisionCompacted):
            async for _ in w2:
                pass
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_watches_share_one_stream_and_cancel_leaves_nothing(etcd_server: EtcdServer) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor())
    try:
        watches = [client.watch(b"share/%d" % i) for i in range(10)]
        await defer.gatherResults([w.created for w in watches])
        hub = client._watch_hub
        assert hub is not None and len(hub.streams) == 1
        conn = grpc_channel(client).connection
        assert conn is not None and len(conn.streams) == 1  # one gRPC stream for all ten
        for w in watches:
            w.cancel()
        await defer.gatherResults([w.done for w in watches])
        assert hub.streams == {} and len(conn.streams) == 0
        # a watch with require_leader gets its own stream (hasleader metadata)
        w1, w2 = client.watch(b"share/x"), client.watch(b"share/y", require_leader=True)
        await defer.gatherResults([w1.created, w2.created])
        assert len(hub.streams) == 2
        await client.put(b"share/y", b"v")
        async for batch in w2:
            assert batch.events[0].value == b"v"
            break
        w1.cancel()
        w2.cancel()
    finally:
        await client.close()
    assert grpc_channel(client).connections == []
    assert txetcd_timers(reactor()) == []


@pytest_twisted.ensureDeferred
async def test_resumes_after_connection_reset_exactly_once(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    got = Batches()
    w = etcd_client.watch(etcd_prefix, prefix=True, callback=got)
    await w.created
    expected = []
    for round_ in range(5):
        for i in range(10):
            value = b"%d-%d" % (round_, i)
            await etcd_client.put(etcd_prefix + b"k%d" % (i % 3), value)
            expected.append(value)
        conn = grpc_channel(etcd_client).connection
        assert conn is not None
        conn.transport.abortConnection()  # type: ignore[union-attr]
        await watching_again(etcd_client, round_ + 1)
    await got.wait(len(expected))
    await task.deferLater(reactor(), 0.3, lambda: None)  # any duplicate would show up now
    assert [e.value for e in got.events] == expected
    revs = [b.revision for b in got.batches]
    assert revs == sorted(set(revs))
    assert etcd_client._watch_hub is not None and etcd_client._watch_hub.restarts == 5
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_backlog_after_an_outage_arrives_as_one_big_message(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    """No 4 MiB receive cap: a 6 MiB backlog comes as one message and is delivered whole."""
    watcher = Client(etcd_server.endpoint, reactor=reactor())
    writer = Client(etcd_server.endpoint, reactor=reactor())
    try:
        got = Batches()
        w = watcher.watch(etcd_prefix, prefix=True, callback=got)
        await w.created
        hub = watcher._watch_hub
        assert hub is not None
        hub.backoff_initial = 3.0  # keep it away while the backlog builds
        grpc_channel(watcher).connection.transport.abortConnection()  # type: ignore[union-attr]
        value = b"b" * (64 * 1024)
        for i in range(100):  # 6.25 MiB of history the watch has not seen
            await writer.put(etcd_prefix + b"%03d" % i, value)
        hub.backoff_initial = 0.05
        await got.wait(100, timeout=20)
        assert [e.key[-3:] for e in got.events] == [b"%03d" % i for i in range(100)]
        assert all(e.value == value for e in got.events)
        stream = hub.streams[False]
        assert stream.grpc.largest > 6 * 1024 * 1024  # type: ignore[attr-defined]  # one message
        w.cancel()
    finally:
        await watcher.close()
        await writer.close()


@pytest_twisted.ensureDeferred
async def test_slow_consumer_pauses_stream_while_unary_calls_flow(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    gate: defer.Deferred[None] = defer.Deferred()
    seen: List[bytes] = []

    def slow(batch: WatchBatch) -> "defer.Deferred[None]":
        seen.extend(e.value for e in batch.events)
        return gate if len(seen) == 1 else defer.succeed(None)

    w = etcd_client.watch(etcd_prefix, prefix=True, callback=slow, max_backlog=4)
    await w.created
    for i in range(30):
        await etcd_client.put(etcd_prefix + b"p", b"%02d" % i)  # unary calls keep flowing
    await task.deferLater(reactor(), 0.2, lambda: None)
    stream = etcd_client._watch_hub.streams[False]  # type: ignore[union-attr]
    assert seen == [b"00"]  # the callback has not finished: nothing more was delivered
    assert stream.grpc.paused  # past max_backlog the stream stopped taking data
    assert len(w._backlog) <= 30
    gate.callback(None)
    await task.deferLater(reactor(), 0.3, lambda: None)
    assert seen == [b"%02d" % i for i in range(30)]
    assert not stream.grpc.paused
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_callback_error_ends_the_watch(etcd_client: Client, etcd_prefix: bytes) -> None:
    def broken(batch: WatchBatch) -> None:
        raise ZeroDivisionError("user bug")

    w = etcd_client.watch(etcd_prefix + b"x", callback=broken)
    await w.created
    await etcd_client.put(etcd_prefix + b"x", b"1")
    with pytest.raises(ZeroDivisionError):
        await w.done


@pytest_twisted.ensureDeferred
async def test_progress_request_moves_revision(etcd_client: Client, etcd_prefix: bytes) -> None:
    w = etcd_client.watch(etcd_prefix + b"quiet")
    created = await w.created
    r = await etcd_client.put(etcd_prefix + b"elsewhere", b"v")
    assert w.revision == created
    etcd_client.request_progress()
    for _ in range(50):
        if w.revision >= r.header.revision:
            break
        await task.deferLater(reactor(), 0.02, lambda: None)
    assert w.revision >= r.header.revision
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_fragmented_batches_are_joined() -> None:
    with EtcdServer(["--max-request-bytes=2048"]) as server:
        client = Client(server.endpoint, reactor=reactor())
        try:
            for i in range(300):
                await client.put(b"frag/%03d" % i, b"x" * 1000)
            got = Batches()
            w = client.watch(b"frag/", prefix=True, fragment=True, prev_kv=True, callback=got)
            await w.created
            await client.txn([], [Delete(b"frag/", prefix=True)])
            await got.wait(300)
            assert len(got.batches) == 1 and len(got.batches[0].events) == 300
            assert all(e.prev_kv and len(e.prev_kv.value) == 1000 for e in got.events)
            w.cancel()
        finally:
            await client.close()


def test_bad_watch_arguments() -> None:
    client = Client("http://127.0.0.1:9", reactor=task.Clock())
    with pytest.raises(ValueError):
        client.watch(b"")
    with pytest.raises(TypeError):
        client.watch(b"k", start_revision="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.watch(b"k", filters=["nothing"])
    with pytest.raises(TypeError):
        client.watch(b"k", filters="noput")
    with pytest.raises(TypeError):
        client.watch(b"k", callback=3)  # type: ignore[arg-type]
    assert grpc_channel(client).connections == []


@pytest_twisted.ensureDeferred
async def test_callback_watch_cannot_be_iterated(etcd_client: Client) -> None:
    w: Watch = etcd_client.watch(b"k", callback=lambda b: None)
    with pytest.raises(TypeError):
        w.__aiter__()
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_require_leader_ends_a_leaderless_stream_instead_of_silence() -> None:
    from txetcd import NoLeader, OutcomeUnknown
    from txetcd.testing import EtcdCluster

    with EtcdCluster(2) as cluster:
        client = Client(cluster.endpoints[0], reactor=reactor(), timeout=5)
        try:
            loyal, plain = Batches(), Batches()
            w1 = client.watch(b"lead/", prefix=True, require_leader=True, callback=loyal)
            w2 = client.watch(b"lead/", prefix=True, callback=plain)
            await defer.gatherResults([w1.created, w2.created])
            hub = client._watch_hub
            assert hub is not None
            silent_stream = hub.streams[False]
            await client.put(b"lead/a", b"1")
            await defer.gatherResults([loyal.wait(1), plain.wait(1)])
            cluster.members[1].kill()  # member 0 loses its leader
            for _ in range(750):  # etcd notices within a few seconds
                if isinstance(hub.last_error, NoLeader):
                    break
                await task.deferLater(reactor(), 0.02, lambda: None)
            assert isinstance(hub.last_error, NoLeader)  # the stream was ended, not left silent
            assert hub.streams.get(False) is silent_stream  # the plain watch's stream stayed
            assert not w1.ended and not w2.ended  # both keep going
            cluster.members[1].start()  # the leader is back
            while True:  # a put in flight while the new term shows up: its outcome is unknown
                try:
                    await client.put(b"lead/b", b"2")
                    break
                except OutcomeUnknown:
                    if (await client.get(b"lead/b")).kvs:
                        break
            await defer.gatherResults([loyal.wait(2, timeout=30), plain.wait(2, timeout=30)])
            await task.deferLater(reactor(), 0.2, lambda: None)
            assert [e.value for e in loyal.events] == [b"1", b"2"]  # exactly once
            assert [e.value for e in plain.events] == [b"1", b"2"]
            w1.cancel()
            w2.cancel()
        finally:
            await client.close()


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest_twisted.ensureDeferred
async def test_a_timed_out_async_for_step_loses_nothing(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    """ "Watch once, with a timeout": a step given up on does not take the next batch."""
    w = etcd_client.watch(etcd_prefix + b"once")
    witness = Batches()  # on the same stream: once it has the event, so has w
    w2 = etcd_client.watch(etcd_prefix + b"once", callback=witness)
    await defer.gatherResults([w.created, w2.created])
    step = defer.ensureDeferred(w.__anext__())
    step.addTimeout(0.1, reactor())
    with pytest.raises(defer.TimeoutError):
        await step
    r = await etcd_client.put(etcd_prefix + b"once", b"1")
    await witness.wait(1)
    nxt = defer.ensureDeferred(w.__anext__())
    nxt.addTimeout(10, reactor())
    batch = await nxt
    assert batch.revision == r.header.revision
    w.cancel()
    w2.cancel()


@pytest_twisted.ensureDeferred
async def test_created_fails_typed_when_cancelled_before_etcd_created_it(
    etcd_client: Client,
) -> None:
    from txetcd import WatchCancelled

    w = etcd_client.watch(b"never-created")
    w.cancel()
    with pytest.raises(WatchCancelled):
        await w.created
    await w.done  # fires with None: the watch was cancelled, nothing went wrong


@pytest_twisted.ensureDeferred
async def test_unreachable_etcd_fails_the_watch_at_its_deadline() -> None:
    from txetcd import ConnectionFailed

    endpoint = f"http://127.0.0.1:{unused_port()}"
    client = Client(endpoint, reactor=reactor(), timeout=0.5)
    try:
        w = client.watch(b"k")
        created = w.created
        created.addTimeout(10, reactor())  # fails the test instead of hanging
        with pytest.raises(ConnectionFailed) as e:
            await created
        assert endpoint in str(e.value)
        assert w.ended and not w.connected
        with pytest.raises(ConnectionFailed):
            await w.done
        # its own timeout= overrides the client's
        w2 = client.watch(b"k", timeout=0.2)
        with pytest.raises(ConnectionFailed):
            await w2.created
    finally:
        await client.close()
    assert txetcd_timers(reactor()) == []
