"""TLS for the v2 client's default pool: a CA to trust and a client certificate.

The server's certificate is always verified (against ``ca_cert``, or the system's trust store),
and its name (or IP address) checked against the host connected to.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Tuple, Union

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = ["tls_endpoint_factory"]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _read(path: str, what: str) -> bytes:
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a file path, not {type(path).__name__}")
    with open(path, "rb") as f:
        return f.read()


def tls_endpoint_factory(
    *,
    cert: Union[None, str, Tuple[str, str]] = None,
    ca_cert: Optional[str] = None,
) -> Callable[[Any, str, str, int], IStreamClientEndpoint]:
    """An ``endpoint_factory`` for :class:`txetcd._http1.pool.PoolClient` speaking TLS for
    ``https`` URLs (plain TCP for ``http``).

    :param cert: a PEM file with the client certificate and its key, or ``(cert, key)`` files.
    :param ca_cert: a PEM file of one or more CA certificates to trust instead of the system's.
    The files are read now, so a wrong path fails at once.
    """
    from twisted.internet.ssl import (
        Certificate,
        PrivateCertificate,
        optionsForClientTLS,
        trustRootFromCertificates,
    )

    trust: Any = None
    if ca_cert is not None:
        blocks = _PEM_CERT.findall(_read(ca_cert, "ca_cert"))
        if not blocks:
            raise ValueError(f"ca_cert {ca_cert!r} holds no PEM certificate")
        certs = [Certificate.loadPEM(b) for b in blocks]
        trust = trustRootFromCertificates(certs)  # type: ignore[no-untyped-call]
    client: Any = None
    if cert is not None:
        if isinstance(cert, (tuple, list)):
            cert_file, key_file = cert
            pem = _read(cert_file, "cert") + b"\n" + _read(key_file, "cert key")
        else:
            pem = _read(cert, "cert")
        client = PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]

    def factory(reactor: Any, scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
        if scheme == "https":
            options = optionsForClientTLS(host, trustRoot=trust, clientCertificate=client)
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint

    return factory
