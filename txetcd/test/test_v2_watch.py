"""The v2 eternal watch against real etcd: exactly once across broken connections, recovery
from EventIndexCleared (> 1,000 writes while away), following X-Etcd-Index on quiet polls,
backoff on a Clock, back-pressure, cancel and errors."""

from __future__ import annotations

from typing import Any, AsyncIterator, List, Tuple

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txetcd.test.helpers import FakeResolver, MakeV2Client, ix, sleep, until
from txetcd.testing import EtcdServer, TCPProxy, free_port
from txetcd.v2 import Client, EtcdResult, EternalWatch, Expired, Resynced


@pytest.fixture
def direct(make_v2_client: MakeV2Client) -> Client:
    """A client of the v2 server."""
    return make_v2_client()


@pytest_twisted.async_yield_fixture
async def proxy(etcd_v2_server: EtcdServer) -> AsyncIterator[TCPProxy]:
    async with TCPProxy("127.0.0.1", etcd_v2_server.client_port, reactor=reactor) as p:
        yield p


@pytest.fixture
def proxied(make_v2_client: MakeV2Client, proxy: TCPProxy) -> Client:
    """A client of the v2 server through ``proxy``."""
    return make_v2_client(port=proxy.port)


async def write_many(client: Client, keys: List[Tuple[str, str]], parallel: int = 16) -> None:
    sem = DeferredSemaphore(parallel)
    await DeferredList(
        [sem.run(client.set, k, v) for k, v in keys], fireOnOneErrback=True, consumeErrors=True
    )


def events(items: List[Any]) -> List[Tuple[str, str, Any]]:
    return [(i.action or "", i.key, i.value) for i in items if isinstance(i, EtcdResult)]


@pytest_twisted.ensureDeferred
async def test_exactly_once_across_resets(
    direct: Client, proxied: Client, proxy: TCPProxy, prefix: str
) -> None:
    start = await direct.set(f"{prefix}/start", "0")
    seen: List[Any] = []
    watch = proxied.eternal_watch(prefix, index=ix(start) + 1, recursive=True, callback=seen.append)
    assert isinstance(watch, EternalWatch)
    expected: List[Tuple[str, str, Any]] = []
    for i in range(60):
        key = f"{prefix}/k{i % 7}"
        if i % 10 == 9:
            r = await direct.delete(key)
        else:
            r = await direct.set(key, f"v{i}")
        expected.append((r.action or "", r.key, r.value))
        if i % 6 == 0:
            # once the watch waits again, cut its connection
            await until(lambda: len(events(seen)) == len(expected), what="the watch to catch up")
            await until(lambda: proxy.active_connections > 0, what="a poll")
            proxy.reset()
        if i % 15 == 7:
            proxy.cut_after(40, "down")  # the next answer cut in the middle
    await until(lambda: len(events(seen)) >= len(expected), what="all events")
    await sleep(0.2)
    watch.cancel()
    await watch.done
    assert events(seen) == expected
    indexes = [ix(i) for i in seen if isinstance(i, EtcdResult)]
    assert indexes == sorted(indexes) and len(indexes) == len(set(indexes))
    assert watch.restarts >= 5, watch
    assert watch.resyncs == 0


@pytest_twisted.ensureDeferred
async def test_event_index_cleared_resyncs_and_goes_on(
    direct: Client, proxied: Client, proxy: TCPProxy, prefix: str
) -> None:
    key = f"{prefix}/watched"
    first = await direct.set(key, "first")
    watch = proxied.eternal_watch(key, index=ix(first) + 1)
    items = aiter_items(watch)
    await direct.set(key, "second")
    got = await items.next()
    assert isinstance(got, EtcdResult) and got.value == "second"
    await proxy.refuse(True)  # the watcher is away...
    proxy.reset()
    await direct.set(key, "missed")  # ...while its key changes once...
    await write_many(direct, [(f"{prefix}/noise/{i % 50}", str(i)) for i in range(1100)])
    await direct.set(key, "latest")  # ...and > 1,000 other changes push that out of history
    await proxy.refuse(False)
    note = await items.next(timeout=20)
    assert isinstance(note, Resynced), note
    assert note.result is not None and note.result.value == "latest"
    assert note.missed_from is not None and note.missed_from <= ix(got) + 1
    assert watch.resyncs == 1
    after = await direct.set(key, "after")
    event = await items.next()
    assert isinstance(event, EtcdResult) and event.value == "after"
    assert event.modified_index == after.modified_index
    watch.cancel()
    assert await items.next() is None  # the iteration ended


