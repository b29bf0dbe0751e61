"""The WatchHub's bookkeeping over a fake channel, on a task.Clock: unit tests and a model.

The fake stands in for the channel only (what etcd would send is scripted by each test, or by
the model's fake server, which follows etcd's rules: creates answered in order per stream,
``start_revision`` honoured from the create request it received). Server behaviour itself is
tested against real etcd in test_watch.py and test_watch_faults.py.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, cast

import pytest
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
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure

from txetcd import ConnectionFailed, WatchBatch, WatchCancelled
from txetcd._proto import rpc_pb2
from txetcd._transport import Capabilities
from txetcd._watch import Watch, WatchHub

REFUSED = "could not connect to etcd: http://192.0.2.1:2379: Connection refused"


class FakeStream:
    """Stands in for a GrpcStream: records the requests sent; the test answers for etcd."""

    def __init__(self, channel: "FakeChannel", on_message: Any, on_close: Any) -> None:
        self.channel = channel
        self.on_message, self.on_close = on_message, on_close
        self.requests: List[Any] = []  # WatchRequest messages, decoded
        self.paused = False
        self.ended = False
        self.held: Deque[Any] = deque()  # messages held back while paused

    # -- what the hub calls --------------------------------------------------------------------
    def send(self, message: Any, end: bool = False) -> bool:
        assert not self.ended, "sent on an ended stream"
        assert isinstance(message, rpc_pb2.WatchRequest)
        self.requests.append(message)
        self.channel.sent(self)
        return True

    def cancel(self) -> None:
        if not self.ended:
            self.ended = True
            self.on_close(defer.CancelledError())

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        while self.held and not self.paused and not self.ended:
            self.on_message(self.held.popleft())

    # -- what the test does, for etcd ----------------------------------------------------------
    def deliver(self, resp: Any) -> None:
        if self.paused or self.held:
            self.held.append(resp)
        else:
            self.on_message(resp)

    def created(self, revision: int, watch_id: int = 0, refused: str = "") -> None:
        resp = rpc_pb2.WatchResponse(created=True, watch_id=watch_id)
        resp.header.revision = revision
        if refused:
            resp.canceled, resp.cancel_reason = True, refused
        self.deliver(resp)

    def events(self, watch_id: int, revision: int, keys: List[bytes]) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        resp.header.revision = revision
        for key in keys:
            ev = resp.events.add()
            ev.kv.key, ev.kv.value = key, b"v%d" % revision
            ev.kv.mod_revision = ev.kv.create_revision = revision
        self.deliver(resp)

    def break_(self, error: Optional[BaseException] = None) -> None:
        if not self.ended:
            self.ended = True
            self.held.clear()
            self.on_close(error or ConnectionFailed("connection to http://192.0.2.1:2379 lost"))

    def creates(self) -> List[Any]:
        return [r.create_request for r in self.requests if r.HasField("create_request")]


class FakeChannel:
    """Makes FakeStreams; ``unreachable`` ones fail on the next turn as the channel would."""

    capabilities = Capabilities(duplex_streams=True, stream_window=True)
    endpoint_urls = ("http://192.0.2.1:2379",)
    closed = False

    def __init__(self, clock: task.Clock, duplex: bool = True) -> None:
        self.clock = clock
        if not duplex:
            self.capabilities = Capabilities(duplex_streams=False, stream_window=False)
        self.streams: List[FakeStream] = []
        self.unreachable = False
        self.on_send: Callable[[FakeStream], None] = lambda s: None

    def stream(self, method: Any, on_message: Any, on_close: Any, **kw: Any) -> FakeStream:
        s = FakeStream(self, on_message, on_close)
        self.streams.append(s)
        if self.unreachable:
            self.clock.callLater(0, s.break_, ConnectionFailed(REFUSED))
        return s

    def sent(self, stream: FakeStream) -> None:
        self.on_send(stream)


def now(d: "defer.Deferred[Any]") -> Any:
    """What a Deferred that has fired holds now (a Failure is taken: it counts as handled)."""
    assert d.called, d
    out: Any = d.result
    if isinstance(out, Failure):
        d.addErrback(lambda _: None)
    return out


def make_hub(**kw: Any) -> Tuple[task.Clock, FakeChannel, WatchHub]:
    clock = task.Clock()
    channel = FakeChannel(clock)
    return clock, channel, WatchHub(channel, clock, **kw)  # type: ignore[arg-type]


def recorder() -> Tuple[List[WatchBatch], Callable[[WatchBatch], None]]:
    got: List[WatchBatch] = []
    return got, got.append


def revisions(batches: List[WatchBatch]) -> List[int]:
    return [b.revision for b in batches]


# -- bug 1: a cancel before the create was answered keeps the other creates matched ----------------
def test_cancel_of_an_unanswered_create_keeps_answers_matched() -> None:
    clock, channel, hub = make_hub()
    a_got, a_cb = recorder()
    c_got, c_cb = recorder()
    a = hub.watch(b"a", callback=a_cb)
    b = hub.watch(b"b")
    c = hub.watch(b"c", callback=c_cb)
    (s,) = channel.streams
    ids = [r.watch_id for r in s.creates()]
    b.cancel()  # its create is still unanswered, and so is a's before it
    s.created(10, ids[0])  # a, created at 10
    s.events(ids[0], 11, [b"a"])
    s.created(11, ids[1])  # b (then cancelled by our cancel request)
    s.events(ids[0], 12, [b"a"])
    s.created(12, ids[2])  # c, created at 12
    s.events(ids[2], 13, [b"c"])
    assert now(a.created) == 10
    assert now(c.created) == 12
    assert revisions(a_got) == [11, 12]  # nothing between the creates was dropped
    assert revisions(c_got) == [13]
    assert not a.ended and not c.ended
    hub.close()
    assert clock.getDelayedCalls() == []


def test_refusal_after_a_cancelled_create_ends_the_right_watch() -> None:
    clock, channel, hub = make_hub()
    a = hub.watch(b"a")
    b = hub.watch(b"b")
    c = hub.watch(b"c")
    (s,) = channel.streams
    ids = [r.watch_id for r in s.creates()]
    b.cancel()
    s.created(10, ids[0])
    s.created(10, ids[1])
    s.created(10, ids[2], refused="etcdserver: permission denied")
    assert not a.ended and now(a.created) == 10
    assert c.ended
    err = now(c.created)
    assert isinstance(err.value, WatchCancelled) and "permission" in err.value.reason
    err.trap(WatchCancelled)
    hub.close()


# -- bug 2: a cancelled async-for step does not take the next batch with it ----------------------
def test_cancelled_anext_does_not_lose_the_next_batch() -> None:
    clock, channel, hub = make_hub()
    w = hub.watch(b"k")
    (s,) = channel.streams
    s.created(10, s.creates()[0].watch_id)
    step = defer.ensureDeferred(w.__anext__())
    step.addTimeout(1.0, clock)  # "the next batch within a second, or give up"
    clock.advance(1.0)
    timed_out: List[Any] = []
    step.addErrback(timed_out.append)
    assert len(timed_out) == 1 and timed_out[0].check(defer.TimeoutError)
    s.events(s.creates()[0].watch_id, 11, [b"k"])
    nxt = defer.ensureDeferred(w.__anext__())
    assert nxt.called
    assert now(nxt).revision == 11
    hub.close()
    assert clock.getDelayedCalls() == []


# -- bug 3: created fails typed when the watch ended before etcd created it ------------------
def test_created_fails_typed_after_a_cancel_before_creation() -> None:
    clock, channel, hub = make_hub()
    w = hub.watch(b"k")
    w.cancel()
    errors: List[Any] = []
    w.created.addErrback(errors.append)
    assert len(errors) == 1 and isinstance(errors[0].value, WatchCancelled)
    done: List[Any] = []
    w.done.addCallback(done.append)
    assert done == [None]
    hub.close()


def test_refusal_is_reported_once_and_not_when_someone_looked(capture_unhandled: Any) -> None:
    clock, channel, hub = make_hub()
    w = hub.watch(b"k")
    (s,) = channel.streams
    s.created(10, s.creates()[0].watch_id, refused="etcdserver: permission denied")
    # the refusal, from created (typed, not None) and from done
    for d in (w.created, w.done, w.created):
        failures: List[Any] = []
        d.addErrback(failures.append)
        assert len(failures) == 1 and isinstance(failures[0].value, WatchCancelled)
    assert capture_unhandled() == []
    # nobody looks at either: reported once as unhandled
    w2 = hub.watch(b"k2")
    (s2,) = channel.streams[1:]
    s2.created(10, s2.creates()[0].watch_id, refused="etcdserver: permission denied")
    del w2
    assert len(capture_unhandled()) == 1
    # a cancel before creation is nothing to report
    w3 = hub.watch(b"k3")
    w3.cancel()
    del w3
    assert capture_unhandled() == []
    hub.close()


def test_an_async_for_that_got_the_failure_leaves_nothing_unhandled(
    capture_unhandled: Any,
) -> None:
    from txetcd import RevisionCompacted

    clock, channel, hub = make_hub()
    for pending in (False, True):  # the failure raised by a later step, or to a waiting one
        w = hub.watch(b"k", start_revision=3)
        s = channel.streams[-1]
        watch_id = s.creates()[0].watch_id
        s.created(10, watch_id)
        step = defer.ensureDeferred(w.__anext__()) if pending else None
        s.deliver(rpc_pb2.WatchResponse(watch_id=watch_id, canceled=True, compact_revision=5))
        if step is None:
            step = defer.ensureDeferred(w.__anext__())
        assert isinstance(now(step).value, RevisionCompacted)
        del w, step
        assert capture_unhandled() == []
    hub.close()


@pytest.fixture
def capture_unhandled() -> Any:
    """A function that collects errors logged as unhandled so far (after a GC run)."""
    import gc

    from twisted.logger import globalLogPublisher

    seen: List[Any] = []

    def observer(event: Dict[str, Any]) -> None:
        if event.get("log_failure") and event.get("log_namespace") == "twisted.internet.defer":
            seen.append(event["log_failure"])

    globalLogPublisher.addObserver(cast(ILogObserver, observer))

    def collect() -> List[Any]:
        gc.collect()
        out = list(seen)
        seen.clear()
        return out

    yield collect
    globalLogPublisher.removeObserver(cast(ILogObserver, observer))


def test_close_ends_a_watch_the_server_ended_while_its_consumer_is_busy() -> None:
    """Found by the model: such a watch is on no stream any more, and close() missed it."""
    clock, channel, hub = make_hub()
    gate: defer.Deferred[None] = defer.Deferred()
    w = hub.watch(b"k", callback=lambda batch: gate)
    (s,) = channel.streams
    watch_id = s.creates()[0].watch_id
    s.created(10, watch_id)
    s.events(watch_id, 11, [b"k"])  # the consumer is busy with it
    resp = rpc_pb2.WatchResponse(watch_id=watch_id, canceled=True, cancel_reason="no")
    s.deliver(resp)  # ended by the server, once the consumer is done
    assert not w.ended
    hub.close()
    assert w.ended and now(w.done) is None
    assert clock.getDelayedCalls() == []


# -- bug 4: an unreachable etcd at start fails the watch; later outages are visible ---------
def test_unreachable_at_start_fails_created_at_the_deadline() -> None:
    clock, channel, hub = make_hub(timeout=2.0)
    channel.unreachable = True
    w = hub.watch(b"k")
    created, done = w.created, w.done
    for _ in range(200):
        clock.advance(0.05)
        if created.called:
            break
    assert len(channel.streams) > 1  # it kept trying until the deadline
    assert 2.0 <= clock.seconds() < 2.1
    err = now(created)
    assert isinstance(err.value, ConnectionFailed)
    assert "192.0.2.1:2379" in str(err.value) and "refused" in str(err.value)
    assert w.ended and not w.connected
    assert isinstance(now(done).value, ConnectionFailed)
    assert clock.getDelayedCalls() == []


def test_a_watch_timeout_of_its_own_overrides_the_hub() -> None:
    clock, channel, hub = make_hub(timeout=30.0)
    channel.unreachable = True
    w = hub.watch(b"k", timeout=0.5)
    created = w.created
    clock.pump([0.1] * 10)
    created.addErrback(lambda f: f.trap(ConnectionFailed))
    assert created.called and w.ended
    forever = hub.watch(b"k", timeout=None)  # no deadline: keeps trying
    clock.pump([1.0] * 100)
    assert not forever.ended
    hub.close()
    assert clock.getDelayedCalls() == []
    with pytest.raises(TypeError):
        hub.watch(b"k", timeout="1")
    with pytest.raises(ValueError):
        hub.watch(b"k", timeout=0)


def test_created_in_time_keeps_no_deadline() -> None:
    clock, channel, hub = make_hub(timeout=1.0)
    w = hub.watch(b"k")
    (s,) = channel.streams
    s.created(5, s.creates()[0].watch_id)
    assert clock.getDelayedCalls() == []
    s.break_()
    clock.pump([1.0] * 10)  # a resume never has a deadline
    assert not w.ended and len(channel.streams) == 2
    hub.close()


def test_outage_after_creation_warns_once_and_is_observable() -> None:
    clock, channel, hub = make_hub(timeout=1.0)
    logged: List[Dict[str, Any]] = []
    hub.log = Logger(observer=cast(ILogObserver, logged.append))
    w = hub.watch(b"k")
    (s,) = channel.streams
    assert not w.connected
    up = w.reconnected()
    assert not up.called
    s.created(5, s.creates()[0].watch_id)
    assert w.connected and up.called
    down = w.disconnected()
    assert not down.called
    channel.unreachable = True
    s.break_(ConnectionFailed("connection to http://192.0.2.1:2379 lost"))
    assert not w.connected
    assert isinstance(now(down), ConnectionFailed)
    back = w.reconnected()
    clock.pump([0.5] * 20)  # many failed retries, one outage
    assert len(channel.streams) > 3 and not back.called and not w.ended
    warnings = [e for e in logged if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    assert "192.0.2.1:2379" in str(warnings[0]["error"])
    channel.unreachable = False
    clock.advance(10)
    last = channel.streams[-1]
    last.created(9, last.creates()[0].watch_id)
    assert w.connected and back.called
    assert [e for e in logged if e["log_level"] == LogLevel.warn] == warnings
    last.break_()  # a second outage: a second warning
    assert len([e for e in logged if e["log_level"] == LogLevel.warn]) == 2
    w.cancel()
    ended = w.reconnected()
    ended.addErrback(lambda f: f.trap(WatchCancelled))
    assert ended.called
    assert now(w.disconnected()) is None
    hub.close()
    assert clock.getDelayedCalls() == []


class FakeClient:
    """The part of the public client API a Mirror uses, over a FakeChannel."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.reactor = self.clock = task.Clock()
        self.timeout = timeout
        self.channel = FakeChannel(self.clock)
        self.hub = WatchHub(self.channel, self.clock, timeout=timeout)  # type: ignore[arg-type]
        self.listings: List["defer.Deferred[Any]"] = []
        self.reachable = False

    def get_prefix(self, prefix: bytes) -> "defer.Deferred[Any]":
        if not self.reachable:
            return defer.fail(ConnectionFailed(REFUSED))
        d: defer.Deferred[Any] = defer.Deferred()
        self.listings.append(d)
        return d

    def watch(self, key: bytes, **kw: Any) -> Watch:
        return self.hub.watch(key, **kw)


