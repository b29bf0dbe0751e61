"""Leases: the unary calls, and the keepalive loop on a fake clock and against real etcd.

The clock tests drive the loop with a fake LeaseKeepAlive stream (no sockets) on a
``task.Clock``; the real-etcd tests keep leases alive for several TTLs, watch ``lost`` fire when
another client revokes, and check that nothing (stream, timer, connection) is left behind.
"""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.python.failure import Failure

from txetcd import Client, ClientClosed, ConnectionFailed, LeaseExists, LeaseNotFound, Timeout
from txetcd._errors import (
    LeaseAbandoned,
    LeaseExpired,
    LeaseKeepAliveTimeout,
    LeaseLost,
    LeaseTTLTooLarge,
    ProtocolViolation,
)
from txetcd._keepalive import (
    KeepAlive,
    LeaseKeepAliveResult,
    keepalive_backoff,
    retry_interval,
)
from txetcd._lease import (
    LeaseGrantResult,
    LeaseRevokeResult,
    LeasesResult,
    LeaseTimeToLiveResult,
)
from txetcd._methods import LEASE_KEEPALIVE
from txetcd._proto import rpc_pb2
from txetcd._signal import Signal
from txetcd.test.helpers import (
    HEADER,
    FakeClient,
    closed_cleanly,
    fake_header,
    fixed_backoff,
    keepalive_streams,
    lease_timers,
    outcome,
    reactor,
    sleep,
    until,
    within,
)
from txetcd.testing import EtcdServer

# -- the keepalive loop on a fake clock ---------------------------------------------------------


def test_refresh_at_a_third_of_the_ttl(fake: FakeClient, clock: task.Clock) -> None:
    ka = fake.keepalive(7, ttl=12)
    lost = ka.lost
    (stream,) = fake.fake_channel.streams
    assert stream.sent == [7]  # a refresh at once
    assert ka.deadline == 12 and ka.ttl == 12 and ka.last_refresh is None
    clock.advance(0.5)
    stream.reply(7, 12)  # answers the refresh sent at 0
    assert ka.deadline == 12 and ka.last_refresh == 0.5
    assert ka.last_reply == LeaseKeepAliveResult(fake_header(), 7, 12)
    clock.advance(3.75)  # 4.25: 4 s after the answer, not yet
    assert stream.sent == [7]
    clock.advance(0.25)  # 4.5 = 0.5 + 12/3
    assert stream.sent == [7, 7]
    clock.advance(1)
    stream.reply(7, 12)  # answered at 5.5; the countdown started no earlier than 4.5
    assert ka.deadline == 4.5 + 12 and ka.last_refresh == 5.5
    clock.advance(4 - 0.25)
    assert stream.sent == [7, 7]
    clock.advance(0.25)
    assert stream.sent == [7, 7, 7]
    ka.stop()
    assert stream.cancelled and ka.active is False
    assert clock.getDelayedCalls() == []
    assert not lost.called
    stream.reply(7, 12)  # a late answer on the old stream is ignored
    assert clock.getDelayedCalls() == []


def test_lost_when_the_server_says_ttl_zero(fake: FakeClient, clock: task.Clock) -> None:
    ka = fake.keepalive(7, ttl=12)
    (stream,) = fake.fake_channel.streams
    stream.reply(7, 12)
    clock.advance(4)
    lost = ka.lost
    stream.reply(7, 0)  # etcd's answer for a revoked or expired lease
    reason = outcome(lost)
    assert isinstance(reason, LeaseExpired) and isinstance(reason, LeaseNotFound)
    assert isinstance(reason, LeaseLost) and reason.lease_id == 7
    assert outcome(ka.lost) is reason  # later observers get the same reason
    assert not ka.active and stream.cancelled
    assert clock.getDelayedCalls() == []


