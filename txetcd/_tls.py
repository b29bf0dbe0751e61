"""TLS for every client (v3 over gRPC, v3 over the JSON gateway, v2): one place.

:class:`TLSOptions` holds what a user gives (a CA to trust, a client certificate and key, the
name to verify, or a ready-made Twisted connection creator) and makes the connection creator for
each endpoint. The server's certificate is verified by default: its chain against ``ca_cert``
(or the system's trust store) and its name (a DNS name, or an IP address as an IP SAN) against
the endpoint's host or ``server_name``. Skipping verification is an explicit
``insecure_skip_verify=True``. Files are read when the options are made, so a wrong path fails at
once; no key material ever appears in a repr or a message.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Protocol, Sequence, Union

from OpenSSL.SSL import WantReadError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from txetcd._sockets import send_now

__all__ = [
    "TLSOptions",
    "PEMSource",
    "BatchingTLSEndpoint",
    "endpoint_factory",
    "load_pem",
    "tls_error_text",
]

#: a PEM file's path, or the PEM bytes themselves
PEMSource = Union[str, bytes, "os.PathLike[str]"]

_BEGIN = b"-----BEGIN "


def load_pem(source: object, what: str) -> bytes:
    """PEM bytes from a path or from the bytes themselves; a clear error for anything else."""
    if isinstance(source, bytes):
        if _BEGIN not in source:
            raise ValueError(f"{what}: the bytes given hold no PEM block (give a path or PEM)")
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:  # e.g. FileNotFoundError, with the option named
            raise OSError(e.errno, f"{what}: cannot read {path!r}: {e.strerror or e}") from None
        if _BEGIN not in data:
            raise ValueError(f"{what}: {path!r} holds no PEM block")
        return data
    raise TypeError(f"{what} must be a file path or PEM bytes, not {type(source).__name__}")


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return "<PEM bytes>"


class TLSOptions:
    """How to speak TLS to ``https://`` endpoints.

    :param ca_cert: CA certificate(s) to trust (a PEM path or PEM bytes); the system's trust
        store when not given.
    :param cert: the client certificate (path or PEM bytes), for servers that want one; the
        file may also hold its key.
    :param key: the client certificate's private key, if not in ``cert``.
    :param server_name: the name to verify (and send as SNI) instead of the endpoint's host.
    :param insecure_skip_verify: do not verify the server at all (a warning is logged).
    :param creator: a ready-made Twisted ``IOpenSSLClientConnectionCreator`` (or a function of
        the host giving one), for setups the options above cannot express; used as it is.
    """

    def __init__(
        self,
        *,
        ca_cert: Optional[PEMSource] = None,
        cert: Optional[PEMSource] = None,
        key: Optional[PEMSource] = None,
        server_name: Optional[str] = None,
        insecure_skip_verify: bool = False,
        creator: Any = None,
    ) -> None:
        from twisted.internet import ssl

        if server_name is not None and not isinstance(server_name, str):
            raise TypeError(f"server_name must be a str, not {type(server_name).__name__}")
        if not isinstance(insecure_skip_verify, bool):
            raise TypeError("insecure_skip_verify must be a bool")
        if key is not None and cert is None:
            raise TypeError("key= needs cert=")
        if creator is not None and any(v is not None for v in (ca_cert, cert, key, server_name)):
            raise TypeError("tls= is used as it is: give either it or ca_cert/cert/key/server_name")
        self.server_name = server_name
        self.insecure_skip_verify = insecure_skip_verify
        self._creator = creator
        self._described = {
            "ca_cert": None if ca_cert is None else _describe(ca_cert),
            "cert": None if cert is None else _describe(cert),
        }
        self._trust: Any = None
        if ca_cert is not None:
            pem = load_pem(ca_cert, "ca_cert")
            blocks = [b for b in _pem_blocks(pem) if b"CERTIFICATE" in b.split(b"\n", 1)[0]]
            if not blocks:
                raise ValueError("ca_cert holds no certificate")
            try:
                certs = [ssl.Certificate.loadPEM(b) for b in blocks]
            except Exception as e:
                raise ValueError(f"ca_cert: not a usable certificate ({e})") from None
            self._trust = ssl.trustRootFromCertificates(certs)  # type: ignore[no-untyped-call]
        self._client: Any = None
        if cert is not None:
            pem = load_pem(cert, "cert")
            if key is not None:
                pem = pem + b"\n" + load_pem(key, "key")
            try:
                self._client = ssl.PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]
            except Exception:
                raise ValueError(
                    "cert/key: not a certificate with its private key (give key= if the key is "
                    "in a file of its own)"
                ) from None

    def __repr__(self) -> str:
        parts = [f"{k}={v}" for k, v in self._described.items() if v is not None]
        if self._client is not None:
            parts.append("key=<hidden>")
        if self.server_name is not None:
            parts.append(f"server_name={self.server_name!r}")
        if self.insecure_skip_verify:
            parts.append("insecure_skip_verify=True")
        if self._creator is not None:
            parts.append("tls=<custom>")
        return f"TLSOptions({', '.join(parts)})"

    def creator(self, host: str, alpn: Sequence[bytes] = ()) -> IOpenSSLClientConnectionCreator:
        """The connection creator for one endpoint's host, offering ``alpn`` protocols."""
        from twisted.internet import ssl

        custom = self._creator
        if custom is not None:
            made: IOpenSSLClientConnectionCreator = custom(host) if callable(custom) else custom
            return made
        protocols = list(alpn) or None
        if self.insecure_skip_verify:
            extra: dict[str, Any] = {}
            if self._client is not None:
                extra = {
                    "privateKey": self._client.privateKey.original,
                    "certificate": self._client.original,
                }
            options: Any = ssl.CertificateOptions(
                verify=False, acceptableProtocols=protocols, **extra
            )
            return options  # type: ignore[no-any-return]
        return ssl.optionsForClientTLS(
            self.server_name or host,
            trustRoot=self._trust,
            clientCertificate=self._client,
            acceptableProtocols=protocols,
        )


