"""One connection of the httptools pool and the requests it carries.

:class:`_Connection` is a keep-alive HTTP/1.1 client connection parsed by ``httptools``, one
exchange at a time; :class:`_Exchange` is one request (its deadline, where it is, how it ends),
:class:`_StreamExchange` one whose answer goes to a :class:`~txetcd._http1.interface.StreamHandle`
line
by line. :class:`~txetcd._http1.pool.PoolClient` schedules them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from txetcd._errors import ProtocolViolation
from txetcd._http1.interface import (
    HTTPResponse,
    HTTPStatusError,
    StreamHandle,
    _failure,
    _Key,
    _LineBuffer,
    _lost_error,
    _timeout_error,
)
from txetcd._sockets import send_now
from txetcd._tls import tls_error_text

if TYPE_CHECKING:
    from txetcd._http1.pool import PoolClient


#: TLS alerts that only a handshake sends: the peer refused to set the connection up. With
#: TLS 1.3 a server that wants a client certificate says so *after* the client's side of the
#: handshake is done (and the request written), but the request still never reached HTTP.
_HANDSHAKE_ALERTS = (
    "alert handshake failure",
    "alert bad certificate",
    "alert unsupported certificate",
    "alert certificate revoked",
    "alert certificate expired",
    "alert certificate unknown",
    "alert unknown ca",
    "alert access denied",
    "alert certificate required",
)


def _tls_refused(reason: Failure, handshake_done: bool) -> bool:
    """Whether a connection was lost because TLS was never set up (so nothing was sent)."""
    try:
        from OpenSSL.SSL import Error as SSLError
    except ImportError:  # no TLS support installed: no TLS connections either
        return False
    if not isinstance(reason.value, SSLError):
        return False
    if not handshake_done:
        return True
    text = str(reason.value).lower()
    return any(alert in text for alert in _HANDSHAKE_ALERTS)


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


@implementer(IHandshakeListener)
class _Connection(TwistedProtocol):
    """One keep-alive HTTP/1.1 client connection: one exchange at a time, parsed by httptools."""

    #: over TLS: the handshake completed, so bytes written since may have reached the server
    handshake_done = False

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

    def connectionMade(self) -> None:
        # A request goes out in one write; never hold its last segment back for an ACK (Nagle),
        # which a large value would otherwise meet. Go's server sets the same on its side.
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)

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

    def handshakeCompleted(self) -> None:
        """Called by Twisted's TLS layer once the handshake is done."""
        self.handshake_done = True

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
                if _tls_refused(reason, self.handshake_done):
                    # The TLS handshake failed (a certificate refused, either side): no byte
                    # of the request reached the server's HTTP layer, so it is safe to resend.
                    # Any other TLS error is a broken connection like any other.
                    ex.written = False
                scheme, host, port = self.key
                ex.lost(f"{scheme}://{host}:{port}: connection lost: {tls_error_text(reason)}")
        self.pool._lost(self)
