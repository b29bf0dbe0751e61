"""gRPC calls on our HTTP/2 streams: unary calls and server-streaming/bidi streams.

A :class:`_UnaryCall` is one logical call with its deadline (``grpc-timeout`` and a timer on the
injected clock) and its Deferred; it may be started more than once, by the retry rule of the
:class:`~txetcd._grpc.channel.Channel` that dispatches it: a read may be sent again on a new
connection; a mutation only when it certainly never reached the server (never written, above a
GOAWAY's last-stream-id, or refused), otherwise it fails with :class:`~txetcd.OutcomeUnknown`.
:class:`GrpcStream` is a streaming call with back-pressure (:meth:`GrpcStream.pause`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple
from urllib.parse import unquote

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    OutcomeUnknown,
    ProtocolViolation,
    Timeout,
    Unavailable,
    WriteTimeout,
    error_from_status,
)
from txetcd._h2.connection import H2Stream
from txetcd._h2.frames import (
    CANCEL,
    ConnectionClosed,
    StreamNotProcessed,
    encode_literal,
)
from txetcd._retry import RESEND_BACKOFF, may_resend, may_resend_after, member_unfit
from txetcd._transport import REQUIRE_LEADER, Metadata, Method

if TYPE_CHECKING:
    from txetcd._grpc.channel import Channel

__all__ = ["GrpcStream", "Metadata"]


def _timeout_header(seconds: float) -> bytes:
    ms = int(seconds * 1000) + 1
    value = f"{ms}m" if ms < 100_000_000 else f"{int(seconds) + 1}S"
    return encode_literal(b"grpc-timeout", value.encode("ascii"))


def _metadata_block(metadata: Metadata) -> bytes:
    if metadata is REQUIRE_LEADER:
        return _REQUIRE_LEADER_BLOCK  # on almost every call: encoded once
    return b"".join(
        encode_literal(k, v, sensitive=k in (b"token", b"authorization")) for k, v in metadata
    )


_REQUIRE_LEADER_BLOCK = b"".join(encode_literal(k, v) for k, v in REQUIRE_LEADER)

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


def where(connection: Any) -> str:
    """``"<endpoint URL>: "`` for a connection the channel made, to name it in errors."""
    endpoint = connection.endpoint if connection is not None else None
    return f"{endpoint.url}: " if endpoint is not None else ""


class _UnaryCall(_Call):
    """One unary call: every attempt of it, its deadline and its Deferred."""

    log = Logger()

    def __init__(
        self,
        channel: "Channel",
        method: Method,
        payload: bytes,
        timeout: Optional[float],
        idempotent: bool,
        metadata: Metadata,
        decode: Callable[[Any], Any],
    ) -> None:
        self.decode = decode
        self.parse = method.parse
        self.channel = channel
        self.path = method.path
        self.payload = payload
        self.resend_timer: Optional[IDelayedCall] = None
        self.waits = 0  # resends after "not now" answers (see _schedule_resend)
        #: a write in flight: the highest raft term the channel had seen when it was sent
        self.term: Optional[int] = None
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
                message = self.parse(buf[5:])
                if self.term is not None:  # a write's own answer: its outcome, whatever term
                    self.channel.terms.done(self)
                    self.term = None  # done once (not again in _finish)
                self.channel.terms.saw(message)
                result = self.decode(message)
            except EtcdError as e:  # the decoder refused the answer (ordering: member behind)
                self._answered_error(e)
                return
            except Exception as e:
                self._finish_error(ProtocolViolation(f"could not decode the response: {e!r}"))
                return
            self._finish(result)
        elif status is None:
            self._finish_error(ProtocolViolation("stream ended without a grpc-status"))
        else:
            self._answered_error(
                error_from_status(status, self.status_message, mutation=not self.idempotent)
            )

    def _answered_error(self, err: EtcdError) -> None:
        if may_resend_after(err, idempotent=self.idempotent):
            self.channel.terms.suspect()
        if may_resend_after(err, idempotent=self.idempotent) and self._schedule_resend(True):
            if member_unfit(err):  # the next attempt goes to another member
                self.channel.endpoint_failed(self.connection, str(err))
            return
        self._finish_error(err)

    def _schedule_resend(self, answered: bool = False) -> bool:
        """Send this call again after the resend backoff, if attempts and the deadline allow.

        ``answered``: etcd answered "not now" (no leader, leader changed): such waits have a
        budget of their own (``channel.max_waits``), long enough to outlast an election.
        """
        channel = self.channel
        if answered:
            self.waits += 1
            spent = self.waits > channel.max_waits
            delay = RESEND_BACKOFF(self.waits - 1)
        else:
            spent = self.attempts >= channel.max_attempts
            delay = RESEND_BACKOFF(self.attempts - 1)
        deadline = self.deadline
        if (
            channel.closed
            or spent
            or (deadline is not None and channel.clock.seconds() + delay >= deadline)
        ):
            return False
        self.resend_timer = channel.clock.callLater(delay, self._resend)
        channel._resending.add(self)
        return True

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
        why = where(self.connection) + reason.reason
        sent = not isinstance(reason, StreamNotProcessed)
        if not may_resend(idempotent=self.idempotent, maybe_sent=sent):
            self._finish_error(
                OutcomeUnknown(
                    f"the write's outcome is unknown: {why}",
                    cause=ConnectionFailed(why, maybe_sent=True),
                )
            )
            return
        if self.channel.closed:
            self._finish_error(ClientClosed("the client is closed"))
            return
        # Sent again after a short jittered wait, on whatever connection is current then.
        if self._schedule_resend():
            if not sent:
                self.sent = False  # it never reached the server: a deadline now is no WriteTimeout
            return
        self._finish_error(
            ConnectionFailed(f"{why} (after {self.attempts} attempts)", maybe_sent=sent)
        )

    def superseded(self, term: int) -> None:
        """A new leader was elected (raft term ``term``) since this write was sent: a member
        that forwarded it to the old leader will only time it out. End it now, with what can be
        said of it: its outcome is unknown (the new leader may have it)."""
        if self.finished:
            return
        why = (
            f"a new leader was elected (raft term {self.term} -> {term}) while the write was "
            f"in flight ({self.path.decode()})"
        )
        self._finish_error(OutcomeUnknown(f"the write's outcome is unknown: {why}"))
        self.cancel(CANCEL)

    def _resend(self) -> None:
        self.resend_timer = None
        self.channel._resending.discard(self)
        if not self.finished:
            self.channel.dispatch(self)

    def _stop_resend(self) -> None:
        timer, self.resend_timer = self.resend_timer, None
        if timer is not None:
            self.channel._resending.discard(self)
            if timer.active():
                timer.cancel()

    def fail_to_connect(self, error: EtcdError) -> None:
        if not self.finished:
            self._finish_error(error)

    # -- ending --------------------------------------------------------------------------------
    def _finish(self, result: Any) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        if self.term is not None:
            self.channel.terms.done(self)
        self.deferred.callback(result)

    def _finish_error(self, error: BaseException) -> None:
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.term is not None:
            self.channel.terms.done(self)
        self._stop_resend()
        self.channel._forget_waiter(self)
        self.deferred.errback(error)

    def _timed_out(self) -> None:
        self.timer = None
        if self.finished:
            return
        self._stop_resend()
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
        self._stop_resend()
        self.channel._forget_waiter(self)
        self.cancel(CANCEL)


class GrpcStream(_Call):
    """A server-streaming or bidi call.

    ``on_message(message)`` gets each response message, parsed, in order; ``on_close(error)``
    is called once at the end with ``None`` (status OK) or the error. :meth:`pause` stops
    delivery and stops returning HTTP/2 window, so a slow consumer holds the server back instead
    of letting memory grow; :meth:`resume` delivers what was held. Messages may be of any size.
    """

    def __init__(
        self,
        channel: "Channel",
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata = (),
    ) -> None:
        super().__init__()
        self.channel = channel
        self.path = method.path
        self.parse = method.parse
        self.metadata = metadata
        self.on_message = on_message
        self.on_close = on_close
        self.paused = False
        self.ended = False
        self._buf = bytearray()
        self._need = 5
        self._msg_len: Optional[int] = None
        self._held = 0  # bytes received but not yet delivered (not yet returned as window)
        self.largest = 0  # the largest message received, in bytes (no cap applies)
        self._writable: List[Deferred[None]] = []
        self._ending: Optional[BaseException] = None
        self._server_done = False

    def header_block(self, prefix: bytes) -> bytes:
        return prefix + (_metadata_block(self.metadata) if self.metadata else b"")

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: Any, end: bool = False) -> bool:
        """Send one message (``end``: and half-close). False if it had to be queued for window."""
        if self.ended or self.local_closed:
            raise RuntimeError("stream is closed for sending")
        data = message.SerializeToString()
        frame = b"\x00" + len(data).to_bytes(4, "big") + data
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
            if n > self.largest:
                self.largest = n
            try:
                message = self.parse(bytes(buf[5 : 5 + n]))
            except Exception as e:
                self._end(ProtocolViolation(f"could not decode a stream message: {e!r}"))
                self.cancel(CANCEL)
                return
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
        self._end(ConnectionFailed(where(self.connection) + reason.reason, maybe_sent=True))

    def fail_to_connect(self, error: EtcdError) -> None:
        self._end(error)

    def cancel(self, code: int = CANCEL) -> None:
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