def test_mirror_not_ready_in_time_fails_with_the_cause() -> None:
    from txetcd import Mirror

    client = FakeClient(timeout=2.0)
    mirror = Mirror(client, b"p/")  # type: ignore[arg-type]
    ready, done = mirror.ready, mirror.done
    advance_until(client.clock, ready)
    assert 2.0 <= client.clock.seconds() < 2.1
    err = now(ready).value
    assert isinstance(err, ConnectionFailed) and REFUSED in str(err)
    assert isinstance(now(done).value, ConnectionFailed) and mirror.closed
    assert client.clock.getDelayedCalls() == []
    # listed, but its watch is never created: the same deadline, through the watch
    client = FakeClient(timeout=2.0)
    client.reachable = True
    client.channel.unreachable = True
    mirror = Mirror(client, b"p/")  # type: ignore[arg-type]
    ready = mirror.ready
    client.clock.advance(1.5)
    (listing,) = client.listings
    listing.callback(rpc_result(revision=7))
    advance_until(client.clock, ready)
    assert 2.0 <= client.clock.seconds() < 2.1
    err = now(ready).value
    assert isinstance(err, ConnectionFailed) and REFUSED in str(err)
    assert client.clock.getDelayedCalls() == []


def test_mirror_ready_once_watching_then_follows_through_outages() -> None:
    from txetcd import Mirror

    client = FakeClient(timeout=2.0)
    client.reachable = True
    mirror = Mirror(client, b"p/")  # type: ignore[arg-type]
    ready = mirror.ready
    client.listings[0].callback(rpc_result(revision=7))
    assert not ready.called  # listed, not yet watching
    s = client.channel.streams[0]
    assert s.creates()[0].start_revision == 8
    s.created(7, s.creates()[0].watch_id)
    assert now(ready) is mirror
    assert client.clock.getDelayedCalls() == []  # no deadline left once ready
    client.channel.unreachable = True
    s.break_()
    client.clock.pump([1.0] * 60)  # once ready, no deadline: it keeps trying
    assert not mirror.closed
    mirror.close()
    assert now(mirror.done) is None
    assert client.clock.getDelayedCalls() == []
    closed_early = Mirror(client, b"q/")  # type: ignore[arg-type]
    closed_early.close()
    assert now(closed_early.ready).check(defer.CancelledError)


