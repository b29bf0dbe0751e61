"""Progress notifications reach the consumer: ``on_progress``, ``Watch.progress``, and the CLI's
``watch --progress-notify`` and ``-i``'s ``progress`` line as etcdctl 3.5.1 prints them.

On a task.Clock over a fake channel: the order against batches held for a slow consumer, what
moves where a resume starts, errors. A hypothesis model drives etcd's answers in any order,
from a correct etcd and from one that sends answers to ``request_progress`` ahead of events
(etcd before 3.5.8, issue #15220). Then real etcd (its progress interval made short), the
gateway, MemoryEtcd, and the CLI side by side with etcdctl.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections import deque
from typing import Any, AsyncIterator, Callable, Deque, Dict, Iterator, List, Optional, Tuple

import pytest
import pytest_twisted
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet import defer, task

from txetcd import Client, WatchBatch, WatchCancelled
from txetcd._cli._main import run
from txetcd._proto import rpc_pb2
from txetcd._watch import WatchHub
from txetcd.test.helpers import (
    FakeWatchChannel,
    FakeWatchStream,
    etcdctl_binary,
    outcome,
    reactor,
    sleep,
    until,
)
from txetcd.testing import EtcdServer, MemoryEtcd


def make_hub() -> Tuple[task.Clock, FakeWatchChannel, WatchHub]:
    clock = task.Clock()
    channel = FakeWatchChannel(clock)
    return clock, channel, WatchHub(channel, clock)  # type: ignore[arg-type]


def progress(stream: FakeWatchStream, watch_id: int, revision: int) -> None:
    resp = rpc_pb2.WatchResponse(watch_id=watch_id)
    resp.header.revision = revision
    resp.header.member_id = 7
    stream.deliver(resp)


def created(stream: FakeWatchStream, revision: int) -> int:
    watch_id: int = stream.creates()[-1].watch_id
    stream.created(revision, watch_id)
    return watch_id


class Log:
    """What a consumer saw, in order: ("batch", revision) and ("progress", revision)."""

    def __init__(self) -> None:
        self.seen: List[Tuple[str, int]] = []
        self.pending: Deque["defer.Deferred[None]"] = deque()
        self.slow = False

    def batch(self, batch: WatchBatch) -> Optional["defer.Deferred[None]"]:
        assert batch.events, "an empty batch"
        self.seen.append(("batch", batch.revision))
        if self.slow:
            d: defer.Deferred[None] = defer.Deferred()
            self.pending.append(d)
            return d
        return None

    def progress(self, revision: int) -> None:
        self.seen.append(("progress", revision))

    def finish_one(self) -> None:
        self.pending.popleft().callback(None)


# -- on a clock ---------------------------------------------------------------------------------


def test_own_and_stream_wide_notifications_reach_on_progress() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    w = hub.watch(b"k", progress_notify=True, callback=log.batch, on_progress=log.progress)
    plain: List[WatchBatch] = []
    p = hub.watch(b"k", callback=plain.append)  # asked for nothing: sees only batches
    (s,) = channel.streams
    assert s.creates()[0].progress_notify and not s.creates()[1].progress_notify
    wid = s.creates()[0].watch_id
    s.created(10, wid)
    s.created(10, s.creates()[1].watch_id)
    assert (w.progress, p.progress) == (10, 10)
    progress(s, wid, 12)  # its own
    hub.request_progress()
    assert s.requests[-1].HasField("progress_request")
    progress(s, -1, 13)  # the answer, for the whole stream
    assert log.seen == [("progress", 12), ("progress", 13)]
    assert (w.progress, p.progress, p.revision) == (13, 13, 13)
    assert w.progress_header is not None and w.progress_header.member_id == 7
    assert w.progress_header.revision == 13
    assert plain == []
    hub.close()
    assert clock.getDelayedCalls() == []


def test_progress_waits_for_the_batches_a_slow_consumer_holds() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    log.slow = True
    w = hub.watch(b"k", callback=log.batch, on_progress=log.progress)
    (s,) = channel.streams
    wid = created(s, 10)
    s.events(wid, 11, [b"k"])
    s.events(wid, 12, [b"k"])
    progress(s, -1, 12)  # everything up to 12 was sent: 12 is still held for the consumer
    progress(s, -1, 13)  # a second one while it is behind: merged, the newest
    assert log.seen == [("batch", 11)] and w.progress == 10
    log.finish_one()
    assert log.seen == [("batch", 11), ("batch", 12)] and w.progress == 11
    log.finish_one()
    assert log.seen[-1] == ("progress", 13) and w.progress == 13
    s.events(wid, 14, [b"k"])
    progress(s, wid, 14)
    assert log.seen[-1] == ("batch", 14)
    log.finish_one()
    assert log.seen[-1] == ("progress", 14)
    hub.close()


def test_async_for_gets_progress_when_it_asks_again_or_while_it_waits() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    w = hub.watch(b"k", on_progress=log.progress)
    (s,) = channel.streams
    wid = created(s, 10)
    s.events(wid, 11, [b"k"])
    progress(s, -1, 11)
    batch = outcome(defer.ensureDeferred(w.__anext__()))
    assert batch.revision == 11
    assert log.seen == [] and w.progress == 10  # the consumer is busy with 11
    step = defer.ensureDeferred(w.__anext__())  # done with it: the progress comes first
    assert log.seen == [("progress", 11)] and not step.called
    progress(s, -1, 15)  # while it waits: at once
    assert log.seen[-1] == ("progress", 15) and w.progress == 15 and not step.called
    s.events(wid, 16, [b"k"])
    assert outcome(step).revision == 16
    hub.close()


def test_only_its_own_notifications_move_where_a_resume_starts() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    w = hub.watch(b"k", callback=log.batch, on_progress=log.progress)
    s = channel.streams[0]
    wid = created(s, 10)
    progress(s, -1, 20)  # etcd 3.5.1 may send this ahead of events of 11..20
    assert w.revision == 20 and w.next_revision == 11
    s.events(wid, 15, [b"k"])  # such an event: delivered, not taken for a repeat
    assert log.seen == [("progress", 20), ("batch", 15)]
    assert w.progress == 20  # never goes down
    s.break_()
    clock.advance(10)
    s2 = channel.streams[1]
    assert s2.creates()[0].start_revision == 16  # after the last event, not the answer
    created(s2, 21)
    progress(s2, s2.creates()[0].watch_id, 30)  # its own: the resume point moves
    s2.break_()
    clock.advance(10)
    assert channel.streams[2].creates()[0].start_revision == 31
    hub.close()
    assert clock.getDelayedCalls() == []


def test_an_answer_goes_only_to_watches_etcd_created_before_it() -> None:
    clock, channel, hub = make_hub()
    log_a, log_b = Log(), Log()
    hub.watch(b"a", callback=log_a.batch, on_progress=log_a.progress)
    hub.watch(b"b", callback=log_b.batch, on_progress=log_b.progress)
    (s,) = channel.streams
    s.created(10, s.creates()[0].watch_id)
    progress(s, -1, 10)  # b's create is not answered yet
    progress(s, 0, 0)  # no revision: not a progress notification
    assert (log_a.seen, log_b.seen) == ([("progress", 10)], [])
    hub.close()


def test_an_error_in_on_progress_ends_the_watch() -> None:
    clock, channel, hub = make_hub()
    w = hub.watch(b"k", callback=lambda b: None, on_progress=lambda r: 1 / 0)
    (s,) = channel.streams
    created(s, 10)
    progress(s, -1, 11)
    assert isinstance(outcome(w.done), ZeroDivisionError)
    failing: defer.Deferred[None] = defer.Deferred()
    w2 = hub.watch(b"k", callback=lambda b: None, on_progress=lambda r: failing)
    s2 = channel.streams[-1]
    wid = created(s2, 11)
    progress(s2, -1, 11)
    s2.events(wid, 12, [b"k"])  # held while on_progress's Deferred is pending
    assert not w2.ended and len(w2._backlog) == 1
    failing.errback(KeyError("nope"))
    assert isinstance(outcome(w2.done), KeyError)
    with pytest.raises(TypeError):
        hub.watch(b"k", on_progress=42)  # type: ignore[arg-type]
    hub.close()


def test_a_deferred_from_on_progress_holds_the_next_batch() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    gate: defer.Deferred[None] = defer.Deferred()

    def slow_progress(revision: int) -> "defer.Deferred[None]":
        log.progress(revision)
        return gate

    w = hub.watch(b"k", callback=log.batch, on_progress=slow_progress)
    (s,) = channel.streams
    wid = created(s, 10)
    progress(s, -1, 10)
    s.events(wid, 11, [b"k"])
    assert log.seen == [("progress", 10)]
    gate.callback(None)
    assert log.seen == [("progress", 10), ("batch", 11)] and w.progress == 11
    hub.close()


def test_a_watch_the_server_ended_hands_over_its_progress_first() -> None:
    clock, channel, hub = make_hub()
    log = Log()
    log.slow = True
    w = hub.watch(b"k", callback=log.batch, on_progress=log.progress)
    (s,) = channel.streams
    wid = created(s, 10)
    s.events(wid, 11, [b"k"])
    progress(s, -1, 11)
    s.deliver(rpc_pb2.WatchResponse(watch_id=wid, canceled=True, cancel_reason="no leader"))
    progress(s, -1, 12)  # too late: it is ending
    assert not w.ended
    log.finish_one()
    assert log.seen == [("batch", 11), ("progress", 11)]
    assert isinstance(outcome(w.done), WatchCancelled)
    hub.close()


def test_namespace_passes_on_progress_through() -> None:
    memory = MemoryEtcd()
    client = memory.client()
    log = Log()
    w = client.namespace("ns/").watch("k", callback=log.batch, on_progress=log.progress)
    outcome(w.created)
    rev = outcome(client.put("other", "x")).header.revision
    client.request_progress()
    assert log.seen == [("progress", rev)] and w.progress == rev
    w.cancel()
    outcome(client.close())
    memory.close()
    assert memory.clock.getDelayedCalls() == []


# -- a model: any order of answers, correct etcd and etcd 3.5.1 -----------------------------------


class Wire:
    """etcd's side of one stream: answers queued in the order etcd sends them."""

    def __init__(self, stream: FakeWatchStream) -> None:
        self.stream = stream
        self.queue: List[Any] = []
        self.active: Dict[int, bytes] = {}  # watch id -> its key
        self.seen = 0


