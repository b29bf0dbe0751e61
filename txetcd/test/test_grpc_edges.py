"""The gRPC call path (:class:`txetcd._grpc.channel.Channel`) against an HTTP/2 server that
misbehaves
on purpose (:mod:`txetcd.test.h2server`), over real loopback TCP.

Each test scripts the server for one edge case: error statuses, GOAWAY and resets with calls in
flight, deadlines and cancellation, stream limits, flow-control starvation, a peer that stops
reading, odd framing (CONTINUATION, padding, tiny writes), and streaming back-pressure.
"""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import pytest_twisted
from h2.settings import SettingCodes
from twisted.internet import reactor as _installed_reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

import txetcd
from txetcd._grpc.calls import GrpcStream
from txetcd._grpc.channel import Channel, Endpoint
from txetcd._h2.frames import (
    CANCEL,
    MAX_STREAM_ID,
)
from txetcd._transport import Method
from txetcd.test.h2server import (
    GrpcServer,
    ServerCall,
    echo,
    grpc_frame,
    never,
)
from txetcd.test.helpers import Raw, raw_method, sleep, until, within

T = TypeVar("T")
reactor: Any = _installed_reactor  # interfaces are not typed without mypy-zope

ECHO = b"/t.Test/Echo"
HOLD = b"/t.Test/Hold"  # answered by the test, when it chooses
NEVER = b"/t.Test/Never"
STREAM = b"/t.Test/Stream"
SIZE = b"/t.Test/Size"  # answers with the request message's length


def rpc(ch: Channel, path: bytes, payload: bytes, **options: Any) -> Deferred[Any]:
    """A unary call of the test server's method ``path`` with a raw payload."""
    return ch.unary(raw_method(path), Raw(payload), decode=bytes, **options)


# -- helpers -----------------------------------------------------------------------------------


@implementer(IReactorTime)
class TrackingClock:
    """The real reactor's clock, remembering every delayed call made through it."""

    def __init__(self) -> None:
        self.calls: list[Any] = []  # IDelayedCall

    def seconds(self) -> float:
        return float(reactor.seconds())

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> IDelayedCall:
        call: IDelayedCall = reactor.callLater(delay, callable, *args, **kwargs)
        self.calls.append(call)
        return call

    def getDelayedCalls(self) -> list[Any]:
        return [c for c in self.calls if c.active()]


