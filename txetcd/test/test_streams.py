"""The streaming call API against a real etcd: bidi Watch and LeaseKeepAlive streams.

The watch and lease features themselves come later; this proves the layer they stand on:
messages sent on an open stream at any time, responses delivered in order, half-close,
cancellation, and back-pressure that leaves other calls on the connection flowing.
"""

from __future__ import annotations

from typing import Any, List, Optional

import pytest_twisted
from twisted.internet import defer

from txetcd import Client
from txetcd._grpc.calls import GrpcStream
from txetcd._methods import LEASE_GRANT, LEASE_KEEPALIVE, WATCH
from txetcd._proto import rpc_pb2
from txetcd.test.helpers import grpc_channel


class Collector:
    """Collects decoded stream messages; ``wait(n)`` fires once n have arrived."""

    def __init__(self) -> None:
        self.messages: List[Any] = []
        self.closed: "defer.Deferred[Optional[BaseException]]" = defer.Deferred()
        self._waiters: List[tuple[int, defer.Deferred[None]]] = []

    def on_message(self, message: Any) -> None:
        self.messages.append(message)
        for n, d in list(self._waiters):
            if len(self.messages) >= n:
                self._waiters.remove((n, d))
                d.callback(None)

    def on_close(self, error: Optional[BaseException]) -> None:
        self.closed.callback(error)

    def wait(self, n: int, timeout: float = 10) -> "defer.Deferred[None]":
        from twisted.internet import reactor

        if len(self.messages) >= n:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((n, d))
        d.addTimeout(timeout, reactor)
        return d


def create(key: bytes, watch_id: int = 0, **kw: Any) -> Any:
    return rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=key, watch_id=watch_id, **kw)
    )


@pytest_twisted.ensureDeferred
async def test_bidi_watch_stream(etcd_client: Client, etcd_prefix: bytes) -> None:
    got = Collector()
    stream = etcd_client._channel.stream(WATCH, got.on_message, got.on_close)
    stream.send(create(etcd_prefix + b"a", watch_id=1))
    await got.wait(1)
    assert got.messages[0].created and got.messages[0].watch_id == 1
    # a second watch on the same open stream
    stream.send(create(etcd_prefix + b"b", watch_id=2, prev_kv=True))
    await got.wait(2)
    assert got.messages[1].created and got.messages[1].watch_id == 2
    await etcd_client.put(etcd_prefix + b"a", b"1")
    await etcd_client.put(etcd_prefix + b"b", b"2")
    await etcd_client.put(etcd_prefix + b"b", b"3")
    await got.wait(5)
    events = [
        (m.watch_id, ev.kv.key[-1:], ev.kv.value) for m in got.messages[2:] for ev in m.events
    ]
    assert events == [(1, b"a", b"1"), (2, b"b", b"2"), (2, b"b", b"3")]
    assert got.messages[4].events[0].prev_kv.value == b"2"
    # cancel one watch on the stream; the stream itself stays open
    cancel = rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=1))
    stream.send(cancel)
    await got.wait(6)
    assert got.messages[5].canceled and got.messages[5].watch_id == 1
    stream.cancel()
    error = await got.closed
    assert isinstance(error, defer.CancelledError)
    conn = grpc_channel(etcd_client).connection
    assert isinstance(stream, GrpcStream)
    assert conn is not None and stream.stream_id not in conn.streams


@pytest_twisted.ensureDeferred
async def test_paused_stream_holds_back_while_unary_calls_flow(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    got = Collector()
    stream = etcd_client._channel.stream(WATCH, got.on_message, got.on_close)
    stream.send(create(etcd_prefix, range_end=etcd_prefix[:-1] + b"0"))
    await got.wait(1)
    stream.pause()
    for i in range(20):
        await etcd_client.put(etcd_prefix + b"%d" % i, b"v%d" % i)  # unary calls keep flowing
    assert len(got.messages) == 1  # nothing delivered while paused
    stream.resume()
    await got.wait(21)
    assert [m.events[0].kv.value for m in got.messages[1:]] == [b"v%d" % i for i in range(20)]
    stream.cancel()
    await got.closed


@pytest_twisted.ensureDeferred
async def test_lease_keepalive_stream_and_half_close(etcd_client: Client) -> None:
    lease = await etcd_client._channel.unary(
        LEASE_GRANT,
        rpc_pb2.LeaseGrantRequest(TTL=30),
        timeout=5,
        idempotent=False,
        decode=lambda response: int(response.ID),
    )
    got = Collector()
    stream = etcd_client._channel.stream(LEASE_KEEPALIVE, got.on_message, got.on_close)
    for _ in range(3):
        stream.send(rpc_pb2.LeaseKeepAliveRequest(ID=lease))
    await got.wait(3)
    assert [(m.ID, m.TTL) for m in got.messages] == [(lease, 30)] * 3
    stream.close_send()  # half-close: the server ends the stream with status OK
    assert await got.closed is None
