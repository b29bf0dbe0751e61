"""A scriptable gRPC-ish HTTP/2 server for tests, built on the ``h2`` package.

Real etcd rarely produces the edge cases an HTTP/2 client must survive (GOAWAY with calls in
flight, CONTINUATION, padding, tiny windows, refused streams, a peer that stops reading...).
This server produces them on demand, over real loopback TCP::

    server = GrpcServer()
    server.listen()                                # 127.0.0.1, a free port: server.port
    server.handlers[b"/pkg.Svc/Echo"] = echo       # called once the request is complete
    ...
    await server.stop()

A *handler* is called with a :class:`ServerCall` once the client ends its side of the stream,
and answers (or not) through the call: :meth:`ServerCall.reply`,
:meth:`ServerCall.trailers_only`, :meth:`ServerCall.reset`, or piece by piece with
:meth:`~ServerCall.send_headers`, :meth:`~ServerCall.send_data` (exactly one DATA frame per call,
unless the flow-control window forces a split), :meth:`~ServerCall.send_trailers`. Outgoing DATA
respects the client's windows: it waits in a per-stream queue, and trailers wait behind it.

What the connection does is set on the :class:`GrpcServer` before the client connects (settings,
write splitting, withholding flow-control window) or driven on a live :class:`ServerProtocol`
(``call.protocol``) during a test (GOAWAY, SETTINGS changes, pausing reads). Everything the
client did is recorded (``calls``, ``resets``, ``window_updates``, ``connections``...) so tests
can assert on the server's view.

``h2`` keeps the connection state honest (HPACK, stream states, and it checks the client's flow
control); a few frames are written raw, bypassing it, where ``h2`` cannot produce them: a GOAWAY
after which the server still answers older streams, a SETTINGS_MAX_CONCURRENT_STREAMS that the
server enforces itself with ``REFUSED_STREAM`` as grpc-go does, and padded or prioritised
HEADERS (``h2``'s output is re-framed; padding does not touch HPACK state).

CONTINUATION needs no switch: 16384 is the smallest SETTINGS_MAX_FRAME_SIZE there is (and the
client's), so a header block above it (a long ``grpc-message``, many metadata headers) is split
into HEADERS + CONTINUATION by ``h2``.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, SettingsFrame
from twisted.internet import reactor as _installed_reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

__all__ = [
    "GrpcServer",
    "ServerCall",
    "ServerProtocol",
    "echo",
    "grpc_frame",
    "grpc_messages",
    "never",
    "percent_encode",
]

_reactor: Any = _installed_reactor  # interfaces are not typed without mypy-zope
Headers = list[tuple[bytes, bytes]]
Handler = Callable[["ServerCall"], None]

REFUSED_STREAM = 0x7
CANCEL = 0x8


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_messages(body: bytes) -> list[bytes]:
    """Cut a request body into its gRPC messages (it must hold whole messages only)."""
    out = []
    pos = 0
    while pos < len(body):
        (n,) = struct.unpack_from(">I", body, pos + 1)
        out.append(bytes(body[pos + 5 : pos + 5 + n]))
        pos += 5 + n
    if pos != len(body):
        raise ValueError("request body ends inside a gRPC message")
    return out


def percent_encode(message: str) -> bytes:
    """``grpc-message`` encoding: UTF-8, with ``%`` and bytes outside 0x20-0x7E as ``%XX``."""
    out = bytearray()
    for b in message.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


class ServerCall:
    """One client stream as the server sees it, and the means to answer it."""

    def __init__(self, protocol: ServerProtocol, stream_id: int, headers: Headers) -> None:
        self.protocol = protocol
        self.stream_id = stream_id
        self.headers = headers
        self.path = self.header(b":path") or b""
        self.body = bytearray()
        self.data_frames = 0
        #: the client ended its side (END_STREAM)
        self.ended = False
        #: the error code of the client's RST_STREAM, if it reset the stream
        self.reset_code: int | None = None
        #: the server ended its side or reset the stream
        self.finished = False
        self.refused = False
        self._out: deque[tuple[str, object, int | None]] = deque()

    def __repr__(self) -> str:
        return (
            f"<ServerCall {self.path.decode()} stream {self.stream_id} conn {self.protocol.index}>"
        )

    # -- the request ---------------------------------------------------------------------------
    def header(self, name: bytes) -> bytes | None:
        """The last value of request header ``name``."""
        value = None
        for k, v in self.headers:
            if k == name:
                value = v
        return value

    @property
    def messages(self) -> list[bytes]:
        """The request's gRPC messages."""
        return grpc_messages(bytes(self.body))

    @property
    def message(self) -> bytes:
        """The request's only gRPC message."""
        (only,) = self.messages
        return only

    # -- answering -----------------------------------------------------------------------------
    def send_headers(
        self,
        extra: Sequence[tuple[bytes, bytes]] = (),
        *,
        status: bytes = b"200",
        end_stream: bool = False,
        pad_length: int | None = None,
        priority: bool = False,
    ) -> None:
        """Send the response HEADERS (``:status``, content-type and ``extra``)."""
        headers = [(b":status", status), (b"content-type", b"application/grpc"), *extra]
        self.protocol._send_headers(self, headers, end_stream, pad_length, priority)
        if end_stream:
            self._finish()

    def send_data(self, data: bytes, *, pad_length: int | None = None) -> None:
        """Send ``data`` as one DATA frame (split only where the client's window forces it)."""
        self._out.append(("data", data, pad_length))
        self.protocol._pump(self)

    def send_message(self, message: bytes, *, pad_length: int | None = None) -> None:
        """Send one gRPC message in one DATA frame."""
        self.send_data(grpc_frame(message), pad_length=pad_length)

    def send_trailers(
        self,
        status: int = 0,
        message: str = "",
        extra: Sequence[tuple[bytes, bytes]] = (),
        *,
        pad_length: int | None = None,
    ) -> None:
        """Send the trailers (after any DATA still waiting for window) and end the stream."""
        trailers = [(b"grpc-status", str(status).encode())]
        if message:
            trailers.append((b"grpc-message", percent_encode(message)))
        trailers.extend(extra)
        self._out.append(("trailers", trailers, pad_length))
        self.protocol._pump(self)

    def reply(self, message: bytes, *, pad_length: int | None = None) -> None:
        """A whole successful unary answer: headers, one message, trailers with status 0."""
        self.send_headers(pad_length=pad_length)
        self.send_message(message, pad_length=pad_length)
        self.send_trailers(pad_length=pad_length)

    def trailers_only(
        self, status: int, message: str = "", extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """An error answer in one HEADERS frame with END_STREAM (gRPC "Trailers-Only")."""
        headers: Headers = [(b"grpc-status", str(status).encode())]
        if message:
            headers.append((b"grpc-message", percent_encode(message)))
        headers.extend(extra)
        self.send_headers(headers, end_stream=True)

    def reset(self, code: int) -> None:
        """Send RST_STREAM with ``code``."""
        self.protocol._reset(self, code)

    # -- flow-control view ---------------------------------------------------------------------
    @property
    def send_window(self) -> int:
        """How many bytes the server may still send on this stream (the stream's own window)."""
        stream = self.protocol.conn.streams.get(self.stream_id)
        return stream.outbound_flow_control_window if stream is not None else 0

    @property
    def queued(self) -> int:
        """Bytes of DATA waiting for the client's window."""
        return sum(len(item) for kind, item, _ in self._out if isinstance(item, bytes))

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.protocol.server.open_streams -= 1


class ServerProtocol(Protocol):
    """One server-side HTTP/2 connection (see the module docstring)."""

    transport: Any

    def __init__(self, server: GrpcServer, index: int) -> None:
        self.server = server
        self.index = index
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.calls: dict[int, ServerCall] = {}
        self.lost: Failure | None = None
        self.lost_d: Deferred[None] = Deferred()
        #: hold back every WINDOW_UPDATE (the client's DATA piles up unacknowledged)
        self.hold_window = server.hold_window
        self._unacked: dict[int, int] = {}
        self.max_streams: int | None = server.max_concurrent_streams
        self._chunks: deque[bytes] = deque()
        self._pumping = False

    # -- Twisted protocol ----------------------------------------------------------------------
    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.setTcpNoDelay(True)
        initial = {
            SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,  # enforced here, not by h2
            SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
        }
        self.conn.local_settings = Settings(client=False, initial_values=initial)
        self.conn.initiate_connection()
        if self.server.initial_window_size is not None:
            # Through update_settings, so h2 holds the client to it only once it is ACKed (as
            # the RFC says; until then the client may use the default 65535).
            self.conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: self.server.initial_window_size}
            )
        if self.server.connection_window is not None:
            self.conn.increment_flow_control_window(self.server.connection_window - 65535)
        self._flush()
        if self.max_streams is not None:
            self.send_raw(
                self._settings_frame({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
            )

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:
            self.server.errors.append(e)
            self._flush()
            assert self.transport is not None
            self.transport.loseConnection()
            return
        for event in events:
            self._event(event)
        self._flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason
        for call in self.calls.values():
            if not call.finished:
                call._finish()
        self.lost_d.callback(None)

    # -- events --------------------------------------------------------------------------------
    def _event(self, event: object) -> None:
        server = self.server
        if isinstance(event, RequestReceived):
            call = ServerCall(self, event.stream_id, list(event.headers))
            self.calls[event.stream_id] = call
            server.calls.append(call)
            if self.max_streams is not None and server.open_streams >= self.max_streams:
                call.refused = call.finished = True
                server.refused.append(call)
                self.conn.reset_stream(event.stream_id, REFUSED_STREAM)
                return
            server.open_streams += 1
            server.max_open = max(server.max_open, server.open_streams)
        elif isinstance(event, DataReceived):
            call = self.calls[event.stream_id]
            if not call.refused:
                call.body += event.data
                call.data_frames += 1
            self._unacked[event.stream_id] = (
                self._unacked.get(event.stream_id, 0) + event.flow_controlled_length
            )
            if not self.hold_window:
                self._ack(event.stream_id)
        elif isinstance(event, StreamEnded):
            call = self.calls[event.stream_id]
            call.ended = True
            if not call.refused:
                server.requests.append(call)
                server.handlers.get(call.path, server.default_handler)(call)
        elif isinstance(event, StreamReset):
            call = self.calls.get(event.stream_id)  # type: ignore[assignment]
            if not event.remote_reset:
                server.errors.append(event)  # h2 reset it: the client broke a stream rule
            else:
                server.resets.append((event.stream_id, int(event.error_code or 0), self.index))
            if call is not None:
                call.reset_code = int(event.error_code or 0)
                call._out.clear()
                call._finish()
        elif isinstance(event, WindowUpdated):
            server.window_updates.append((self.index, event.stream_id, event.delta))
            self._pump_all()
        elif isinstance(event, RemoteSettingsChanged):
            self._pump_all()
        elif isinstance(event, PingReceived):
            server.pings.append(event.ping_data)
        elif isinstance(event, ConnectionTerminated):
            server.goaways.append(
                (self.index, int(event.error_code or 0), int(event.last_stream_id or 0))
            )

    # -- inbound flow control ------------------------------------------------------------------
    def _ack(self, stream_id: int) -> None:
        n = self._unacked.pop(stream_id, 0)
        if n:
            self.conn.acknowledge_received_data(n, stream_id)

    def release_window(self, extra: int = 0) -> None:
        """Stop holding back window: return every byte received, plus ``extra`` per window."""
        self.hold_window = False
        for sid in list(self._unacked):
            self._ack(sid)
        if extra:
            self.conn.increment_flow_control_window(extra)
            for sid, call in self.calls.items():
                if not call.ended and not call.refused and call.reset_code is None:
                    self.conn.increment_flow_control_window(extra, sid)
        self._flush()

    # -- outbound ------------------------------------------------------------------------------
    def _send_headers(
        self,
        call: ServerCall,
        headers: Headers,
        end_stream: bool,
        pad_length: int | None,
        priority: bool,
    ) -> None:
        self._flush()
        self.conn.send_headers(call.stream_id, headers, end_stream=end_stream)
        out = self.conn.data_to_send()
        if pad_length is not None or priority:
            out = _reframe_headers(out, pad_length, priority)
        self._write(out)

    def _pump(self, call: ServerCall) -> None:
        """Send what the windows allow of ``call``'s queue."""
        out = call._out
        conn = self.conn
        while out and not call.finished:
            kind, item, pad = out[0]
            if kind == "trailers":
                out.popleft()
                self._send_headers(call, item, True, pad, False)  # type: ignore[arg-type]
                call._finish()
                break
            data: bytes = item  # type: ignore[assignment]
            window = min(
                conn.local_flow_control_window(call.stream_id),
                conn.max_outbound_frame_size,
            )
            extra = pad + 1 if pad is not None else 0  # padding costs window too
            if len(data) + extra <= window:
                out.popleft()
                conn.send_data(call.stream_id, data, pad_length=pad)
            elif window > extra:  # send what fits, keep the rest (padded alike)
                n = window - extra
                out[0] = (kind, data[n:], pad)
                conn.send_data(call.stream_id, data[:n], pad_length=pad)
            else:
                break
        self._flush()

    def _pump_all(self) -> None:
        for call in list(self.calls.values()):
            if call._out:
                self._pump(call)

    def _reset(self, call: ServerCall, code: int) -> None:
        call._out.clear()
        self.conn.reset_stream(call.stream_id, code)
        call._finish()
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.lost is not None:
            return
        size = self.server.write_chunk
        if size is None and not self._chunks:
            transport.write(data)
            return
        step = size or len(data)
        self._chunks.extend(data[i : i + step] for i in range(0, len(data), step))
        if not self._pumping:
            self._pumping = True
            _reactor.callLater(0, self._write_chunk)

    def _write_chunk(self) -> None:
        if self.lost is not None or not self._chunks:
            self._pumping = False
            return
        assert self.transport is not None
        self.transport.write(self._chunks.popleft())
        self.server.chunk_writes += 1
        _reactor.callLater(self.server.write_delay, self._write_chunk)

    # -- test controls -------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Write bytes behind ``h2``'s back (after whatever ``h2`` has pending)."""
        self._flush()
        self._write(data)

    def goaway(self, last_stream_id: int, code: int = 0, debug: bytes = b"") -> None:
        """Send GOAWAY, yet keep answering streams at or below ``last_stream_id``."""
        self.send_raw(
            GoAwayFrame(
                0, last_stream_id=last_stream_id, error_code=code, additional_data=debug
            ).serialize()
        )

    def set_max_concurrent_streams(self, n: int) -> None:
        """Announce SETTINGS_MAX_CONCURRENT_STREAMS=n and refuse streams beyond it."""
        self.max_streams = n
        self.send_raw(self._settings_frame({SettingCodes.MAX_CONCURRENT_STREAMS: n}))

    def update_settings(self, settings: dict[SettingCodes | int, int]) -> None:
        """Change settings through ``h2`` (it applies them once the client ACKs)."""
        self.conn.update_settings(settings)
        self._flush()

    def pause_reading(self) -> None:
        """Stop reading from the socket: the client's writes back up."""
        assert self.transport is not None
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        assert self.transport is not None
        self.transport.resumeProducing()

    def abort(self) -> None:
        """Drop the TCP connection at once (a reset, no GOAWAY)."""
        assert self.transport is not None
        self.transport.abortConnection()

    @staticmethod
    def _settings_frame(settings: dict[SettingCodes, int]) -> bytes:
        return SettingsFrame(0, settings={int(k): v for k, v in settings.items()}).serialize()


def _reframe_headers(data: bytes, pad_length: int | None, priority: bool) -> bytes:
    """Add padding and/or priority fields to the HEADERS frame in ``data``."""
    out = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        view = view[9 + length :]
        if isinstance(frame, HeadersFrame):
            if pad_length is not None:
                frame.flags.add("PADDED")
                frame.pad_length = pad_length
            if priority:
                frame.flags.add("PRIORITY")
                frame.depends_on, frame.stream_weight, frame.exclusive = 0, 200, True
        out.append(frame.serialize())
    return b"".join(out)


def echo(call: ServerCall) -> None:
    """Answer with the request's message."""
    call.reply(call.message)


def never(call: ServerCall) -> None:
    """Never answer."""


def unimplemented(call: ServerCall) -> None:
    """What the server answers for a path without a handler."""
    call.trailers_only(12, f"unknown method {call.path.decode()}")


class GrpcServer:
    """The listening server; its attributes set how new connections behave.

    :ivar handlers: request handlers by ``:path``.
    :ivar initial_window_size: SETTINGS_INITIAL_WINDOW_SIZE announced (``None``: 65535).
    :ivar connection_window: the connection receive window (``None``: 65535).
    :ivar max_concurrent_streams: announced and enforced with ``REFUSED_STREAM``.
    :ivar hold_window: send no WINDOW_UPDATE until :meth:`ServerProtocol.release_window`.
    :ivar write_chunk: write the output in pieces of this many bytes, one per reactor turn.
    """

    def __init__(self) -> None:
        self.handlers: dict[bytes, Handler] = {}
        self.default_handler: Handler = unimplemented
        self.initial_window_size: int | None = None
        self.connection_window: int | None = None
        self.max_concurrent_streams: int | None = None
        self.hold_window = False
        self.write_chunk: int | None = None
        self.write_delay = 0.0
        self.port = 0
        self._listening: Any = None  # IListeningPort
        # What happened:
        self.connections: list[ServerProtocol] = []
        self.calls: list[ServerCall] = []  # every stream the client opened
        self.requests: list[ServerCall] = []  # complete requests handed to handlers
        self.refused: list[ServerCall] = []
        self.resets: list[tuple[int, int, int]] = []  # (stream id, code, connection index)
        self.window_updates: list[tuple[int, int, int]] = []  # (connection, stream id, delta)
        self.goaways: list[tuple[int, int, int]] = []  # from the client
        self.pings: list[bytes] = []
        self.errors: list[object] = []  # h2 exceptions and h2's own resets
        self.chunk_writes = 0
        self.open_streams = 0
        self.max_open = 0

    def listen(self) -> int:
        """Listen on 127.0.0.1, on a free port; returns the port."""
        factory = Factory.forProtocol(self._build)
        self._listening = _reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _build(self) -> ServerProtocol:
        proto = ServerProtocol(self, len(self.connections))
        self.connections.append(proto)
        return proto

    def stream_resets(self, code: int | None = None) -> list[int]:
        """Stream ids the client reset (with ``code``, if given)."""
        return [sid for sid, c, _ in self.resets if code is None or c == code]

    async def stop(self) -> None:
        """Stop listening and drop every connection; returns once all are gone."""
        if self._listening is not None:
            await self._listening.stopListening()
            self._listening = None
        waits = []
        for proto in self.connections:
            if proto.lost is None:
                proto.abort()
                waits.append(proto.lost_d)
        if waits:
            await DeferredList(waits)