class Env:
    """A server, and channels to it that are closed at the end of the test."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.channels: list[Channel] = []
        self.clock = TrackingClock()

    def channel(self, **kw: Any) -> Channel:
        kw.setdefault("connect_timeout", 5.0)
        ch = Channel(
            [self.server.url],
            self.clock,
            endpoint_factory=lambda _r, ep: _tcp(ep),
            **kw,
        )
        self.channels.append(ch)
        return ch


def _tcp(endpoint: Endpoint) -> Any:
    return TCP4ClientEndpoint(reactor, endpoint.host, endpoint.port)


@pytest_twisted.async_yield_fixture
async def env() -> AsyncIterator[Env]:
    server = GrpcServer()
    server.handlers.update(
        {
            ECHO: echo,
            HOLD: never,
            NEVER: never,
            SIZE: lambda c: c.reply(b"%d" % len(c.message)),
        }
    )
    server.listen()
    e = Env(server)
    try:
        yield e
    finally:
        for ch in e.channels:
            await within(ch.close())
        await within(Deferred.fromCoroutine(server.stop()))


async def failure_of(d: Deferred[Any], seconds: float = 5.0) -> BaseException:
    """The exception ``d`` fails with (the test fails if it succeeds)."""
    outcome: list[tuple[bool, Any]] = []
    d.addTimeout(seconds, reactor)
    d.addCallbacks(lambda r: outcome.append((True, r)), lambda f: outcome.append((False, f.value)))
    await d
    ((succeeded, value),) = outcome
    assert not succeeded, f"expected a failure, got {value!r}"
    return value  # type: ignore[no-any-return]


def requests_on(server: GrpcServer, path: bytes) -> list[ServerCall]:
    return [c for c in server.requests if c.path == path]


class Probe:
    """Callbacks for a :class:`GrpcStream` that record what it delivers."""

    def __init__(self, pause_after: int | None = None) -> None:
        self.messages: list[bytes] = []
        self.closes: list[BaseException | None] = []
        self.closed: Deferred[BaseException | None] = Deferred()
        self.pause_after = pause_after
        self.stream: GrpcStream | None = None

    def on_message(self, message: bytes) -> None:
        self.messages.append(message)
        if self.pause_after is not None and len(self.messages) == self.pause_after:
            assert self.stream is not None
            self.stream.pause()

    def on_close(self, error: BaseException | None) -> None:
        self.closes.append(error)
        if len(self.closes) == 1 and not self.closed.called:  # (called: a test timed out)
            self.closed.callback(error)

    async def wait_closed(self) -> BaseException | None:
        """What ``on_close`` got; it must be called exactly once."""
        error: BaseException | None = await within(self.closed)
        assert len(self.closes) == 1, f"on_close called {len(self.closes)} times"
        return error

    def open(self, ch: Channel, path: bytes = STREAM, request: bytes = b"go") -> GrpcStream:
        self.stream = ch.stream(raw_method(path), self.on_message, self.on_close)
        self.stream.send(Raw(request), end=True)
        return self.stream


# -- plain calls, metadata, statuses -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_unary_sends_metadata_and_grpc_timeout(env: Env) -> None:
    ch = env.channel()
    meta = [(b"token", b"s3cret"), (b"x-trace", b"abc")]
    got = await within(rpc(ch, ECHO, b"payload", timeout=3.0, idempotent=True, metadata=meta))
    assert got == b"payload"
    (call,) = env.server.requests
    assert call.header(b"token") == b"s3cret" and call.header(b"x-trace") == b"abc"
    assert call.header(b"te") == b"trailers"
    assert call.header(b"content-type") == b"application/grpc"
    timeout = call.header(b"grpc-timeout")
    assert timeout is not None and timeout.endswith(b"m")
    assert 0 < int(timeout[:-1]) <= 3001
    # No deadline, no grpc-timeout.
    await within(rpc(ch, ECHO, b"x", timeout=None, idempotent=True))
    assert env.server.requests[1].header(b"grpc-timeout") is None


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        (
            11,
            "etcdserver: mvcc: required revision has been compacted",
            txetcd.RevisionCompacted,
        ),
        (14, "etcdserver: no leader", txetcd.NoLeader),
        (3, "etcdserver: key is not provided", txetcd.EmptyKey),
        (12, "unknown service", txetcd.Unimplemented),
        (13, "caf\u00e9 100% \u2713\nnext line", txetcd.Internal),
    ],
)
@pytest_twisted.ensureDeferred
async def test_trailers_only_error_is_typed(env: Env, code: int, message: str, error: type) -> None:
    """grpc-status/grpc-message in a Trailers-Only answer, percent-encoded, become our error."""
    env.server.handlers[HOLD] = lambda c: c.trailers_only(code, message)
    err = await failure_of(rpc(env.channel(), HOLD, b"", timeout=2.0, idempotent=True))
    assert type(err) is error
    assert err.code == code and err.message == message  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_error_in_trailers_after_headers_and_data(env: Env) -> None:
    def handler(call: ServerCall) -> None:
        call.send_headers()
        call.send_message(b"ignored")
        call.send_trailers(8, "etcdserver: mvcc: database space exceeded")

    env.server.handlers[HOLD] = handler
    err = await failure_of(rpc(env.channel(), HOLD, b"", timeout=2.0, idempotent=False))
    assert isinstance(err, txetcd.DatabaseSpaceExceeded)


@pytest_twisted.ensureDeferred
async def test_http_error_status_without_grpc_status(env: Env) -> None:
    env.server.handlers[HOLD] = lambda c: c.send_headers(status=b"503", end_stream=True)
    err = await failure_of(rpc(env.channel(), HOLD, b"", timeout=2.0, idempotent=True))
    assert isinstance(err, txetcd.Unavailable) and "503" in str(err)


@pytest_twisted.ensureDeferred
async def test_missing_grpc_status_is_a_protocol_violation(env: Env) -> None:
    def handler(call: ServerCall) -> None:
        call.send_headers()
        call.send_message(b"x")
        call.protocol.conn.end_stream(call.stream_id)  # END_STREAM on DATA, no trailers
        call._finish()
        call.protocol._flush()

    env.server.handlers[HOLD] = handler
    err = await failure_of(rpc(env.channel(), HOLD, b"", timeout=2.0, idempotent=True))
    assert isinstance(err, txetcd.ProtocolViolation)


# -- framing: CONTINUATION, padding, tiny writes ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_huge_header_blocks_both_ways(env: Env) -> None:
    """Header blocks far above the 16 KiB frame limit travel as HEADERS + CONTINUATION."""
    ch = env.channel()
    big_meta = [(b"x-big", b"m" * 40_000)] + [(b"x-%d" % i, b"v%d" % i) for i in range(300)]
    assert await within(rpc(ch, ECHO, b"a", timeout=2.0, idempotent=True, metadata=big_meta))
    (call,) = env.server.requests
    assert call.header(b"x-big") == b"m" * 40_000 and call.header(b"x-299") == b"v299"

    many = [(b"x-meta-%d" % i, b"value-%d" % i * 10) for i in range(800)]  # ~ 70 KB

    def answer(call: ServerCall) -> None:
        call.send_headers(many)
        call.send_message(b"fine")
        call.send_trailers(0, extra=many)

    env.server.handlers[HOLD] = answer
    assert await within(rpc(ch, HOLD, b"", timeout=2.0, idempotent=True)) == b"fine"
    # A 70 KB grpc-message: beyond hpack's default 64 KiB list limit, within our 1 MiB.
    long_message = "etcdserver: " + "x" * 70_000
    env.server.handlers[HOLD] = lambda c: c.trailers_only(9, long_message)
    err = await failure_of(rpc(ch, HOLD, b"", timeout=2.0, idempotent=True))
    assert isinstance(err, txetcd.FailedPrecondition) and err.message == long_message
    assert len(env.server.connections) == 1 and env.server.errors == []


@pytest_twisted.ensureDeferred
async def test_padded_and_prioritised_frames(env: Env) -> None:
    def answer(call: ServerCall) -> None:
        call.send_headers(pad_length=255, priority=True)
        call.send_message(b"padded", pad_length=200)
        call.send_data(b"", pad_length=17)  # only padding
        call.send_trailers(0, pad_length=3)

    env.server.handlers[HOLD] = answer
    ch = env.channel()
    for _ in range(3):  # padding costs window: it must be given back
        assert await within(rpc(ch, HOLD, b"", timeout=2.0, idempotent=True)) == b"padded"


@pytest_twisted.ensureDeferred
async def test_replies_in_many_tiny_writes(env: Env) -> None:
    env.server.write_chunk = 3
    env.server.write_delay = 0.0005
    ch = env.channel()
    assert await within(rpc(ch, ECHO, b"t" * 100, timeout=5.0, idempotent=True)) == b"t" * 100
    assert env.server.chunk_writes > 50  # preface, settings, headers, data, trailers: 3 bytes each
    # Count the client's reads from now on: the answers must really arrive in pieces.
    conn = ch.connection
    assert conn is not None
    reads: list[int] = []
    received = conn.dataReceived

    def counting(data: bytes) -> None:
        reads.append(len(data))
        received(data)

    conn.dataReceived = counting  # type: ignore[method-assign]
    assert await within(rpc(ch, ECHO, b"u" * 100, timeout=5.0, idempotent=True)) == b"u" * 100
    assert len(reads) > 20 and max(reads) < 20
    probe = Probe()
    env.server.handlers[STREAM] = _streamer([grpc_frame(b"msg-%d" % i) for i in range(5)])
    probe.open(ch)
    assert await probe.wait_closed() is None
    assert probe.messages == [b"msg-%d" % i for i in range(5)]


# -- GOAWAY, resets, lost connections ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_goaway_with_calls_in_flight(env: Env) -> None:
    """Calls above last-stream-id go again on a new connection (writes too); the rest finish."""
    env.server.handlers[HOLD] = lambda c: None if c.protocol.index == 0 else echo(c)
    ch = env.channel()
    calls = [rpc(ch, HOLD, b"w%d" % i, timeout=5.0, idempotent=False) for i in range(3)]
    await until(lambda: len(env.server.requests) == 3)
    first = env.server.connections[0]
    assert [c.stream_id for c in env.server.requests] == [1, 3, 5]
    first.goaway(3, debug=b"shutting down")
    result = await within(calls[2])
    assert result == b"w2"
    retried = env.server.requests[3]
    assert (retried.protocol.index, retried.message) == (1, b"w2")
    assert not calls[0].called and not calls[1].called
    for call in env.server.requests[:2]:
        echo(call)
    assert [await within(d) for d in calls[:2]] == [b"w0", b"w1"]
    await until(lambda: first.lost is not None, what="the client to close the old connection")
    assert len(ch.connections) == 1
    assert await within(rpc(ch, ECHO, b"next", timeout=2.0, idempotent=False)) == b"next"
    assert env.server.requests[-1].protocol.index == 1


@pytest_twisted.ensureDeferred
async def test_goaway_when_idle_moves_to_a_new_connection(env: Env) -> None:
    ch = env.channel()
    await within(rpc(ch, ECHO, b"a", timeout=2.0, idempotent=True))
    env.server.connections[0].goaway(1)
    await until(lambda: env.server.connections[0].lost is not None)
    await within(rpc(ch, ECHO, b"b", timeout=2.0, idempotent=False))
    assert [c.protocol.index for c in env.server.requests] == [0, 1]


@pytest.mark.parametrize("idempotent", [True, False])
@pytest_twisted.ensureDeferred
async def test_rst_stream_after_send(env: Env, idempotent: bool) -> None:
    """A reset stream is not retried: a read gets Unavailable, a write OutcomeUnknown."""
    env.server.handlers[HOLD] = lambda c: c.reset(0x2)  # INTERNAL_ERROR
    err = await failure_of(rpc(env.channel(), HOLD, b"", timeout=2.0, idempotent=idempotent))
    if idempotent:
        assert type(err) is txetcd.Unavailable and err.code == 14
    else:
        assert type(err) is txetcd.OutcomeUnknown
    assert len(env.server.requests) == 1


@pytest_twisted.ensureDeferred
async def test_refused_stream_is_retried_even_for_writes(env: Env) -> None:
    def refuse_first(call: ServerCall) -> None:
        if len(requests_on(env.server, HOLD)) == 1:
            call.reset(0x7)  # REFUSED_STREAM: certainly not processed
        else:
            echo(call)

    env.server.handlers[HOLD] = refuse_first
    got = await within(rpc(env.channel(), HOLD, b"put", timeout=2.0, idempotent=False))
    assert got == b"put" and len(env.server.requests) == 2


@pytest.mark.parametrize("idempotent", [True, False])
@pytest_twisted.ensureDeferred
async def test_connection_reset_mid_call(env: Env, idempotent: bool) -> None:
    env.server.handlers[HOLD] = lambda c: c.protocol.abort() if c.protocol.index == 0 else echo(c)
    d = rpc(env.channel(), HOLD, b"v", timeout=5.0, idempotent=idempotent)
    if idempotent:
        assert await within(d) == b"v"
        assert [c.protocol.index for c in env.server.requests] == [0, 1]
    else:
        err = await failure_of(d)
        assert type(err) is txetcd.OutcomeUnknown
        assert isinstance(err.cause, txetcd.ConnectionFailed)
        assert len(env.server.requests) == 1  # never sent again


@pytest_twisted.ensureDeferred
async def test_connection_refused(env: Env) -> None:
    await env.server.stop()
    err = await failure_of(rpc(env.channel(), ECHO, b"", timeout=2.0, idempotent=True))
    assert isinstance(err, txetcd.ConnectionFailed)


# -- deadlines and cancellation ------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [True, False])
@pytest_twisted.ensureDeferred
async def test_deadline(env: Env, idempotent: bool) -> None:
    """The deadline is the channel's clock's (a task.Clock here: no wall-clock bound)."""
    from twisted.internet.task import Clock

    clock = Clock()
    ch = env.channel(clock=clock)
    d = rpc(ch, NEVER, b"", timeout=0.2, idempotent=idempotent)
    await until(lambda: requests_on(env.server, NEVER))  # it reached the server
    clock.advance(0.19)
    assert not d.called
    clock.advance(0.01)
    err = await failure_of(d)
    assert isinstance(err, txetcd.Timeout)
    if idempotent:
        assert not isinstance(err, txetcd.OutcomeUnknown)
    else:
        assert isinstance(err, txetcd.WriteTimeout) and isinstance(err, txetcd.OutcomeUnknown)
    await until(lambda: env.server.stream_resets(CANCEL) == [1], what="RST_STREAM CANCEL")
    assert all(c.func.__name__ != "_timed_out" for c in clock.getDelayedCalls())  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_deadline_while_queued_for_a_stream_slot(env: Env) -> None:
    """A write that never left the queue times out as a plain Timeout: it was not sent."""
    env.server.max_concurrent_streams = 1
    ch = env.channel()
    await within(rpc(ch, ECHO, b"warm", timeout=2.0, idempotent=True))
    held = rpc(ch, HOLD, b"", timeout=5.0, idempotent=True)
    await until(lambda: requests_on(env.server, HOLD))
    err = await failure_of(rpc(ch, ECHO, b"w", timeout=0.1, idempotent=False))
    assert isinstance(err, txetcd.Timeout) and not isinstance(err, txetcd.OutcomeUnknown)
    conn = ch.connection
    assert conn is not None and not conn.pending
    requests_on(env.server, HOLD)[0].reply(b"done")
    assert await within(held) == b"done"
    assert [c.message for c in requests_on(env.server, ECHO)] == [b"warm"]


@pytest_twisted.ensureDeferred
async def test_cancel_sends_rst_cancel(env: Env) -> None:
    ch = env.channel()
    d = rpc(ch, HOLD, b"", timeout=5.0, idempotent=False)
    await until(lambda: env.server.requests)
    d.cancel()
    err = await failure_of(d)
    assert isinstance(err, CancelledError)
    await until(lambda: env.server.stream_resets(CANCEL) == [1], what="RST_STREAM CANCEL")
    assert env.server.requests[0].reset_code == CANCEL
    assert await within(rpc(ch, ECHO, b"after", timeout=2.0, idempotent=True)) == b"after"


# -- concurrency limits and flow control ---------------------------------------------------------


def _reply_soon(call: ServerCall) -> None:
    reactor.callLater(0.002, echo, call)


@pytest.mark.parametrize("warm", [True, False])
@pytest_twisted.ensureDeferred
async def test_max_concurrent_streams_one(env: Env, warm: bool) -> None:
    """20 calls, one stream at a time: queued, not failed (cold: refused streams are retried)."""
    env.server.max_concurrent_streams = 1
    env.server.handlers[HOLD] = _reply_soon
    ch = env.channel()
    if warm:
        await within(rpc(ch, ECHO, b"warm", timeout=2.0, idempotent=True))
    calls = [rpc(ch, HOLD, b"%d" % i, timeout=10.0, idempotent=i % 2 == 0) for i in range(20)]
    assert [await within(d) for d in calls] == [b"%d" % i for i in range(20)]
    assert env.server.max_open == 1
    assert len(env.server.connections) == 1
    if warm:
        assert env.server.refused == []


@pytest_twisted.ensureDeferred
async def test_max_concurrent_streams_lowered_mid_flight(env: Env) -> None:
    env.server.handlers[HOLD] = _reply_soon
    ch = env.channel()
    await within(rpc(ch, ECHO, b"warm", timeout=2.0, idempotent=True))
    env.server.connections[0].set_max_concurrent_streams(2)
    await until(lambda: ch.connection is not None and ch.connection.remote_max_streams == 2)
    env.server.max_open = 0
    calls = [rpc(ch, HOLD, b"%d" % i, timeout=10.0, idempotent=False) for i in range(10)]
    assert [await within(d) for d in calls] == [b"%d" % i for i in range(10)]
    assert env.server.max_open == 2 and env.server.refused == []


async def _warm(env: Env) -> Channel:
    """A channel whose connection has exchanged SETTINGS with the server."""
    ch = env.channel()
    assert await within(rpc(ch, ECHO, b"warm", timeout=2.0, idempotent=True)) == b"warm"
    return ch


@pytest_twisted.ensureDeferred
async def test_window_starvation_then_release(env: Env) -> None:
    """A 1 MiB request waits for window while the server withholds it, then completes."""
    env.server.initial_window_size = 16384
    env.server.hold_window = True
    ch = await _warm(env)
    payload = bytes(random.Random(1).randbytes(1 << 20))
    d = rpc(ch, SIZE, payload, timeout=10.0, idempotent=True)
    await until(lambda: len(env.server.calls) == 2 and len(env.server.calls[1].body) == 16384)
    await sleep(0.1)
    call = env.server.calls[1]
    assert len(call.body) == 16384 and not d.called  # starved: not one byte more
    env.server.connections[0].release_window()
    assert await within(d) == b"%d" % len(payload)
    assert bytes(call.body) == grpc_frame(payload)


@pytest_twisted.ensureDeferred
async def test_initial_window_raised_by_settings_mid_flight(env: Env) -> None:
    """No WINDOW_UPDATE at all: a larger SETTINGS_INITIAL_WINDOW_SIZE alone unblocks the call."""
    env.server.initial_window_size = 1000
    env.server.connection_window = 4 << 20
    env.server.hold_window = True
    ch = await _warm(env)
    d = rpc(ch, SIZE, b"z" * 500_000, timeout=10.0, idempotent=True)
    await until(lambda: len(env.server.calls) == 2 and len(env.server.calls[1].body) == 1000)
    await sleep(0.05)
    assert len(env.server.calls[1].body) == 1000 and not d.called
    env.server.connections[0].update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    assert await within(d) == b"500000"


@pytest_twisted.ensureDeferred
async def test_initial_window_lowered_mid_flight(env: Env) -> None:
    """After SETTINGS shrinks the window, a stream's DATA goes out in window-sized pieces."""
    env.server.handlers[STREAM] = lambda c: c.reply(b"%d" % sum(len(m) for m in c.messages))
    ch = env.channel()
    probe = Probe()
    stream = ch.stream(raw_method(STREAM), probe.on_message, probe.on_close)
    await until(lambda: env.server.calls)
    env.server.connections[0].update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
    await until(lambda: stream.connection is not None and stream.send_window == 100)
    stream.send(Raw(b"q" * 5000), end=True)
    assert await probe.wait_closed() is None
    assert probe.messages == [b"5000"]
    assert env.server.calls[0].data_frames >= 50  # 5005 bytes, at most 100 per frame


