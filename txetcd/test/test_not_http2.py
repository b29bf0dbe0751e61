"""A client pointed at something that is not an HTTP/2 (gRPC) server says so, naming the server,
instead of reporting an HTTP/2 frame-size error; and a write sent there is not OutcomeUnknown."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from txetcd import Client, ConnectionFailed, OutcomeUnknown
from txetcd._h2.connection import H2Connection, H2Stream
from txetcd._h2.frames import _GOAWAY, GOAWAY, PROTOCOL_ERROR, SETTINGS, frame, iter_frames


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


class Garbage(Protocol):
    """Says something that is not HTTP at all as soon as the client connects (a TLS alert)."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"\x15\x03\x01\x00\x02\x02\x46")


async def serving(factory: Any) -> AsyncIterator[str]:
    port = reactor().listenTCP(0, factory, interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port.getHost().port}"
    finally:
        await port.stopListening()


@pytest_twisted.async_yield_fixture
async def http1_url() -> AsyncIterator[str]:
    """A real HTTP/1.1 server (twisted.web): it answers the HTTP/2 preface with a 400."""
    async for url in serving(Site(Resource())):
        yield url


@pytest_twisted.async_yield_fixture
async def garbage_url() -> AsyncIterator[str]:
    async for url in serving(Factory.forProtocol(Garbage)):
        yield url


Call = Callable[[Client], Any]
CALLS = {
    "get": lambda c: c.get(b"k"),
    "put": lambda c: c.put(b"k", b"v"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=list(CALLS))
@pytest_twisted.ensureDeferred
async def test_an_http1_server_is_named(http1_url: str, call: Call) -> None:
    client = Client(http1_url, reactor=reactor(), timeout=10)
    try:
        with pytest.raises(ConnectionFailed) as info:
            await call(client)
    finally:
        await client.close()
    assert not isinstance(info.value, OutcomeUnknown)  # nothing ran: a write may be sent again
    message = str(info.value)
    # found while connecting (a connection is ready only once the server's SETTINGS arrive)
    assert message.startswith(
        f"could not connect to etcd: {http1_url}: the server did not speak HTTP/2 (gRPC): "
        "it answered in HTTP/1 ('HTTP/1.1 400 Bad Request')"
    )
    assert "transport='gateway'" in message and "frame" not in message


@pytest_twisted.ensureDeferred
async def test_garbage_is_named(garbage_url: str) -> None:
    client = Client(garbage_url, reactor=reactor(), timeout=10)
    try:
        with pytest.raises(ConnectionFailed) as info:
            await client.put(b"k", b"v")
    finally:
        await client.close()
    assert not isinstance(info.value, OutcomeUnknown)
    assert str(info.value).startswith(
        f"could not connect to etcd: {garbage_url}: the server did not speak HTTP/2 (gRPC): "
        "its first bytes were b'\\x15\\x03\\x01\\x00\\x02\\x02F'"
    )


def connection() -> tuple[H2Connection, StringTransport, H2Stream]:
    conn = H2Connection(task.Clock(), keepalive_interval=None)
    transport = StringTransport()
    conn.makeConnection(transport)
    stream = H2Stream()
    conn.start_stream(stream, b"\x83")
    transport.clear()
    return conn, transport, stream


def test_a_greeting_split_across_reads() -> None:
    """The server's SETTINGS may come a byte at a time; so may an HTTP/1 status line."""
    conn, transport, stream = connection()
    for byte in frame(SETTINGS, 0, 0, b""):
        conn.dataReceived(bytes([byte]))
    assert conn.lost is None and not transport.disconnecting
    assert any(f[0] == SETTINGS for f in iter_frames(transport.value()))  # the ACK

    conn, transport, stream = connection()
    for piece in (b"H", b"TT", b"P/1.0 505 HTTP Version Not Supported\r\n\r\n"):
        conn.dataReceived(piece)
    assert conn.lost is not None
    assert "it answered in HTTP/1 ('HTTP/1.0 505 HTTP Version Not Supported')" in conn.lost.reason
    (goaway,) = [f for f in iter_frames(transport.value()) if f[0] == GOAWAY]
    assert _GOAWAY.unpack_from(goaway[3]) == (0, PROTOCOL_ERROR)  # RFC 9113 3.4
    assert transport.disconnecting


def test_the_other_end_is_named_without_an_endpoint() -> None:
    conn, transport, stream = connection()
    conn.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert conn.lost is not None
    assert conn.lost.reason.startswith("the server at 192.168.1.1:54321 did not speak HTTP/2")
