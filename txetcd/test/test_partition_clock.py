"""Failover on a task.Clock (issue 20): where calls go once the pinned member falls silent, and
what every endpoint being down looks like, without processes or sockets."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.testing import StringTransportWithDisconnection

from txetcd import ConnectionFailed, OutcomeUnknown, Timeout
from txetcd._gateway.channel import GatewayChannel
from txetcd._grpc.channel import Channel, Endpoint
from txetcd._h2.frames import SETTINGS, frame
from txetcd._http1.interface import HTTPResponse
from txetcd._methods import PUT, RANGE, WATCH
from txetcd._proto import rpc_pb2


class Silent:
    """An endpoint factory whose connections are made at once and, after the server's SETTINGS
    (``greet``), never hear from the server again (a member that falls silent); without
    ``greet``, not even those (a black hole: TCP connects, nothing answers)."""

    def __init__(self, greet: bool = True) -> None:
        self.attempts: List[str] = []
        self.protocols: List[Any] = []
        self.greet = greet

    def __call__(self, reactor: Any, endpoint: Endpoint) -> Any:
        outer = self

        class _Connect:
            def connect(self, factory: Any) -> "Deferred[Any]":
                outer.attempts.append(endpoint.url)
                protocol = factory.buildProtocol(None)
                transport = StringTransportWithDisconnection()
                transport.protocol = protocol
                protocol.makeConnection(transport)
                if outer.greet:
                    protocol.dataReceived(frame(SETTINGS, 0, 0, b""))
                outer.protocols.append(protocol)
                return succeed(protocol)

        return _Connect()


def put(channel: Channel, out: List[Any]) -> "Deferred[Any]":
    d = channel.unary(
        PUT, rpc_pb2.PutRequest(key=b"k"), timeout=30, idempotent=False, decode=lambda m: m
    )
    return d.addBoth(out.append)


def test_a_call_made_as_the_silent_connection_dies_goes_to_another_member() -> None:
    """A writer that puts again as soon as its put fails (the failure is delivered while the
    dead connection is being torn down) must not reconnect to the member that fell silent."""
    clock = task.Clock()
    silent = Silent()
    channel = Channel(
        ["http://a:1", "http://b:2"],
        clock,
        endpoint_factory=silent,
        clock=clock,
        keepalive_interval=5,
        keepalive_timeout=1,
    )
    first: List[Any] = []
    again: List[Any] = []
    put(channel, first).addCallback(lambda _: put(channel, again))
    assert silent.attempts == ["http://a:1"]
    clock.advance(5)  # the server's SETTINGS were heard in this interval: no PING yet
    clock.advance(5)  # silence: a PING
    clock.advance(1)  # unanswered: the connection is dropped
    assert isinstance(first[0].value, OutcomeUnknown)
    assert silent.attempts == ["http://a:1", "http://b:2"]
    a, b = channel.endpoints
    assert a.failures == 1 and "PING" in a.last_error
    assert again == []  # sent on the connection to b
    channel.close()
    assert isinstance(again[0].value, Exception)


def test_a_member_that_accepts_and_never_answers_is_passed_over_before_anything_is_sent() -> None:
    """A connection is ready only once the server's SETTINGS arrive: a member that accepts TCP
    and says nothing is given up at the connect timeout, and the write goes to the next member,
    never sent to the silent one (so it is not OutcomeUnknown)."""
    clock = task.Clock()
    silent = Silent(greet=False)
    channel = Channel(
        ["http://a:1", "http://b:2"],
        clock,
        endpoint_factory=silent,
        clock=clock,
        connect_timeout=2,
        keepalive_interval=None,
    )
    out: List[Any] = []
    put(channel, out)
    assert silent.attempts == ["http://a:1"]
    assert b"etcdserverpb" not in silent.protocols[0].transport.value()  # the preface only
    clock.advance(2)
    assert silent.attempts == ["http://a:1", "http://b:2"]
    assert "connect timed out after 2 s" in channel.endpoints[0].last_error
    silent.protocols[1].dataReceived(frame(SETTINGS, 0, 0, b""))  # b answers: the put goes there
    assert b"etcdserverpb.KV/Put" in silent.protocols[1].transport.value()
    assert out == []
    assert b"etcdserverpb" not in silent.protocols[0].transport.value()
    channel.close()
    assert "http://b:2" in str(out[0].value)  # in flight there when the client closed


# -- the gateway: HTTP/1.1 has no PING, a silent member shows only by a call's deadline --------


class SilentHTTP:
    """An HTTP1Client to members that never answer: each request times out at its deadline
    (as the pool does), each stream stays open and silent until cancelled."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.requests: List[str] = []
        self.streams: List[Tuple[str, "Deferred[Any]"]] = []

    def request(self, method: bytes, url: str, **kw: Any) -> "Deferred[HTTPResponse]":
        self.requests.append(url.split("/v3")[0])
        d: Deferred[HTTPResponse] = Deferred()
        timeout: Optional[float] = kw.get("timeout")
        if timeout is not None:
            self.clock.callLater(timeout, d.errback, Timeout("no answer within the deadline"))
        return d

    def stream(self, method: bytes, url: str, **kw: Any) -> Any:
        done: Deferred[Any] = Deferred(lambda d: d.errback(CancelledError()))
        self.streams.append((url.split("/v3")[0], done))

        class _Handle:
            def __init__(self) -> None:
                self.done = done

            def cancel(self) -> None:
                if not done.called:
                    done.cancel()

            def pause(self) -> None:
                pass

            def resume(self) -> None:
                pass

        return _Handle()

    def close(self) -> "Deferred[None]":
        return succeed(None)


