"""The one socket fast path: plain TCP only, never around a TLS layer."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import defer, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from txetcd._sockets import direct_sender, send_now
from txetcd.test.helpers import reactor


class Sink(Protocol):
    def connectionMade(self) -> None:
        self.factory.got.append(b"")

    def dataReceived(self, data: bytes) -> None:
        self.factory.got[-1] += data


class Client(Protocol):
    def __init__(self) -> None:
        self.made: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)


@pytest_twisted.ensureDeferred
async def test_plain_tcp_gets_the_direct_path_and_bytes_arrive_in_order() -> None:
    factory = Factory.forProtocol(Sink)
    factory.got = []  # type: ignore[attr-defined]
    port = reactor().listenTCP(0, factory, interface="127.0.0.1")
    try:
        client = Client()
        endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", port.getHost().port)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.made
        send = direct_sender(client.transport)
        assert send is not None
        client.transport.write(b"buffered ")  # type: ignore[union-attr]  # Twisted buffers it
        send(b"then direct")  # must not overtake the buffered bytes
        send_now(client.transport, b"!")
        got: List[bytes] = factory.got  # type: ignore[attr-defined]
        for _ in range(200):
            if got and got[-1] == b"buffered then direct!":
                break
            d: defer.Deferred[None] = defer.Deferred()
            reactor().callLater(0.01, d.callback, None)
            await d
        assert got[-1] == b"buffered then direct!"
        client.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_tls_transport_never_gets_the_direct_path() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_options = ssl.PrivateCertificate.loadPEM(
        cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
    ).options()
    factory = Factory.forProtocol(Sink)
    factory.got = []  # type: ignore[attr-defined]
    port = reactor().listenSSL(0, factory, server_options, interface="127.0.0.1")
    try:
        client = Client()
        trust = ssl.Certificate.loadPEM(ca.cert_pem.bytes())
        endpoint = wrapClientTLS(
            ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust),
            TCP4ClientEndpoint(reactor(), "127.0.0.1", port.getHost().port),
        )
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.made
        tls: Any = client.transport
        assert hasattr(tls, "socket")  # the TLS layer forwards it: why a hasattr test is wrong
        assert direct_sender(tls) is None
        client.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        await port.stopListening()


def test_test_transports_just_get_write() -> None:
    transport = StringTransport()
    assert direct_sender(transport) is None
    send_now(transport, b"abc")
    assert transport.value() == b"abc"
