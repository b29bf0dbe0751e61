"""HTTP/2 frames and the HPACK literals a client needs: constants, a framer, errors.

Kept apart from the connection (:mod:`txetcd._h2.connection`) so that both it and the tests can use
the
framing without a protocol instance. :class:`FrameReader` cuts a byte stream into frames
whatever the split of the reads; :func:`encode_literal` and friends build HPACK literals that
need no encoder state, so a request header block can be made once per method.
"""

from __future__ import annotations

import struct
from typing import Dict, Iterator, List, Sequence, Tuple

__all__ = [
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONTINUATION",
    "ConnectionClosed",
    "DATA",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_WINDOW",
    "FLAG_ACK",
    "FLAG_END_HEADERS",
    "FLAG_END_STREAM",
    "FLAG_PADDED",
    "FLAG_PRIORITY",
    "FLOW_CONTROL_ERROR",
    "FRAME_SIZE_ERROR",
    "FrameReader",
    "GOAWAY",
    "HEADERS",
    "INTERNAL_ERROR",
    "MAX_HEADER_LIST",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "NO_ERROR",
    "PING",
    "PING_ACK_DELAY",
    "PREFACE",
    "PRIORITY",
    "PROTOCOL_ERROR",
    "PUSH_PROMISE",
    "ProtocolError",
    "REFUSED_STREAM",
    "RST_STREAM",
    "SETTINGS",
    "SETTINGS_ENABLE_PUSH",
    "SETTINGS_HEADER_TABLE_SIZE",
    "SETTINGS_INITIAL_WINDOW_SIZE",
    "SETTINGS_MAX_CONCURRENT_STREAMS",
    "SETTINGS_MAX_FRAME_SIZE",
    "SETTINGS_MAX_HEADER_LIST_SIZE",
    "StreamNotProcessed",
    "WINDOW_UPDATE",
    "encode_int",
    "encode_literal",
    "encode_literal_indexed_name",
    "frame",
    "headers_dict",
    "iter_frames",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# Error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
#: how long the ACK of a server's PING is held (seconds; see H2Connection._ack_ping)
PING_ACK_DELAY = 0.010
MAX_HEADER_LIST = 1 << 20  # announced in SETTINGS_MAX_HEADER_LIST_SIZE and enforced by the decoder

_HEAD = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_GOAWAY = struct.Struct(">II")


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Serialise one frame."""
    return _HEAD.pack(len(payload) << 8 | ftype, flags, stream_id) + payload


class ProtocolError(Exception):
    """The peer broke the HTTP/2 protocol; the connection is closed with ``code``."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ConnectionClosed(Exception):
    """The connection carrying a stream went away; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamNotProcessed(ConnectionClosed):
    """The stream certainly never reached the server's application (safe to send again).

    Raised for streams never written to the wire, streams above a GOAWAY's last-stream-id, and
    streams the server refused with ``REFUSED_STREAM``.
    """


# -- HPACK literals that need no encoder state -------------------------------------------------


def encode_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """Encode an HPACK integer with an N-bit prefix; ``first`` holds the flag bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(s: bytes) -> bytes:
    return encode_int(len(s), 7) + s


def encode_literal_indexed_name(index: int, value: bytes, *, sensitive: bool = False) -> bytes:
    """A literal header field, not indexed, whose name is static-table entry ``index``."""
    return encode_int(index, 4, 0x10 if sensitive else 0x00) + _string(value)


def encode_literal(name: bytes, value: bytes, *, sensitive: bool = False) -> bytes:
    """A literal header field with a literal name, not indexed (``sensitive``: never indexed)."""
    return (b"\x10" if sensitive else b"\x00") + _string(name) + _string(value)


# -- framing -----------------------------------------------------------------------------------


class FrameReader:
    """Cut a byte stream into frames, whatever the split of the reads.

    ``feed(data)`` returns every frame completed by ``data`` as ``(type, flags, stream_id,
    payload)``; a partial frame is kept until the rest arrives.
    """

    __slots__ = ("_buf", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = b""
        self.max_frame_size = max_frame_size

    def feed(self, data: bytes) -> List[Tuple[int, int, int, bytes]]:
        buf = self._buf + data if self._buf else data
        frames = []
        pos = 0
        end = len(buf)
        unpack = _HEAD.unpack_from
        while end - pos >= 9:
            lt, flags, sid = unpack(buf, pos)
            length = lt >> 8
            if length > self.max_frame_size:
                raise ProtocolError(
                    f"frame of {length} bytes exceeds max frame size {self.max_frame_size}",
                    FRAME_SIZE_ERROR,
                )
            stop = pos + 9 + length
            if stop > end:
                break
            frames.append((lt & 0xFF, flags, sid & 0x7FFFFFFF, buf[pos + 9 : stop]))
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buf)


def _strip_padding(flags: int, payload: bytes) -> bytes:
    if flags & FLAG_PADDED:
        if not payload:
            raise ProtocolError("padded frame without pad length")
        pad = payload[0]
        if pad >= len(payload):
            raise ProtocolError("padding longer than the frame")
        return payload[1 : len(payload) - pad]
    return payload


def iter_frames(data: bytes) -> Iterator[Tuple[int, int, int, bytes]]:
    """Every complete frame in ``data`` (a helper for tests and tools)."""
    yield from FrameReader(2**24 - 1).feed(data)


def headers_dict(headers: Sequence[Tuple[bytes, bytes]]) -> Dict[bytes, bytes]:
    """A header list as a dict (the last value wins)."""
    return dict(headers)