def test_lost_when_no_refresh_is_answered_before_the_deadline(
    fake: FakeClient, clock: task.Clock
) -> None:
    ka = fake.keepalive(7, ttl=12)
    fake.hub.backoff = fixed_backoff(0.5)
    stream = fake.fake_channel.streams[0]
    stream.reply(7, 12)  # deadline 12, refresh at 4
    lost = ka.lost
    clock.advance(4)
    assert stream.sent == [7, 7]
    assert retry_interval(12) == 2.0
    clock.advance(2)  # 6: no answer, nothing at all on the stream: reopen it
    assert stream.cancelled and len(fake.fake_channel.streams) == 1
    clock.advance(0.5)  # 6.5: reopened, the refresh sent again at once
    assert len(fake.fake_channel.streams) == 2
    assert fake.fake_channel.streams[1].sent == [7]
    clock.advance(2)  # 8.5: silent again
    clock.advance(0.5)
    assert len(fake.fake_channel.streams) == 3
    clock.pump([0.5] * 5)  # 11.5 (in steps: a timer set by a timer counts from the step's end)
    assert [len(s.sent) for s in fake.fake_channel.streams] == [2, 1, 1, 1]
    clock.advance(0.25)
    assert not lost.called
    clock.advance(0.25)  # 12: the deadline
    reason = outcome(lost)
    assert isinstance(reason, LeaseKeepAliveTimeout) and isinstance(reason, Timeout)
    assert isinstance(reason.cause, Timeout)  # why the last stream was dropped
    assert fake.fake_channel.open_streams == []
    assert clock.getDelayedCalls() == []


def test_broken_stream_reopened_with_backoff_within_the_ttl(
    fake: FakeClient, clock: task.Clock
) -> None:
    ka = fake.keepalive(7, ttl=12)
    fake.hub.backoff = keepalive_backoff(initial=1.0, maximum=2.0, jitter=lambda: 0.0)
    streams = fake.fake_channel.streams
    streams[0].reply(7, 12)
    clock.advance(4)
    clock.advance(0.25)
    streams[0].fail(ConnectionFailed("connection reset"))
    assert fake.hub.last_error is not None
    clock.advance(0.49)
    assert len(streams) == 1
    clock.advance(0.01)  # 4.75: first backoff, 1.0 * 0.5
    assert len(streams) == 2 and streams[1].sent == [7]
    streams[1].fail(ConnectionFailed("refused"))
    clock.advance(0.99)
    assert len(streams) == 2
    clock.advance(0.01)  # 5.75: second backoff, 2.0 * 0.5
    assert len(streams) == 3 and streams[2].sent == [7]
    clock.advance(0.25)
    streams[2].reply(7, 12)
    assert ka.deadline == 5.75 + 12 and ka.last_refresh == 6.0
    assert fake.hub.last_error is None
    clock.advance(4)  # refreshed on the new stream
    assert streams[2].sent == [7, 7]
    streams[2].fail(ConnectionFailed("reset"))  # the failure count started again
    clock.advance(0.5)
    assert len(streams) == 4 and streams[3].sent == [7]
    assert not ka.lost.called
    ka.stop()
    assert clock.getDelayedCalls() == []


def test_server_ending_the_stream_reopens_it(fake: FakeClient, clock: task.Clock) -> None:
    ka = fake.keepalive(7, ttl=12)
    fake.hub.backoff = fixed_backoff(0.25)
    fake.fake_channel.streams[0].fail(None)  # status OK while leases are still kept
    clock.advance(0.25)
    assert len(fake.fake_channel.streams) == 2
    assert fake.fake_channel.streams[1].sent == [7]
    ka.stop()
    assert clock.getDelayedCalls() == [] and fake.fake_channel.open_streams == []


def test_stop_while_a_reopen_is_pending(fake: FakeClient, clock: task.Clock) -> None:
    ka = fake.keepalive(7, ttl=12)
    fake.hub.backoff = fixed_backoff(0.5)
    fake.fake_channel.streams[0].fail(ConnectionFailed("reset"))
    assert len(clock.getDelayedCalls()) == 2  # the reopen and the lease's timer
    ka.stop()
    ka.stop()  # harmless
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert len(fake.fake_channel.streams) == 1


