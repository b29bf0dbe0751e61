"""Leases: the unary calls, and the keepalive loop on a fake clock and against real etcd.

The clock tests drive the loop with a fake LeaseKeepAlive stream (no sockets) on a
``task.Clock``; the real-etcd tests keep leases alive for several TTLs, watch ``lost`` fire when
another client revokes, and check that nothing (stream, timer, connection) is left behind.

``LeaseClient`` is ``txetcd.Client`` with the lease mixin and the close hook, whether or not
``Client`` has them already (then it adds nothing).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, List, NamedTuple, Optional

import pytest
import pytest_twisted
from twisted.internet import defer, task
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
    _KeepAliveHub,
    keepalive_backoff,
    retry_interval,
)
from txetcd._lease import (
    LeaseGrantResult,
    LeaseMethods,
    LeaseRevokeResult,
    LeasesResult,
    LeaseTimeToLiveResult,
)
from txetcd._methods import LEASE_KEEPALIVE
from txetcd._proto import rpc_pb2
from txetcd._signal import Signal
from txetcd._transport import Method
from txetcd.test.helpers import grpc_channel
from txetcd.test.test_faults import txetcd_timers
from txetcd.testing import EtcdServer

HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)


WIRED = issubclass(Client, LeaseMethods)


class LeaseClient(Client, LeaseMethods):
    """``Client`` with the lease mixin, closed the way ``Client.close`` closes it."""

    def close(self) -> "defer.Deferred[None]":
        if not WIRED:
            self._lease_hub_close()
        return super().close()


# -- fakes: a LeaseKeepAlive stream, a channel, and a client whose unary calls the test answers


class FakeStream:
    """Records the lease IDs sent; the test replies, breaks or ends it."""

    def __init__(
        self,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.sent: List[int] = []
        self.ended = False
        self.cancelled = False

    def send(self, message: Any, end: bool = False) -> bool:
        if self.ended:
            raise RuntimeError("stream is closed for sending")
        self.sent.append(message.ID)
        return True

    def cancel(self) -> None:
        if not self.ended:
            self.ended = self.cancelled = True
            self.on_close(defer.CancelledError())

    def reply(self, lease_id: int, ttl: int) -> None:
        msg = rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=lease_id, TTL=ttl)
        self.on_message(msg)

    def fail(self, error: Optional[BaseException]) -> None:
        self.ended = True
        self.on_close(error)


class FakeChannel:
    closed = False

    def __init__(self) -> None:
        self.streams: List[FakeStream] = []

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Any = (),
    ) -> FakeStream:
        assert method is LEASE_KEEPALIVE
        s = FakeStream(on_message, on_close)
        self.streams.append(s)
        return s

    @property
    def open_streams(self) -> List[FakeStream]:
        return [s for s in self.streams if not s.ended]


class Call(NamedTuple):
    method: Method
    request: Any
    idempotent: bool
    timeout: Any
    deferred: "defer.Deferred[Any]"
    decode: Callable[[Any], Any]

    @property
    def path(self) -> bytes:
        return self.method.path

    def answer(self, message: Any) -> None:
        self.deferred.callback(self.decode(message))


class FakeClient(LeaseMethods):
    """The lease mixin on a fake channel; unary calls wait in ``calls`` for the test."""

    def __init__(self, clock: task.Clock, timeout: Optional[float] = 30.0) -> None:
        self.reactor = self.clock = clock
        self.timeout = timeout
        self._channel = FakeChannel()  # type: ignore[assignment]
        self.calls: List[Call] = []

    @property
    def fake_channel(self) -> FakeChannel:
        return self._channel  # type: ignore[return-value]

    def _call(
        self,
        method: Method,
        request: Any,
        decode: Callable[[Any], Any],
        *,
        idempotent: bool,
        timeout: Any,
    ) -> "defer.Deferred[Any]":
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append(Call(method, request, idempotent, timeout, d, decode))
        return d

    @property
    def hub(self) -> _KeepAliveHub:
        assert self._lease_hub is not None
        return self._lease_hub


def fixed_backoff(*delays: float) -> Callable[[int], float]:
    return lambda failures: delays[min(failures, len(delays) - 1)]


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def fake(clock: task.Clock) -> FakeClient:
    return FakeClient(clock)


def outcome(d: "defer.Deferred[Any]") -> Any:
    """The result (or exception) of a fired Deferred; AssertionError if it has not fired."""
    got: List[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    value = got[0]
    return value.value if hasattr(value, "value") and hasattr(value, "trap") else value


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


def fake_header() -> Any:
    from txetcd._types import ResponseHeader

    return ResponseHeader(1, 2, 3, 4)


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
    client = LeaseClient("http://127.0.0.1:9", reactor=task.Clock(), timeout=1)
    with pytest.raises(TypeError):
        client.grant(5, timeout="1")
    with pytest.raises(ValueError):
        client.leases(timeout=-1)


# -- against real etcd ------------------------------------------------------------------------


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


def sleep(seconds: float) -> "defer.Deferred[None]":
    return task.deferLater(reactor(), seconds, lambda: None)


def keepalive_streams(client: Client) -> List[Any]:
    conn = grpc_channel(client).connection
    if conn is None:
        return []
    return [s for s in conn.streams.values() if getattr(s, "path", None) == LEASE_KEEPALIVE.path]


def lease_timers() -> List[Any]:
    """Delayed calls of the keepalive loop and sessions (the connection's PING timer is not)."""
    mine = ("txetcd._keepalive", "txetcd._lease", "txetcd._session")
    return [c for c in txetcd_timers(reactor()) if type(c.func.__self__).__module__ in mine]


def timers_of(client: LeaseClient, connections: List[Any]) -> List[Any]:
    """txetcd delayed calls that belong to ``client`` (its loop, its connections)."""
    hub = client._lease_hub
    out = []
    for call in txetcd_timers(reactor()):
        owner = getattr(call.func, "__self__", None)
        mine = hub is not None and (owner is hub or getattr(owner, "hub", None) is hub)
        if mine or owner in connections:
            out.append(call)
    return out


async def closed_cleanly(client: LeaseClient) -> None:
    """Close ``client``; assert no stream, connection or timer of it is left."""
    connections = list(grpc_channel(client).connections)
    await client.close()
    assert grpc_channel(client).connections == []
    assert keepalive_streams(client) == []
    hub = client._lease_hub
    assert hub is None or (hub.stream is None and hub.leases == {})
    assert timers_of(client, connections) == []


@pytest_twisted.async_yield_fixture
async def lease_client(etcd_server: EtcdServer) -> AsyncIterator[LeaseClient]:
    client = LeaseClient(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    try:
        yield client
    finally:
        await closed_cleanly(client)


@pytest_twisted.async_yield_fixture
async def other_client(etcd_server: EtcdServer) -> AsyncIterator[LeaseClient]:
    client = LeaseClient(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    try:
        yield client
    finally:
        await closed_cleanly(client)


@pytest_twisted.ensureDeferred
async def test_grant_time_to_live_leases_revoke(
    lease_client: LeaseClient, etcd_prefix: bytes
) -> None:
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
async def test_chosen_id_ttl_minimum_and_errors(lease_client: LeaseClient) -> None:
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
    lease_client: LeaseClient, etcd_prefix: bytes
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
async def test_lost_fires_soon_after_another_client_revokes(
    lease_client: LeaseClient, other_client: LeaseClient
) -> None:
    c = lease_client
    leases = [await c.grant(3) for _ in range(3)]
    handles = [c.keepalive(g.id, g.ttl) for g in leases]
    assert len(keepalive_streams(c)) == 1  # one stream for every lease
    await sleep(0.3)
    assert all(h.last_refresh is not None for h in handles)
    lost = handles[1].lost
    revoked_at = reactor().seconds()
    await other_client.revoke(leases[1].id)
    reason = await lost.addTimeout(5, reactor())
    elapsed = reactor().seconds() - revoked_at
    assert isinstance(reason, LeaseExpired) and reason.lease_id == leases[1].id
    assert elapsed < 3 / 3 + 0.5
    assert handles[0].active and handles[2].active
    for h in handles:
        h.stop()
    assert keepalive_streams(c) == [] and lease_timers() == []
    for g in (leases[0], leases[2]):
        await c.revoke(g.id)


@pytest_twisted.ensureDeferred
async def test_client_close_abandons_kept_leases_and_leaves_nothing(
    etcd_server: EtcdServer, other_client: LeaseClient
) -> None:
    client = LeaseClient(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
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


@pytest.mark.skipif(not WIRED, reason="LeaseMethods is not a base of Client yet")
@pytest_twisted.ensureDeferred
async def test_client_close_ends_the_keepalive_loop(
    etcd_server: EtcdServer, other_client: LeaseClient
) -> None:
    client: Any = Client(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    g = await client.grant(5)
    lost = client.keepalive(g.id, g.ttl).lost
    await sleep(0.1)
    connections = list(grpc_channel(client).connections)
    await client.close()
    assert isinstance(outcome(lost), LeaseAbandoned)
    assert grpc_channel(client).connections == [] and timers_of(client, connections) == []
    await other_client.revoke(g.id)
