"""HTTP/1.1 for the JSON gateway and the v2 API: one interface, two implementations.

:class:`HTTP1Client` is the interface: :meth:`~HTTP1Client.request` for a whole answer,
:meth:`~HTTP1Client.stream` for a body read line by line (watch, lease keepalive, observe, v2
``wait``). :class:`PoolClient` is a lean keep-alive pool (responses parsed by ``httptools``);
:class:`~txetcd._http1_treq.TreqClient` runs the same calls through any treq ``HTTPClient`` or
``IAgent`` (custom TLS, proxies, ``treq.testing.StubTreq``).

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

from collections import deque
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
    Union,
)
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
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
    "PoolClient",
    "HeadersArg",
    "maybe_sent",
]

_USER_AGENT = b"txetcd/0.1"

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


class HTTPStatusError(EtcdError):
    """A stream was answered with a non-2xx status; ``response`` holds its whole body.

    The gateway layer translates the body (etcd's JSON error) into the right error.
    """

    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(f"HTTP status {response.status}", payload=response)
        self.response = response


def maybe_sent(error: BaseException) -> bool:
    """Whether a failed request may have reached the server (see :class:`HTTP1Client`)."""
    if isinstance(error, OutcomeUnknown):
        return True
    return bool(getattr(error, "maybe_sent", False))


def _connection_failed(message: str, *, sent: bool) -> ConnectionFailed:
    err = ConnectionFailed(message)
    err.maybe_sent = sent  # type: ignore[attr-defined]
    return err


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
    if not isinstance(headers, (Mapping, Sequence)):
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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL {url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]
    return (parts.scheme, parts.hostname, port), host.encode("idna"), target.encode("ascii")


def _build_request(
    method: bytes, host: bytes, target: bytes, headers: HeadersArg, body: bytes, close: bool
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host]
    given = set()
    for name, value in _header_pairs(headers):
        given.add(name.lower())
        lines.append(name + b": " + value)
    if b"user-agent" not in given:
        lines.append(b"User-Agent: " + _USER_AGENT)
    if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- the httptools pool ------------------------------------------------------------------------


class _Exchange:
    """One request on the pool: its deadline, where it is, and how it ends."""

    def __init__(
        self,
        pool: "PoolClient",
        key: _Key,
        method: bytes,
        target: bytes,
        data: bytes,
        timeout: Optional[float],
        idempotent: bool,
        exclusive: bool,
    ) -> None:
        self.pool = pool
        self.key = key
        self.method = method
        self.target = target
        self.data = data
        self.idempotent = idempotent
        self.exclusive = exclusive
        self.written = False
        self.finished = False
        self.connection: Optional[_Connection] = None
        self.deferred: Deferred[HTTPResponse] = Deferred(self._cancelled)
        self.timer: Optional[IDelayedCall] = None
        self._status = 0
        self._headers: Dict[bytes, bytes] = {}
        self._body: List[bytes] = []
        if timeout is not None:
            self.timer = pool.clock.callLater(timeout, self._timed_out)

    def describe(self) -> str:
        return f"{self.method.decode('ascii', 'replace')} {self.target.decode('ascii', 'replace')}"

    # -- from the connection -------------------------------------------------------------------
    def headers_received(self, status: int, headers: Dict[bytes, bytes]) -> None:
        self._status, self._headers = status, headers

    def body_received(self, data: bytes) -> None:
        self._body.append(data)

    def completed(self) -> None:
        self._finish(HTTPResponse(self._status, self._headers, b"".join(self._body)))

    def lost(self, why: str) -> None:
        self._finish(_failure(_lost_error(why, written=self.written, idempotent=self.idempotent)))

    def fail(self, error: BaseException) -> None:
        self._finish(_failure(error))

    # -- ending --------------------------------------------------------------------------------
    def _finish(self, result: Union[HTTPResponse, Failure]) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if isinstance(result, Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)

    def _abandon(self) -> None:
        """Take this request off its queue or its connection (which is then closed)."""
        self.pool._forget(self)
        conn = self.connection
        if conn is not None and conn.exchange is self:
            conn.exchange = None
            conn.abort()

    def _timed_out(self) -> None:
        self.timer = None
        if self.finished:
            return
        self._abandon()
        self.fail(_timeout_error(self.describe(), written=self.written, idempotent=self.idempotent))

    def _cancelled(self, d: "Deferred[HTTPResponse]") -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self._abandon()


class _StreamExchange(_Exchange):
    """A streaming request: its answer goes to a :class:`StreamHandle` line by line."""

    def __init__(
        self,
        pool: "PoolClient",
        key: _Key,
        method: bytes,
        target: bytes,
        data: bytes,
        on_line: Callable[[bytes], None],
    ) -> None:
        super().__init__(pool, key, method, target, data, None, True, True)
        self.handle = StreamHandle(self._cancel_stream)
        self.lines = _LineBuffer(on_line)
        self._ok = False

    def headers_received(self, status: int, headers: Dict[bytes, bytes]) -> None:
        super().headers_received(status, headers)
        self._ok = 200 <= status < 300
        self.handle._answered(HTTPResponse(status, headers))

    def body_received(self, data: bytes) -> None:
        if not self._ok:
            self._body.append(data)
            return
        try:
            self.lines.feed(data)
        except Exception:
            self._user_failed(_failure())

    def completed(self) -> None:
        if not self._ok:
            self._finish(_failure(HTTPStatusError(self._response())))
            return
        try:
            self.lines.finish()
        except Exception:
            self._user_failed(_failure())
            return
        self._finish(self._status)

    def _response(self) -> HTTPResponse:
        return HTTPResponse(self._status, self._headers, b"".join(self._body))

    def _user_failed(self, failure: Failure) -> None:
        self.lines.stopped = True
        self._abandon()
        self._finish(failure)

    def _finish(self, result: Any) -> None:
        if self.finished:
            return
        self.finished = True
        self.lines.stopped = True
        self.handle._end(result)

    def _cancel_stream(self) -> None:
        self.finished = True
        self.lines.stopped = True
        self._abandon()


class _Connection(TwistedProtocol):
    """One keep-alive HTTP/1.1 client connection: one exchange at a time, parsed by httptools."""

    def __init__(self, pool: "PoolClient", key: _Key, exclusive: bool) -> None:
        import httptools

        self.pool = pool
        self.key = key
        self.exclusive = exclusive
        self.exchange: Optional[_Exchange] = None
        self.idle_timer: Optional[IDelayedCall] = None
        self.gone = False
        self.reusable = True
        self._parser = httptools.HttpResponseParser(self)
        self._parse_error: type[Exception] = httptools.HttpParserError
        self._headers: Dict[bytes, bytes] = {}
        self._headers_done = False
        self._until_eof = False
        self._complete = False

    # -- driving -------------------------------------------------------------------------------
    def start(self, exchange: _Exchange) -> None:
        if self.idle_timer is not None:
            if self.idle_timer.active():
                self.idle_timer.cancel()
            self.idle_timer = None
        self.exchange = exchange
        exchange.connection = self
        self._headers = {}
        self._headers_done = self._until_eof = self._complete = False
        if exchange.method == b"HEAD":
            self.reusable = False  # the parser cannot be told that a HEAD answer has no body
        assert self.transport is not None
        self.transport.write(exchange.data)
        exchange.written = True

    def abort(self) -> None:
        """Close at once (never a half-close): the answer, if any, is no longer wanted."""
        self.reusable = False
        if self.transport is not None and not self.gone:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.gone:
            self.transport.loseConnection()

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: never reuse this connection
            self.reusable = False
            self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        old = self._headers.get(name)
        self._headers[name] = value if old is None else old + b", " + value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._headers = {}
            return
        self._headers_done = True
        if not self._parser.should_keep_alive():
            self.reusable = False
        headers = self._headers
        if (
            b"content-length" not in headers
            and b"chunked" not in headers.get(b"transfer-encoding", b"").lower()
            and status not in (204, 304)
        ):
            self._until_eof = True
            self.reusable = False
        ex = self.exchange
        if ex is not None:
            ex.headers_received(status, headers)
            if ex.method == b"HEAD":
                self._complete = True
                ex.completed()

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self._complete:
            ex.body_received(body)

    def on_message_complete(self) -> None:
        if not self._headers_done:  # an informational (1xx) answer
            return
        self._complete = True

    # -- Twisted -------------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted any more
            return
        try:
            self._parser.feed_data(data)
        except self._parse_error as e:
            if not self._complete:
                self.exchange = None
                self.abort()
                ex.fail(ProtocolViolation(f"malformed HTTP response: {e}"))
                return
        if self._complete and self.exchange is ex:
            # Back to the pool first: whoever gets the answer may send the next request at once.
            self.exchange = None
            self.pool._released(self)
            if not ex.finished:
                ex.completed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.gone = True
        self.reusable = False
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None
        ex, self.exchange = self.exchange, None
        if ex is not None and not ex.finished:
            if self._until_eof and self._headers_done:
                ex.completed()
            else:
                ex.lost(f"connection lost: {reason.getErrorMessage()}")
        self.pool._lost(self)


class _Host:
    """One endpoint's connections and the requests waiting for one."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.idle: List[_Connection] = []
        self.connections: Set[_Connection] = set()  # pooled ones, busy or idle
        self.connecting = 0
        self.waiters: Deque[_Exchange] = deque()


class PoolClient:
    """A lean HTTP/1.1 keep-alive pool on Twisted, responses parsed by ``httptools``.

    :param reactor: for TCP and time (timeouts, idle timers).
    :param max_connections_per_endpoint: open connections (busy or idle) per endpoint, not
        counting those of streams and exclusive requests.
    :param max_pending_per_endpoint: requests that may wait for a connection; one more fails
        at once with ``ConnectionFailed`` (not sent).
    :param connect_timeout: seconds to make a connection.
    :param idle_timeout: an idle connection is closed after this many seconds.
    :param endpoint_factory: ``(reactor, scheme, host, port) -> IStreamClientEndpoint``; by
        default ``HostnameEndpoint``, wrapped in TLS (default trust) for ``https``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        max_connections_per_endpoint: int = 32,
        max_pending_per_endpoint: int = 10_000,
        connect_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        endpoint_factory: Optional[Callable[[Any, str, str, int], IStreamClientEndpoint]] = None,
    ) -> None:
        if not isinstance(max_connections_per_endpoint, int) or max_connections_per_endpoint < 1:
            raise ValueError("max_connections_per_endpoint must be a positive int")
        import httptools  # noqa: F401  (fail here, not at the first connection, if it is missing)

        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.max_connections = max_connections_per_endpoint
        self.max_pending = max_pending_per_endpoint
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.endpoint_factory = endpoint_factory or self._default_endpoint
        self.closed = False
        self._hosts: Dict[_Key, _Host] = {}
        self._all: Set[_Connection] = set()
        self._connects: Set[Deferred[Any]] = set()
        self._close_waiters: List[Deferred[None]] = []

    @staticmethod
    def _default_endpoint(reactor: Any, scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
        if scheme == "https":
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    def connection_count(self, url: Optional[str] = None) -> int:
        """Open connections (of one endpoint's pool, or all including streams')."""
        if url is None:
            return len(self._all)
        host = self._hosts.get(_split_url(url)[0])
        return len(host.connections) if host is not None else 0

    # -- calls ---------------------------------------------------------------------------------
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
        """See :meth:`HTTP1Client.request`."""
        _check_args(method, url, headers, body)
        key, host, target = _split_url(url)
        data = _build_request(method, host, target, headers, body, close=exclusive)
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        ex = _Exchange(self, key, method, target, data, timeout, idempotent, exclusive)
        self._submit(ex)
        return ex.deferred

    def stream(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        on_line: Callable[[bytes], None],
    ) -> StreamHandle:
        """See :meth:`HTTP1Client.stream`."""
        _check_args(method, url, headers, body)
        if not callable(on_line):
            raise TypeError(f"on_line must be callable, not {type(on_line).__name__}")
        key, host, target = _split_url(url)
        data = _build_request(method, host, target, headers, body, close=True)
        ex = _StreamExchange(self, key, method, target, data, on_line)
        if self.closed:
            ex.fail(ClientClosed("the client is closed"))
        else:
            self._submit(ex)
        return ex.handle

    # -- scheduling ----------------------------------------------------------------------------
    def _host(self, key: _Key) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        return host

    def _submit(self, ex: _Exchange) -> None:
        if ex.exclusive:
            self._connect(self._host(ex.key), ex)
            return
        host = self._host(ex.key)
        while host.idle and not host.waiters:
            conn = host.idle.pop()
            if conn.reusable and not conn.gone:
                conn.start(ex)
                return
        if len(host.waiters) >= self.max_pending:
            ex.fail(_connection_failed("too many requests waiting for a connection", sent=False))
            return
        host.waiters.append(ex)
        self._pump(host)

    def _pump(self, host: _Host) -> None:
        while host.waiters and host.idle:
            conn = host.idle.pop()
            if conn.reusable and not conn.gone:
                conn.start(host.waiters.popleft())
        while (
            len(host.waiters) > host.connecting
            and len(host.connections) + host.connecting < self.max_connections
            and not self.closed
        ):
            self._connect(host, None)

    def _connect(self, host: _Host, exclusive: Optional[_Exchange]) -> None:
        key = host.key
        factory = Factory.forProtocol(lambda: _Connection(self, key, exclusive is not None))
        d = self.endpoint_factory(self.reactor, *key).connect(factory)
        d.addTimeout(self.connect_timeout, self.clock)
        self._connects.add(d)
        if exclusive is None:
            host.connecting += 1

        def connected(conn: _Connection) -> None:
            self._connects.discard(d)
            if exclusive is None:
                host.connecting -= 1
            self._all.add(conn)
            if self.closed:
                conn.close()
                return
            if exclusive is None:
                host.connections.add(conn)
                self._released(conn)
            elif exclusive.finished:
                conn.close()
            else:
                conn.start(exclusive)

        def failed(f: Failure) -> None:
            self._connects.discard(d)
            if exclusive is None:
                host.connecting -= 1
            if self.closed:
                if exclusive is not None:
                    exclusive.fail(ClientClosed("the client is closed"))
                return
            timed_out = isinstance(f.value, (DeferTimeoutError, CancelledError))
            why = "connect timed out" if timed_out else f.getErrorMessage()
            err = _connection_failed(f"could not connect to {key[1]}:{key[2]}: {why}", sent=False)
            if exclusive is not None:
                exclusive.fail(err)
            elif not host.connections:
                # Nothing can serve the waiters: the endpoint is down (no hidden retry).
                waiters, host.waiters = host.waiters, deque()
                for ex in waiters:
                    ex.fail(err)

        d.addCallbacks(connected, failed)

    def _released(self, conn: _Connection) -> None:
        """A connection finished its exchange (or was just made)."""
        if conn.exclusive or not conn.reusable or self.closed:
            conn.close()
            return
        host = self._hosts[conn.key]
        if host.waiters:
            conn.start(host.waiters.popleft())
            return
        host.idle.append(conn)
        conn.idle_timer = self.clock.callLater(self.idle_timeout, conn.close)

    def _forget(self, ex: _Exchange) -> None:
        host = self._hosts.get(ex.key)
        if host is not None:
            try:
                host.waiters.remove(ex)
            except ValueError:
                pass

    def _lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        host = self._hosts.get(conn.key)
        if host is not None:
            host.connections.discard(conn)
            if conn in host.idle:
                host.idle.remove(conn)
            if not self.closed:
                self._pump(host)
        if self.closed and not self._all and self._close_waiters:
            waiters, self._close_waiters = self._close_waiters, []
            for d in waiters:
                d.callback(None)

    def close(self) -> "Deferred[None]":
        """Close every connection and fail every pending call.

        Requests not yet sent fail with :class:`~txetcd.ClientClosed`; a non-idempotent one
        already written fails with :class:`~txetcd.OutcomeUnknown` (its ``cause`` is
        ``ClientClosed``). Fires once no connection, connection attempt or timer is left.
        """
        self.closed = True
        for connecting in list(self._connects):
            connecting.cancel()
        self._connects.clear()
        for host in self._hosts.values():
            waiters, host.waiters = host.waiters, deque()
            for ex in waiters:
                ex.fail(ClientClosed("the client is closed"))
        for conn in list(self._all):
            busy, conn.exchange = conn.exchange, None
            if busy is not None and not busy.finished:
                closed = ClientClosed("the client is closed")
                if busy.written and not busy.idempotent:
                    busy.fail(OutcomeUnknown("the client was closed during a write", cause=closed))
                else:
                    busy.fail(closed)
                conn.abort()
            else:
                conn.close()
            if conn.idle_timer is not None and conn.idle_timer.active():
                conn.idle_timer.cancel()
            conn.idle_timer = None
        if not self._all:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        return d