def test_many_leases_share_one_stream(fake: FakeClient, clock: task.Clock) -> None:
    a = fake.keepalive(1, ttl=12)
    b = fake.keepalive(2, ttl=6)
    c = fake.keepalive(-3, ttl=3)  # IDs are signed
    (stream,) = fake.fake_channel.streams
    assert stream.sent == [1, 2, -3]
    stream.reply(-3, 3)
    stream.reply(99, 5)  # not ours: ignored
    stream.reply(1, 12)
    stream.reply(2, 6)
    assert (a.last_refresh, b.last_refresh, c.last_refresh) == (0, 0, 0)
    clock.advance(1)  # 1: c, a third of its TTL after its answer
    assert stream.sent[3:] == [-3]
    stream.reply(-3, 3)
    clock.advance(1)  # 2: b and c
    assert sorted(stream.sent[4:]) == [-3, 2]
    stream.reply(2, 6)
    stream.reply(-3, 3)
    assert b.last_refresh == 2 and c.last_refresh == 2 and a.last_refresh == 0
    clock.advance(1)  # 3: c
    assert stream.sent[6:] == [-3]
    stream.reply(-3, 3)
    clock.advance(1)  # 4: a, b and c
    assert sorted(stream.sent[7:]) == [-3, 1, 2]
    assert len(fake.fake_channel.streams) == 1
    a.stop()
    b.stop()
    assert not stream.ended
    c.stop()
    assert stream.cancelled and clock.getDelayedCalls() == []
    assert fake.fake_channel.open_streams == []


def test_unanswered_lease_on_a_live_stream_is_sent_again(
    fake: FakeClient, clock: task.Clock
) -> None:
    a = fake.keepalive(1, ttl=12)
    b = fake.keepalive(2, ttl=12)
    (stream,) = fake.fake_channel.streams
    stream.reply(1, 12)
    clock.advance(1)
    stream.reply(2, 12)  # the stream answers, just not for lease 1's later refresh
    clock.advance(3)  # 4: lease 1's refresh
    assert stream.sent == [1, 2, 1]
    clock.advance(0.5)
    stream.reply(2, 12)  # something for someone else
    clock.advance(1.5)  # 6: lease 1 unanswered for 2 s, but the stream is alive
    assert stream.sent == [1, 2, 1, 1] and not stream.ended
    a.stop()
    b.stop()
    assert clock.getDelayedCalls() == []


def test_two_handles_on_one_lease(fake: FakeClient, clock: task.Clock) -> None:
    first = fake.keepalive(5, ttl=12)
    second = fake.keepalive(5, ttl=12)
    (stream,) = fake.fake_channel.streams
    assert stream.sent == [5]  # one refresh for both
    stream.reply(5, 12)
    first.stop()
    clock.advance(4)
    assert stream.sent == [5, 5]  # still kept for the other
    lost_first, lost_second = first.lost, second.lost
    stream.reply(5, 0)
    assert not lost_first.called  # stopped handles hear nothing
    assert isinstance(outcome(lost_second), LeaseExpired)
    assert clock.getDelayedCalls() == []


def test_unknown_ttl_is_learnt_from_the_first_answer(clock: task.Clock) -> None:
    fake = FakeClient(clock, timeout=5.0)
    ka = fake.keepalive(7)
    assert ka.ttl is None and ka.deadline == 5.0  # until the first answer: the call timeout
    stream = fake.fake_channel.streams[0]
    clock.advance(0.5)
    stream.reply(7, 30)
    assert ka.ttl == 30 and ka.deadline == 30
    ka.stop()
    fake_none = FakeClient(clock, timeout=None)
    ka = fake_none.keepalive(8)
    assert ka.deadline == clock.seconds() + 30.0
    ka.stop()
    assert clock.getDelayedCalls() == []


def test_unknown_ttl_lost_when_nothing_answers(clock: task.Clock) -> None:
    fake = FakeClient(clock, timeout=3.0)
    fake.keepalive(7)
    fake.hub.backoff = fixed_backoff(0.25)
    lost = fake.hub.leases[7].handles[0].lost
    clock.pump([0.25] * 11)
    assert not lost.called
    clock.advance(0.25)
    assert isinstance(outcome(lost), LeaseKeepAliveTimeout)
    assert clock.getDelayedCalls() == []


def test_hub_close_abandons_every_lease(fake: FakeClient, clock: task.Clock) -> None:
    fake._lease_hub_close()  # no hub yet: harmless
    a = fake.keepalive(1, ttl=12)
    b = fake.keepalive(2, ttl=12)
    lost_a, lost_b = a.lost, b.lost
    fake._lease_hub_close()
    for d, lease_id in ((lost_a, 1), (lost_b, 2)):
        reason = outcome(d)
        assert isinstance(reason, LeaseAbandoned) and isinstance(reason, ClientClosed)
        assert reason.lease_id == lease_id
    assert fake.fake_channel.open_streams == [] and clock.getDelayedCalls() == []
    fake._lease_hub_close()  # twice: harmless


