"""A model of etcd against the WatchHub: random interleavings, exactly-once delivery.

A hypothesis state machine drives a WatchHub over a fake channel, on a task.Clock, through any
order of: watches (keys, ranges, start revisions; callback, slow and ``async for`` consumers,
whose steps may be given up on), cancels, etcd's answers to creates (in the order they were sent
on each stream, as etcd does; some refused), server cancels, writes at new revisions, progress
notifications, stream breaks and time passing. The fake server honours the ``start_revision`` of
each create request it actually received, replaying from its log. Each watch must receive exactly
the events of its range from its start, in order, with no gap and no duplicate; a cancelled one
nothing more; nothing is lost between the stream and the consumer; and once everything in
flight has arrived, every live watch has every event.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet import defer, task

from txetcd import WatchBatch, WatchCancelled
from txetcd._proto import rpc_pb2
from txetcd._watch import Watch, WatchHub
from txetcd.test.helpers import EMPTY_RANGE, FakeWatchChannel, FakeWatchStream

KEYS = [b"a", b"b", b"c"]
RANGES = [(b"a", b""), (b"b", b""), (b"c", b""), (b"a", b"c"), (b"\0", b"\0")]  # key, all


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


class FakeEtcd:
    """The server side of one fake stream: requests are served in the order they came."""

    def __init__(self, model: "WatchModel", stream: FakeWatchStream) -> None:
        self.model, self.stream = model, stream
        self.hub_stream = stream.on_message.__self__  # the hub's _WatchStream
        stream.on_message = self.arrived
        self.seen = 0  # requests of the stream taken into the inbox
        self.inbox: Deque[Any] = deque()
        self.active: Dict[int, Tuple[bytes, bytes]] = {}  # created watches: id -> range

    def arrived(self, resp: Any) -> None:
        """A message reaches the hub: note the revision etcd said it created a watch at."""
        if resp.created and not resp.canceled:
            watch = self.hub_stream.watches.get(resp.watch_id)  # by its id, not by the order
            if watch is not None:
                self.model.created_at.setdefault(watch, resp.header.revision)
        self.hub_stream._on_message(resp)

    def take(self) -> None:
        self.inbox.extend(self.stream.requests[self.seen :])
        self.seen = len(self.stream.requests)

    def serve(self, refuse: bool) -> None:
        req = self.inbox.popleft()
        log, rev, s = self.model.log, self.model.revision, self.stream
        if req.HasField("create_request"):
            cr = req.create_request
            if refuse:
                s.created(rev, cr.watch_id, refused=EMPTY_RANGE)
                return
            s.created(rev, cr.watch_id)
            watch = self.hub_stream.watches.get(cr.watch_id)  # the hub's, by its id
            if watch is not None and not s.held:  # the answer went through: it was this one's
                assert watch.ended or watch.connected, watch
            start = cr.start_revision or rev + 1
            old = [(r, k) for r, k in log if r >= start and in_range(k, cr.key, cr.range_end)]
            if old:  # the history since start_revision, in one message
                self.send(cr.watch_id, rev, old)
            self.active[cr.watch_id] = (cr.key, cr.range_end)
        elif req.HasField("cancel_request"):
            watch_id = req.cancel_request.watch_id
            if self.active.pop(watch_id, None) is not None:
                s.deliver(rpc_pb2.WatchResponse(watch_id=watch_id, canceled=True))
        else:
            self.progress(-1)

    def send(self, watch_id: int, revision: int, events: List[Tuple[int, bytes]]) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        resp.header.revision = revision
        for r, key in events:
            ev = resp.events.add()
            ev.kv.key, ev.kv.value = key, b"v%d" % r
            ev.kv.mod_revision = ev.kv.create_revision = r
        self.stream.deliver(resp)

    def written(self, revision: int, keys: List[bytes]) -> None:
        for watch_id, (start, end) in self.active.items():
            mine = [(revision, k) for k in keys if in_range(k, start, end)]
            if mine:
                self.send(watch_id, revision, mine)

    def progress(self, watch_id: int) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        resp.header.revision = self.model.revision
        self.stream.deliver(resp)

    def server_cancel(self, watch_id: int) -> None:
        del self.active[watch_id]
        resp = rpc_pb2.WatchResponse(watch_id=watch_id, canceled=True)
        resp.cancel_reason = "etcdserver: no leader"
        self.stream.deliver(resp)


class Tracked:
    """One watch of the model and what it delivered."""

    def __init__(self, watch: Watch, key: bytes, end: bytes, start: int, style: str) -> None:
        self.watch, self.key, self.end, self.start, self.style = watch, key, end, start, style
        self.created: Optional[int] = None
        self.got: List[Tuple[int, bytes]] = []
        self.batches: List[int] = []
        self.frozen: Optional[int] = None  # len(got) when cancelled
        self.slow: List["defer.Deferred[None]"] = []  # a slow consumer's pending Deferreds
        self.step: Optional["defer.Deferred[Any]"] = None  # an async-for step in progress
        watch.created.addCallbacks(self._created, lambda f: None)
        watch.done.addErrback(lambda f: f.trap(WatchCancelled))

    def _created(self, revision: int) -> None:
        self.created = revision

    def record(self, batch: WatchBatch) -> Any:
        assert all(e.kv.mod_revision == batch.revision for e in batch.events)
        self.batches.append(batch.revision)
        self.got.extend((batch.revision, e.key) for e in batch.events)
        if self.style == "slow":
            d: defer.Deferred[None] = defer.Deferred()
            self.slow.append(d)
            return d
        return None

    def pull(self, clock: task.Clock) -> None:
        """One ``async for`` step, given up on after a second ("watch once, with a timeout")."""
        if self.step is not None or self.watch.ended:
            return
        step = self.step = defer.ensureDeferred(self.watch.__anext__())
        step.addTimeout(1.0, clock)
        step.addCallbacks(self._stepped, self._step_failed)

    def _stepped(self, batch: WatchBatch) -> None:
        self.step = None
        self.record(batch)

    def _step_failed(self, failure: Any) -> None:
        self.step = None
        failure.trap(defer.TimeoutError, StopAsyncIteration, WatchCancelled)

    def expected(
        self, log: List[Tuple[int, bytes]], created_at: Optional[int]
    ) -> List[Tuple[int, bytes]]:
        first = self.start or (created_at + 1 if created_at is not None else None)
        if first is None:
            return []
        return [(r, k) for r, k in log if r >= first and in_range(k, self.key, self.end)]


class WatchModel(RuleBasedStateMachine):
    """Watches, cancels, answers, events, progress and breaks in any order: each watch gets
    exactly the events of its range from its start, in order, once; a cancelled one nothing
    more; and once things settle, every live watch has everything."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = task.Clock()
        self.log: List[Tuple[int, bytes]] = []
        self.revision = 5
        self.tracked: List[Tracked] = []
        self.servers: Dict[int, FakeEtcd] = {}  # id(stream) -> its server side
        #: the revision etcd said each watch was first created at (in an answer that arrived)
        self.created_at: Dict[Watch, int] = {}

    @initialize(duplex=st.booleans())
    def start(self, duplex: bool) -> None:
        self.channel = FakeWatchChannel(self.clock, duplex=duplex)
        self.channel.on_send = self._sent
        self.hub = WatchHub(self.channel, self.clock)  # type: ignore[arg-type]
        self.hub._rand.seed(0)  # the same backoff jitter each run: hypothesis replays runs

    def _sent(self, stream: FakeWatchStream) -> None:
        server = self.servers.get(id(stream))
        if server is None:
            server = self.servers[id(stream)] = FakeEtcd(self, stream)
        server.take()

    def live_servers(self) -> List[FakeEtcd]:
        return [s for s in self.servers.values() if not s.stream.ended]

    def expected(self, t: Tracked) -> List[Tuple[int, bytes]]:
        return t.expected(self.log, self.created_at.get(t.watch))

    def live(self) -> List[Tracked]:
        return [t for t in self.tracked if not t.watch.ended]

    def busy(self) -> List[Tracked]:
        return [t for t in self.tracked if t.slow or (t.style == "iterate" and not t.watch.ended)]

    # -- the client ------------------------------------------------------------------------
    @rule(
        where=st.sampled_from(RANGES),
        start=st.one_of(st.just(0), st.integers(1, 8)),
        style=st.sampled_from(["callback", "slow", "iterate"]),
    )
    def watch(self, where: Tuple[bytes, bytes], start: int, style: str) -> None:
        key, end = where
        start = min(start, self.revision + 2)
        kw: Dict[str, Any] = {"range_end": end} if end else {}
        t: Optional[Tracked] = None

        def callback(batch: WatchBatch) -> Any:
            assert t is not None
            return t.record(batch)

        cb = None if style == "iterate" else callback
        w = self.hub.watch(key, start_revision=start, callback=cb, max_backlog=2, **kw)
        t = Tracked(w, key, end, start, style)
        self.tracked.append(t)

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self.live()))
        t.watch.cancel()
        t.frozen = len(t.got)

    @precondition(lambda self: self.busy())
    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        """A slow consumer finishes one batch, or an async for takes a step."""
        t = data.draw(st.sampled_from(self.busy()))
        if t.slow:
            t.slow.pop(0).callback(None)
        else:
            t.pull(self.clock)

    # -- the server ------------------------------------------------------------------------
    @precondition(lambda self: any(s.inbox for s in self.live_servers()))
    @rule(data=st.data(), refuse=st.booleans())
    def serve(self, data: st.DataObject, refuse: bool) -> None:
        ready = [s for s in self.live_servers() if s.inbox]
        data.draw(st.sampled_from(ready)).serve(refuse and data.draw(st.booleans()))

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True))
    def write(self, keys: List[bytes]) -> None:
        self.revision += 1
        self.log.extend((self.revision, k) for k in keys)
        for server in self.live_servers():
            server.written(self.revision, keys)

    @precondition(lambda self: self.live_servers())
    @rule(data=st.data(), asked=st.booleans())
    def progress(self, data: st.DataObject, asked: bool) -> None:
        """The client asks for progress, or etcd sends one (for all, or for one watch)."""
        if asked:
            self.hub.request_progress()
            return
        server = data.draw(st.sampled_from(self.live_servers()))
        ids = [-1] + sorted(server.active)
        server.progress(data.draw(st.sampled_from(ids)))

    @precondition(lambda self: any(s.active for s in self.live_servers()))
    @rule(data=st.data())
    def server_cancels(self, data: st.DataObject) -> None:
        choices = [(s, i) for s in self.live_servers() for i in sorted(s.active)]
        server, watch_id = data.draw(st.sampled_from(choices))
        server.server_cancel(watch_id)

    @precondition(lambda self: self.live_servers())
    @rule(data=st.data())
    def break_stream(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.live_servers())).stream.break_()

    @precondition(lambda self: self.clock.getDelayedCalls())
    @rule(seconds=st.sampled_from([0.01, 0.1, 1.0, 10.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def settle(self) -> None:
        """Everything in flight arrives: then every live watch has every event of its range."""

        def consume_all() -> None:
            for t in self.tracked:
                while t.slow:
                    t.slow.pop(0).callback(None)
                while t.style == "iterate" and t.step is None and not t.watch.ended:
                    t.pull(self.clock)  # takes what is held; ends a watch the server ended

        for _ in range(100):
            consume_all()
            self.clock.advance(60)  # resumes happen (and steps waiting in vain give up)
            servers = [s for s in self.live_servers() if s.inbox]
            for s in servers:
                while s.inbox and not s.stream.ended:
                    s.serve(False)
            if not servers and self.hub.timer is None and not any(t.slow for t in self.tracked):
                break
        consume_all()
        for t in self.tracked:
            if not t.watch.ended and t.watch._ending is None:
                assert t.watch.connected
                assert t.got == self.expected(t), (t.watch, t.got, self.expected(t))

    # -- what must always hold ----------------------------------------------------------------
    @invariant()
    def exactly_once_in_order(self) -> None:
        for t in self.tracked:
            want = self.expected(t)
            assert t.got == want[: len(t.got)], (t.watch, t.got, want)
            if t.created is not None:  # the revision etcd created it at, not another's
                assert t.created == self.created_at.get(t.watch), (t.watch, t.created)
            assert t.batches == sorted(set(t.batches))
            if t.frozen is not None:
                assert len(t.got) == t.frozen, "a cancelled watch delivered something"
            w = t.watch
            if t.got:
                assert w.revision >= t.got[-1][0]
            if not w.ended and t.frozen is None:  # nothing received is lost on the way
                held = [(b.revision, e.key) for b in w._backlog for e in b.events]
                assert t.got + held == [e for e in want if e[0] <= w.revision], (w, t.got, held)

    @invariant()
    def paused_only_for_a_full_backlog(self) -> None:
        hub = getattr(self, "hub", None)
        for stream in list(hub.streams.values()) + hub.solo if hub else []:
            votes = sum(1 for w in stream.watches.values() if w._voting)
            assert stream.paused_by == votes, (stream.paused_by, votes)

    def teardown(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close()
            assert self.clock.getDelayedCalls() == []
            assert all(t.watch.ended for t in self.tracked)


TestWatchModel = WatchModel.TestCase
TestWatchModel.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, database=None
)
