"""HTTP/1.1 for the JSON gateway and the v2 API: one interface, two implementations.

:class:`HTTP1Client` is the interface: :meth:`~HTTP1Client.request` for a whole answer,
:meth:`~HTTP1Client.stream` for a body read line by line (watch, lease keepalive, observe, v2
``wait``). This module holds the interface and what the implementations share (the answer and
stream types, the errors and the retry rule, URL and header checks).
:class:`~txetcd._http1.pool.PoolClient` is a lean keep-alive pool (responses parsed by
``httptools``); :class:`~txetcd._http1.treq.TreqClient` runs the same calls through any treq
``HTTPClient`` or ``IAgent`` (custom TLS, proxies, ``treq.testing.StubTreq``).

Both follow the same rules:

- One request per connection at a time (etcd's Go server answers a connection's requests one
  after the other, so pipelining gains nothing), at most ``max_connections_per_endpoint``
  connections per endpoint; requests beyond that wait in line. A stream, or a request made with
  ``exclusive=True`` (``lock``, ``campaign``), gets a connection of its own, outside that bound,
  closed when it ends.
- No hidden retries. A connection that could not be made, or that was lost before the request
  was written, fails with :class:`~txetcd.ConnectionFailed` whose ``maybe_sent`` is ``False``:
  safe to send again. Lost after the request was written: a non-idempotent request fails with
  :class:`~txetcd.OutcomeUnknown`, an idempotent one with ``ConnectionFailed`` whose
  ``maybe_sent`` is ``True`` (the caller decides whether to send it again).
- A deadline (``timeout``, on the injected clock) fails the call with :class:`~txetcd.Timeout`,
  or :class:`~txetcd.WriteTimeout` when a non-idempotent request had been written; the
  connection is closed, so a late answer cannot be mistaken for the next one's.
- Sockets are never half-closed (etcd answers a half-closed request with 408).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure

from txetcd._errors import (
    ConnectionFailed,
    EtcdError,
    HTTPStatusError,
    OutcomeUnknown,
    ProtocolViolation,
    Timeout,
    WriteTimeout,
)

__all__ = [
    "HTTP1Client",
    "HTTPResponse",
    "HTTPStatusError",
    "StreamHandle",
    "HeadersArg",
    "maybe_sent",
]

#: ``Failure(exc)``, or ``Failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

#: request headers: a mapping or a sequence of pairs, names and values as bytes
HeadersArg = Union[Mapping[bytes, bytes], Sequence[Tuple[bytes, bytes]]]
#: (scheme, host, port): one endpoint's connections
_Key = Tuple[str, str, int]


class HTTPResponse:
    """One HTTP answer.

    :ivar status: the status code.
    :ivar headers: header names in lower case (bytes); a repeated header's values are joined
        with ``b", "``.
    :ivar body: the whole body (``b""`` for the headers-only answer of a stream).
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Dict[bytes, bytes], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"HTTPResponse({self.status}, {len(self.body)} bytes)"


def maybe_sent(error: BaseException) -> bool:
    """Whether a failed request may have reached the server (see :class:`HTTP1Client`)."""
    if isinstance(error, OutcomeUnknown):
        return True
    return bool(getattr(error, "maybe_sent", False))


def _connection_failed(message: str, *, sent: bool) -> ConnectionFailed:
    return ConnectionFailed(message, maybe_sent=sent)


def _lost_error(why: str, *, written: bool, idempotent: bool) -> EtcdError:
    """The error for a connection lost during a request (the retry rule in one place)."""
    if not written:
        return _connection_failed(f"{why} (the request was not sent)", sent=False)
    if idempotent:
        return _connection_failed(f"{why} (the request may have been sent)", sent=True)
    return OutcomeUnknown(
        f"the write's outcome is unknown: {why}",
        cause=_connection_failed(why, sent=True),
    )


def _timeout_error(what: str, *, written: bool, idempotent: bool) -> Timeout:
    if written and not idempotent:
        return WriteTimeout(
            f"no answer within the deadline; the write's outcome is unknown ({what})"
        )
    if written:
        return Timeout(f"no answer to {what} within the deadline")
    return Timeout(f"could not send {what} before the deadline")


class StreamHandle:
    """A streaming request in progress.

    :ivar done: fires with the final status once the body has ended (the last line delivered),
        or fails: :class:`HTTPStatusError` for a non-2xx answer (its body is the error's),
        :class:`~txetcd.ConnectionFailed` when the connection breaks, the exception ``on_line``
        raised, or ``CancelledError`` after :meth:`cancel`.
    """

    def __init__(self, canceller: Callable[[], None]) -> None:
        self.done: Deferred[int] = Deferred(lambda d: self.cancel())
        self._canceller = canceller
        self._response: Optional[Union[HTTPResponse, Failure]] = None
        self._response_waiters: List[Deferred[HTTPResponse]] = []
        self.ended = False
        #: reading is paused (:meth:`pause`)
        self.paused = False
        self._transport: Any = None

    @property
    def response(self) -> "Deferred[HTTPResponse]":
        """A new Deferred for the status and headers (body ``b""``), before the first line.

        It fails as ``done`` does if the stream ends before an answer; each access gives a new
        Deferred, so one nobody asked for cannot leave an unhandled error behind.
        """
        if self._response is None:
            d: Deferred[HTTPResponse] = Deferred()
            self._response_waiters.append(d)
            return d
        if isinstance(self._response, Failure):
            return fail(self._response)
        return succeed(self._response)

    def pause(self) -> None:
        """Stop reading the body (back-pressure: the server's writes stall on TCP) until
        :meth:`resume`. Lines already read are still delivered."""
        if not self.paused:
            self.paused = True
            if self._transport is not None and not self.ended:
                self._transport.pauseProducing()

    def resume(self) -> None:
        """Read the body again after :meth:`pause`."""
        if self.paused:
            self.paused = False
            if self._transport is not None and not self.ended:
                self._transport.resumeProducing()

    def _reading_from(self, transport: Any) -> None:
        """The implementation tells where the body is read from (a pausable producer)."""
        self._transport = transport
        if self.paused and transport is not None:
            transport.pauseProducing()

    def cancel(self) -> None:
        """Close the stream's connection; ``done`` fails with ``CancelledError``."""
        if self.ended:
            return
        self._end(_failure(CancelledError()))
        self._canceller()

    # -- for the implementations -------------------------------------------------------------
    def _answered(self, response: HTTPResponse) -> None:
        self._response = response
        waiters, self._response_waiters = self._response_waiters, []
        for d in waiters:
            d.callback(response)

    def _end(self, result: Union[int, Failure]) -> None:
        if self.ended:
            return
        self.ended = True
        if self._response is None:
            self._response = (
                result if isinstance(result, Failure) else _failure(ProtocolViolation("no answer"))
            )
            waiters, self._response_waiters = self._response_waiters, []
            for d in waiters:
                d.errback(self._response)
        if isinstance(result, Failure):
            self.done.errback(result)
        else:
            self.done.callback(result)