def advance_until(clock: task.Clock, d: "defer.Deferred[Any]", limit: float = 30.0) -> None:
    """Advance the clock in small steps until ``d`` fires (or fail after ``limit`` seconds)."""
    for _ in range(int(limit / 0.05)):
        if d.called:
            return
        clock.advance(0.05)
    raise AssertionError(f"{d!r} did not fire within {limit} s")


def rpc_result(revision: int) -> Any:
    """An empty listing at ``revision`` (what a Mirror reads of a RangeResult)."""
    from types import SimpleNamespace

    return SimpleNamespace(header=SimpleNamespace(revision=revision), kvs=())


def test_repr() -> None:
    clock, channel, hub = make_hub()
    w = hub.watch(b"config/", prefix=True)
    assert repr(w) == "<Watch prefix=b'config/' revision=0 creating>"
    s = channel.streams[0]
    s.created(40, s.creates()[0].watch_id)
    assert repr(w) == "<Watch prefix=b'config/' revision=40 active>"
    s.break_()
    assert repr(w) == "<Watch prefix=b'config/' revision=40 disconnected>"
    w.cancel()
    assert repr(w) == "<Watch prefix=b'config/' revision=40 cancelled>"
    assert repr(hub.watch(b"k")) == "<Watch key=b'k' revision=0 creating>"
    assert repr(hub.watch(b"a", range_end=b"c")) == "<Watch range=[b'a', b'c') revision=0 creating>"
    hub.close()
    assert isinstance(w, Watch)