def test_keepalive_on_a_closed_client_is_lost_at_once(fake: FakeClient, clock: task.Clock) -> None:
    fake.fake_channel.closed = True
    ka = fake.keepalive(1, ttl=12)
    assert isinstance(outcome(ka.lost), LeaseAbandoned)
    assert fake.fake_channel.streams == [] and clock.getDelayedCalls() == []


def test_stream_closed_by_the_client_abandons_leases(fake: FakeClient, clock: task.Clock) -> None:
    ka = fake.keepalive(1, ttl=12)
    lost = ka.lost
    fake.fake_channel.closed = True
    fake.fake_channel.streams[0].fail(ClientClosed("the client is closed"))
    assert isinstance(outcome(lost), LeaseAbandoned)
    assert clock.getDelayedCalls() == []
    assert isinstance(outcome(fake.keepalive(1, ttl=12).lost), LeaseAbandoned)


def test_a_stream_ended_by_an_undecodable_answer_is_reopened(
    fake: FakeClient, clock: task.Clock
) -> None:
    """The transport ends a stream whose answer it cannot parse (ProtocolViolation): the loop
    opens another after its backoff and sends the refresh again."""
    ka = fake.keepalive(1, ttl=12)
    fake.hub.backoff = fixed_backoff(0.25)
    stream = fake.fake_channel.streams[0]
    stream.fail(ProtocolViolation("could not decode a stream message"))
    assert not ka.lost.called
    clock.advance(0.25)
    assert fake.fake_channel.streams[1].sent == [1]
    ka.stop()
    assert clock.getDelayedCalls() == []


def test_a_lost_observer_that_raises_does_not_stop_others(
    fake: FakeClient, clock: task.Clock
) -> None:
    ka = fake.keepalive(1, ttl=12)
    seen: List[LeaseLost] = []

    def bad(reason: LeaseLost) -> None:
        raise RuntimeError("user code failed")

    failing = ka.lost.addCallback(bad)
    ka.lost.addCallback(seen.append)
    fake.fake_channel.streams[0].reply(1, 0)
    assert isinstance(outcome(failing), RuntimeError)  # kept, not swallowed
    assert len(seen) == 1


