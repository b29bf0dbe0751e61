"""Failover on a task.Clock (issue 20): where calls go once the pinned member falls silent, and
what every endpoint being down looks like, without processes or sockets."""

from __future__ import annotations

from typing import Any, List

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransportWithDisconnection

from txetcd import OutcomeUnknown
from txetcd._channel import Channel, Endpoint
from txetcd._methods import PUT
from txetcd._proto import rpc_pb2


class Silent:
    """An endpoint factory whose connections are made at once and never hear from the server
    (a black hole: TCP connects, nothing answers)."""

    def __init__(self) -> None:
        self.attempts: List[str] = []
        self.protocols: List[Any] = []

    def __call__(self, reactor: Any, endpoint: Endpoint) -> Any:
        outer = self

        class _Connect:
            def connect(self, factory: Any) -> "Deferred[Any]":
                outer.attempts.append(endpoint.url)
                protocol = factory.buildProtocol(None)
                transport = StringTransportWithDisconnection()
                transport.protocol = protocol
                protocol.makeConnection(transport)
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
    clock.advance(5)  # silence: a PING
    clock.advance(1)  # unanswered: the connection is dropped
    assert isinstance(first[0].value, OutcomeUnknown)
    assert silent.attempts == ["http://a:1", "http://b:2"]
    a, b = channel.endpoints
    assert a.failures == 1 and "PING" in a.last_error
    assert again == []  # sent on the connection to b
    channel.close()
    assert isinstance(again[0].value, Exception)