@pytest_twisted.ensureDeferred
async def test_peer_that_stops_reading(env: Env) -> None:
    """While the server reads nothing, answers for other streams still arrive."""
    env.server.initial_window_size = 8 << 20
    env.server.connection_window = 16 << 20
    ch = env.channel()
    other = rpc(ch, HOLD, b"small", timeout=10.0, idempotent=True)
    await until(lambda: env.server.requests)
    proto = env.server.connections[0]
    proto.pause_reading()
    big = rpc(ch, SIZE, b"B" * (4 << 20), timeout=10.0, idempotent=True)
    await sleep(0.1)
    env.server.requests[0].reply(b"answered")
    assert await within(other) == b"answered"  # received although our write is stuck
    assert not big.called and len(env.server.requests) == 1
    proto.resume_reading()
    assert await within(big) == b"%d" % (4 << 20)


# -- stream ids ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stream_id_exhaustion_opens_a_new_connection(env: Env) -> None:
    ch = env.channel()
    await within(rpc(ch, ECHO, b"warm", timeout=2.0, idempotent=True))
    conn = ch.connection
    assert conn is not None
    conn.next_stream_id = MAX_STREAM_ID - 2
    a = rpc(ch, HOLD, b"a", timeout=5.0, idempotent=False)
    b = rpc(ch, HOLD, b"b", timeout=5.0, idempotent=False)
    c = rpc(ch, ECHO, b"c", timeout=5.0, idempotent=False)
    assert await within(c) == b"c"
    held = requests_on(env.server, HOLD)
    assert [(r.stream_id, r.protocol.index) for r in held] == [
        (MAX_STREAM_ID - 2, 0),
        (MAX_STREAM_ID, 0),
    ]
    assert requests_on(env.server, ECHO)[-1].protocol.index == 1
    for r in held:
        echo(r)
    assert [await within(a), await within(b)] == [b"a", b"b"]
    await until(lambda: env.server.connections[0].lost is not None)
    assert ch.connections == [ch.connection]


