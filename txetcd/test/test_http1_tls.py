"""HTTP/1.1 over TLS: what a TLS failure says about whether a request reached the server.

A handshake refused (a certificate either side rejects) means no byte of the request reached
etcd: the request may be sent again. A TLS error *after* the handshake is a broken connection
like any other: a write may have been applied (OutcomeUnknown), never silently re-sent.
"""

from __future__ import annotations

from typing import Any, Iterator, List

import pytest
import pytest_twisted
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol

from txetcd import ConnectionFailed, OutcomeUnknown
from txetcd._http1.pool import PoolClient
from txetcd.test.helpers import reactor

trustme = pytest.importorskip("trustme")


class GarbageAfterRequest(Protocol):
    """Completes the handshake, reads the request, then writes bytes that are no TLS record
    straight onto the TCP connection: the client's TLS layer fails after the handshake."""

    def dataReceived(self, data: bytes) -> None:
        self.factory.requests.append(data)
        raw: Any = self.transport.transport  # type: ignore[union-attr]  # TCP, under TLS
        raw.write(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)  # an application record with no MAC


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: Any) -> Iterator[Any]:
    cert = ca.issue_cert("127.0.0.1")
    options = ssl.PrivateCertificate.loadPEM(
        cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
    ).options()
    factory = Factory.forProtocol(GarbageAfterRequest)
    factory.requests = []  # type: ignore[attr-defined]
    port = reactor().listenSSL(0, factory, options, interface="127.0.0.1")
    port.factory_ = factory
    yield port
    port.stopListening()


def pool(ca: Any, trusted: bool) -> PoolClient:
    trust = ssl.Certificate.loadPEM(ca.cert_pem.bytes()) if trusted else None

    def endpoint(r: Any, scheme: str, host: str, port: int) -> Any:
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust)
        return wrapClientTLS(options, HostnameEndpoint(r, host, port))

    return PoolClient(reactor(), connect_timeout=5.0, endpoint_factory=endpoint)


async def failure_of(d: "defer.Deferred[Any]") -> BaseException:
    try:
        await d
    except BaseException as e:
        return e
    raise AssertionError("the request succeeded")


@pytest_twisted.ensureDeferred
async def test_tls_error_after_the_handshake_is_outcome_unknown_for_a_write(
    ca: Any, tls_server: Any
) -> None:
    http = pool(ca, trusted=True)
    url = f"https://127.0.0.1:{tls_server.getHost().port}/v3/kv/put"
    try:
        err = await failure_of(
            http.request(b"POST", url, body=b"{}", timeout=10.0, idempotent=False)
        )
        assert tls_server.factory_.requests, "the request reached the server"
        assert isinstance(err, OutcomeUnknown), repr(err)
        read = await failure_of(
            http.request(b"POST", url, body=b"{}", timeout=10.0, idempotent=True)
        )
        assert isinstance(read, ConnectionFailed) and read.maybe_sent, repr(read)
    finally:
        await http.close()


@pytest_twisted.ensureDeferred
async def test_a_refused_handshake_is_never_sent(ca: Any, tls_server: Any) -> None:
    http = pool(ca, trusted=False)  # the server's certificate is not trusted
    url = f"https://127.0.0.1:{tls_server.getHost().port}/v3/kv/put"
    try:
        err = await failure_of(
            http.request(b"POST", url, body=b"{}", timeout=10.0, idempotent=False)
        )
        assert isinstance(err, ConnectionFailed) and not err.maybe_sent, repr(err)
        requests: List[bytes] = tls_server.factory_.requests
        assert requests == []
    finally:
        await http.close()