class _LineBuffer:
    """Cut a body into lines (without the ``\\n``), holding a partial line until its end."""

    __slots__ = ("_partial", "_on_line", "stopped")

    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self._partial = b""
        self._on_line = on_line
        self.stopped = False

    def feed(self, data: bytes) -> None:
        if b"\n" not in data:
            self._partial += data
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self.stopped:
                return
            self._on_line(line)

    def finish(self) -> None:
        """The body ended: a last line without a newline is still a line."""
        if self._partial and not self.stopped:
            line, self._partial = self._partial, b""
            self._on_line(line)


class HTTP1Client(Protocol):
    """What the gateway and v2 transports need from HTTP/1.1 (see the module docstring)."""

    def request(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        timeout: Optional[float] = None,
        idempotent: bool = False,
        exclusive: bool = False,
    ) -> "Deferred[HTTPResponse]":
        """Send one request; fires with the whole answer, whatever its status.

        :param method: e.g. ``b"POST"``.
        :param url: ``http://host:port/path?query`` (``https`` too).
        :param headers: extra request headers (``Host``, ``Content-Length`` are added).
        :param body: the request body (``Content-Length`` is always sent for it).
        :param timeout: seconds, on the injected clock, from this call to the whole answer
            (waiting for a connection included); ``None``: no deadline.
        :param idempotent: the request may safely be sent twice (a read). Decides the error
            when the connection is lost after sending: ``ConnectionFailed`` with
            ``maybe_sent`` (idempotent) or ``OutcomeUnknown``, ``Timeout`` or ``WriteTimeout``.
        :param exclusive: a blocking call (``lock``, ``campaign``): a connection of its own,
            outside the per-endpoint bound, closed afterwards.
        """

    def stream(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        on_line: Callable[[bytes], None],
    ) -> StreamHandle:
        """Send one request on a connection of its own and deliver the 2xx body line by line.

        ``on_line`` gets each line without its ``\\n`` (a partial line is held until the rest
        arrives; a last line without a newline is delivered when the body ends). An exception
        from ``on_line`` closes the stream and fails ``done`` with it. There is no deadline:
        call :meth:`StreamHandle.cancel`.
        """

    def close(self) -> "Deferred[None]":
        """Close every connection; pending calls fail with :class:`~txetcd.ClientClosed`."""


# -- request building (shared) -----------------------------------------------------------------


def _check_args(method: object, url: object, headers: object, body: object) -> None:
    if not isinstance(method, bytes):
        raise TypeError(f"method must be bytes, not {type(method).__name__}")
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    if type(headers) is not tuple and not isinstance(headers, (Mapping, Sequence)):
        raise TypeError(f"headers must be a mapping or a sequence, not {type(headers).__name__}")


def _header_pairs(headers: HeadersArg) -> List[Tuple[bytes, bytes]]:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    for name, value in pairs:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError(
                f"header names and values must be bytes, not {type(name).__name__}/"
                f"{type(value).__name__}"
            )
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b":" in name:
            raise ValueError(f"invalid header {name!r}: {value!r}")
    return pairs


def _split_url(url: str) -> Tuple[_Key, bytes, bytes]:
    """((scheme, host, port), Host header, request target) of an ``http(s)://`` URL."""
    # Clients send the same URLs again and again (a key's path, a lease call): remembered.
    known = _URLS.get(url)
    if known is None:
        known = _split_new_url(url)
        if len(_URLS) >= 4096:
            _URLS.clear()
        _URLS[url] = known
    return known


_URLS: Dict[str, Tuple[_Key, bytes, bytes]] = {}


def _split_new_url(url: str) -> Tuple[_Key, bytes, bytes]:
    # The scheme and authority repeat on every call: they are parsed once and remembered.
    slash = url.find("/", url.find("://") + 3) if "://" in url else -1
    base = url if slash < 0 else url[:slash]
    known = _BASES.get(base)
    if known is None:
        known = _parse_base(base, url)
        if len(_BASES) < 1024:
            _BASES[base] = known
    target = "/" if slash < 0 else url[slash:]
    if "#" in target:
        target = target[: target.index("#")]
    try:
        raw = target.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"URL {url!r} is not ASCII (percent-encode it)") from None
    return known[0], known[1], raw


_BASES: Dict[str, Tuple[_Key, bytes]] = {}


def _parse_base(base: str, url: str) -> Tuple[_Key, bytes]:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL {url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.netloc.rpartition("@")[2]
    return (parts.scheme, parts.hostname, port), host.encode("idna")