def test_resume_backoff_on_the_clock() -> None:
    """Jittered exponential backoff between failed streams; back to fast once one works."""
    clock, channel, hub = make_hub(backoff_initial=0.1, backoff_max=2.0)
    w = hub.watch(b"k")
    first = channel.streams[0]
    first.created(10, first.creates()[0].watch_id)
    assert w.next_revision == 11
    delays = []
    for _ in range(7):  # break it, then let every new stream fail before it is created
        channel.streams[-1].break_()
        (call,) = clock.getDelayedCalls()
        delays.append(call.getTime() - clock.seconds())
        clock.advance(delays[-1])
    # the first break of an established stream waits ~initial; each failure doubles, to the max
    bases = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base, (delays, bases)
    # every re-created watch asks for the next revision, never 0
    for s in channel.streams[1:]:
        assert s.creates()[0].start_revision == 11
    last = channel.streams[-1]
    last.created(12, last.creates()[0].watch_id)  # it works again: the backoff starts over
    last.break_()
    (call,) = clock.getDelayedCalls()
    assert 0.05 <= call.getTime() - clock.seconds() <= 0.1
    w.cancel()
    assert clock.getDelayedCalls() == []  # cancelling the only waiting watch drops the timer
    hub.close()
    assert clock.getDelayedCalls() == []