class Consumer:
    def __init__(self, model: "ProgressModel", key: bytes, start: int, style: str) -> None:
        self.model, self.key, self.start, self.style = model, key, start, style
        self.got: List[int] = []  # revisions of the batches it was handed
        self.progress: List[int] = []
        self.slow: Deque["defer.Deferred[None]"] = deque()
        self.step: Optional["defer.Deferred[Any]"] = None
        cb = None if style == "iterate" else self.batch
        self.watch = model.hub.watch(
            key, start_revision=start, callback=cb, on_progress=self.on_progress, max_backlog=2
        )
        self.watch.done.addErrback(lambda f: f.trap(WatchCancelled))
        self.created: Optional[int] = None
        self.watch.created.addCallbacks(self._created, lambda f: None)

    def _created(self, revision: int) -> None:
        self.created = revision

    def batch(self, batch: WatchBatch) -> Any:
        assert batch.events and all(e.key == self.key for e in batch.events)
        self.got.append(batch.revision)
        if self.style == "slow":
            d: defer.Deferred[None] = defer.Deferred()
            self.slow.append(d)
            return d
        return None

    def on_progress(self, revision: int) -> None:
        # the consumer is done with everything it was handed...
        assert not self.slow and self.watch._handed == len(self.got), self
        # ...and, unless etcd said it too early, that is every event up to the revision
        if not self.model.early:
            assert [r for r in self.expected() if r <= revision] == [
                r for r in self.got if r <= revision
            ], (revision, self.got, self.expected())
        self.progress.append(revision)

    def expected(self) -> List[int]:
        first = self.start or (self.created + 1 if self.created is not None else None)
        if first is None:
            return []
        return [r for r, k in self.model.log if k == self.key and r >= first]

    def pull(self) -> None:
        if self.step is None and not self.watch.ended:
            step = self.step = defer.ensureDeferred(self.watch.__anext__())
            step.addCallbacks(self._stepped, lambda f: f.trap(StopAsyncIteration))

    def _stepped(self, batch: WatchBatch) -> None:
        self.step = None
        self.batch(batch)

    def consume(self) -> None:
        if self.slow:
            self.slow.popleft().callback(None)
        elif self.style == "iterate":
            self.pull()


