"""Writes in flight across a change of leader (txetcd._terms), on a Clock."""

from __future__ import annotations

from typing import Any, List, Optional

import pytest_twisted
from twisted.internet import task
from twisted.internet.task import deferLater

from txetcd._grpc.channel import Channel
from txetcd._proto import rpc_pb2
from txetcd._terms import TermWatch, term_of
from txetcd.testing import EtcdServer


class FakeWrite:
    def __init__(self) -> None:
        self.term: Optional[int] = None
        self.ended: List[int] = []

    def superseded(self, term: int) -> None:
        self.ended.append(term)


def answer(term: int) -> object:
    return rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(raft_term=term))


def test_a_higher_term_ends_the_writes_sent_before_it() -> None:
    clock = task.Clock()
    probes: List[float] = []
    watch = TermWatch(clock, lambda: probes.append(clock.seconds()), interval=0.5)
    watch.saw(answer(2))
    old, unknown = FakeWrite(), FakeWrite()
    watch.sent(old)
    assert old.term == 2
    watch.saw(answer(2))  # the same leader: nothing happens
    assert old.ended == []
    clock.advance(0.5)
    assert probes == [0.5]  # writes in flight: the term is asked for
    new = FakeWrite()
    watch.saw(answer(3))
    watch.sent(new)
    assert old.ended == [3] and new.ended == [] and new.term == 3
    watch.done(new)
    clock.advance(0.5)  # nothing in flight any more: no probe, no timer left
    assert probes == [0.5] and clock.getDelayedCalls() == []
    del unknown


def test_writes_sent_before_any_term_was_seen_are_not_ended() -> None:
    clock = task.Clock()
    watch = TermWatch(clock, lambda: None)
    first = FakeWrite()
    watch.sent(first)
    assert first.term == 0
    watch.saw(answer(7))  # the first answer: no change of leader can be told from it
    assert first.ended == []
    watch.done(first)
    watch.close()
    assert clock.getDelayedCalls() == []


def test_no_probe_before_a_term_is_known_and_close_stops_probing() -> None:
    clock = task.Clock()
    probes: List[float] = []
    watch = TermWatch(clock, lambda: probes.append(clock.seconds()), interval=0.5)
    write = FakeWrite()
    watch.sent(write)
    clock.advance(0.5)
    assert probes == []
    watch.saw(answer(1))
    clock.advance(0.5)
    assert probes == [1.0]
    watch.close()
    assert clock.getDelayedCalls() == []


def test_term_of_answers_without_a_header() -> None:
    assert term_of(object()) == 0
    assert term_of(answer(4)) == 4


def test_hasleader_only_after_a_sign_of_trouble() -> None:
    """Calls that need the leader carry hasleader for a while after a sign of trouble (a new
    term, a lost connection, a "not now" answer), not in quiet times: etcd pays for it."""
    from txetcd._transport import REQUIRE_LEADER

    clock = task.Clock()
    watch = TermWatch(clock, lambda: None)
    assert watch.metadata(REQUIRE_LEADER) == ()
    other = ((b"x", b"y"),)
    assert watch.metadata(other) is other
    watch.saw(answer(2))
    assert watch.metadata(REQUIRE_LEADER) == ()  # the first term seen is no change of leader
    watch.saw(answer(3))
    assert watch.metadata(REQUIRE_LEADER) is REQUIRE_LEADER
    clock.advance(TermWatch.SUSPECT_FOR)
    assert watch.metadata(REQUIRE_LEADER) == ()
    watch.suspect()
    assert watch.metadata(REQUIRE_LEADER) is REQUIRE_LEADER


@pytest_twisted.ensureDeferred
async def test_the_term_probe_is_answered_by_a_member_with_auth_on(
    etcd_auth_server: EtcdServer,
) -> None:
    """The probe goes below the auth layer (no token): it must be a call etcd answers without
    one, or under auth a write stuck behind a dead leader would wait for etcd's own timeout."""
    from twisted.internet import reactor

    channel = Channel([etcd_auth_server.endpoint], reactor)
    try:
        assert channel.terms.term == 0
        channel._probe_term()
        for _ in range(100):  # bounded only against a hang: the answer comes in milliseconds
            if channel.terms.term:
                break
            await deferLater(reactor, 0.02)
        assert channel.terms.term > 0
    finally:
        await channel.close()


def test_probe_only_after_writes_in_flight_for_a_whole_interval_and_one_timer_at_most() -> None:
    """Short writes with breaks between them never probe; writes that overlap for an interval
    do. One timer at most, whatever the number of writes, and none once the writes are over."""
    clock = task.Clock()
    probes: List[float] = []
    watch = TermWatch(clock, lambda: probes.append(clock.seconds()), interval=0.5)
    watch.saw(answer(1))
    timers: List[float] = []
    call_later = clock.callLater

    def counted(delay: float, f: Any, *a: Any, **kw: Any) -> Any:
        timers.append(delay)
        return call_later(delay, f, *a, **kw)

    clock.callLater = counted  # type: ignore[method-assign,assignment]
    for start in (0.0, 0.2, 0.4, 0.6):  # each write ends 0.1 s after it went out
        clock.advance(start - clock.seconds())
        write = FakeWrite()
        watch.sent(write)
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(0.1)
        watch.done(write)
    clock.advance(1.0)
    assert probes == [] and clock.getDelayedCalls() == []
    assert len(timers) == 2  # not one per write: the first, then one re-armed at 0.5
    # Overlapping writes keep the watch busy from 1.7 on: the probe goes at 2.2, then every 0.5 s.
    first, second = FakeWrite(), FakeWrite()
    watch.sent(first)
    clock.pump([0.1] * 3)
    watch.sent(second)
    clock.pump([0.1])
    watch.done(first)
    clock.pump([0.1] * 6)
    assert [round(p, 6) for p in probes] == [2.2, 2.7] and len(clock.getDelayedCalls()) == 1
    watch.done(second)
    clock.pump([0.1] * 5)
    assert len(probes) == 2 and clock.getDelayedCalls() == []
