"""gRPC calls on our HTTP/2 connections: unary, server-streaming and bidi.

:class:`Channel` is the one call path: it picks the endpoint, owns the connections, sets deadlines
on the injected clock, adds metadata, and applies the retry rule. A read may be sent again on a
new connection; a mutation is sent again only when it certainly never reached the server (never
written, above a GOAWAY's last-stream-id, or refused); otherwise it fails with
:class:`~txetcd.OutcomeUnknown`. Nothing else is retried.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import (
    Cancelled,
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    Internal,
    OutcomeUnknown,
    PermissionDenied,
    ProtocolViolation,
    Timeout,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    WriteTimeout,
    error_from_status,
)
from txetcd._http2 import (
    CANCEL,
    ConnectionClosed,
    H2Connection,
    H2Stream,
    StreamNotProcessed,
    encode_literal,
    encode_literal_indexed_name,
)

__all__ = ["Channel", "GrpcStream", "Endpoint", "parse_endpoint"]

_USER_AGENT = b"txetcd/0.1"
Metadata = Sequence[Tuple[bytes, bytes]]


class Endpoint:
    """Where to connect: a parsed ``http://host:port`` client URL."""

    __slots__ = ("url", "scheme", "host", "port", "authority")

    def __init__(self, url: str, scheme: str, host: str, port: int) -> None:
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r})"


def parse_endpoint(url: str) -> Endpoint:
    """Parse one client URL; ``host:port`` alone means ``http://host:port``."""
    if not isinstance(url, str):
        raise TypeError(f"endpoint must be a str URL, not {type(url).__name__}")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(
            f"unsupported endpoint scheme {parts.scheme!r} in {url!r}: only http:// (h2c) is "
            "supported so far"
        )
    if not parts.hostname:
        raise ValueError(f"endpoint {url!r} has no host")
    try:
        port = parts.port or 2379
    except ValueError as e:
        raise ValueError(f"endpoint {url!r}: {e}") from None
    return Endpoint(url, parts.scheme, parts.hostname, port)


def _request_prefix(endpoint: Endpoint, path: bytes) -> bytes:
    """The constant part of a call's request header block (HPACK literals, no table state)."""
    return b"".join(
        (
            b"\x83",  # :method POST (static 3)
            b"\x86" if endpoint.scheme == "http" else b"\x87",  # :scheme
            encode_literal_indexed_name(4, path),  # :path
            encode_literal_indexed_name(1, endpoint.authority.encode("ascii")),  # :authority
            encode_literal_indexed_name(31, b"application/grpc"),  # content-type
            encode_literal(b"te", b"trailers"),
            encode_literal_indexed_name(58, _USER_AGENT),  # user-agent
        )
    )


def _timeout_header(seconds: float) -> bytes:
    ms = int(seconds * 1000) + 1
    value = f"{ms}m" if ms < 100_000_000 else f"{int(seconds) + 1}S"
    return encode_literal(b"grpc-timeout", value.encode("ascii"))


def _metadata_block(metadata: Metadata) -> bytes:
    return b"".join(
        encode_literal(k, v, sensitive=k in (b"token", b"authorization")) for k, v in metadata
    )


_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}


def _status_of(headers: List[Tuple[bytes, bytes]]) -> Tuple[Optional[int], str, Optional[bytes]]:
    """(grpc-status, grpc-message, :status) from one header block."""
    status: Optional[int] = None
    message = ""
    http: Optional[bytes] = None
    for name, value in headers:
        if name == b"grpc-status":
            try:
                status = int(value)
            except ValueError:
                status = 13
        elif name == b"grpc-message":
            message = unquote(value.decode("utf-8", "replace"))
        elif name == b":status":
            http = value
    return status, message, http


class _Call(H2Stream):
    """What unary and streaming calls share: the response headers and the status."""

    status: Optional[int] = None
    status_message = ""
    _headers_seen = False

    def _check_headers(self, headers: List[Tuple[bytes, bytes]]) -> None:
        status, message, http = _status_of(headers)
        if not self._headers_seen:
            self._headers_seen = True
            if http is not None and http != b"200":
                code = _HTTP_TO_GRPC.get(int(http), 2)
                self.status, self.status_message = code, f"HTTP status {http.decode()} from server"
                return
        if status is not None:
            self.status, self.status_message = status, message


