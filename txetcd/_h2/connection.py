"""A thin HTTP/2 client connection, built for gRPC.

It owns flow control both ways, stream bookkeeping, GOAWAY and keepalive PINGs, and
nothing else: no header validation beyond what the protocol needs, no priorities, no server push.
Frames and HPACK literals live in :mod:`txetcd._h2.frames` (re-exported here). Request header
blocks are encoded by the caller; response header blocks go through one ``hpack`` decoder, in
order, because servers use the dynamic table.

The connection is a Twisted protocol on any stream transport (TCP now, TLS with ALPN ``h2``
later), so the endpoint that carries it is the caller's choice.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from hpack import Decoder
from hpack.exceptions import HPACKError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from txetcd._errors import ConnectionFailed
from txetcd._h2.frames import (
    _GOAWAY,
    _HEAD,
    _SETTING,
    _U32,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PRIORITY,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_HEADER_LIST,
    MAX_STREAM_ID,
    MAX_WINDOW,
    NO_ERROR,
    PING,
    PING_ACK_DELAY,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    SETTINGS_MAX_HEADER_LIST_SIZE,
    WINDOW_UPDATE,
    ConnectionClosed,
    FrameReader,
    ProtocolError,
    StreamNotProcessed,
    _strip_padding,
    frame,
)
from txetcd._sockets import direct_sender
from txetcd._tls import tls_error_text

__all__ = ["H2Connection", "H2Stream"]

#: a server's first 9 bytes: a SETTINGS frame header (``None``: any byte)
_GREETING = (0, None, None, SETTINGS, 0, 0, 0, 0, 0)


# -- streams -----------------------------------------------------------------------------------


class H2Stream:
    """One client stream. Subclasses (gRPC calls) override the ``*_received`` hooks.

    The connection calls, in order: :meth:`headers_received` (once or twice: response headers,
    then trailers), :meth:`data_received` any number of times, and finally exactly one of
    :meth:`stream_ended` (the server ended its side), :meth:`reset_received` or
    :meth:`connection_failed`. ``request`` is written when the stream starts.
    """

    stream_id = 0
    connection: Optional["H2Connection"] = None
    #: the request's HEADERS were handed to the transport, so the server may have seen them
    sent = False
    #: we sent END_STREAM
    local_closed = False
    #: the stream is finished (ended, reset or failed) and out of the connection's map
    closed = False

    send_window = 0
    _unacked = 0  # received DATA bytes consumed but not yet returned to the peer
    #: DATA waiting for flow-control window (made on first need: most calls never wait)
    _outbound: Deque[Tuple[bytes, bool]] = deque()  # shared empty default; never appended to

    def _queue(self) -> Deque[Tuple[bytes, bool]]:
        q = self.__dict__.get("_outbound")
        if q is None:
            q = self._outbound = deque()
        return q

    # Hooks ------------------------------------------------------------------------------------
    def headers_received(self, headers: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        """A complete header block arrived (response headers or trailers)."""

    def data_received(self, data: bytes) -> None:
        """A DATA frame's payload (padding removed); call :meth:`consumed` once processed."""

    def stream_ended(self) -> None:
        """The server ended its side (END_STREAM); the stream is closed."""

    def reset_received(self, code: int) -> None:
        """The server reset the stream with ``code``."""

    def connection_failed(self, reason: ConnectionClosed) -> None:
        """The stream cannot go on: the connection broke, went away, or never started it."""

    def send_window_opened(self) -> None:
        """Every queued byte was written; more may be sent without queueing."""

    # Actions ----------------------------------------------------------------------------------
    def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """Send DATA, queued while the peer's window is closed."""
        conn = self.connection
        if conn is None or self.closed or self.local_closed:
            raise RuntimeError("stream is not open for sending")
        conn._send_data(self, data, end_stream)

    def cancel(self, code: int = CANCEL) -> None:
        """Reset the stream (RST_STREAM ``code``) and forget it; nothing more is delivered."""
        conn = self.connection
        if conn is not None and not self.closed:
            conn._reset_stream(self, code)

    def consumed(self, nbytes: int) -> None:
        """The consumer has processed ``nbytes`` of DATA: that window may go back to the peer.

        Not calling this is back-pressure: once the stream's window is used up the server
        stops sending on it, while other streams keep flowing.
        """
        conn = self.connection
        if conn is not None:
            conn._stream_consumed(self, nbytes)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the peer's flow-control window."""
        return sum(len(d) for d, _ in self._outbound)


