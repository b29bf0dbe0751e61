"""The one resend rule and the one backoff policy, and how both transports apply them.

Everything here runs on ``task.Clock``: the waits between attempts are the policy's, on the
injected clock, and nothing is left scheduled at the end.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from txetcd import ClientClosed, ConnectionFailed, OutcomeUnknown, Timeout
from txetcd._gateway.channel import GatewayChannel
from txetcd._grpc.calls import _UnaryCall
from txetcd._h2.frames import ConnectionClosed, StreamNotProcessed
from txetcd._http1.interface import HTTPResponse
from txetcd._methods import PUT, RANGE
from txetcd._proto import rpc_pb2
from txetcd._retry import backoff_policy, may_resend
from txetcd._terms import TermWatch

# -- the rule and the policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idempotent", "maybe_sent", "auth_rejected", "expected"),
    [
        (True, True, False, True),  # a read: always
        (True, False, False, True),
        (False, False, False, True),  # a write that never left
        (False, True, False, False),  # a write that may have been seen: never
        (False, True, True, True),  # refused for its token: nothing was applied
    ],
)
def test_may_resend(
    idempotent: bool, maybe_sent: bool, auth_rejected: bool, expected: bool
) -> None:
    got = may_resend(idempotent=idempotent, maybe_sent=maybe_sent, auth_rejected=auth_rejected)
    assert got is expected


@given(
    initial=st.floats(0.001, 1.0),
    maximum=st.floats(0.001, 10.0),
    factor=st.floats(1.0, 4.0),
    failures=st.integers(-3, 200),
    r=st.floats(0.0, 0.999999),
)
def test_backoff_policy_bounds(
    initial: float, maximum: float, factor: float, failures: int, r: float
) -> None:
    policy = backoff_policy(initial, maximum, factor, jitter=lambda: r)
    base = min(initial * factor ** min(max(failures, 0), 64), maximum)
    delay = policy(failures)
    assert base * 0.5 <= delay <= base + 1e-12


def test_backoff_policy_grows_then_caps() -> None:
    policy = backoff_policy(0.1, 1.0, jitter=lambda: 1.0)
    assert [round(policy(n), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    with pytest.raises(ValueError):
        backoff_policy(0.1, 1.0, factor=0.5)


# -- gRPC: a unary call's attempts ---------------------------------------------------------------


class FakeChannel:
    """What a _UnaryCall needs of its channel: a clock, dispatch, the resend bookkeeping."""

    max_attempts = 3
    max_waits = 4

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.closed = False
        self.connected = True
        self.dispatched: List[float] = []
        self.terms = TermWatch(clock, lambda: None)
        self._resending: set[Any] = set()

    def dispatch(self, call: _UnaryCall) -> bool:
        self.dispatched.append(self.clock.seconds())
        if self.connected:  # else it waits for a connection, as in Channel
            call.attempts += 1
            call.sent = True
        return True

    def _forget_waiter(self, call: Any) -> None:
        pass


def unary(
    clock: task.Clock, *, idempotent: bool, timeout: Optional[float] = 10.0
) -> Tuple[FakeChannel, _UnaryCall, List[Any]]:
    channel = FakeChannel(clock)
    request = rpc_pb2.RangeRequest(key=b"k").SerializeToString()
    call = _UnaryCall(
        channel,  # type: ignore[arg-type]
        RANGE if idempotent else PUT,
        request,
        timeout,
        idempotent,
        (),
        lambda message: message,
    )
    outcome: List[Any] = []
    call.deferred.addBoth(outcome.append)
    channel.dispatch(call)  # the first attempt
    return channel, call, outcome


def test_a_read_is_sent_again_after_the_backoff_not_at_once() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    assert channel.dispatched == [0.0]  # not at once
    assert len(clock.getDelayedCalls()) == 2  # the deadline and the resend
    clock.advance(1.0)  # past any first wait (at most 20 ms)
    assert len(channel.dispatched) == 2 and 0 < channel.dispatched[1] <= 1.0
    assert outcome == []
    call._finish(b"answer")
    assert outcome == [b"answer"] and clock.getDelayedCalls() == []


def test_waits_grow_between_attempts_and_the_last_failure_names_the_cause() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True, timeout=None)
    waits = []
    for _ in range(channel.max_attempts - 1):
        before = clock.seconds()
        call.connection_failed(ConnectionClosed("connection lost: reset"))
        (timer,) = clock.getDelayedCalls()
        waits.append(timer.getTime() - before)
        clock.advance(timer.getTime() - before)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    assert len(channel.dispatched) == channel.max_attempts
    assert 0.01 <= waits[0] <= 0.02 and 0.02 <= waits[1] <= 0.04
    (err,) = outcome
    assert isinstance(err, Failure) and isinstance(err.value, ConnectionFailed)
    assert "reset" in str(err.value) and err.value.maybe_sent
    assert clock.getDelayedCalls() == []


def test_a_write_that_may_have_been_seen_is_never_sent_again() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=False)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    (err,) = outcome
    assert isinstance(err.value, OutcomeUnknown)
    assert channel.dispatched == [0.0] and clock.getDelayedCalls() == []


def test_a_write_that_never_reached_the_server_is_sent_again_after_the_backoff() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=False)
    call.connection_failed(StreamNotProcessed("above the GOAWAY's last stream id"))
    assert channel.dispatched == [0.0]
    clock.advance(1.0)
    assert len(channel.dispatched) == 2 and outcome == []
    call._finish(b"ok")
    assert clock.getDelayedCalls() == []


def test_a_deadline_while_the_resent_write_waits_for_a_connection_is_a_plain_timeout() -> None:
    """The write never reached the server, and its second attempt is still queued: a deadline
    now is a Timeout, not a WriteTimeout (nothing may have been applied)."""
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=False, timeout=0.1)
    channel.connected = False  # the resend will wait in the channel's queue
    call.connection_failed(StreamNotProcessed("refused"))
    clock.advance(0.02)
    assert len(channel.dispatched) == 2 and outcome == []
    clock.advance(0.08)
    (err,) = outcome
    assert type(err.value) is Timeout
    assert clock.getDelayedCalls() == []


def test_no_resend_is_scheduled_past_the_deadline() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True, timeout=0.001)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    (err,) = outcome
    assert isinstance(err.value, ConnectionFailed)
    assert channel.dispatched == [0.0] and clock.getDelayedCalls() == []


def test_closing_while_waiting_to_resend_fails_the_call_closed() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    channel.closed = True
    for waiting in list(channel._resending):
        waiting.fail_to_connect(ClientClosed("the client is closed"))
    (err,) = outcome
    assert isinstance(err.value, ClientClosed)
    assert channel.dispatched == [0.0] and clock.getDelayedCalls() == []


def test_cancelling_while_waiting_to_resend_leaves_no_timer() -> None:
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True)
    call.connection_failed(ConnectionClosed("connection lost: reset"))
    call.deferred.cancel()
    clock.advance(5)
    assert channel.dispatched == [0.0] and clock.getDelayedCalls() == []


# -- the gateway: the same rule, the same waits, the next endpoint --------------------------------


class FakeHTTP:
    """An HTTP1Client whose answers the test scripts: an exception or a response per request."""

    def __init__(self, script: List[Any]) -> None:
        self.script = script
        self.requests: List[Tuple[str, Optional[float]]] = []

    def request(self, method: bytes, url: str, **kw: Any) -> "Deferred[HTTPResponse]":
        self.requests.append((url, kw.get("timeout")))
        answer = self.script.pop(0)
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, BaseException):
            return fail(answer)
        return succeed(answer)

    def close(self) -> "Deferred[None]":
        return succeed(None)


OK_RANGE = HTTPResponse(200, {}, b'{"header": {"revision": "5"}, "kvs": [], "count": "0"}')


def gateway(clock: task.Clock, script: List[Any]) -> Tuple[GatewayChannel, FakeHTTP]:
    http = FakeHTTP(script)
    channel = GatewayChannel(["http://a:2379", "http://b:2379"], clock, http)  # type: ignore[arg-type]
    return channel, http


def test_gateway_read_is_sent_again_to_the_next_endpoint_after_the_backoff() -> None:
    clock = task.Clock()
    channel, http = gateway(clock, [ConnectionFailed("reset", maybe_sent=True), OK_RANGE])
    got: List[Any] = []
    channel.unary(
        RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=5.0, idempotent=True, decode=lambda m: m
    ).addBoth(got.append)
    assert [u for u, _ in http.requests] == ["http://a:2379/v3/kv/range"] and got == []
    clock.advance(1.0)
    assert [u for u, _ in http.requests][1] == "http://b:2379/v3/kv/range"
    (timeout,) = [t for _, t in http.requests[1:]]
    assert timeout is not None and timeout < 5.0  # what is left of the call's deadline
    assert got[0].header.revision == 5 and clock.getDelayedCalls() == []


def test_gateway_write_that_may_have_been_seen_is_not_sent_again() -> None:
    clock = task.Clock()
    lost = OutcomeUnknown("the write's outcome is unknown: reset")
    channel, http = gateway(clock, [lost])
    got: List[Any] = []
    channel.unary(
        PUT, rpc_pb2.PutRequest(key=b"k"), timeout=5.0, idempotent=False, decode=lambda m: m
    ).addBoth(got.append)
    assert len(http.requests) == 1 and isinstance(got[0].value, OutcomeUnknown)
    clock.advance(5.0)  # (the raft-term watch's timer runs out by itself)
    assert len(http.requests) == 1 and clock.getDelayedCalls() == []


def test_gateway_write_never_sent_goes_to_the_next_endpoint() -> None:
    clock = task.Clock()
    refused = ConnectionFailed("connection refused", maybe_sent=False)
    channel, http = gateway(clock, [refused, HTTPResponse(200, {}, b'{"header": {}}')])
    got: List[Any] = []
    channel.unary(
        PUT, rpc_pb2.PutRequest(key=b"k"), timeout=5.0, idempotent=False, decode=lambda m: m
    ).addBoth(got.append)
    clock.advance(1.0)
    assert [u.split("/v3")[0] for u, _ in http.requests] == ["http://a:2379", "http://b:2379"]
    assert not isinstance(got[0], Failure)


def test_gateway_calls_that_saw_one_failure_move_on_once() -> None:
    """Many calls failing on one endpoint move the shared choice on by one, not by many."""
    clock = task.Clock()
    pending: List[Deferred[HTTPResponse]] = [Deferred() for _ in range(3)]
    channel, http = gateway(clock, [*pending, OK_RANGE, OK_RANGE, OK_RANGE])
    for _ in range(3):
        channel.unary(
            RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=5.0, idempotent=True, decode=str
        )
    for d in pending:  # all three were sent to a, and all three break
        d.errback(ConnectionFailed("reset", maybe_sent=True))
    clock.advance(1.0)
    hosts = [u.split("/v3")[0] for u, _ in http.requests]
    assert hosts == ["http://a:2379"] * 3 + ["http://b:2379"] * 3
    assert clock.getDelayedCalls() == []


# -- answers that say "not now": reads go again, to another member when this one cannot serve ----


class UnfitChannel(FakeChannel):
    def __init__(self, clock: task.Clock) -> None:
        super().__init__(clock)
        self.unfit: List[str] = []

    def endpoint_failed(self, connection: Any, why: str) -> None:
        self.unfit.append(why)


def answered(call: _UnaryCall, code: int, message: str) -> None:
    call.status, call.status_message = code, message
    call.stream_ended()


@pytest.mark.parametrize(
    ("message", "unfit"),
    [
        ("etcdserver: leader changed", False),
        ("etcdserver: request timed out", False),
        ("etcdserver: no leader", True),
        ("etcdserver: rpc not supported for learner", True),
    ],
)
def test_a_read_answered_unavailable_is_sent_again_after_the_backoff(
    message: str, unfit: bool
) -> None:
    clock = task.Clock()
    channel = UnfitChannel(clock)
    call = _UnaryCall(
        channel,  # type: ignore[arg-type]
        RANGE,
        b"",
        10.0,
        True,
        (),
        lambda m: m,
    )
    outcome: List[Any] = []
    call.deferred.addBoth(outcome.append)
    channel.dispatch(call)
    answered(call, 14, message)
    assert outcome == [] and channel.dispatched == [0.0]
    assert channel.unfit == ([message] if unfit else [])
    clock.advance(1.0)
    assert len(channel.dispatched) == 2
    call._finish(b"ok")
    assert outcome == [b"ok"] and clock.getDelayedCalls() == []


def test_a_read_answered_unavailable_fails_once_its_waits_are_spent() -> None:
    """ "Not now" answers have a budget of their own (long enough for an election), apart
    from the attempts a broken connection may take."""
    clock = task.Clock()
    channel, call, outcome = unary(clock, idempotent=True, timeout=None)
    for _ in range(channel.max_waits):
        answered(call, 14, "etcdserver: leader changed")
        clock.advance(1.0)
    answered(call, 14, "etcdserver: leader changed")
    (err,) = outcome
    assert "leader changed" in str(err.value)
    assert len(channel.dispatched) == channel.max_waits + 1 > channel.max_attempts
    assert clock.getDelayedCalls() == []


def test_a_write_answered_no_leader_waits_for_a_leader() -> None:
    """Sent with hasleader, a write refused for want of a leader was never proposed: it goes
    again after the backoff, to another member first."""
    clock = task.Clock()
    channel = UnfitChannel(clock)
    call = _UnaryCall(
        channel,  # type: ignore[arg-type]
        PUT,
        b"",
        10.0,
        False,
        (),
        lambda m: m,
    )
    outcome: List[Any] = []
    call.deferred.addBoth(outcome.append)
    channel.dispatch(call)
    answered(call, 14, "etcdserver: no leader")
    assert outcome == [] and channel.unfit == ["etcdserver: no leader"]
    clock.advance(1.0)
    assert len(channel.dispatched) == 2
    answered(call, 14, "etcdserver: leader changed")  # an uncertain answer to a write: the end
    (err,) = outcome
    assert isinstance(err.value, OutcomeUnknown) and clock.getDelayedCalls() == []


def test_gateway_read_answered_no_leader_goes_to_the_next_member() -> None:
    clock = task.Clock()
    no_leader = HTTPResponse(
        503, {}, b'{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}'
    )
    channel, http = gateway(clock, [no_leader, OK_RANGE])
    got: List[Any] = []
    channel.unary(
        RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=5.0, idempotent=True, decode=lambda m: m
    ).addBoth(got.append)
    clock.advance(1.0)
    assert [u.split("/v3")[0] for u, _ in http.requests] == ["http://a:2379", "http://b:2379"]
    assert got[0].header.revision == 5