# -- streams -------------------------------------------------------------------------------------


def _streamer(chunks: list[bytes], pad: int | None = None, status: int = 0, msg: str = "") -> Any:
    """A handler that answers with each chunk as one DATA frame, then the trailers."""

    def handle(call: ServerCall) -> None:
        call.send_headers()
        for chunk in chunks:
            call.send_data(chunk, pad_length=pad)
        call.send_trailers(status, msg)

    return handle


MESSAGES = [b"", b"a", b"bb" * 10, b"c" * 40_000, b"d" * 3, b"e" * 16_379, b"f"]


def _split(data: bytes, how: str) -> list[bytes]:
    if how == "per-message":
        return [grpc_frame(m) for m in MESSAGES]
    if how == "all-in-few":
        return [data[i : i + 16384] for i in range(0, len(data), 16384)]
    if how == "bytewise-head":
        return [data[i : i + 1] for i in range(300)] + [data[300:]]
    rnd = random.Random(how)
    cuts = sorted(rnd.sample(range(1, len(data)), 60))
    return [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=False)]


@pytest.mark.parametrize("pad", [None, 9])
@pytest.mark.parametrize(
    "how", ["per-message", "all-in-few", "bytewise-head", "random-1", "random-2"]
)
@pytest_twisted.ensureDeferred
async def test_stream_messages_in_order_whatever_the_split(
    env: Env, how: str, pad: int | None
) -> None:
    data = b"".join(grpc_frame(m) for m in MESSAGES)
    chunks = _split(data, how)
    assert b"".join(chunks) == data
    env.server.handlers[STREAM] = _streamer(chunks, pad)
    probe = Probe()
    probe.open(env.channel())
    assert await probe.wait_closed() is None
    assert probe.messages == MESSAGES