@implementer(IHandshakeListener)
class H2Connection(Protocol):
    """The client side of one HTTP/2 connection.

    :param clock: time source for keepalive PINGs.
    :param keepalive_interval: seconds of silence from the server after which a PING is sent
        while streams are open (etcd closes connections that ping more often than every 5 s).
    :param keepalive_timeout: seconds to wait for the PING's ACK before the connection is
        declared dead (every stream fails).
    :param stream_window: the receive window announced for each stream.
    :param connection_window: the connection's receive window.
    :param on_lost: called once with the reason when the connection ends for any reason.
    :param on_goaway: called when the server says GOAWAY (no new streams here).
    """

    #: where this connection goes (set by the channel that made it); named in errors
    endpoint: Any = None

    def __init__(
        self,
        clock: IReactorTime,
        *,
        keepalive_interval: Optional[float] = 10.0,
        keepalive_timeout: float = 10.0,
        stream_window: int = 4 * 1024 * 1024,
        connection_window: int = 64 * 1024 * 1024,
        on_lost: Optional[Callable[["H2Connection", ConnectionClosed], None]] = None,
        on_goaway: Optional[Callable[["H2Connection"], None]] = None,
        tls: bool = False,
    ) -> None:
        if keepalive_interval is not None and keepalive_interval < 5.0:
            raise ValueError("keepalive_interval must be >= 5 s (etcd closes faster pingers)")
        self.clock = clock
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.local_stream_window = stream_window
        self.local_connection_window = connection_window
        self.on_lost = on_lost
        self.on_goaway = on_goaway
        self.tls = tls
        #: fires once streams may start: when the server's SETTINGS arrive (over TLS, after a
        #: handshake in which it agreed to HTTP/2, ALPN ``h2``). Fails if the connection ends
        #: first; a server that accepts and never answers is left to the caller's timeout.
        self.ready: Deferred[None] = Deferred(self._cancel_ready)

        self.streams: Dict[int, H2Stream] = {}
        self.pending: Deque[H2Stream] = deque()  # waiting for MAX_CONCURRENT_STREAMS
        self.next_stream_id = 1
        self.connected = False
        self.lost: Optional[ConnectionClosed] = None
        self.goaway_last_stream_id: Optional[int] = None
        self.goaway_code: Optional[int] = None
        self.goaway_debug = b""

        # Peer settings.
        self.remote_initial_window = DEFAULT_WINDOW
        self.remote_max_frame = DEFAULT_MAX_FRAME
        self.remote_max_streams = 2**32
        self.send_window = DEFAULT_WINDOW  # connection-level, toward the peer

        self._reader = FrameReader()
        self._decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._header_cache: Dict[bytes, List[Tuple[bytes, bytes]]] = {}
        self._corked: Optional[List[bytes]] = None  # writes held while a read is handled
        self._held: Optional[List[bytes]] = None  # reads held by hold_reads()
        self._ping_acks: List[bytes] = []  # PING ACKs held for PING_ACK_DELAY (_ack_ping)
        self._ping_ack_timer: Optional[IDelayedCall] = None
        self._header_stream = 0  # stream whose header block is being continued
        self._header_buf = b""
        self._header_end_stream = False
        self._conn_unacked = 0
        self._blocked: Dict[int, H2Stream] = {}  # streams with queued DATA, in arrival order
        self._closing = False  # close once the last stream ends (GOAWAY, exhausted ids)

        self._ping_timer: Optional[IDelayedCall] = None
        self._ping_deadline: Optional[IDelayedCall] = None
        self._received_since_ping = False
        self._ping_payload = b"txetcdKA"
        # Until the server's first frame header has arrived whole: the bytes so far (a server
        # that speaks HTTP/1.1 or anything else is told apart from a broken HTTP/2 one).
        self._greeting: Optional[bytes] = b""

    # -- public state ------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """True while new streams may be started on this connection."""
        return bool(
            self.connected
            and self.lost is None
            and self.goaway_last_stream_id is None
            and not self._closing
            and self.next_stream_id <= MAX_STREAM_ID
        )

    @property
    def active_streams(self) -> int:
        """Streams open (started) on this connection."""
        return len(self.streams)

    # -- Twisted protocol ----------------------------------------------------------------------
    def connectionMade(self) -> None:
        self.connected = True
        transport = self.transport
        assert transport is not None
        set_nodelay = getattr(transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        direct = direct_sender(transport)  # None over TLS: every byte must go through it
        if direct is not None:
            self._raw_send = direct  # type: ignore[method-assign,assignment]
        settings = b"".join(
            (
                _SETTING.pack(SETTINGS_ENABLE_PUSH, 0),
                _SETTING.pack(SETTINGS_INITIAL_WINDOW_SIZE, self.local_stream_window),
                _SETTING.pack(SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST),
            )
        )
        out = PREFACE + frame(SETTINGS, 0, 0, settings)
        extra = self.local_connection_window - DEFAULT_WINDOW
        if extra > 0:
            out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(extra))
        self._send(out)
        self._arm_keepalive()

    def hold_reads(self) -> None:
        """Gather what arrives until :meth:`release_reads`. A TLS layer hands over one record
        at a time (an answer is two or three); held, one TCP read is handled in one pass, with
        one send for whatever it starts."""
        if self._held is None:
            self._held = []

    def release_reads(self) -> None:
        """Handle what arrived since :meth:`hold_reads`, as one read."""
        held, self._held = self._held, None
        if held:
            self.dataReceived(held[0] if len(held) == 1 else b"".join(held))

    def dataReceived(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        if self._greeting is not None:
            data = self._check_greeting(data)
            if not data:
                return
        self._received_since_ping = True
        # Writes made while handling this read (PING and SETTINGS ACKs, window updates, and the
        # requests that callbacks start on the answers) leave together, in one send, at the end.
        self._corked = []
        try:
            frames = self._reader.feed(data)
            for ftype, flags, sid, payload in frames:
                if self.lost is not None:
                    return
                self._frame_received(ftype, flags, sid, payload)
        except ProtocolError as e:
            self._fail_connection(e.code, str(e))
        except HPACKError as e:
            self._fail_connection(COMPRESSION_ERROR, f"HPACK: {e}")
        finally:
            self._uncork()

    def _check_greeting(self, data: bytes) -> bytes:
        """The server's first bytes must start a SETTINGS frame on stream 0 (RFC 9113 3.4):
        anything else means the server does not speak HTTP/2, and the connection fails saying
        so. Returns the bytes to go on with (``b""``: wait for more, or failed)."""
        greeting = self._greeting + data if self._greeting else data
        head = greeting[:9]
        # length < 64 KiB, type SETTINGS, no flags, stream 0 (the head may still be short)
        if any(w is not None and g != w for g, w in zip(head, _GREETING, strict=False)):
            if len(greeting) < 5 and b"HTTP/".startswith(greeting):
                self._greeting = greeting  # to say "HTTP/1" once the rest is here
                return b""
            self._not_http2(greeting)
            return b""
        if len(head) < 9:
            self._greeting = greeting
            return b""
        self._greeting = None
        return greeting

    def _not_http2(self, greeting: bytes) -> None:
        # A connection of a channel is named by the calls that fail (``<endpoint URL>: ...``).
        server = "the server"
        if self.endpoint is None:
            peer: Any = self.transport.getPeer() if self.transport is not None else None
            if hasattr(peer, "port"):
                server = f"the server at {peer.host}:{peer.port}"
        if greeting.startswith(b"HTTP/"):
            line = greeting.split(b"\r\n", 1)[0][:80].decode("ascii", "replace")
            what = f"it answered in HTTP/1 ({line!r})"
        else:
            what = f"its first bytes were {greeting[:16]!r}"
        # An invalid preface is a connection error (RFC 9113 3.4): GOAWAY, then close. The streams
        # are StreamNotProcessed: an HTTP/2 server sends its SETTINGS before it runs anything.
        self.lost = StreamNotProcessed(
            f"{server} did not speak HTTP/2 (gRPC): {what}. Is this an etcd client URL? "
            "Through a proxy that only speaks HTTP/1.1, use transport='gateway'"
        )
        self._greeting = None
        self._write(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, PROTOCOL_ERROR) + b"no SETTINGS preface"))
        self._abort()

    def _cancel_ready(self, ready: "Deferred[None]") -> None:
        """Given up on (the connect timeout): fails as cancelled, whenever the transport ends."""
        ready.errback(CancelledError())
        self._abort()

    def handshakeCompleted(self) -> None:
        """TLS is set up: check that the server agreed to HTTP/2 (its SETTINGS, which come next,
        let streams start)."""
        if self.ready.called:
            return
        transport: Any = self.transport
        protocol = getattr(transport, "negotiatedProtocol", None)
        if protocol != b"h2":
            got = "no protocol" if protocol is None else repr(protocol.decode("ascii", "replace"))
            self.lost = ConnectionClosed(
                f"the server did not agree to HTTP/2 over TLS (ALPN offered 'h2', got {got}): "
                "is this an etcd client URL?"
            )
            self._abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._held:
            self.release_reads()  # what arrived before the end is handled before it
        self.connected = False
        self._stop_keepalive()
        if self.lost is None:
            why = tls_error_text(reason) if self.tls else reason.getErrorMessage()
            self.lost = ConnectionClosed(f"connection lost: {why}")
        lost = self.lost
        if not self.ready.called:
            self.ready.errback(ConnectionFailed(lost.reason))
        streams = list(self.streams.values())
        self.streams.clear()
        pending = list(self.pending)
        self.pending.clear()
        self._blocked.clear()
        for stream in streams:
            stream.closed = True
            if stream.sent:
                stream.connection_failed(lost)
            else:
                stream.connection_failed(StreamNotProcessed(lost.reason))
        for stream in pending:
            stream.closed = True
            stream.connection_failed(StreamNotProcessed(lost.reason))
        if self.on_lost is not None:
            cb, self.on_lost = self.on_lost, None
            cb(self, lost)

    # -- starting and sending ------------------------------------------------------------------
    def start_stream(
        self, stream: H2Stream, header_block: bytes, data: bytes = b"", end_stream: bool = False
    ) -> None:
        """Open ``stream``: send its HEADERS (and ``data``), or queue it for a free stream slot.

        A stream that can never start here (connection lost, going away, ids exhausted) gets
        :meth:`H2Stream.connection_failed` with :class:`StreamNotProcessed`.
        """
        stream.connection = self
        stream._request = (header_block, data, end_stream)  # type: ignore[attr-defined]
        if not self.accepting:
            self._refuse(stream)
        elif len(self.streams) >= self.remote_max_streams:
            self.pending.append(stream)
        else:
            self._open(stream)

    def _refuse(self, stream: H2Stream) -> None:
        stream.closed = True
        if self.lost is not None:
            why = self.lost.reason
        elif self.goaway_last_stream_id is not None:
            why = "connection is going away (GOAWAY)"
        else:
            why = "connection cannot start new streams"
        stream.connection_failed(StreamNotProcessed(why))

    def _open(self, stream: H2Stream) -> None:
        header_block, data, end_stream = stream._request  # type: ignore[attr-defined]
        del stream._request  # type: ignore[attr-defined]
        sid = self.next_stream_id
        self.next_stream_id = sid + 2
        stream.stream_id = sid
        stream.send_window = self.remote_initial_window
        self.streams[sid] = stream
        transport = self.transport
        assert transport is not None
        out = self._headers_frames(sid, header_block, end_stream and not data)
        stream.sent = True
        if end_stream:
            stream.local_closed = True
        n = len(data)
        if not stream._outbound and (
            not data
            or (n <= self.send_window and n <= stream.send_window and n <= self.remote_max_frame)
        ):
            if data:
                self.send_window -= n
                stream.send_window -= n
                out += _HEAD.pack(n << 8 | DATA, FLAG_END_STREAM if end_stream else 0, sid) + data
            self._send(out)
        else:
            self._send(out)
            if data or end_stream:
                stream._queue().appendleft((data, end_stream))
            self._flush_stream(stream)
        if self.next_stream_id > MAX_STREAM_ID:
            self._drain()

    def _headers_frames(self, sid: int, block: bytes, end_stream: bool) -> bytes:
        flags = FLAG_END_STREAM if end_stream else 0
        limit = self.remote_max_frame
        if len(block) <= limit:
            return _HEAD.pack(len(block) << 8 | HEADERS, flags | FLAG_END_HEADERS, sid) + block
        parts = [block[i : i + limit] for i in range(0, len(block), limit)]
        out = [frame(HEADERS, flags, sid, parts[0])]
        for i, part in enumerate(parts[1:], 1):
            last = i == len(parts) - 1
            out.append(frame(CONTINUATION, FLAG_END_HEADERS if last else 0, sid, part))
        return b"".join(out)

    def _send_data(self, stream: H2Stream, data: bytes, end_stream: bool) -> None:
        if end_stream:
            stream.local_closed = True
        if stream._outbound or stream.stream_id == 0:
            # Behind queued data, or the stream still waits for a slot: keep the order.
            stream._queue().append((data, end_stream))
            return
        self._write_data(stream, data, end_stream)

    def _write_data(self, stream: H2Stream, data: bytes, end_stream: bool) -> bool:
        """Write as much of ``data`` as the windows allow; queue the rest. True if all went."""
        transport = self.transport
        assert transport is not None
        sid = stream.stream_id
        out = []
        view = data
        while True:
            n = min(len(view), self.send_window, stream.send_window, self.remote_max_frame)
            if n <= 0:
                if view:
                    break
                n = 0  # an empty frame (END_STREAM) needs no window, even a negative one
            chunk, view = view[:n], view[n:]
            self.send_window -= n
            stream.send_window -= n
            last = not view
            flags = FLAG_END_STREAM if (last and end_stream) else 0
            out.append(_HEAD.pack(n << 8 | DATA, flags, sid) + chunk)
            if last:
                break
        if out:
            self._send(b"".join(out))
        if view:
            stream._queue().appendleft((view, end_stream))
            self._blocked[sid] = stream
            return False
        return True

    def _flush_stream(self, stream: H2Stream) -> bool:
        """Write a stream's queued DATA as far as the windows allow. True once all is out."""
        q = stream._outbound
        while q:
            data, end_stream = q.popleft()
            if not self._write_data(stream, data, end_stream):
                return False
        self._blocked.pop(stream.stream_id, None)
        return True

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self.send_window <= 0:
                return
            if stream.send_window > 0 and self._flush_stream(stream):
                stream.send_window_opened()

    # -- receiving -----------------------------------------------------------------------------
    def _frame_received(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._header_stream and ftype != CONTINUATION:
            raise ProtocolError("expected CONTINUATION")
        if ftype == DATA:
            self._on_data(flags, sid, payload)
        elif ftype == HEADERS:
            if sid == 0:
                raise ProtocolError("HEADERS on stream 0")
            block = _strip_padding(flags, payload)
            if flags & FLAG_PRIORITY:
                block = block[5:]
            self._on_header_fragment(sid, block, flags & FLAG_END_STREAM, flags & FLAG_END_HEADERS)
        elif ftype == CONTINUATION:
            if sid != self._header_stream or sid == 0:
                raise ProtocolError("CONTINUATION for the wrong stream")
            self._on_header_fragment(sid, payload, 0, flags & FLAG_END_HEADERS, continued=True)
        elif ftype == WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif ftype == SETTINGS:
            if sid != 0:
                raise ProtocolError("SETTINGS on a stream")
            if not flags & FLAG_ACK:
                self._on_settings(payload)
        elif ftype == PING:
            if len(payload) != 8 or sid != 0:
                raise ProtocolError("bad PING", FRAME_SIZE_ERROR)
            if flags & FLAG_ACK:
                self._on_ping_ack(payload)
            else:
                self._ack_ping(payload)
        elif ftype == RST_STREAM:
            if len(payload) != 4:
                raise ProtocolError("bad RST_STREAM", FRAME_SIZE_ERROR)
            self._on_rst(sid, _U32.unpack(payload)[0])
        elif ftype == GOAWAY:
            self._on_goaway(payload)
        elif ftype == PUSH_PROMISE:
            raise ProtocolError("PUSH_PROMISE although push is disabled")
        # PRIORITY and unknown frame types are ignored.

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolError("DATA on stream 0")
        flow = len(payload)
        self._conn_unacked += flow
        if self._conn_unacked >= self.local_connection_window // 4:
            self._write(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._conn_unacked)))
            self._conn_unacked = 0
        stream = self.streams.get(sid)
        data = _strip_padding(flags, payload)
        if stream is None:
            return  # a stream we reset or finished: the connection window was still credited
        if flow != len(data):
            self._stream_consumed(stream, flow - len(data))  # padding is consumed at once
        if data:
            stream.data_received(data)
        if flags & FLAG_END_STREAM and not stream.closed:
            self._end_stream(stream)

    def _stream_consumed(self, stream: H2Stream, nbytes: int) -> None:
        """Return a stream's window in batches, once half of it has been consumed."""
        stream._unacked += nbytes
        if stream._unacked >= self.local_stream_window // 2 and not stream.closed:
            self._write(frame(WINDOW_UPDATE, 0, stream.stream_id, _U32.pack(stream._unacked)))
            stream._unacked = 0

    def _on_header_fragment(
        self, sid: int, fragment: bytes, end_stream: int, end_headers: int, continued: bool = False
    ) -> None:
        if continued:
            self._header_buf += fragment
        else:
            self._header_buf = fragment
            self._header_end_stream = bool(end_stream)
        if not end_headers:
            self._header_stream = sid
            return
        self._header_stream = 0
        block, self._header_buf = self._header_buf, b""
        headers = self._decode_headers(block)
        stream = self.streams.get(sid)
        if stream is None:
            return
        end = self._header_end_stream
        stream.headers_received(headers, end)
        if end and not stream.closed:
            self._end_stream(stream)

    def _decode_headers(self, block: bytes) -> List[Tuple[bytes, bytes]]:
        """Decode one header block, in order, through the connection's one HPACK decoder.

        Decoding depends only on the block and the dynamic table. A block that leaves the table
        as it was is remembered, so the next identical block (etcd's steady-state responses and
        trailers are pure table references) costs a dict lookup; any block that changes the
        table clears what was remembered.
        """
        cache = self._header_cache
        headers = cache.get(block)
        if headers is not None:
            return headers
        table = self._decoder.header_table
        entries = table.dynamic_entries
        size = len(entries)
        first = entries[0] if size else None
        maxsize = table.maxsize  # a size update changes the table even when no entry moves
        headers = [tuple(h) for h in self._decoder.decode(block, raw=True)]  # type: ignore[misc]
        if (
            len(entries) == size
            and (entries[0] if size else None) is first
            and table.maxsize == maxsize
        ):
            if len(cache) < 256:
                cache[block] = headers
        else:
            cache.clear()
        return headers

    def _end_stream(self, stream: H2Stream) -> None:
        self._forget(stream)
        if not stream.local_closed:
            # The server finished first (e.g. an error status): we will send nothing more.
            self._write(frame(RST_STREAM, 0, stream.stream_id, _U32.pack(NO_ERROR)))
        stream.stream_ended()

    def _forget(self, stream: H2Stream) -> None:
        stream.closed = True
        sid = stream.stream_id
        self.streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if stream._outbound:
            stream._outbound.clear()
        self._start_pending()
        if self._closing and not self.streams:
            self._close_transport()

    def _start_pending(self) -> None:
        while self.pending and len(self.streams) < self.remote_max_streams:
            stream = self.pending.popleft()
            if not self.accepting:
                self._refuse(stream)
            else:
                self._open(stream)

    def _reset_stream(self, stream: H2Stream, code: int) -> None:
        if stream.stream_id == 0 or stream.stream_id not in self.streams:
            # Still waiting for a slot: just drop it.
            try:
                self.pending.remove(stream)
            except ValueError:
                pass
            stream.closed = True
            return
        if self.lost is None:
            self._write(frame(RST_STREAM, 0, stream.stream_id, _U32.pack(code)))
        self._forget(stream)

    def _on_rst(self, sid: int, code: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        self._forget(stream)
        if code == REFUSED_STREAM:
            stream.connection_failed(StreamNotProcessed("stream refused by the server"))
        else:
            stream.reset_received(code)

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError("bad WINDOW_UPDATE", FRAME_SIZE_ERROR)
        inc = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise ProtocolError("WINDOW_UPDATE of 0")
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                raise ProtocolError("connection window overflow", FLOW_CONTROL_ERROR)
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            if inc == 0:
                self._reset_stream(stream, PROTOCOL_ERROR)
                stream.reset_received(PROTOCOL_ERROR)
                return
            stream.send_window += inc
            if stream.send_window > MAX_WINDOW:
                self._reset_stream(stream, FLOW_CONTROL_ERROR)
                stream.reset_received(FLOW_CONTROL_ERROR)
                return
        if self._blocked:
            self._flush_blocked()

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ProtocolError("bad SETTINGS length", FRAME_SIZE_ERROR)
        for i in range(0, len(payload), 6):
            ident, value = _SETTING.unpack_from(payload, i)
            if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("initial window too large", FLOW_CONTROL_ERROR)
                delta = value - self.remote_initial_window
                self.remote_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError("stream window overflow", FLOW_CONTROL_ERROR)
            elif ident == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
                    raise ProtocolError("bad MAX_FRAME_SIZE")
                self.remote_max_frame = value
            elif ident == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.remote_max_streams = value
        self._write(frame(SETTINGS, FLAG_ACK, 0))
        if not self.ready.called:
            # The server's preface: it speaks HTTP/2 and is alive (as grpc-go, a connection is
            # not ready at TCP connect: a member that accepts and never answers is not used)
            self.ready.callback(None)
        self._start_pending()
        if self._blocked:
            self._flush_blocked()

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ProtocolError("bad GOAWAY", FRAME_SIZE_ERROR)
        last, code = _GOAWAY.unpack_from(payload)
        last &= 0x7FFFFFFF
        first = self.goaway_last_stream_id is None
        if not first and last > (self.goaway_last_stream_id or 0):
            last = self.goaway_last_stream_id or 0
        self.goaway_last_stream_id = last
        self.goaway_code = code
        self.goaway_debug = payload[8:]
        debug = f", {self.goaway_debug!r}" if self.goaway_debug else ""
        why = f"server sent GOAWAY (code {code}{debug})"
        for sid in [s for s in self.streams if s > last]:
            stream = self.streams[sid]
            self._forget(stream)
            stream.connection_failed(StreamNotProcessed(why))
        for stream in list(self.pending):
            self.pending.remove(stream)
            stream.closed = True
            stream.connection_failed(StreamNotProcessed(why))
        if first and self.on_goaway is not None:
            self.on_goaway(self)
        self._closing = True
        if not self.streams:
            self._close_transport()

    # -- keepalive -----------------------------------------------------------------------------
    def _arm_keepalive(self) -> None:
        if self.keepalive_interval is not None and self.lost is None:
            self._ping_timer = self.clock.callLater(self.keepalive_interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._ping_timer = None
        if self._received_since_ping or not self.streams:
            self._received_since_ping = False
            self._arm_keepalive()
            return
        self._write(frame(PING, 0, 0, self._ping_payload))
        self._ping_deadline = self.clock.callLater(self.keepalive_timeout, self._ping_timed_out)

    def _on_ping_ack(self, payload: bytes) -> None:
        if payload == self._ping_payload and self._ping_deadline is not None:
            self._ping_deadline.cancel()
            self._ping_deadline = None
            self._received_since_ping = False
            self._arm_keepalive()

    def _ping_timed_out(self) -> None:
        self._ping_deadline = None
        self.lost = ConnectionClosed(
            f"keepalive PING not answered within {self.keepalive_timeout} s"
        )
        self._abort()

    def _stop_keepalive(self) -> None:
        self._ping_acks = []
        for timer in (self._ping_timer, self._ping_deadline, self._ping_ack_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._ping_timer = self._ping_deadline = self._ping_ack_timer = None

    # -- closing -------------------------------------------------------------------------------
    def _drain(self) -> None:
        """No new streams (ids exhausted); close once the open ones finish."""
        self._closing = True
        if self.on_goaway is not None:
            self.on_goaway(self)
        while self.pending:
            self._refuse(self.pending.popleft())
        if not self.streams:
            self._close_transport()

    def _fail_connection(self, code: int, message: str) -> None:
        if self.lost is None:
            self.lost = ConnectionClosed(f"HTTP/2 protocol error: {message}")
            # Our last-stream-id is the highest *server*-started stream we handled: none.
            self._write(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, code) + message.encode()[:200]))
        self._abort()

    def _close_transport(self) -> None:
        self._uncork()
        transport = self.transport
        if transport is not None and self.connected:
            transport.loseConnection()

    def _abort(self) -> None:
        self._uncork()  # e.g. a GOAWAY just written
        transport = self.transport
        if transport is None or not self.connected:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    def close(self, message: str = "client closed the connection") -> None:
        """Close the connection now: every open stream fails, a GOAWAY is sent first."""
        if self.lost is None:
            self.lost = ConnectionClosed(message)
            if self.connected:
                self._write(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, NO_ERROR)))
        self._stop_keepalive()
        self._abort()

    def _write(self, data: bytes) -> None:
        if self.connected:
            self._send(data)

    def _send(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        else:
            self._raw_send(data)

    def _ack_ping(self, payload: bytes) -> None:
        """Answer a server PING after ``PING_ACK_DELAY``, with any others that came meanwhile.

        etcd's gRPC server (grpc-go's bandwidth estimator) PINGs on the first DATA frame it
        reads while none of its PINGs is unanswered. An ACK sent at once, or with the next
        request, gets a PING back for every call: one more packet and one more reactor turn on
        each side per call. Held for a moment, the ACKs cost at most one send per
        ``PING_ACK_DELAY`` on a busy connection (the estimator only sees a longer round trip).
        """
        self._ping_acks.append(frame(PING, FLAG_ACK, 0, payload))
        if self._ping_ack_timer is None:
            self._ping_ack_timer = self.clock.callLater(PING_ACK_DELAY, self._flush_ping_acks)

    def _flush_ping_acks(self) -> None:
        self._ping_ack_timer = None
        acks, self._ping_acks = self._ping_acks, []
        if acks and self.connected:
            self._send(b"".join(acks))

    def _raw_send(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(data)

    def _uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self.connected:
            self._raw_send(b"".join(corked) if len(corked) > 1 else corked[0])