class ProgressModel(RuleBasedStateMachine):
    """Batches and progress notifications in any order of etcd's sending and the consumers'
    taking: on_progress only once the consumer is done with what came before it, every event
    exactly once, and (from a correct etcd) every event up to its revision delivered first."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = task.Clock()
        self.log: List[Tuple[int, bytes]] = []
        self.revision = 5
        self.consumers: List[Consumer] = []
        self.wires: Dict[int, Wire] = {}
        self._draw: Any = None  # how the rule that asks for progress draws where it goes

    @initialize(early=st.booleans())
    def start(self, early: bool) -> None:
        self.early = early  # etcd 3.5.1: answers to request_progress may overtake events
        self.channel = FakeWatchChannel(self.clock)
        self.channel.on_send = self._sent
        self.hub = WatchHub(self.channel, self.clock)  # type: ignore[arg-type]
        self.hub._rand.seed(0)

    def _wire(self, stream: FakeWatchStream) -> Wire:
        wire = self.wires.get(id(stream))
        if wire is None:
            wire = self.wires[id(stream)] = Wire(stream)
        return wire

    def _message(self, watch_id: int, revision: int, events: List[Tuple[int, bytes]]) -> Any:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        resp.header.revision = revision
        for r, key in events:
            ev = resp.events.add()
            ev.kv.key, ev.kv.value, ev.kv.mod_revision = key, b"v", r
        return resp

    def _sent(self, stream: FakeWatchStream) -> None:
        """etcd takes each request as it comes."""
        wire = self._wire(stream)
        for req in stream.requests[wire.seen :]:
            if req.HasField("create_request"):
                cr = req.create_request
                answer = rpc_pb2.WatchResponse(watch_id=cr.watch_id, created=True)
                answer.header.revision = self.revision
                wire.queue.append(answer)
                start = cr.start_revision or self.revision + 1
                old = [(r, k) for r, k in self.log if r >= start and k == cr.key]
                if old:
                    wire.queue.append(self._message(cr.watch_id, self.revision, old))
                wire.active[cr.watch_id] = cr.key
            elif req.HasField("cancel_request"):
                wire.active.pop(req.cancel_request.watch_id, None)
            else:
                answer = rpc_pb2.WatchResponse(watch_id=-1)
                answer.header.revision = self.revision
                at = len(wire.queue)
                if self.early:  # ahead of events, never of a create's answer
                    creates = [i for i, m in enumerate(wire.queue) if m.created]
                    at = self._draw(st.integers(creates[-1] + 1 if creates else 0, at))
                wire.queue.insert(at, answer)
        wire.seen = len(stream.requests)

    def live(self) -> List[Wire]:
        return [w for w in self.wires.values() if not w.stream.ended]

    @precondition(lambda self: len(self.consumers) < 3)
    @rule(
        key=st.sampled_from([b"a", b"b"]),
        start=st.integers(0, 8),
        style=st.sampled_from(["callback", "slow", "iterate"]),
    )
    def watch(self, key: bytes, start: int, style: str) -> None:
        self.consumers.append(Consumer(self, key, min(start, self.revision), style))

    @rule(keys=st.lists(st.sampled_from([b"a", b"b"]), min_size=1, max_size=2, unique=True))
    def write(self, keys: List[bytes]) -> None:
        self.revision += 1
        self.log.extend((self.revision, k) for k in keys)
        for wire in self.live():
            for wid, key in wire.active.items():
                if key in keys:
                    wire.queue.append(self._message(wid, self.revision, [(self.revision, key)]))

    @precondition(lambda self: self.live())
    @rule(data=st.data(), own=st.booleans())
    def notify(self, data: st.DataObject, own: bool) -> None:
        """The client asks for progress, or etcd sends a watch its own."""
        self._draw = data.draw
        wire = data.draw(st.sampled_from(self.live()))
        if own and wire.active:
            wid = data.draw(st.sampled_from(sorted(wire.active)))
            answer = rpc_pb2.WatchResponse(watch_id=wid)
            answer.header.revision = self.revision
            wire.queue.append(answer)
        else:
            self.hub.request_progress()

    @precondition(lambda self: any(w.queue for w in self.live()))
    @rule(data=st.data())
    def arrive(self, data: st.DataObject) -> None:
        wire = data.draw(st.sampled_from([w for w in self.live() if w.queue]))
        wire.stream.deliver(wire.queue.pop(0))

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.consumers)).consume()

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def break_stream(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.live())).stream.break_()

    @rule()
    def settle(self) -> None:
        """Everything arrives and is consumed: every watch has every event, once."""
        for _ in range(50):
            self.clock.advance(60)
            for wire in self.live():
                while wire.queue and not wire.stream.ended:
                    wire.stream.deliver(wire.queue.pop(0))
            for c in self.consumers:
                while c.slow or (c.style == "iterate" and c.step is None and not c.watch.ended):
                    c.consume()
            busy = any(c.slow or c.watch._backlog for c in self.consumers)
            if self.hub.timer is None and not busy and not any(w.queue for w in self.live()):
                break
        for c in self.consumers:
            assert c.got == c.expected(), (c.style, c.got, c.expected())

    @invariant()
    def exactly_once_and_progress_in_step(self) -> None:
        for c in self.consumers:
            want = c.expected()
            assert c.got == want[: len(c.got)], (c.style, c.got, want)
            assert c.watch.progress <= max([c.watch.revision] + c.got)
            if c.progress:
                assert c.watch.progress >= c.progress[-1]

    def teardown(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close()
            assert self.clock.getDelayedCalls() == []


TestProgressModel = ProgressModel.TestCase
TestProgressModel.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, database=None
)


# -- real etcd ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def progress_etcd() -> Iterator[EtcdServer]:
    """An etcd that sends progress notifications to idle watches every 0.2 s."""
    with EtcdServer(["--experimental-watch-progress-notify-interval=200ms"]) as server:
        yield server


@pytest_twisted.async_yield_fixture
async def progress_client(progress_etcd: EtcdServer) -> AsyncIterator[Client]:
    async with Client(progress_etcd.endpoint, reactor=reactor(), timeout=10) as client:
        yield client


@pytest_twisted.ensureDeferred
async def test_an_early_answer_loses_no_history(etcd_client: Client, etcd_prefix: bytes) -> None:
    """etcd 3.5.1 answers request_progress before it sends the history of a watch from an old
    revision (up to 100 ms later): those events still come, once (txetcd used to drop them)."""
    key = etcd_prefix + b"h"
    revisions = [(await etcd_client.put(key, b"%d" % i)).header.revision for i in range(5)]
    got: List[int] = []
    said: List[int] = []
    w = etcd_client.watch(
        key, start_revision=revisions[0], callback=lambda b: got.extend([b.revision]),
        on_progress=said.append,
    )  # fmt: skip
    await w.created
    etcd_client.request_progress()
    await until(lambda: len(got) == 5 and said, what="the history and the answer")
    assert got == revisions and said[0] >= revisions[-1]
    assert w.progress >= revisions[-1]
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_request_progress_reaches_a_quiet_watch(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    said: List[int] = []
    batches: List[WatchBatch] = []
    w = etcd_client.watch(etcd_prefix + b"quiet", callback=batches.append, on_progress=said.append)
    created_at = await w.created
    assert w.progress == created_at and w.progress_header is None
    r = await etcd_client.put(etcd_prefix + b"elsewhere", b"v")
    etcd_client.request_progress()
    await until(lambda: said, what="the answer")
    assert said == [w.progress] and said[0] >= r.header.revision
    assert w.progress_header is not None and w.progress_header.revision == said[0]
    assert batches == []
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_progress_notify_follows_events(progress_client: Client) -> None:
    log = Log()
    w = progress_client.watch(
        b"pn/k", progress_notify=True, callback=log.batch, on_progress=log.progress
    )
    await w.created
    await until(lambda: log.seen, what="a notification while idle")
    r = (await progress_client.put(b"pn/k", b"v")).header.revision
    await until(lambda: ("batch", r) in log.seen and log.seen[-1][0] == "progress", what="one")
    after = log.seen[log.seen.index(("batch", r)) + 1 :]
    assert after and all(kind == "progress" and rev >= r for kind, rev in after)
    assert w.next_revision > max(rev for _, rev in after) >= r  # a resume starts there
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_progress_notify_over_the_gateway(progress_etcd: EtcdServer) -> None:
    async with Client(progress_etcd.endpoint, reactor=reactor(), transport="gateway") as client:
        log = Log()
        w = client.watch(
            b"pn/gw", progress_notify=True, callback=log.batch, on_progress=log.progress
        )
        created_at = await w.created
        await until(lambda: log.seen, what="a notification over the gateway")
        (kind, revision), *_ = log.seen
        assert kind == "progress" and w.progress >= revision >= created_at
        w.cancel()


@pytest.mark.parametrize("kind", ["etcd", "memory"])
@pytest_twisted.ensureDeferred
async def test_contract_request_progress_to_on_progress(
    kind: str, request: Any, etcd_prefix: bytes
) -> None:
    """The same on real etcd and on MemoryEtcd: the answer to request_progress reaches every
    created watch of the stream, after its events, with the store's revision."""
    memory = MemoryEtcd() if kind == "memory" else None
    if memory is not None:
        client = memory.client(timeout=10.0)
    else:
        client = Client(request.getfixturevalue("etcd_server").endpoint, reactor=reactor())
    try:
        logs = [Log(), Log()]
        watches = [
            client.watch(etcd_prefix + name, callback=log.batch, on_progress=log.progress)
            for name, log in zip([b"a", b"b"], logs, strict=True)
        ]
        for w in watches:
            await w.created
        r = (await client.put(etcd_prefix + b"a", b"1")).header.revision
        await until(lambda: logs[0].seen, what="the event")
        client.request_progress()
        await until(lambda: all(log.seen[-1][0] == "progress" for log in logs if log.seen))
        await until(lambda: logs[1].seen, what="the answer")
        (_, said), *_ = logs[1].seen
        assert said >= r  # the store's revision
        assert logs[0].seen == [("batch", r), ("progress", said)]
        assert logs[1].seen == [("progress", said)]
        assert [w.progress for w in watches] == [said, said]
    finally:
        await client.delete_prefix(etcd_prefix)
        await client.close()
        if memory is not None:
            memory.close()