class _UnaryCall(_Call):
    """One unary call: every attempt of it, its deadline and its Deferred."""

    def __init__(
        self,
        channel: "Channel",
        path: bytes,
        payload: bytes,
        timeout: Optional[float],
        idempotent: bool,
        metadata: Metadata,
        decode: Callable[[bytes], Any],
    ) -> None:
        self.decode = decode
        self.channel = channel
        self.path = path
        self.payload = payload
        self.idempotent = idempotent
        self.metadata = metadata
        self.attempts = 0
        self.response = b""
        self.finished = False
        self.deferred: Deferred[Any] = Deferred(self._cancelled)
        self.deadline: Optional[float] = None
        self.timer: Optional[IDelayedCall] = None
        if timeout is not None:
            clock = channel.clock
            self.deadline = clock.seconds() + timeout
            self.timer = clock.callLater(timeout, self._timed_out)

    def header_block(self, prefix: bytes) -> bytes:
        block = prefix
        if self.deadline is not None:
            block += _timeout_header(max(self.deadline - self.channel.clock.seconds(), 0.001))
        if self.metadata:
            block += _metadata_block(self.metadata)
        return block

    # -- attempt lifecycle ---------------------------------------------------------------------
    def _restart(self) -> None:
        self.stream_id = 0
        self.connection = None
        self.sent = self.local_closed = self.closed = False
        if self._outbound:
            self._outbound.clear()
        self._unacked = 0
        self.response = b""
        self.status = None
        self.status_message = ""
        self._headers_seen = False

    def headers_received(self, headers: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        self._check_headers(headers)

    def data_received(self, data: bytes) -> None:
        self.response += data
        self.consumed(len(data))

    def stream_ended(self) -> None:
        if self.finished:
            return
        status = self.status
        if status == 0:
            buf = self.response
            if len(buf) < 5 or buf[0] != 0:
                self._finish_error(ProtocolViolation("malformed gRPC response message"))
                return
            n = int.from_bytes(buf[1:5], "big")
            if len(buf) != 5 + n:
                self._finish_error(ProtocolViolation("unary response had the wrong length"))
                return
            try:
                result = self.decode(buf[5:])
            except Exception as e:
                self._finish_error(ProtocolViolation(f"could not decode the response: {e!r}"))
                return
            self._finish(result)
        elif status is None:
            self._finish_error(ProtocolViolation("stream ended without a grpc-status"))
        else:
            self._finish_error(
                error_from_status(status, self.status_message, mutation=not self.idempotent)
            )

    def reset_received(self, code: int) -> None:
        if self.finished:
            return
        if self.status is not None and self.status != 0:
            # The status arrived before the reset (trailers then RST).
            self.stream_ended()
            return
        why = f"server reset the stream (HTTP/2 error code {code})"
        if self.idempotent or not self.sent:
            self._finish_error(Unavailable(why, code=14))
        else:
            self._finish_error(
                OutcomeUnknown(f"the write's outcome is unknown: {why}", cause=Unavailable(why))
            )

    def connection_failed(self, reason: ConnectionClosed) -> None:
        if self.finished:
            return
        if isinstance(reason, StreamNotProcessed) or self.idempotent:
            if self.attempts < self.channel.max_attempts and self.channel.dispatch(self):
                return
            if self.finished:  # dispatch() failed it already (the channel is closed)
                return
            self._finish_error(
                ConnectionFailed(f"{reason.reason} (after {self.attempts} attempts)")
            )
        else:
            self._finish_error(
                OutcomeUnknown(
                    f"the write's outcome is unknown: {reason.reason}",
                    cause=ConnectionFailed(reason.reason),
                )
            )

    def fail_to_connect(self, error: EtcdError) -> None:
        if not self.finished:
            self._finish_error(error)

    # -- ending --------------------------------------------------------------------------------
    def _finish(self, result: Any) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        self.deferred.callback(result)

    def _finish_error(self, error: BaseException) -> None:
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.channel._forget_waiter(self)
        self.deferred.errback(error)

    def _timed_out(self) -> None:
        self.timer = None
        if self.finished:
            return
        self.cancel(CANCEL)
        self.channel._forget_waiter(self)
        if self.sent and not self.idempotent:
            err: Timeout = WriteTimeout(
                "no answer within the deadline; the write's outcome is unknown "
                f"({self.path.decode()})"
            )
        elif self.attempts == 0 or not self.sent:
            err = Timeout(f"could not send {self.path.decode()} before the deadline")
        else:
            err = Timeout(f"no answer to {self.path.decode()} within the deadline")
        self._finish_error(err)

    def _cancelled(self, d: Deferred[Any]) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.channel._forget_waiter(self)
        self.cancel(CANCEL)


class GrpcStream(_Call):
    """A server-streaming or bidi call.

    ``on_message(bytes)`` gets each response message in order; ``on_close(error)`` is called
    once at the end with ``None`` (status OK) or the error. :meth:`pause` stops delivery and
    stops returning HTTP/2 window, so a slow consumer holds the server back instead of letting
    memory grow; :meth:`resume` delivers what was held. Messages may be of any size.
    """

    def __init__(
        self,
        channel: "Channel",
        path: bytes,
        on_message: Callable[[bytes], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata = (),
    ) -> None:
        super().__init__()
        self.channel = channel
        self.path = path
        self.metadata = metadata
        self.on_message = on_message
        self.on_close = on_close
        self.paused = False
        self.ended = False
        self._buf = bytearray()
        self._need = 5
        self._msg_len: Optional[int] = None
        self._held = 0  # bytes received but not yet delivered (not yet returned as window)
        self._writable: List[Deferred[None]] = []
        self._ending: Optional[BaseException] = None
        self._server_done = False

    def header_block(self, prefix: bytes) -> bytes:
        return prefix + (_metadata_block(self.metadata) if self.metadata else b"")

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: bytes, end: bool = False) -> bool:
        """Send one message (``end``: and half-close). False if it had to be queued for window."""
        if self.ended or self.local_closed:
            raise RuntimeError("stream is closed for sending")
        frame = b"\x00" + len(message).to_bytes(4, "big") + message
        if self.connection is None:
            self._early.append((frame, end))
            if end:
                self.local_closed = True
            return False
        self.send_data(frame, end)
        return not self._outbound

    def close_send(self) -> None:
        """Half-close: no more messages from us (the server may go on sending)."""
        if self.ended or self.local_closed:
            return
        if self.connection is None:
            self._early.append((b"", True))
            self.local_closed = True
            return
        self.send_data(b"", True)

    def when_writable(self) -> "Deferred[None]":
        """A Deferred that fires once nothing is queued for flow-control window."""
        if not self._outbound or self.ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._writable.append(d)
        return d

    def send_window_opened(self) -> None:
        waiters, self._writable = self._writable, []
        for d in waiters:
            d.callback(None)

    # -- receiving -----------------------------------------------------------------------------
    def headers_received(self, headers: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        self._check_headers(headers)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._held += len(data)
        if not self.paused:
            self._deliver()

    def _deliver(self) -> None:
        buf = self._buf
        delivered = 0
        while not self.paused and not self.ended:
            if len(buf) < 5:
                break
            if buf[0] != 0:
                self._end(ProtocolViolation("compressed gRPC message although none was asked for"))
                self.cancel(CANCEL)
                return
            n = int.from_bytes(buf[1:5], "big")
            if len(buf) < 5 + n:
                break
            message = bytes(buf[5 : 5 + n])
            del buf[: 5 + n]
            delivered += 5 + n
            self.on_message(message)
        # Window goes back for what was delivered and, unless paused, for a message still
        # arriving too: one larger than the stream window could never complete otherwise.
        credit = delivered if self.paused else self._held
        if credit and not self.ended:
            self._held -= credit
            self.consumed(credit)
        if self._server_done and not self.ended and not self.paused:
            if buf and self._ending is None:
                self._end(ProtocolViolation("the stream ended inside a gRPC message"))
            else:
                self._end(self._ending)

    def pause(self) -> None:
        """Hold messages back and stop returning window to the server."""
        self.paused = True

    def resume(self) -> None:
        """Deliver held messages and return their window."""
        if not self.paused:
            return
        self.paused = False
        self._deliver()

    def stream_ended(self) -> None:
        status = self.status
        if status == 0:
            err: Optional[BaseException] = None
        elif status is None:
            err = ProtocolViolation("stream ended without a grpc-status")
        else:
            err = error_from_status(status, self.status_message)
        self._server_done = True
        self._ending = err
        self._deliver()  # messages sent before the status come first (after resume() if paused)

    def reset_received(self, code: int) -> None:
        if self.status is not None and self.status != 0:
            self.stream_ended()
            return
        self._end(Unavailable(f"server reset the stream (HTTP/2 error code {code})", code=14))

    def connection_failed(self, reason: ConnectionClosed) -> None:
        self._end(ConnectionFailed(reason.reason))

    def fail_to_connect(self, error: EtcdError) -> None:
        self._end(error)

    def cancel(self, code: int = CANCEL) -> None:  # type: ignore[override]
        """Stop the call (RST_STREAM CANCEL); ``on_close`` gets :class:`CancelledError`."""
        if self.connection is not None and not self.closed:
            H2Stream.cancel(self, code)
        self.channel._forget_waiter(self)
        self._end(CancelledError())

    def _end(self, err: Optional[BaseException]) -> None:
        if self.ended:
            return
        self.ended = True
        self._buf.clear()
        self.send_window_opened()
        self.on_close(err)

    # set before the stream has a connection
    _early: List[Tuple[bytes, bool]]


class Channel:
    """Connections to a set of etcd endpoints, and the one path every call goes through.

    :param endpoints: client URLs; connections go to the first that answers, in order.
    :param clock: the reactor (time and TCP).
    :param max_attempts: how many times one call may be started (retries of reads, and of
        writes that certainly never reached the server).
    """

    log = Logger()

    def __init__(
        self,
        endpoints: Sequence[str],
        reactor: Any,
        *,
        connect_timeout: float = 5.0,
        keepalive_interval: Optional[float] = 10.0,
        keepalive_timeout: float = 10.0,
        max_attempts: int = 3,
        endpoint_factory: Optional[Callable[[Any, Endpoint], IStreamClientEndpoint]] = None,
    ) -> None:
        self.endpoints = [parse_endpoint(u) for u in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.max_attempts = max_attempts
        self.endpoint_factory = endpoint_factory or self._default_endpoint
        self.closed = False
        self.connection: Optional[H2Connection] = None
        self.connections: List[H2Connection] = []  # every live connection, for close()
        self._endpoint_index = 0
        self._connecting: Optional[Deferred[Any]] = None
        self._waiters: List[Any] = []
        self._prefixes: dict[Tuple[int, bytes], bytes] = {}
        self._lost_waiters: List[Deferred[None]] = []
        self._rand = random.Random()

    @staticmethod
    def _default_endpoint(reactor: Any, endpoint: Endpoint) -> IStreamClientEndpoint:
        return HostnameEndpoint(reactor, endpoint.host, endpoint.port)

    # -- calls ---------------------------------------------------------------------------------
    def unary(
        self,
        path: bytes,
        payload: bytes,
        *,
        timeout: Optional[float],
        idempotent: bool,
        metadata: Metadata = (),
        decode: Callable[[bytes], Any] = bytes,
    ) -> "Deferred[Any]":
        """Call a unary method with a serialised request.

        Fires with ``decode(response bytes)`` (the raw bytes by default); a ``decode`` that
        raises fails the call with :class:`~txetcd.ProtocolViolation`.
        """
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        call = _UnaryCall(self, path, payload, timeout, idempotent, metadata, decode)
        self.dispatch(call)
        return call.deferred

    def stream(
        self,
        path: bytes,
        on_message: Callable[[bytes], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> GrpcStream:
        """Open a streaming call; send with :meth:`GrpcStream.send`. ``on_close`` always fires."""
        stream = GrpcStream(self, path, on_message, on_close, metadata)
        stream._early = []
        if self.closed:
            self.clock.callLater(0, stream._end, ClientClosed("the client is closed"))
        else:
            self.dispatch(stream)
        return stream

    def dispatch(self, call: Any) -> bool:
        """Start ``call`` on the current connection, or queue it until one is made."""
        if self.closed:
            call.fail_to_connect(ClientClosed("the client is closed"))
            return False
        conn = self.connection
        if conn is not None and conn.accepting:
            self._start(conn, call)
        else:
            self._waiters.append(call)
            self._connect()
        return True

    def _start(self, conn: H2Connection, call: Any) -> None:
        key = (id(conn), call.path)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = _request_prefix(conn.endpoint, call.path)  # type: ignore[attr-defined]
        if isinstance(call, _UnaryCall):
            if call.attempts:
                call._restart()
            call.attempts += 1
            data = b"\x00" + len(call.payload).to_bytes(4, "big") + call.payload
            conn.start_stream(call, call.header_block(prefix), data, True)
        else:
            early, call._early = call._early, []
            local_closed = call.local_closed
            call.local_closed = False
            first = early[0] if early else (b"", False)
            conn.start_stream(call, call.header_block(prefix), first[0], first[1])
            for frame, end in early[1:]:
                if not call.closed:
                    conn._send_data(call, frame, end)
            if local_closed and not call.local_closed and not call.closed:
                conn._send_data(call, b"", True)

    def _forget_waiter(self, call: Any) -> None:
        try:
            self._waiters.remove(call)
        except ValueError:
            pass

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._connecting is not None or self.closed:
            return
        self._try_endpoints(0, [])

    def _try_endpoints(self, tried: int, errors: List[str]) -> None:
        if tried >= len(self.endpoints):
            self._connecting = None
            waiters, self._waiters = self._waiters, []
            err = ConnectionFailed("could not connect to etcd: " + "; ".join(errors))
            for call in waiters:
                call.fail_to_connect(err)
            return
        endpoint = self.endpoints[self._endpoint_index % len(self.endpoints)]
        factory = Factory.forProtocol(lambda: self._make_protocol(endpoint))
        d = self.endpoint_factory(self.reactor, endpoint).connect(factory)
        d.addTimeout(self.connect_timeout, self.clock)
        self._connecting = d

        def connected(conn: H2Connection) -> None:
            self._connecting = None
            if self.closed:
                conn.close("the client is closed")
                return
            self.connection = conn
            waiters, self._waiters = self._waiters, []
            for call in waiters:
                self.dispatch(call)

        def failed(f: Failure) -> None:
            self._connecting = None
            if self.closed:
                return
            self._endpoint_index += 1
            timed_out = isinstance(f.value, CancelledError)
            why = "connect timed out" if timed_out else f.getErrorMessage()
            errors.append(f"{endpoint.url}: {why}")
            self._try_endpoints(tried + 1, errors)

        d.addCallbacks(connected, failed)

    def _make_protocol(self, endpoint: Endpoint) -> H2Connection:
        conn = H2Connection(
            self.clock,
            keepalive_interval=self.keepalive_interval,
            keepalive_timeout=self.keepalive_timeout,
            on_lost=self._connection_lost,
            on_goaway=self._connection_going_away,
        )
        conn.endpoint = endpoint  # type: ignore[attr-defined]
        self.connections.append(conn)
        return conn

    def _connection_going_away(self, conn: H2Connection) -> None:
        if self.connection is conn:
            self.connection = None

    def _connection_lost(self, conn: H2Connection, reason: ConnectionClosed) -> None:
        if self.connection is conn:
            self.connection = None
        if conn in self.connections:
            self.connections.remove(conn)
        for key in [k for k in self._prefixes if k[0] == id(conn)]:
            del self._prefixes[key]
        if not self.connections and self._lost_waiters:
            waiters, self._lost_waiters = self._lost_waiters, []
            for d in waiters:
                d.callback(None)

    def close(self) -> "Deferred[None]":
        """Close every connection; pending calls fail with :class:`ClientClosed`.

        The Deferred fires once every connection is gone (no transport, no timer left).
        """
        self.closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        waiters, self._waiters = self._waiters, []
        for call in waiters:
            call.fail_to_connect(ClientClosed("the client is closed"))
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        for conn in list(self.connections):
            conn.close("the client is closed")
        return d


# Re-exported for callers that map exceptions.
_ = (Internal, Unauthenticated, Unimplemented, PermissionDenied, Cancelled)