@pytest_twisted.ensureDeferred
async def test_stream_pause_stops_window_updates_and_resume_delivers(env: Env) -> None:
    """A paused stream holds the server back; other calls on the connection go on."""
    count, size = 96, 64 * 1024  # 6 MiB: more than the 4 MiB stream window
    messages = [struct.pack(">I", i) + bytes(size - 4) for i in range(count)]
    env.server.handlers[STREAM] = _streamer([grpc_frame(m) for m in messages])
    ch = env.channel()
    probe = Probe(pause_after=2)
    stream = probe.open(ch)
    await until(lambda: env.server.requests and env.server.requests[0].send_window == 0)
    await until(lambda: stream.paused)
    call = env.server.requests[0]
    assert call.queued > 0
    updates = [u for u in env.server.window_updates if u[1] == call.stream_id]
    await sleep(0.2)
    assert [u for u in env.server.window_updates if u[1] == call.stream_id] == updates
    assert call.send_window == 0 and len(probe.messages) == 2
    # The connection is not blocked: a unary call on it completes meanwhile.
    assert await within(rpc(ch, ECHO, b"meanwhile", timeout=2.0, idempotent=True)) == b"meanwhile"
    assert env.server.requests[-1].protocol is call.protocol
    stream.resume()
    assert await probe.wait_closed() is None
    assert len(probe.messages) == count and probe.messages == messages
    assert len([u for u in env.server.window_updates if u[1] == call.stream_id]) > len(updates)


