"""TLS for the v2 client's default pool: python-etcd's ``cert``/``ca_cert`` options, on the one
TLS helper every client uses (:mod:`txetcd._tls`).

The server's certificate is always verified (against ``ca_cert``, or the system's trust store),
and its name (or IP address) checked against the host connected to.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

from twisted.internet.interfaces import IStreamClientEndpoint

from txetcd._tls import TLSOptions, endpoint_factory

__all__ = ["tls_endpoint_factory"]


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
    for value, what in ((ca_cert, "ca_cert"), (cert, "cert")):
        if value is not None and not isinstance(value, (str, tuple, list)):
            raise TypeError(f"{what} must be a file path, not {type(value).__name__}")
    key: Optional[str] = None
    cert_file: Optional[str]
    if isinstance(cert, (tuple, list)):
        cert_file, key = cert
    else:
        cert_file = cert
    options = None
    if cert_file is not None or ca_cert is not None:
        options = TLSOptions(ca_cert=ca_cert, cert=cert_file, key=key)
    return endpoint_factory(options)