# -- the CLI, side by side with etcdctl ------------------------------------------------------


async def printed(get: Callable[[], bytes], test: Callable[[bytes], bool]) -> None:
    """Until what ``get`` gives passes ``test`` (30 s at most: a loaded CI machine runs an
    etcdctl process beside the suite)."""
    try:
        await until(lambda: test(get()), timeout=30.0, what="the output")
    except AssertionError:
        raise AssertionError(f"timed out waiting for the output; it was {get()!r}") from None


def _records(out: bytes, lines_per: int) -> List[bytes]:
    """The output cut in records (a progress line and the lines after it), consecutive
    repeats of one progress record kept once: how many come is a matter of timing."""
    lines = out.splitlines(keepends=True)
    records: List[bytes] = []
    i = 0
    while i < len(lines):
        size = 1 + lines_per if lines[i].startswith(b"progress notify: ") else 1
        record = b"".join(lines[i : i + size])
        if not (record.startswith(b"progress") and records and records[-1] == record):
            records.append(record)
        i += size
    return records


@pytest.mark.parametrize(
    "fmt, lines_per, event",
    [("simple", 0, b"PUT\n"), ("json", 1, b'"Events":[{'), ("fields", 4, b'"Type" : PUT')],
)
@pytest_twisted.ensureDeferred
async def test_cli_progress_notify_like_etcdctl(
    fmt: str, lines_per: int, event: bytes, progress_etcd: EtcdServer, progress_client: Client
) -> None:
    """Both print each notification of an idle watch, and the event in between, the same."""
    key = f"pncli/{fmt}"
    argv = [f"--endpoints={progress_etcd.endpoint}", "watch", key, "--progress-notify", "-w", fmt]
    env = {"PATH": os.defpath}
    with tempfile.TemporaryFile() as out_file:
        etcdctl = subprocess.Popen(
            [etcdctl_binary(), *argv], stdout=out_file, stderr=subprocess.PIPE, env=env
        )
        out, err = io.BytesIO(), io.BytesIO()
        running = defer.ensureDeferred(
            run(argv, reactor=reactor(), stdin=io.BytesIO(), stdout=out, stderr=err, environ=env)
        )

        def etcdctl_out() -> bytes:
            out_file.seek(0)
            return out_file.read()

        try:
            for get in (out.getvalue, etcdctl_out):
                await printed(get, lambda text: b"progress notify" in text)
            await progress_client.put(key, b"v")
            for get in (out.getvalue, etcdctl_out):
                await printed(get, lambda text: b"progress notify" in text.partition(event)[2])
        finally:
            running.cancel()
            etcdctl.terminate()
            etcdctl.wait(10)
        with pytest.raises(defer.CancelledError):
            await running
        ours, theirs = _records(out.getvalue(), lines_per), _records(etcdctl_out(), lines_per)
        assert ours == theirs
        progress_first, progress_last = ours[0], ours[-1]  # and the event in between
        assert progress_first.startswith(b"progress notify: ") and progress_first != progress_last
        assert progress_last.startswith(b"progress notify: ")
        assert err.getvalue() == b""


