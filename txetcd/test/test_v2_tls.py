"""TLS for the v2 client: the server's certificate verified against ``ca_cert`` (and its IP
address), a client certificate presented. A TLS front (Twisted, requiring client certificates
from the test CA) forwards to a real etcd on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.protocols import portforward

from txetcd.testing import EtcdServer
from txetcd.v2 import Client, EtcdConnectionFailed

crypto = pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: Any,
    issuer: Tuple[str, Any],
    *,
    ca: bool = False,
    ip: str = "",
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(cert: x509.Certificate, key: Any = None) -> bytes:
    out = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        out += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Iterator[Dict[str, str]]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("txetcd test CA", ca_key, ("txetcd test CA", ca_key), ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("another CA", other_key, ("another CA", other_key), ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("etcd", server_key, ("txetcd test CA", ca_key), ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client", client_key, ("txetcd test CA", ca_key))
    files = {
        "ca": _pem(ca),
        "other_ca": _pem(other_ca),
        "server": _pem(server, server_key),
        "client": _pem(client, client_key),
        "client_cert": _pem(client),
        "client_key": _pem(client, client_key)[len(_pem(client)) :],
    }
    paths = {}
    for name, data in files.items():
        path = os.path.join(d, f"{name}.pem")
        with open(path, "wb") as f:
            f.write(data)
        paths[name] = path
    yield paths


@pytest.fixture
def tls_front(pki: Dict[str, str], etcd_v2_server: EtcdServer) -> Iterator[int]:
    """A TLS listener on 127.0.0.1 requiring a client certificate of the test CA, forwarding
    to etcd's plain port."""
    from twisted.internet.ssl import Certificate, PrivateCertificate

    with open(pki["server"], "rb") as f:
        server = PrivateCertificate.loadPEM(f.read())
    with open(pki["ca"], "rb") as f:
        ca = Certificate.loadPEM(f.read())
    options = server.options(ca)  # verify=True, requireCertificate=True
    factory = portforward.ProxyFactory("127.0.0.1", etcd_v2_server.client_port)
    port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield port.getHost().port
    finally:
        port.stopListening()


@pytest_twisted.ensureDeferred
async def test_tls_with_client_certificate(pki: Dict[str, str], tls_front: int) -> None:
    for cert in (pki["client"], (pki["client_cert"], pki["client_key"])):
        client = Client(
            "127.0.0.1",
            tls_front,
            protocol="https",
            ca_cert=pki["ca"],
            cert=cert,
            reactor=reactor,
            read_timeout=10,
        )
        try:
            assert client.base_uri == f"https://127.0.0.1:{tls_front}"
            assert (await client.set("/tls/k", "secret")).value == "secret"
            assert (await client.get("/tls/k")).value == "secret"
        finally:
            await client.close()


@pytest_twisted.ensureDeferred
async def test_tls_refuses_what_it_cannot_verify(pki: Dict[str, str], tls_front: int) -> None:
    cases: List[Dict[str, Any]] = [
        dict(ca_cert=pki["other_ca"], cert=pki["client"]),  # server cert not trusted
        dict(cert=pki["client"]),  # system trust only: the test CA is unknown
        dict(ca_cert=pki["ca"]),  # no client certificate: the server refuses
    ]
    for kw in cases:
        client = Client(
            "127.0.0.1", tls_front, protocol="https", reactor=reactor, read_timeout=5, **kw
        )
        try:
            with pytest.raises(EtcdConnectionFailed) as info:
                await client.get("/tls/k")
            assert info.value.maybe_sent is False
            with pytest.raises(EtcdConnectionFailed):  # a write too: never sent, not "unknown"
                await client.set("/tls/k", "v")
        finally:
            await client.close()
    # the certificate names 127.0.0.1, not localhost: the name is checked too
    client = Client(
        "localhost",
        tls_front,
        protocol="https",
        ca_cert=pki["ca"],
        cert=pki["client"],
        reactor=reactor,
        read_timeout=5,
    )
    try:
        with pytest.raises(EtcdConnectionFailed):
            await client.get("/tls/k")
    finally:
        await client.close()


def test_tls_bad_files(tmp_path: Any) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"nothing here")
    with pytest.raises(ValueError):
        Client(protocol="https", ca_cert=str(empty))
    with pytest.raises(OSError):
        Client(protocol="https", ca_cert=str(tmp_path / "missing.pem"))
