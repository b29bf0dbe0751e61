"""The WatchHub and Mirror on a task.Clock, over a fake channel: one test per bug of issue 18.

The fake stands in for the channel only; what etcd would answer is scripted by each test. Server
behaviour itself is tested against real etcd (test_watch.py, test_watch_faults.py), and random
interleavings against a model of etcd (test_watch_model.py).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import pytest
from twisted.internet import defer, task
from twisted.logger import ILogObserver, Logger, LogLevel

from txetcd import ConnectionFailed, WatchBatch, WatchCancelled
from txetcd._proto import rpc_pb2
from txetcd._watch import Watch, WatchHub
from txetcd.test.helpers import EMPTY_RANGE, WATCH_REFUSED, FakeWatchChannel, outcome


def make_hub(**kw: Any) -> Tuple[task.Clock, FakeWatchChannel, WatchHub]:
    clock = task.Clock()
    channel = FakeWatchChannel(clock)
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
    assert outcome(a.created) == 10
    assert outcome(c.created) == 12
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
    s.created(10, ids[2], refused=EMPTY_RANGE)
    assert not a.ended and outcome(a.created) == 10
    assert c.ended
    err = outcome(c.created)
    assert isinstance(err, WatchCancelled) and err.reason == EMPTY_RANGE
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
    assert outcome(nxt).revision == 11
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
    s.created(10, s.creates()[0].watch_id, refused=EMPTY_RANGE)
    # the refusal, from created (typed, not None) and from done
    for d in (w.created, w.done, w.created):
        failures: List[Any] = []
        d.addErrback(failures.append)
        assert len(failures) == 1 and isinstance(failures[0].value, WatchCancelled)
    assert capture_unhandled() == []
    # nobody looks at either: reported once as unhandled
    w2 = hub.watch(b"k2")
    (s2,) = channel.streams[1:]
    s2.created(10, s2.creates()[0].watch_id, refused=EMPTY_RANGE)
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
        assert isinstance(outcome(step), RevisionCompacted)
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
    assert w.ended and outcome(w.done) is None
    assert clock.getDelayedCalls() == []


# -- found by the model: resuming a paused stream delivers at once (re-entrantly) ---------------
def test_batches_released_by_a_resume_come_after_the_held_ones() -> None:
    clock, channel, hub = make_hub()
    gate: defer.Deferred[None] = defer.Deferred()
    got: List[int] = []

    def slow(batch: WatchBatch) -> Any:
        got.append(batch.revision)
        return gate if batch.revision == 11 else None

    hub.watch(b"k", callback=slow, max_backlog=1)
    (s,) = channel.streams
    watch_id = s.creates()[0].watch_id
    s.created(10, watch_id)
    for revision in (11, 12, 13):  # 11 is being consumed; 12 and 13 held: over the backlog
        s.events(watch_id, revision, [b"k"])
    assert s.paused
    s.events(watch_id, 14, [b"k"])  # held back by the stream
    gate.callback(None)  # the consumer catches up: the stream resumes while 13 is pending
    assert got == [11, 12, 13, 14]
    assert not s.paused
    hub.close()


def test_cancelling_a_watch_that_paused_the_stream_unpauses_it_once() -> None:
    clock, channel, hub = make_hub()
    gate: defer.Deferred[None] = defer.Deferred()
    slow = hub.watch(b"k", callback=lambda batch: gate, max_backlog=1)
    other_got, other_cb = recorder()
    hub.watch(b"j", callback=other_cb)
    (s,) = channel.streams
    slow_id, other_id = (c.watch_id for c in s.creates())
    s.created(10, slow_id)
    s.created(10, other_id)
    for revision in (11, 12, 13):
        s.events(slow_id, revision, [b"k"])
    assert s.paused
    # etcd ends the slow watch (held back by the pause), then the user cancels it
    s.deliver(rpc_pb2.WatchResponse(watch_id=slow_id, canceled=True, cancel_reason="no"))
    slow.cancel()
    assert hub.streams[False].paused_by == 0 and not s.paused
    s.events(other_id, 14, [b"j"])
    assert revisions(other_got) == [14]
    hub.close()


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
    err = outcome(created)
    assert isinstance(err, ConnectionFailed)
    assert "192.0.2.1:2379" in str(err) and "refused" in str(err)
    assert w.ended and not w.connected
    assert isinstance(outcome(done), ConnectionFailed)
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


def test_a_watch_started_during_an_outage_fails_with_its_cause() -> None:
    clock, channel, hub = make_hub(timeout=1.0, backoff_initial=10.0, backoff_max=10.0)
    w = hub.watch(b"k")
    (s,) = channel.streams
    s.created(5, s.creates()[0].watch_id)
    s.break_(ConnectionFailed("connection to http://192.0.2.1:2379 lost"))
    late = hub.watch(b"late")  # joins the resume, minutes away: no stream of its own yet
    created = late.created
    clock.advance(1.0)
    err = outcome(created)
    assert isinstance(err, ConnectionFailed) and "192.0.2.1:2379 lost" in str(err)
    assert not w.ended
    hub.close()
    assert clock.getDelayedCalls() == []


def test_no_deadline_and_etcd_out_of_reach_warns_once() -> None:
    clock, channel, hub = make_hub(timeout=None)
    logged: List[Dict[str, Any]] = []
    hub.log = Logger(observer=cast(ILogObserver, logged.append))
    channel.unreachable = True
    w = hub.watch(b"k")
    clock.pump([0.5] * 40)  # many attempts, never created, never given up
    assert not w.ended and len(channel.streams) > 3
    warnings = [e for e in logged if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1 and WATCH_REFUSED in str(warnings[0]["error"])
    hub.close()
    assert clock.getDelayedCalls() == []


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
    assert isinstance(outcome(down), ConnectionFailed)
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
    assert outcome(w.disconnected()) is None
    hub.close()
    assert clock.getDelayedCalls() == []


class FakeClient:
    """The part of the public client API a Mirror uses, over a FakeWatchChannel."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.reactor = self.clock = task.Clock()
        self.timeout = timeout
        self.channel = FakeWatchChannel(self.clock)
        self.hub = WatchHub(self.channel, self.clock, timeout=timeout)  # type: ignore[arg-type]
        self.listings: List["defer.Deferred[Any]"] = []
        self.reachable = False

    def get_prefix(self, prefix: bytes) -> "defer.Deferred[Any]":
        if not self.reachable:
            return defer.fail(ConnectionFailed(WATCH_REFUSED))
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
    err = outcome(ready)
    assert isinstance(err, ConnectionFailed) and WATCH_REFUSED in str(err)
    assert isinstance(outcome(done), ConnectionFailed) and mirror.closed
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
    err = outcome(ready)
    assert isinstance(err, ConnectionFailed) and WATCH_REFUSED in str(err)
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
    assert outcome(ready) is mirror
    assert client.clock.getDelayedCalls() == []  # no deadline left once ready
    client.channel.unreachable = True
    s.break_()
    client.clock.pump([1.0] * 60)  # once ready, no deadline: it keeps trying
    assert not mirror.closed
    mirror.close()
    assert outcome(mirror.done) is None
    assert client.clock.getDelayedCalls() == []
    closed_early = Mirror(client, b"q/")  # type: ignore[arg-type]
    closed_early.close()
    assert isinstance(outcome(closed_early.ready), defer.CancelledError)


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