@pytest_twisted.ensureDeferred
async def test_cli_progress_notify_table_like_etcdctl(progress_etcd: EtcdServer) -> None:
    """``-w table``: the progress line, then etcdctl's error for the format (exit 4)."""
    argv = [f"--endpoints={progress_etcd.endpoint}", "watch", "pncli/t", "--progress-notify"]
    argv += ["-w", "table"]
    env = {"PATH": os.defpath}
    etcdctl = subprocess.run(
        [etcdctl_binary(), *argv], capture_output=True, env=env, timeout=30
    )  # fmt: skip
    out, err = io.BytesIO(), io.BytesIO()
    code = await run(argv, reactor=reactor(), stdin=io.BytesIO(), stdout=out, stderr=err,
                     environ=env)  # fmt: skip
    assert (code, out.getvalue()[:16]) == (etcdctl.returncode, etcdctl.stdout[:16])
    assert (code, out.getvalue()[:16]) == (4, b"progress notify:")
    assert err.getvalue() == etcdctl.stderr == b"Error: table not supported as output format\n"


class Interactive:
    """One ``watch -i`` run fed line by line: etcdctl as a process, or txetcd in this one."""

    def __init__(self, argv: List[str], ours: bool) -> None:
        read, self.write_fd = os.pipe()
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.ours = ours
        if ours:
            self.stdin = os.fdopen(read, "rb")
            self.outb, self.errb = io.BytesIO(), io.BytesIO()
            self.done = defer.ensureDeferred(
                run(argv, reactor=reactor(), stdin=self.stdin, stdout=self.outb,
                    stderr=self.errb, environ={"PATH": os.defpath})
            )  # fmt: skip
        else:
            self.proc = subprocess.Popen(
                [etcdctl_binary(), *argv], stdin=read, stdout=self.out, stderr=self.err,
                env={"PATH": os.defpath},
            )  # fmt: skip
            os.close(read)

    def send(self, line: bytes) -> None:
        os.write(self.write_fd, line + b"\n")

    def output(self) -> bytes:
        if self.ours:
            return self.outb.getvalue()
        self.out.seek(0)
        return self.out.read()

    async def finish(self) -> Tuple[int, bytes, bytes]:
        os.close(self.write_fd)  # EOF: both end with etcdctl's error
        if self.ours:
            code = await self.done
            self.stdin.close()
            return code, self.outb.getvalue(), self.errb.getvalue()
        await until(lambda: self.proc.poll() is not None, what="etcdctl's end")
        self.err.seek(0)
        return self.proc.returncode, self.output(), self.err.read()