# -- the model: random interleavings against a fake server that follows etcd's rules -------------
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

    def __init__(self, model: "WatchModel", stream: FakeStream) -> None:
        self.model, self.stream = model, stream
        self.seen = 0  # requests of the stream taken into the inbox
        self.inbox: Deque[Any] = deque()
        self.active: Dict[int, Tuple[bytes, bytes]] = {}  # created watches: id -> range

    def take(self) -> None:
        self.inbox.extend(self.stream.requests[self.seen :])
        self.seen = len(self.stream.requests)

    def serve(self, refuse: bool) -> None:
        req = self.inbox.popleft()
        log, rev, s = self.model.log, self.model.revision, self.stream
        if req.HasField("create_request"):
            cr = req.create_request
            if refuse:
                s.created(rev, cr.watch_id, refused="etcdserver: permission denied")
                return
            s.created(rev, cr.watch_id)
            watch = s.on_message.__self__.watches.get(cr.watch_id)  # the hub's, by its id
            if watch is not None:
                self.model.created_at.setdefault(watch, rev)  # the truth: created here first
                if not s.held:  # the answer went through: it was taken as this watch's
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
        resp.cancel_reason = "etcdserver: permission denied"
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
        self.created_at: Dict[Watch, int] = {}  # the revision etcd first created each watch at

    @initialize(duplex=st.booleans())
    def start(self, duplex: bool) -> None:
        self.channel = FakeChannel(self.clock, duplex=duplex)
        self.channel.on_send = self._sent
        self.hub = WatchHub(self.channel, self.clock)  # type: ignore[arg-type]

    def _sent(self, stream: FakeStream) -> None:
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
