"""Exactly-once watches under faults, against a real etcd behind a loopback proxy.

A writer makes more than 2,000 revisions (puts, overwrites, deletes, multi-key txns, values up
to 64 KiB) while every watcher's connection is reset, cut in the middle of a message or
blackholed (more than 20 times each), and etcd itself is killed and restarted. What each
watcher received must equal the server's own history of its range, revision by revision.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, task

from txetcd import (
    Client,
    Delete,
    EtcdError,
    EventType,
    Put,
    Watch,
    WatchBatch,
)
from txetcd.test.helpers import grpc_channel, txetcd_timers
from txetcd.testing import EtcdServer, TCPProxy

Seen = Tuple[int, str, bytes, bytes, Optional[bytes]]  # revision, type, key, value, prev value

PREFIX = b"fault/"
HOT = PREFIX + b"hot"
KEYS = [PREFIX + b"k%02d" % i for i in range(40)] + [HOT]


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


def sleep(seconds: float) -> "defer.Deferred[None]":
    return task.deferLater(reactor(), seconds, lambda: None)


def seen(batch: WatchBatch, with_prev: bool) -> List[Seen]:
    out = []
    for e in batch.events:
        prev = (e.prev_kv.value if e.prev_kv else None) if with_prev else None
        out.append((batch.revision, e.type.name, e.key, e.value, prev))
    return out


class Watcher:
    """One watcher on its own client through the proxy."""

    def __init__(
        self, name: str, endpoint: str, *, key: bytes, prefix: bool, style: str, **options: Any
    ) -> None:
        self.name = name
        tls = options.pop("tls", {})  # ca_cert= for a TLS server
        self.client = Client(
            endpoint, reactor=reactor(), keepalive_interval=5.0, keepalive_timeout=1.0, **tls
        )
        self.with_prev = bool(options.get("prev_kv"))
        self.events: List[Seen] = []
        self.options = options
        self.key, self.prefix, self.style = key, prefix, style
        self.watch: Optional[Watch] = None
        self.consumer: Optional[defer.Deferred[None]] = None

    def start(self, start_revision: int) -> None:
        kw = dict(self.options, prefix=self.prefix, start_revision=start_revision)
        if self.style == "callback":
            self.watch = self.client.watch(self.key, callback=self._batch, **kw)
        else:
            self.watch = self.client.watch(self.key, **kw)
            self.consumer = defer.ensureDeferred(self._iterate())

    def _batch(self, batch: WatchBatch) -> None:
        self.events.extend(seen(batch, self.with_prev))

    async def _iterate(self) -> None:
        assert self.watch is not None
        async for batch in self.watch:
            self.events.extend(seen(batch, self.with_prev))

    @property
    def restarts(self) -> int:
        hub = self.client._watch_hub
        return hub.restarts if hub is not None else 0

    @property
    def established(self) -> bool:
        hub = self.client._watch_hub
        return bool(hub and hub.streams and all(s.established for s in hub.streams.values()))

    def relevant(self, event: Seen) -> bool:
        _, kind, key, _, _ = event
        if self.prefix:
            in_range = key.startswith(self.key)
        else:
            in_range = key == self.key
        filters = self.options.get("filters", ())
        if "noput" in filters and kind == "PUT":
            return False
        if "nodelete" in filters and kind == "DELETE":
            return False
        return in_range


#: set by the test: a description of every watcher, for failure messages
describe: Callable[[], str] = lambda: ""


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; watchers: {describe()}")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_every_revision_exactly_once_through_faults(request: Any, tls: bool) -> None:
    """The same faults over TLS too: resets and cuts land inside TLS records, and the restart
    brings a new TLS session."""
    if tls:
        server = EtcdServer(tls=True)
        await server.start_async(reactor())
        request.addfinalizer(server.stop)
        options: Any = {"ca_cert": server.ca_cert}
    else:
        server = request.getfixturevalue("etcd_server_private")
        options = {}
    host, port = "127.0.0.1", server.client_port
    proxy = TCPProxy(host, port, reactor=reactor()).start()
    url = proxy.endpoint.replace("http://", "https://") if tls else proxy.endpoint
    writer = Client(server.endpoint, reactor=reactor(), timeout=5, **options)
    rng = random.Random(20261123)
    watchers = [
        Watcher("prefix/callback", url, key=PREFIX, prefix=True, style="callback", tls=options),
        Watcher(
            "prefix/prev_kv/async-for",
            url,
            key=PREFIX,
            prefix=True,
            style="iterate",
            prev_kv=True,
            tls=options,
        ),
        Watcher("single-key/callback", url, key=HOT, prefix=False, style="callback", tls=options),
        Watcher(
            "deletes-only/async-for",
            url,
            key=PREFIX,
            prefix=True,
            style="iterate",
            filters=["noput"],
            tls=options,
        ),
    ]
    revisions = 0
    writing = True

    def watcher_state() -> str:
        return "; ".join(
            f"{w.name}: restarts={w.restarts} established={w.established} "
            f"last={w.events[-1][0] if w.events else None} "
            f"error={getattr(w.client._watch_hub, 'last_error', None)!r}"
            for w in watchers
        )

    global describe
    describe = watcher_state

    async def write_once() -> None:
        nonlocal revisions
        roll = rng.random()
        size = rng.choices([0, 1, 10, 100, 1000, 8000, 65536], [3, 5, 30, 30, 20, 10, 1])[0]
        value = bytes([rng.randrange(256)]) * size
        if roll < 0.45:
            await writer.put(rng.choice(KEYS), value)
        elif roll < 0.6:
            await writer.put(HOT, value)
        elif roll < 0.75:
            await writer.delete(rng.choice(KEYS))
        else:
            keys = rng.sample(KEYS, rng.randint(2, 4))
            ops = [Put(k, value) if rng.random() < 0.7 else Delete(k) for k in keys]
            await writer.txn([], ops)
        revisions += 1

    async def write_loop() -> None:
        while writing or revisions < 2000:
            try:
                await write_once()
            except EtcdError:
                await sleep(0.1)  # etcd is down, or a write's outcome is unknown: go on
            await sleep(0.01)  # ~100 revisions/s: the faults get the time they need

    try:
        first = (await writer.put(PREFIX + b"start", b"")).header.revision
        for w in watchers:
            w.start(first)
        await defer.gatherResults([w.watch.created for w in watchers])  # type: ignore[union-attr]
        writes = defer.ensureDeferred(write_loop())

        async def all_back(timeout: float = 60) -> None:
            await until(lambda: all(w.established for w in watchers), timeout, "watchers back")

        faults: Dict[str, int] = {}
        schedule = ["reset", "cut"] * 11 + ["blackhole", "restart"]
        rng.shuffle(schedule)
        for fault in schedule:
            await all_back()
            await sleep(rng.uniform(0.05, 0.3))
            before = [w.restarts for w in watchers]
            if fault == "reset":
                proxy.reset()
            elif fault == "cut":
                cut = proxy.cut_after(rng.randrange(1, 4000), "down", which="current")
                cut.addTimeout(45, reactor())
                await cut
            elif fault == "blackhole":
                proxy.blackhole()
                await until(
                    lambda before=before: all(  # type: ignore[misc]
                        w.restarts > b for w, b in zip(watchers, before, strict=False)
                    ),
                    45,
                    "keepalive to notice the blackhole",
                )
                proxy.restore()
            elif fault == "restart":
                server.kill()
                await sleep(0.5)
                server.start()  # same ports, same data
            faults[fault] = faults.get(fault, 0) + 1
            await until(
                lambda before=before: all(  # type: ignore[misc]
                    w.restarts > b for w, b in zip(watchers, before, strict=False)
                ),
                60,
                f"every watcher to resume after {fault}",
            )
        writing = False
        await writes
        await all_back()
        # one last revision that every watcher sees: the hot key written, a key deleted (it
        # is written first, so the delete is real and the deletes-only watcher sees it too)
        await writer.put(KEYS[0], b"to be deleted")
        last = await writer.txn([], [Put(HOT, b"the end"), Delete(KEYS[0])])
        end = last.header.revision

        def caught_up() -> bool:
            return all(w.events and w.events[-1][0] >= end for w in watchers)

        try:
            await until(caught_up, 60, "every watcher to catch up")
        except AssertionError:
            state = [
                (w.name, w.events[-1][0] if w.events else None, w.established, w.restarts)
                for w in watchers
            ]
            raise AssertionError(f"not caught up with revision {end}: {state}") from None

        # the server's own history of the range, replayed by a watch from the first revision
        truth: List[Seen] = []
        done: defer.Deferred[None] = defer.Deferred()

        def record(batch: WatchBatch) -> None:
            truth.extend(seen(batch, True))
            if batch.revision >= end and not done.called:
                done.callback(None)

        history = writer.watch(
            PREFIX, prefix=True, start_revision=first, prev_kv=True, callback=record
        )
        done.addTimeout(60, reactor())
        await done
        history.cancel()

        assert revisions >= 2000
        assert len({r for r, *_ in truth}) >= 2000
        assert any(kind == EventType.DELETE.name for _, kind, *_ in truth)
        assert max(len(v) for _, _, _, v, _ in truth) == 65536
        for w in watchers:
            expected = [
                (r, kind, key, value, prev if w.with_prev else None)
                for (r, kind, key, value, prev) in truth
                if w.relevant((r, kind, key, value, prev))
            ]
            assert w.events == expected, w.name
            assert w.restarts >= 20, (w.name, w.restarts)
        assert faults == {"reset": 11, "cut": 11, "blackhole": 1, "restart": 1}
    finally:
        writing = False
        for w in watchers:
            await w.client.close()
        await writer.close()
        await proxy.stop()
    for w in watchers:
        assert grpc_channel(w.client).connections == []
    assert txetcd_timers(reactor()) == []