@pytest_twisted.ensureDeferred
async def test_stream_error_while_paused_delivers_held_messages_first(env: Env) -> None:
    """Messages the server sent before its error status are not lost to a paused consumer.

    Regression: an error status dropped every message still held by pause().
    """
    env.server.handlers[STREAM] = _streamer(
        [grpc_frame(b"m%d" % i) for i in range(5)],
        status=11,
        msg="etcdserver: mvcc: required revision has been compacted",
    )
    probe = Probe(pause_after=1)
    stream = probe.open(env.channel())
    await until(lambda: env.server.requests and env.server.requests[0].finished)
    await sleep(0.05)
    assert probe.messages == [b"m0"] and not probe.closed.called
    stream.resume()
    err = await probe.wait_closed()
    assert probe.messages == [b"m%d" % i for i in range(5)]
    assert isinstance(err, txetcd.RevisionCompacted)


@pytest_twisted.ensureDeferred
async def test_stream_ending_inside_a_message(env: Env) -> None:
    """Status OK after half a message: on_close gets ProtocolViolation (it used to never fire)."""
    env.server.handlers[STREAM] = _streamer([grpc_frame(b"whole"), grpc_frame(b"cut short")[:7]])
    probe = Probe()
    probe.open(env.channel())
    err = await probe.wait_closed()
    assert probe.messages == [b"whole"]
    assert isinstance(err, txetcd.ProtocolViolation)


