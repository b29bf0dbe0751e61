"""The httptools keep-alive pool: :class:`PoolClient`, an :class:`~txetcd._http1.HTTP1Client`.

A lean HTTP/1.1 pool on Twisted, responses parsed by ``httptools``: bounded per endpoint, one
request per connection at a time, idle connections closed on the injected clock, streams and
exclusive requests on connections of their own. It follows the rules in :mod:`txetcd._http1`
(no hidden retries, deadlines, never a half-close), as
:class:`~txetcd._http1_treq.TreqClient` does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Union

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ClientClosed, OutcomeUnknown, ProtocolViolation
from txetcd._http1 import (
    HeadersArg,
    HTTPResponse,
    HTTPStatusError,
    StreamHandle,
    _check_args,
    _connection_failed,
    _failure,
    _header_pairs,
    _Key,
    _LineBuffer,
    _lost_error,
    _split_url,
    _timeout_error,
    send_now,
)

__all__ = ["PoolClient"]

_USER_AGENT = b"txetcd/0.1"


# -- request building --------------------------------------------------------------------------


def _build_request(
    method: bytes, host: bytes, target: bytes, headers: HeadersArg, body: bytes, close: bool
) -> bytes:
    block = _header_block(headers) if type(headers) is tuple else _make_block(headers)
    parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n", block]
    if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def _make_block(headers: HeadersArg) -> bytes:
    """The request's own header lines (checked), ``User-Agent`` added unless given."""
    lines = []
    given = set()
    for name, value in _header_pairs(headers):
        given.add(name.lower())
        lines.append(name + b": " + value + b"\r\n")
    if b"user-agent" not in given:
        lines.append(b"User-Agent: " + _USER_AGENT + b"\r\n")
    return b"".join(lines)


_BLOCKS: Dict[Any, bytes] = {}


def _header_block(headers: Any) -> bytes:
    """:func:`_make_block` of a tuple of pairs, remembered: callers send the same few sets."""
    try:
        block = _BLOCKS.get(headers)
    except TypeError:  # pairs given as lists
        return _make_block(headers)
    if block is None:
        block = _make_block(headers)
        if len(_BLOCKS) < 256:
            _BLOCKS[headers] = block
    return block


def _tls_refused(reason: Failure) -> bool:
    try:
        from OpenSSL.SSL import Error as SSLError
    except ImportError:  # no TLS support installed: no TLS connections either
        return False
    return isinstance(reason.value, SSLError)


# -- the httptools pool ------------------------------------------------------------------------


class _Exchange:
    """One request on the pool: its deadline, where it is, and how it ends."""

    __slots__ = (
        "pool",
        "key",
        "method",
        "target",
        "data",
        "idempotent",
        "exclusive",
        "written",
        "finished",
        "connection",
        "deferred",
        "timer",
        "_status",
        "_headers",
        "_body",
        "deadline",
    )

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
        self.deadline = 0.0
        if timeout is not None:
            if exclusive:
                self.timer = pool.clock.callLater(timeout, self._timed_out)
            else:
                pool._track_deadline(self, timeout)

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

    __slots__ = ("handle", "lines", "_ok")

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
        if self._ok and self.connection is not None:
            self.handle._reading_from(self.connection.transport)
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
        self.idle_since = 0.0
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
        # The idle timer is left running: when it fires it looks at idle_since (one timer per
        # idle period would cost a callLater and a cancel per request).
        self.exchange = exchange
        exchange.connection = self
        self._headers = {}
        self._headers_done = self._until_eof = self._complete = False
        if exchange.method == b"HEAD":
            self.reusable = False  # the parser cannot be told that a HEAD answer has no body
        assert self.transport is not None
        send_now(self.transport, exchange.data)
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
        headers = self._headers
        if name in headers:
            headers[name] += b", " + value
        else:
            headers[name] = value

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
                if _tls_refused(reason):
                    # The TLS handshake failed (a certificate refused, either side): no byte
                    # of the request reached the server's HTTP layer, so it is safe to resend.
                    ex.written = False
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
        self._deadlines: Dict[float, Deque[_Exchange]] = {}
        self._deadline_timers: Dict[float, IDelayedCall] = {}

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

    # -- deadlines -----------------------------------------------------------------------------
    def _track_deadline(self, ex: _Exchange, timeout: float) -> None:
        """Queue ``ex`` for its deadline. Requests of one timeout expire in the order they were
        made, so one timer per timeout value serves them all (a timer made and cancelled per
        request costs more than the rest of a request's bookkeeping)."""
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        while queue and queue[0].finished:
            queue.popleft()
        if len(queue) >= 4096:  # an old request still waits: drop the finished ones behind it
            queue = self._deadlines[timeout] = deque(e for e in queue if not e.finished)
        ex.deadline = self.clock.seconds() + timeout
        queue.append(ex)
        if timeout not in self._deadline_timers:
            self._deadline_timers[timeout] = self.clock.callLater(timeout, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        self._deadline_timers.pop(timeout, None)
        now = self.clock.seconds()
        while True:  # (a failed request's callbacks may make new ones: look again each time)
            queue = self._deadlines.get(timeout)
            if not queue or not (queue[0].finished or queue[0].deadline <= now):
                break
            ex = queue.popleft()
            if not ex.finished:
                ex._timed_out()
        if timeout in self._deadline_timers or self.closed:
            return
        if queue:
            self._deadline_timers[timeout] = self.clock.callLater(
                max(0.0, queue[0].deadline - now), self._expire, timeout
            )
        else:
            self._deadlines.pop(timeout, None)

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
        conn.idle_since = self.clock.seconds()
        if conn.idle_timer is None:
            conn.idle_timer = self.clock.callLater(self.idle_timeout, self._idle_check, conn)

    def _idle_check(self, conn: _Connection) -> None:
        """Close ``conn`` if it has been idle for ``idle_timeout``; else look again later."""
        conn.idle_timer = None
        if conn.gone:
            return
        if conn.exchange is None:
            left = conn.idle_since + self.idle_timeout - self.clock.seconds()
            if left <= 0:
                conn.close()
                return
        else:
            left = self.idle_timeout  # busy: idle again at the earliest after its exchange
        conn.idle_timer = self.clock.callLater(left, self._idle_check, conn)

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
        timers, self._deadline_timers = self._deadline_timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()
        self._deadlines.clear()
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