def test_backoff_policy() -> None:
    policy = keepalive_backoff(initial=0.1, maximum=1.0, jitter=lambda: 0.999999)
    assert [round(policy(n), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    low = keepalive_backoff(initial=0.1, maximum=1.0, jitter=lambda: 0.0)
    assert [low(n) for n in range(5)] == [0.05, 0.1, 0.2, 0.4, 0.5]
    assert keepalive_backoff()(10_000) <= 1.0
    import random

    rnd = random.Random(1)
    jittered = keepalive_backoff(jitter=rnd.random)
    assert all(0.5 <= jittered(20) < 1.0 for _ in range(100))
    assert retry_interval(2) == pytest.approx(1 / 3) and retry_interval(600) == 5.0
    assert retry_interval(1) == 0.25 and retry_interval(None) == 1.0


def test_signal_observers_and_cancellation() -> None:
    sig: Signal[int] = Signal()
    a, b = sig.wait(), sig.wait()
    b.cancel()
    outcome(b)  # CancelledError, consumed
    sig.fire(5)
    sig.fire(6)  # only the first counts
    assert outcome(a) == 5 and outcome(sig.wait()) == 5 and sig.fired
    bad: Signal[int] = Signal()
    bad.fire(Failure(ValueError("x")))
    assert isinstance(outcome(bad.wait()), ValueError)


# -- unary calls on the fake client -------------------------------------------------------------


def test_unary_calls_build_requests_and_decode(fake: FakeClient) -> None:
    g = fake.grant(10, id=-5)
    call = fake.calls[-1]
    assert call.path == b"/etcdserverpb.Lease/LeaseGrant" and not call.idempotent
    assert (call.request.TTL, call.request.ID, call.timeout) == (10, -5, 30.0)
    call.answer(rpc_pb2.LeaseGrantResponse(header=HEADER, ID=-5, TTL=10))
    assert outcome(g) == LeaseGrantResult(fake_header(), -5, 10)

    r = fake.revoke(9, timeout=2)
    call = fake.calls[-1]
    assert (call.path, call.idempotent, call.timeout) == (
        b"/etcdserverpb.Lease/LeaseRevoke",
        False,
        2,
    )
    call.answer(rpc_pb2.LeaseRevokeResponse(header=HEADER))
    assert outcome(r) == LeaseRevokeResult(fake_header())

    t = fake.time_to_live(9, keys=True, timeout=None)
    call = fake.calls[-1]
    assert call.idempotent and call.request.keys and call.timeout is None
    call.answer(
        rpc_pb2.LeaseTimeToLiveResponse(
            header=HEADER, ID=9, TTL=4, grantedTTL=10, keys=[b"a", b"b"]
        )
    )
    assert outcome(t) == LeaseTimeToLiveResult(fake_header(), 9, 4, 10, (b"a", b"b"))

    ls = fake.leases()
    call = fake.calls[-1]
    assert call.idempotent
    call.answer(
        rpc_pb2.LeaseLeasesResponse(
            header=HEADER, leases=[rpc_pb2.LeaseStatus(ID=3), rpc_pb2.LeaseStatus(ID=1)]
        )
    )
    assert outcome(ls) == LeasesResult(fake_header(), (3, 1))

    k = fake.keepalive_once(9)
    call = fake.calls[-1]
    assert call.method is LEASE_KEEPALIVE and call.idempotent
    call.answer(rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=9, TTL=10))
    assert outcome(k) == LeaseKeepAliveResult(fake_header(), 9, 10)

    gone = fake.keepalive_once(9)
    fake.calls[-1].answer(rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=9))
    err = outcome(gone)
    assert isinstance(err, LeaseExpired) and isinstance(err, LeaseNotFound) and err.code == 5


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda c: c.grant("5"), TypeError),
        (lambda c: c.grant(5.0), TypeError),
        (lambda c: c.grant(True), TypeError),
        (lambda c: c.grant(0), ValueError),
        (lambda c: c.grant(-1), ValueError),
        (lambda c: c.grant(5, id=0), ValueError),
        (lambda c: c.grant(5, id="1"), TypeError),
        (lambda c: c.grant(5, id=2**63), ValueError),
        (lambda c: c.revoke(0), ValueError),
        (lambda c: c.revoke(None), TypeError),
        (lambda c: c.time_to_live(1.5), TypeError),
        (lambda c: c.time_to_live(1, keys=1), TypeError),
        (lambda c: c.keepalive_once(0), ValueError),
        (lambda c: c.keepalive_once(-(2**63) - 1), ValueError),
        (lambda c: c.keepalive(0), ValueError),
        (lambda c: c.keepalive(1, ttl=0), ValueError),
        (lambda c: c.keepalive(1, ttl=2.5), TypeError),
        (lambda c: c.keepalive("1"), TypeError),
    ],
)
def test_bad_arguments_raise_before_sending(
    fake: FakeClient, clock: task.Clock, call: Any, exc: type
) -> None:
    with pytest.raises(exc):
        call(fake)
    assert fake.calls == [] and fake._lease_hub is None and clock.getDelayedCalls() == []