@pytest_twisted.ensureDeferred
async def test_undecodable_stream_message_ends_the_stream(env: Env) -> None:
    """A message its method's parser refuses ends the stream with ProtocolViolation, once, and
    the stream is reset (callers get parsed messages only)."""

    def refuse(data: bytes) -> bytes:
        if data == b"bad":
            raise ValueError("not a message")
        return data

    method = Method.of(STREAM, Raw, type("Picky", (), {"FromString": staticmethod(refuse)}), None)
    env.server.handlers[STREAM] = _streamer([grpc_frame(b"good"), grpc_frame(b"bad")])
    probe = Probe()
    ch = env.channel()
    probe.stream = ch.stream(method, probe.on_message, probe.on_close)
    probe.stream.send(Raw(b"go"), end=True)
    err = await probe.wait_closed()
    assert probe.messages == [b"good"]
    assert isinstance(err, txetcd.ProtocolViolation) and "not a message" in str(err)


@pytest_twisted.ensureDeferred
async def test_stream_cancel_and_server_reset(env: Env) -> None:
    ch = env.channel()

    def first_then_nothing(call: ServerCall) -> None:
        call.send_headers()
        call.send_message(b"first")

    def reset_after_one(call: ServerCall) -> None:
        call.send_headers()
        call.send_message(b"x")
        call.reset(0x2)  # INTERNAL_ERROR

    env.server.handlers[STREAM] = first_then_nothing
    probe = Probe()
    stream = probe.open(ch)
    await until(lambda: probe.messages == [b"first"])
    stream.cancel()
    assert isinstance(await probe.wait_closed(), CancelledError)
    await until(lambda: env.server.stream_resets(CANCEL) == [1])

    env.server.handlers[STREAM] = reset_after_one
    probe = Probe()
    probe.open(ch)
    err = await probe.wait_closed()
    assert isinstance(err, txetcd.Unavailable)