@pytest_twisted.ensureDeferred
async def test_resync_of_a_missing_key(direct: Client, prefix: str, etcd_v2_server: Any) -> None:
    key = f"{prefix}/gone"
    r = await direct.set(key, "x")
    await direct.delete(key)
    await write_many(direct, [(f"{prefix}/noise/{i % 20}", str(i)) for i in range(1100)])
    # start from an index long cleared: the watch re-reads and finds nothing
    watch = direct.eternal_watch(key, index=r.modified_index)
    items = aiter_items(watch)
    note = await items.next()
    assert isinstance(note, Resynced) and note.result is None
    made = await direct.set(key, "back")
    event = await items.next()
    assert isinstance(event, EtcdResult) and event.modified_index == made.modified_index
    watch.cancel()


@pytest_twisted.ensureDeferred
async def test_quiet_polls_follow_x_etcd_index(direct: Client, prefix: str) -> None:
    """A watch on an idle key keeps up with the store index, so > 1,000 changes elsewhere do
    not push it out of etcd's history (python-etcd's watch dies with EventIndexCleared here)."""
    key = f"{prefix}/idle"
    start = await direct.set(key, "0")
    watch = direct.eternal_watch(key, index=ix(start) + 1, poll_timeout=0.2)
    items = aiter_items(watch)
    for _chunk in range(6):  # paced: ~200 writes per chunk, a poll every 0.2 s
        await write_many(
            direct, [(f"{prefix}/noise/{i % 30}", str(i)) for i in range(200)], parallel=4
        )
        await sleep(0.25)
    assert watch.next_index is not None and watch.next_index > ix(start) + 1000
    last = await direct.set(key, "1")
    event = await items.next()
    assert isinstance(event, EtcdResult) and event.modified_index == last.modified_index
    assert watch.resyncs == 0
    watch.cancel()


@pytest_twisted.ensureDeferred
async def test_expire_and_delete_events(direct: Client, prefix: str) -> None:
    key = f"{prefix}/ttl"
    start = await direct.set(key, "soon", ttl=1)
    watch = direct.eternal_watch(key, index=ix(start) + 1)
    items = aiter_items(watch)
    expired = await items.next(timeout=10)
    assert isinstance(expired, Expired) and expired.prev_node is not None
    assert expired.prev_node.value == "soon"
    await direct.set(key, "again")
    await direct.delete(key)
    assert (await items.next()).action == "set"
    assert (await items.next()).action == "delete"
    watch.cancel()


@pytest_twisted.ensureDeferred
async def test_backpressure_holds_polls(direct: Client, prefix: str) -> None:
    start = await direct.set(f"{prefix}/k", "0")
    watch = direct.eternal_watch(f"{prefix}/k", index=ix(start) + 1, max_backlog=2)
    for i in range(5):
        await direct.set(f"{prefix}/k", str(i + 1))
    await until(lambda: watch._held, what="the watch to hold back")
    assert len(watch._queue) == 2
    values = []
    async for item in watch:
        values.append(item.value)
        if len(values) == 5:
            break
    assert values == ["1", "2", "3", "4", "5"]
    watch.cancel()


@pytest_twisted.ensureDeferred
async def test_callback_error_ends_the_watch(direct: Client, prefix: str) -> None:
    start = await direct.set(f"{prefix}/k", "0")

    def boom(item: Any) -> None:
        raise RuntimeError("callback broke")

    watch = direct.eternal_watch(f"{prefix}/k", index=ix(start) + 1, callback=boom)
    await direct.set(f"{prefix}/k", "1")
    with pytest.raises(RuntimeError, match="callback broke"):
        await watch.done
    assert watch.ended
    with pytest.raises(TypeError):
        watch.__aiter__()