@pytest_twisted.ensureDeferred
async def test_cli_interactive_progress_like_etcdctl(
    progress_etcd: EtcdServer, progress_client: Client
) -> None:
    """``progress`` before any watch prints nothing; then one line per watch of the stream,
    in order with the events."""
    argv = [f"--endpoints={progress_etcd.endpoint}", "watch", "-i"]
    runs = [Interactive(argv, ours=False), Interactive(argv, ours=True)]

    async def step(line: bytes, seen: bytes, count: int) -> None:
        for r in runs:
            if line:
                r.send(line)
        for r in runs:
            try:
                await printed(r.output, lambda text: text.count(seen) >= count)
            except AssertionError as e:
                who = "txetcd" if r.ours else "etcdctl"
                raise AssertionError(f"{who}: {count} x {seen!r} expected: {e}") from None

    async def next_revision() -> bytes:  # a watch from it sees the next write, created or not
        return b"%d" % ((await progress_client.get(b"pncli/")).header.revision + 1)

    try:
        for r in runs:
            r.send(b"progress")
        rev = await next_revision()
        for r in runs:
            r.send(b"watch pncli/i1 --rev " + rev)
        await progress_client.put(b"pncli/i1", b"first")
        await step(b"", b"first", 1)
        await step(b"progress", b"progress notify", 1)
        rev = await next_revision()
        for r in runs:
            r.send(b"watch pncli/i2 --prev-kv --rev=" + rev)
        await progress_client.put(b"pncli/i2", b"second")
        await step(b"", b"second", 1)
        await step(b"progress", b"progress notify", 3)
        await sleep(0.2)  # nothing more comes
    finally:
        results = [await r.finish() for r in runs]
    (code_e, out_e, err_e), (code_t, out_t, err_t) = results
    assert out_t == out_e
    assert code_t == code_e == 3
    assert err_t.splitlines()[-1:] == [b"Error: error reading watch request line: EOF"]
    assert err_e.splitlines()[-1:] == err_t.splitlines()[-1:]