def test_gateway_leaves_a_member_silent_for_a_whole_deadline_and_its_watch_too() -> None:
    clock = task.Clock()
    http = SilentHTTP(clock)
    channel = GatewayChannel(["http://a:1", "http://b:2"], clock, http)
    closed: List[Optional[BaseException]] = []
    watch = channel.stream(WATCH, lambda m: None, closed.append)
    watch.send(rpc_pb2.WatchRequest())
    clock.advance(0)
    assert http.streams[0][0] == "http://a:1"
    got: List[Any] = []
    channel.unary(
        RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=2.0, idempotent=True, decode=str
    ).addBoth(got.append)
    clock.advance(2.0)
    assert isinstance(got[0].value, Timeout)  # typed, at its deadline
    # later calls go to b, and the watch ended so that it resumes there
    channel.unary(RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=2.0, idempotent=True, decode=str)
    assert http.requests == ["http://a:1", "http://b:2"]
    assert isinstance(closed[0], ConnectionFailed) and "http://a:1" in str(closed[0])
    assert http.streams[0][1].called  # its connection was closed
    clock.advance(2.0)
    assert clock.getDelayedCalls() == []


def test_a_write_answered_from_a_newer_term_is_acknowledged_not_superseded() -> None:
    """After an outage the client knows an old raft term; the first write's own answer shows
    the new one. That answer is the write's outcome, not a sign it was lost."""
    clock = task.Clock()
    channel = Channel(["http://a:1"], clock, endpoint_factory=Silent(), clock=clock)
    channel.terms.term = 2  # seen before the members were restarted
    got: List[Any] = []
    put(channel, got)
    (call,) = channel.terms.writes
    body = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=9, raft_term=3))
    data = body.SerializeToString()
    call.headers_received([(b":status", b"200")], False)  # type: ignore[attr-defined]
    call.data_received(b"\0" + len(data).to_bytes(4, "big") + data)  # type: ignore[attr-defined]
    call.headers_received([(b"grpc-status", b"0")], True)  # type: ignore[attr-defined]
    call.stream_ended()  # type: ignore[attr-defined]
    assert got and got[0].header.revision == 9, got
    assert channel.terms.term == 3 and not channel.terms.writes
    channel.close()