# -- closing -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_close_leaves_no_connections_and_no_delayed_calls(env: Env) -> None:
    """close() fails what is in flight, drops every connection and leaves no timer behind.

    Regression: an in-flight read was retried into the closed channel, which failed it with
    ClientClosed, then failed it again (AlreadyCalledError inside connectionLost).
    """
    ch = env.channel(keepalive_interval=5.0)
    read = rpc(ch, NEVER, b"", timeout=30.0, idempotent=True)
    write = rpc(ch, NEVER, b"", timeout=30.0, idempotent=False)
    probe = Probe()
    env.server.handlers[STREAM] = never
    probe.open(ch)
    await until(lambda: len(env.server.requests) == 3)
    assert env.clock.getDelayedCalls() != []
    await within(ch.close())
    assert isinstance(await failure_of(read), txetcd.ClientClosed)
    assert isinstance(await failure_of(write), txetcd.OutcomeUnknown)
    assert isinstance(await probe.wait_closed(), txetcd.ConnectionFailed)
    assert ch.connections == [] and ch.connection is None
    assert env.clock.getDelayedCalls() == []
    await until(lambda: env.server.connections[0].lost is not None)
    assert len(env.server.connections) == 1
    assert isinstance(
        await failure_of(rpc(ch, ECHO, b"", timeout=1.0, idempotent=True)),
        txetcd.ClientClosed,
    )