@pytest_twisted.ensureDeferred
async def test_failover_and_cancel(etcd_v2_server: EtcdServer, prefix: str) -> None:
    dead = free_port()
    client = Client(
        (("127.0.0.1", dead), ("127.0.0.1", etcd_v2_server.client_port)), reactor=reactor
    )
    try:
        start = await client.set(f"{prefix}/k", "0")
        client._current = 0  # back on the dead member: the watch must fail over by itself
        watch = client.eternal_watch(f"{prefix}/k", index=start.modified_index)
        items = aiter_items(watch)
        first = await items.next()
        assert isinstance(first, EtcdResult) and first.value == "0"
        assert watch.restarts >= 1 and watch.last_error is not None
        watch.cancel()
        assert await watch.done is None
        assert await items.next() is None
    finally:
        await client.close()


class RefusingHTTP:
    """An HTTP/1.1 client whose every stream fails at once as a refused connection."""

    def __init__(self) -> None:
        self.streams = 0

    def stream(self, method: bytes, url: str, **kw: Any) -> Any:
        from txetcd._errors import ConnectionFailed
        from txetcd._http1.interface import StreamHandle

        self.streams += 1
        handle = StreamHandle(lambda: None)
        handle._end(Failure(ConnectionFailed("refused")))
        return handle

    def close(self) -> "Deferred[None]":
        return succeed(None)


def test_backoff_on_the_clock() -> None:
    """Failed polls are retried on the injected clock after a jittered, doubling, capped delay,
    from the same index, on the next member each time."""
    clock = Clock()
    client = Client((("127.0.0.1", 1), ("127.0.0.1", 2)), reactor=reactor, clock=clock)
    client._http = http = RefusingHTTP()
    watch = client.eternal_watch("/k", index=5, poll_timeout=30, backoff_max=1.0)
    delays = []
    for n in range(8):
        assert http.streams == n + 1 and watch.restarts == n + 1
        assert watch._retry is not None and watch.next_index == 5
        delays.append(watch._retry.getTime() - clock.seconds())
        clock.advance(delays[-1] - 0.001)
        assert http.streams == n + 1  # not before its time
        clock.advance(0.002)
    assert watch.restarts == 9 and client.base_uri.endswith(":2")
    bases = [min(1.0, 0.05 * 2**i) for i in range(8)]
    for delay, base in zip(delays, bases, strict=False):
        assert base * 0.5 <= delay <= base
    watch.cancel()
    assert not clock.getDelayedCalls()


class aiter_items:  # noqa: N801
    """``await items.next()``: the watch's next item, or ``None`` once it ended."""

    def __init__(self, watch: EternalWatch) -> None:
        self.it = watch.__aiter__()

    async def next(self, timeout: float = 10.0) -> Any:
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(self._next())
        d.addTimeout(timeout, reactor)
        return await d

    async def _next(self) -> Any:
        try:
            return await self.it.__anext__()
        except StopAsyncIteration:
            return None


@pytest_twisted.ensureDeferred
async def test_eternal_watch_as_first_call_runs_the_srv_lookup(
    direct: Client, etcd_v2_server: EtcdServer, prefix: str
) -> None:

    resolver = FakeResolver(
        {"_etcd-client._tcp.example.test": [(10, 0, etcd_v2_server.client_port, "127.0.0.1")]}
    )
    client = Client(srv_domain="example.test", resolver=resolver, reactor=reactor)
    try:
        start = await direct.set(f"{prefix}/k", "0")
        watch = client.eternal_watch(f"{prefix}/k", index=ix(start) + 1)
        items = aiter_items(watch)
        await direct.set(f"{prefix}/k", "1")
        event = await items.next()
        assert isinstance(event, EtcdResult) and event.value == "1"
        assert client.endpoints == [f"http://127.0.0.1:{etcd_v2_server.client_port}"]
        watch.cancel()
    finally:
        await client.close()