def test_timeout_is_checked_by_the_client() -> None:
    client = Client("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(TypeError):
        client.grant(5, timeout="1")
    with pytest.raises(ValueError):
        client.leases(timeout=-1)


# -- against real etcd ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_grant_time_to_live_leases_revoke(lease_client: Client, etcd_prefix: bytes) -> None:
    c = lease_client
    g = await c.grant(30)
    assert g.ttl == 30 and g.id != 0
    put = await c.put(etcd_prefix + b"a", b"1", lease=g.id)
    await c.put(etcd_prefix + b"b", b"2", lease=g.id)
    t = await c.time_to_live(g.id, keys=True)
    assert t.id == g.id and 28 <= t.ttl <= 30 and t.granted_ttl == 30
    assert sorted(t.keys) == [etcd_prefix + b"a", etcd_prefix + b"b"]
    assert (await c.time_to_live(g.id)).keys == ()
    assert g.id in (await c.leases()).leases
    k = await c.keepalive_once(g.id)
    assert (k.id, k.ttl) == (g.id, 30)
    r = await c.revoke(g.id)
    assert r.header.revision == put.header.revision + 2  # both keys deleted in one revision
    assert (await c.get_prefix(etcd_prefix)).kvs == ()
    # a lease that is gone: three different answers, as etcd gives them
    gone = await c.time_to_live(g.id, keys=True)
    assert (gone.ttl, gone.granted_ttl, gone.keys) == (-1, 0, ())
    with pytest.raises(LeaseNotFound):
        await c.revoke(g.id)
    with pytest.raises(LeaseExpired) as e:
        await c.keepalive_once(g.id)
    assert e.value.lease_id == g.id
    assert g.id not in (await c.leases()).leases


@pytest_twisted.ensureDeferred
async def test_chosen_id_ttl_minimum_and_errors(lease_client: Client) -> None:
    import random

    c = lease_client
    lease_id = random.randrange(1 << 40, 1 << 62)
    g = await c.grant(1, id=lease_id)
    assert g.id == lease_id and g.ttl >= 2  # raised to the server's minimum, as it reports
    assert (await c.time_to_live(lease_id)).granted_ttl == g.ttl
    with pytest.raises(LeaseExists):
        await c.grant(5, id=lease_id)
    with pytest.raises(LeaseTTLTooLarge):
        await c.grant(10**10)
    await c.revoke(lease_id)


@pytest_twisted.ensureDeferred
async def test_keepalive_keeps_a_short_lease_for_three_ttls(
    lease_client: Client, etcd_prefix: bytes
) -> None:
    c = lease_client
    g = await c.grant(2)
    await c.put(etcd_prefix + b"k", b"v", lease=g.id)
    ka = c.keepalive(g.id, g.ttl)
    lost = ka.lost
    start = reactor().seconds()
    await sleep(3 * g.ttl + 0.5)
    assert not lost.called and ka.active
    assert (await c.get(etcd_prefix + b"k")).value == b"v"
    assert (await c.time_to_live(g.id)).ttl > 0
    assert ka.last_refresh is not None and ka.last_refresh > start + 2 * g.ttl
    assert ka.deadline > reactor().seconds()
    assert len(keepalive_streams(c)) == 1
    ka.stop()
    assert keepalive_streams(c) == [] and lease_timers() == []
    await c.revoke(g.id)


@pytest_twisted.ensureDeferred
async def test_lost_at_the_first_refresh_after_another_client_revokes(
    etcd_server: EtcdServer, other_client: Client
) -> None:
    clock = task.Clock()  # the keepalive loop's time; the network is real
    c = Client(etcd_server.endpoint, reactor=reactor(), clock=clock, timeout=10.0)
    try:
        leases = [await c.grant(3) for _ in range(3)]
        handles = [c.keepalive(g.id, g.ttl) for g in leases]
        assert len(keepalive_streams(c)) == 1  # one stream for every lease
        await until(lambda: all(h.last_refresh == 0 for h in handles), what="first refreshes")
        lost = handles[1].lost
        await other_client.revoke(leases[1].id)
        assert not lost.called  # nothing tells the loop before its next refresh
        clock.advance(3 / 3)  # a third of the TTL after the answers: the refresh says TTL 0
        reason = await within(lost)
        assert isinstance(reason, LeaseExpired) and reason.lease_id == leases[1].id
        assert handles[0].active and handles[2].active
        await until(lambda: handles[0].last_refresh == handles[2].last_refresh == 1.0)
        for h in handles:
            h.stop()
        assert keepalive_streams(c) == [] and lease_timers(clock) == []
        for g in (leases[0], leases[2]):
            await c.revoke(g.id)
    finally:
        await closed_cleanly(c)


@pytest_twisted.ensureDeferred
async def test_client_close_abandons_kept_leases_and_leaves_nothing(
    etcd_server: EtcdServer, other_client: Client
) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    g = await client.grant(5)
    handles: List[KeepAlive] = [client.keepalive(g.id, g.ttl), client.keepalive(g.id)]
    losts = [h.lost for h in handles]
    await sleep(0.1)
    assert handles[0].last_refresh is not None
    await closed_cleanly(client)
    for d in losts:
        assert isinstance(outcome(d), LeaseAbandoned)
    assert (await other_client.time_to_live(g.id)).ttl > 0  # not revoked: it runs out its TTL
    await other_client.revoke(g.id)
