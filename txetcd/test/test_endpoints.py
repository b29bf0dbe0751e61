"""Endpoint choice: a pinned endpoint, failing ones left alone for a jittered backoff on the
clock, every endpoint still tried before a call is failed, and failures named per endpoint."""

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError

from txetcd import Client, ConnectionFailed
from txetcd._grpc.channel import Channel, Endpoint
from txetcd._methods import RANGE
from txetcd._proto import rpc_pb2
from txetcd.test.helpers import reactor
from txetcd.testing import EtcdServer, free_port


class Refusing:
    """An endpoint factory that records connect attempts and refuses them all."""

    def __init__(self) -> None:
        self.attempts: List[str] = []

    def __call__(self, reactor: Any, endpoint: Endpoint) -> Any:
        attempts = self.attempts

        class _Refused:
            def connect(self, factory: Any) -> "Deferred[Any]":
                attempts.append(endpoint.url)
                return fail(ConnectionRefusedError(endpoint.host, endpoint.port))

        return _Refused()


def call(channel: Channel) -> List[Any]:
    out: List[Any] = []
    channel.unary(
        RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=None, idempotent=True, decode=lambda m: m
    ).addBoth(out.append)
    return out


def test_every_endpoint_is_tried_then_the_call_fails_naming_each() -> None:
    clock = task.Clock()
    refusing = Refusing()
    urls = ["http://a:1", "http://b:2", "http://c:3"]
    channel = Channel(urls, clock, endpoint_factory=refusing, clock=clock, max_attempts=1)
    (out,) = [call(channel)]
    assert refusing.attempts == urls
    err = out[0].value
    assert isinstance(err, ConnectionFailed) and not err.maybe_sent
    for url in urls:
        assert url in str(err)
    assert all(e.failures == 1 and e.retry_at > 0 for e in channel.endpoints)


def test_endpoints_backing_off_are_tried_last_and_soonest_first() -> None:
    clock = task.Clock()
    refusing = Refusing()
    channel = Channel(
        ["http://a:1", "http://b:2", "http://c:3"],
        clock,
        endpoint_factory=refusing,
        clock=clock,
        max_attempts=1,
    )
    a, b, c = channel.endpoints
    channel._mark_failed(a, "refused")
    clock.advance(0.01)
    channel._mark_failed(c, "refused")
    c.retry_at = a.retry_at + 1  # c backs off longer than a
    assert channel._candidates() == [b, a, c]
    clock.advance(10)  # every backoff over: back to the pinned order
    assert channel._candidates()[0] is channel.endpoints[channel._endpoint_index]


def test_backoff_grows_with_failures_in_a_row_and_resets_on_success() -> None:
    clock = task.Clock()
    channel = Channel(["http://a:1"], clock, endpoint_factory=Refusing(), clock=clock)
    channel.endpoint_backoff = lambda n: [0.1, 0.2, 0.4][min(n, 2)]
    (a,) = channel.endpoints
    waits = []
    for _ in range(3):
        channel._mark_failed(a, "refused")
        waits.append(round(a.retry_at - clock.seconds(), 6))
    assert waits == [0.1, 0.2, 0.4] and a.last_error == "refused"


@pytest_twisted.ensureDeferred
async def test_a_dead_endpoint_before_a_live_one(etcd_server: EtcdServer) -> None:
    """The first endpoint refuses: calls go to the second, and the dead one is not tried again
    while it backs off."""
    dead = f"http://127.0.0.1:{free_port()}"
    client = Client([dead, etcd_server.endpoint], reactor=reactor(), timeout=10)
    try:
        await client.put(b"ep/k", b"v")
        channel = client._channel
        assert isinstance(channel, Channel)
        first, second = channel.endpoints
        assert first.failures == 1 and "refused" in first.last_error.lower()
        assert channel.connection is not None and channel.connection.endpoint is second
        assert (await client.get(b"ep/k")).value == b"v"
    finally:
        await client.close()