def endpoint_factory(
    tls: Optional["TLSOptions"], alpn: Sequence[bytes] = ()
) -> Callable[[Any, str, str, int], IStreamClientEndpoint]:
    """An ``(reactor, scheme, host, port) -> endpoint`` function: TCP for ``http``, TLS made by
    ``tls`` (the system's trust store when ``None``) for ``https``; for the HTTP/1.1 pool."""
    options = tls if tls is not None else None

    def factory(reactor: Any, scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
        if scheme == "https":
            made = options if options is not None else TLSOptions()
            endpoint = wrapClientTLS(made.creator(host, alpn), endpoint)
        return endpoint

    return factory


class ReadBatching(Protocol):
    """A protocol that can gather reads (:class:`txetcd._h2.connection.H2Connection`)."""

    def hold_reads(self) -> None: ...

    def release_reads(self) -> None: ...


class _BatchingTLSProtocol(TLSMemoryBIOProtocol):
    """Twisted's TLS protocol, handing the records of one TCP read over as one read, and
    sending each record at once.

    The HTTP/2 connection already gathers its writes (all those made while a read is handled
    leave as one), so Twisted's write aggregation (a ``callLater(0)`` per write) would only
    add a reactor turn; and the encrypted bytes go onto the socket at once when nothing is
    buffered (:func:`txetcd._sockets.send_now`) instead of a turn later: TLS costs no extra
    ``epoll`` round per call. Only ciphertext takes that path.
    """

    wrappedProtocol: Any

    def dataReceived(self, data: bytes) -> None:
        inner: ReadBatching = self.wrappedProtocol
        inner.hold_reads()
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        finally:
            inner.release_reads()

    def _flushSendBIO(self) -> None:
        try:
            records = self._tlsConnection.bio_read(2**15)
        except WantReadError:
            return  # nothing to send
        send_now(self.transport, records)


class _BatchingTLSFactory(TLSMemoryBIOFactory):
    protocol = _BatchingTLSProtocol


@implementer(IStreamClientEndpoint)
class BatchingTLSEndpoint:
    """``wrapClientTLS`` for a protocol that gathers reads (:class:`ReadBatching`): each TCP
    read's TLS records reach it as one read, so a burst of answers is handled in one pass."""

    def __init__(self, creator: IOpenSSLClientConnectionCreator, inner: IStreamClientEndpoint):
        self._creator = creator
        self._inner = inner

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        wrapper = _BatchingTLSFactory(self._creator, True, protocolFactory)
        connected: Deferred[Any] = self._inner.connect(wrapper)
        return connected.addCallback(lambda protocol: protocol.wrappedProtocol)


def _pem_blocks(pem: bytes) -> list[bytes]:
    out: list[bytes] = []
    rest = pem
    while True:
        start = rest.find(_BEGIN)
        if start < 0:
            return out
        end = rest.find(b"-----END ", start)
        if end < 0:
            return out
        stop = rest.find(b"-----", end + 9)
        if stop < 0:
            return out
        out.append(rest[start : stop + 5])
        rest = rest[stop + 5 :]


def tls_error_text(reason: Union[Failure, BaseException]) -> str:
    """A TLS failure said plainly ("certificate verify failed"), or the error's own text."""
    error = reason.value if isinstance(reason, Failure) else reason
    args = getattr(error, "args", ())
    if args and isinstance(args[0], list):
        texts = [str(item[-1]) for item in args[0] if isinstance(item, tuple) and item]
        if texts:
            return "TLS: " + "; ".join(t for t in texts if t)
    return str(error) or type(error).__name__
