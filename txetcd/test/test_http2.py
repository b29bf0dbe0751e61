"""Unit tests of :mod:`txetcd._h2.connection`: framing, HPACK literals, header decoding, keepalive,
stream-id exhaustion, GOAWAY and flow-control corner cases, all without sockets.

An :class:`H2Connection` is driven over a ``StringTransport`` with hand-made server frames; the
frames it writes are read back with :func:`iter_frames`. Time is a ``task.Clock``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.hpack import decode_integer, encode_integer
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from txetcd._h2.connection import (
    H2Connection,
    H2Stream,
)
from txetcd._h2.frames import (
    CANCEL,
    CONTINUATION,
    DATA,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_STREAM_ID,
    NO_ERROR,
    PING,
    PING_ACK_DELAY,
    PREFACE,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    WINDOW_UPDATE,
    ConnectionClosed,
    FrameReader,
    ProtocolError,
    StreamNotProcessed,
    encode_int,
    encode_literal,
    encode_literal_indexed_name,
    frame,
    iter_frames,
)

Frame = tuple[int, int, int, bytes]
REQUEST_BLOCK = b"\x83\x86" + encode_literal_indexed_name(4, b"/t.T/M")


# -- helpers -----------------------------------------------------------------------------------


def raw_frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    """A frame serialised independently of :func:`txetcd._h2.connection.frame`."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((ftype, flags))
        + struct.pack(">I", sid)
        + payload
    )


def settings_payload(**values: int) -> bytes:
    ids = {
        "initial_window": SETTINGS_INITIAL_WINDOW_SIZE,
        "max_streams": SETTINGS_MAX_CONCURRENT_STREAMS,
    }
    return b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items())


def goaway(last: int, code: int = NO_ERROR, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def _string_transport() -> Any:
    """A string transport that tells its protocol when it is closed (untyped in Twisted)."""
    return StringTransportWithDisconnection()


class Recorder(H2Stream):
    """A stream that records every hook call; consumes DATA at once unless told not to."""

    def __init__(self, consume: bool = True) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.consume = consume

    def headers_received(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.events.append(("headers", list(headers), end_stream))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        if self.consume:
            self.consumed(len(data))

    def stream_ended(self) -> None:
        self.events.append(("ended",))

    def reset_received(self, code: int) -> None:
        self.events.append(("reset", code))

    def connection_failed(self, reason: ConnectionClosed) -> None:
        self.events.append(("failed", reason))

    def send_window_opened(self) -> None:
        self.events.append(("writable",))

    @property
    def failure(self) -> ConnectionClosed | None:
        for e in self.events:
            if e[0] == "failed":
                return e[1]  # type: ignore[no-any-return]
        return None


class Peer:
    """A connection on a string transport, plus what the test server side needs."""

    def __init__(self, server_settings: bytes = b"", **kw: Any) -> None:
        self.clock = Clock()
        self.lost: list[ConnectionClosed] = []
        self.goaways = 0
        kw.setdefault("keepalive_interval", None)
        self.conn = H2Connection(
            self.clock,
            on_lost=lambda c, r: self.lost.append(r),
            on_goaway=self._on_goaway,
            **kw,
        )
        self.transport = _string_transport()
        self.transport.protocol = self.conn
        self.conn.makeConnection(self.transport)
        first = self.transport.value()
        assert first.startswith(PREFACE)
        self.transport.clear()
        self.conn.dataReceived(frame(SETTINGS, 0, 0, server_settings))
        assert (SETTINGS, FLAG_ACK, 0, b"") in self.sent()
        self.encoder = Encoder()

    def _on_goaway(self, conn: H2Connection) -> None:
        self.goaways += 1

    def feed(self, data: bytes) -> None:
        self.conn.dataReceived(data)

    def sent(self) -> list[Frame]:
        """Frames the client wrote since the last call."""
        out = list(iter_frames(self.transport.value()))
        self.transport.clear()
        return out

    def open(self, data: bytes = b"", end_stream: bool = True, **kw: Any) -> Recorder:
        stream = Recorder(**kw)
        self.conn.start_stream(stream, REQUEST_BLOCK, data, end_stream)
        return stream

    def headers(
        self,
        sid: int,
        headers: Sequence[tuple[bytes, bytes]],
        flags: int = FLAG_END_HEADERS,
    ) -> None:
        self.feed(frame(HEADERS, flags, sid, self.encoder.encode(headers)))

    def respond(self, sid: int, body: bytes = b"ok") -> None:
        """A whole gRPC answer for stream ``sid``."""
        self.headers(sid, [(b":status", b"200")])
        self.feed(frame(DATA, 0, sid, b"\x00" + struct.pack(">I", len(body)) + body))
        self.headers(sid, [(b"grpc-status", b"0")], FLAG_END_HEADERS | FLAG_END_STREAM)

    @property
    def closed(self) -> bool:
        """The client closed (or aborted) the transport."""
        return not self.transport.connected


# -- FrameReader -------------------------------------------------------------------------------

frames_st = st.lists(
    st.tuples(
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),  # the reserved bit may be set: it must be masked off
        st.binary(max_size=300),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames=frames_st, data=st.data())
def test_frame_reader_any_split_gives_the_same_frames(
    frames: list[Frame], data: st.DataObject
) -> None:
    """Whatever the reads, FrameReader yields exactly the frames that were written."""
    stream = b"".join(raw_frame(*f) for f in frames)
    expected = [(t, fl, sid & 0x7FFFFFFF, p) for t, fl, sid, p in frames]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    reader = FrameReader()
    got: list[Frame] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got.extend(reader.feed(stream[start:cut]))
        start = cut
    assert got == expected
    assert reader.buffered == 0
    # All of it in one read: several frames come out of one feed.
    assert FrameReader().feed(stream) == expected


@given(frames=frames_st)
def test_frame_reader_byte_at_a_time(frames: list[Frame]) -> None:
    """One byte per read: each frame completes exactly on its last byte."""
    stream = b"".join(raw_frame(*f) for f in frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += 9 + len(f[3])
        ends.add(pos)
    reader = FrameReader()
    got = []
    for i in range(len(stream)):
        out = reader.feed(stream[i : i + 1])
        assert bool(out) == (i + 1 in ends)
        got.extend(out)
    assert [g[3] for g in got] == [f[3] for f in frames]


def test_frame_reader_oversize_frame_is_frame_size_error() -> None:
    """A frame above max_frame_size fails as soon as its header is in, before its payload."""
    reader = FrameReader(max_frame_size=16384)
    assert reader.feed(raw_frame(DATA, 0, 1, b"x" * 16384))[0][3] == b"x" * 16384
    with pytest.raises(ProtocolError) as info:
        reader.feed(
            raw_frame(DATA, 0, 1, b"")[:0]
            + struct.pack(">I", 16385)[1:]
            + b"\x00\x00"
            + b"\x00\x00\x00\x01"
        )
    assert info.value.code == FRAME_SIZE_ERROR
    small = FrameReader(max_frame_size=10)
    with pytest.raises(ProtocolError) as info:
        small.feed(raw_frame(PING, 0, 0, b"12345678901"))
    assert info.value.code == FRAME_SIZE_ERROR


def test_connection_oversize_frame_sends_goaway_and_fails_streams() -> None:
    peer = Peer()
    stream = peer.open()
    peer.sent()
    peer.feed(raw_frame(DATA, 0, 1, b"x" * 16385))
    (goaway_frame,) = [f for f in peer.sent() if f[0] == GOAWAY]
    assert struct.unpack(">II", goaway_frame[3][:8])[1] == FRAME_SIZE_ERROR
    assert peer.transport.disconnected
    failure = stream.failure
    assert failure is not None and not isinstance(failure, StreamNotProcessed)
    assert "max frame size" in failure.reason
    assert peer.lost and peer.conn.lost is not None


# -- HPACK literals ----------------------------------------------------------------------------


@given(value=st.integers(0, 2**28), prefix=st.integers(1, 8), flags=st.integers(0, 255))
def test_encode_int_matches_hpack(value: int, prefix: int, flags: int) -> None:
    first = flags & ~((1 << prefix) - 1) & 0xFF
    out = encode_int(value, prefix, first)
    assert out[1:] == bytes(encode_integer(value, prefix))[1:]
    assert out[0] & ~((1 << prefix) - 1) & 0xFF == first  # the flag bits are kept
    assert decode_integer(out, prefix) == (value, len(out))


names = st.binary(min_size=1, max_size=40).map(lambda b: b.lower())
values = st.one_of(st.binary(max_size=20), st.binary(min_size=120, max_size=5000))


@settings(max_examples=200, deadline=None)
@given(name=names, value=values, sensitive=st.booleans())
def test_encode_literal_round_trips_through_hpack(
    name: bytes, value: bytes, sensitive: bool
) -> None:
    decoder = Decoder(max_header_list_size=1 << 20)
    block = encode_literal(name, value, sensitive=sensitive)
    (header,) = decoder.decode(block, raw=True)
    assert tuple(header) == (name, value)
    assert isinstance(header, NeverIndexedHeaderTuple) == sensitive
    # Literals never touch the table
    assert len(decoder.header_table.dynamic_entries) == 0


@settings(max_examples=200, deadline=None)
@given(index=st.integers(1, 61), value=values, sensitive=st.booleans())
def test_encode_literal_indexed_name_round_trips(index: int, value: bytes, sensitive: bool) -> None:
    decoder = Decoder(max_header_list_size=1 << 20)
    static_name = decoder.header_table.get_by_index(index)[0]
    (header,) = decoder.decode(
        encode_literal_indexed_name(index, value, sensitive=sensitive), raw=True
    )
    assert tuple(header) == (static_name, value)
    assert isinstance(header, NeverIndexedHeaderTuple) == sensitive
    assert len(decoder.header_table.dynamic_entries) == 0


def test_request_style_block_round_trips() -> None:
    """Several literals in one block, as a request prefix is built (incl. multi-byte lengths)."""
    block = b"".join(
        (
            encode_literal_indexed_name(4, b"/etcdserverpb.KV/Range"),
            encode_literal_indexed_name(58, b"u" * 200),  # index 58 > 15: multi-byte index
            encode_literal(b"token", b"t" * 128, sensitive=True),
            encode_literal(b"x-" + b"n" * 130, b""),
        )
    )
    got = [tuple(h) for h in Decoder().decode(block, raw=True)]
    assert got == [
        (b":path", b"/etcdserverpb.KV/Range"),
        (b"user-agent", b"u" * 200),
        (b"token", b"t" * 128),
        (b"x-" + b"n" * 130, b""),
    ]


# -- header blocks: decoding, cache, CONTINUATION, padding ----------------------------------------

header_pool = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-status", b"0"),
    (b"x-a", b"1"),
    (b"x-b", b"2" * 40),
    (b"x-c", b"3" * 90),
    (b"x-d", b"4"),
]
block_ops = st.lists(
    st.one_of(
        st.lists(st.sampled_from(header_pool), min_size=1, max_size=4),
        st.sampled_from([0, 64, 100, 200, 4096]),  # a table size change before the next block
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=block_ops, initial_size=st.sampled_from([64, 150, 4096]))
def test_header_cache_matches_a_fresh_decoder(ops: list[Any], initial_size: int) -> None:
    """The connection decodes every block as a plain decoder would, whatever the table does."""
    peer = Peer()
    encoder = Encoder()
    encoder.header_table_size = initial_size  # small tables evict entries
    reference = Decoder()
    stream = peer.open()
    blocks = []
    for op in ops:
        if isinstance(op, int):
            # hpack's Encoder loses a size update when the same size is set twice
            if op != encoder.header_table_size:
                encoder.header_table_size = op
            continue
        block = encoder.encode(op)
        blocks.append(block)
        peer.feed(frame(HEADERS, FLAG_END_HEADERS, stream.stream_id, block))
        expected = [tuple(h) for h in reference.decode(block, raw=True)]
        assert stream.events[-1][1] == expected
    assert peer.conn.lost is None


def test_header_cache_same_bytes_new_meaning() -> None:
    """A block of pure table references means something else once the table has changed."""
    peer = Peer()
    stream = peer.open()
    enc = Encoder()
    sid = stream.stream_id
    # Add, then index 62
    blocks = [
        enc.encode([(b"x-a", b"1")]),
        enc.encode([(b"x-a", b"1")]),
    ]
    # Add, then index 62
    blocks += [
        enc.encode([(b"x-b", b"2")]),
        enc.encode([(b"x-b", b"2")]),
    ]
    assert blocks[1] == blocks[3]  # the same bytes...
    for block in blocks:
        peer.feed(frame(HEADERS, FLAG_END_HEADERS, sid, block))
    got = [e[1] for e in stream.events]
    # ...decoded for what they mean
    assert got == [[(b"x-a", b"1")]] * 2 + [[(b"x-b", b"2")]] * 2


def test_header_cache_table_size_update() -> None:
    """A cached block that resizes the table must not skip the resize when it comes again.

    Regression: the cache compared only the table's entries, so a repeated block whose one effect
    is a size update was answered from the cache and the decoder's size went out of step with the
    server's encoder; later references to entries the decoder had evicted broke the connection.
    """
    peer = Peer()
    stream = peer.open()
    sid = stream.stream_id
    enc = Encoder()
    reference = Decoder()

    def send(headers: list[tuple[bytes, bytes]]) -> None:
        block = enc.encode(headers)
        peer.feed(frame(HEADERS, FLAG_END_HEADERS, sid, block))
        assert peer.conn.lost is None, peer.conn.lost
        assert stream.events[-1][1] == [tuple(h) for h in reference.decode(block, raw=True)]

    status = [(b":status", b"200")]
    enc.header_table_size = 100
    send(status)  # [size 100] + static index
    enc.header_table_size = 4096
    send(status)  # [size 4096] + static index
    enc.header_table_size = 100
    send([(b":status", b"404")])  # the decoder is at 100 again
    enc.header_table_size = 4096
    send(status)  # the same bytes as the second block: the decoder must go to 4096 too
    # 3 x 65 bytes: fits 4096, not 100
    big = [(b"x-%d" % i, b"v" * 30) for i in range(3)]
    send(big)
    send(big)  # pure references to all three entries


def test_continuation_and_padded_prioritised_headers() -> None:
    """A header block split over HEADERS + CONTINUATIONs, and HEADERS with padding and priority."""
    peer = Peer()
    stream = peer.open()
    sid = stream.stream_id
    block = peer.encoder.encode([(b":status", b"200"), (b"x-long", b"y" * 3000)])
    parts = [block[:10], block[10:1000], block[1000:]]
    peer.feed(frame(HEADERS, 0, sid, parts[0]) + frame(CONTINUATION, 0, sid, parts[1]))
    assert stream.events == []
    peer.feed(frame(CONTINUATION, FLAG_END_HEADERS, sid, parts[2]))
    assert stream.events == [("headers", [(b":status", b"200"), (b"x-long", b"y" * 3000)], False)]
    trailers = peer.encoder.encode([(b"grpc-status", b"0")])
    padded = bytes((7,)) + struct.pack(">IB", 0, 15) + trailers + b"\x00" * 7
    peer.feed(
        frame(
            HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM | FLAG_PADDED | FLAG_PRIORITY,
            sid,
            padded,
        )
    )
    assert stream.events[-2:] == [
        ("headers", [(b"grpc-status", b"0")], True),
        ("ended",),
    ]


def test_frame_between_header_fragments_is_protocol_error() -> None:
    peer = Peer()
    stream = peer.open()
    peer.sent()
    block = peer.encoder.encode([(b":status", b"200")])
    peer.feed(frame(HEADERS, 0, stream.stream_id, block) + frame(DATA, 0, stream.stream_id, b"x"))
    (goaway_frame,) = [f for f in peer.sent() if f[0] == GOAWAY]
    assert struct.unpack(">II", goaway_frame[3][:8])[1] == PROTOCOL_ERROR
    assert stream.failure is not None


def test_header_list_up_to_the_announced_limit_is_accepted() -> None:
    """The client announces MAX_HEADER_LIST_SIZE 1 MiB, so it must decode lists that big.

    Regression: the HPACK decoder kept its default 64 KiB limit, so a 100 KB grpc-message (which
    the server may send: the client said it accepts up to 1 MiB) killed the connection with
    COMPRESSION_ERROR.
    """
    peer = Peer()
    stream = peer.open()
    message = b"m" * 100_000
    block = peer.encoder.encode([(b"grpc-status", b"13"), (b"grpc-message", message)])
    chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    data = frame(HEADERS, FLAG_END_STREAM, stream.stream_id, chunks[0])
    for i, chunk in enumerate(chunks[1:], 1):
        data += frame(
            CONTINUATION,
            FLAG_END_HEADERS if i == len(chunks) - 1 else 0,
            stream.stream_id,
            chunk,
        )
    peer.feed(data)
    assert peer.conn.lost is None
    assert stream.events[0] == (
        "headers",
        [(b"grpc-status", b"13"), (b"grpc-message", message)],
        True,
    )


def test_padding_is_returned_as_window_without_the_consumer() -> None:
    """Padding counts against the stream window; the connection gives it back by itself."""
    peer = Peer(stream_window=100)
    stream = peer.open(consume=False)
    peer.sent()
    peer.headers(stream.stream_id, [(b":status", b"200")])
    peer.feed(frame(DATA, FLAG_PADDED, stream.stream_id, bytes((60,)) + b"abc" + b"\x00" * 60))
    assert stream.events[-1] == ("data", b"abc")
    updates = [f for f in peer.sent() if f[0] == WINDOW_UPDATE and f[2] == stream.stream_id]
    # Pad length byte + padding
    assert [struct.unpack(">I", f[3])[0] for f in updates] == [61]


# -- keepalive ---------------------------------------------------------------------------------


def pings(peer: Peer) -> list[Frame]:
    return [f for f in peer.sent() if f[0] == PING and not f[1] & FLAG_ACK]


@pytest.mark.parametrize("last_receipt", [0.0, 0.5, 9.9, 10.0, 13.3])
def test_keepalive_ping_only_after_interval_of_silence(last_receipt: float) -> None:
    """No PING before ``interval`` of silence with a stream open; one by 2 x interval."""
    peer = Peer(keepalive_interval=10.0, keepalive_timeout=5.0)
    peer.open()
    peer.sent()
    peer.clock.advance(last_receipt)
    # Something from the server
    peer.feed(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)))
    sent_at = None
    for _ in range(3000):
        peer.clock.advance(0.01)
        if pings(peer):
            sent_at = peer.clock.seconds()
            break
    assert sent_at is not None
    assert 10.0 <= sent_at - last_receipt <= 20.0 + 0.011  # one step of slack


def test_keepalive_no_ping_when_idle() -> None:
    peer = Peer(keepalive_interval=5.0, keepalive_timeout=5.0)
    for _ in range(100):
        peer.clock.advance(7.0)
    assert pings(peer) == []
    assert len(peer.clock.getDelayedCalls()) == 1  # just the next tick
    # A stream opens: now a silent server is pinged.
    peer.open()
    peer.clock.advance(5.0)
    peer.clock.advance(5.0)
    assert len(pings(peer)) == 1


def test_keepalive_ack_keeps_the_connection() -> None:
    peer = Peer(keepalive_interval=10.0, keepalive_timeout=5.0)
    stream = peer.open()
    peer.clock.advance(10.0)
    peer.clock.advance(10.0)
    (ping,) = pings(peer)
    peer.clock.advance(4.0)
    peer.feed(frame(PING, FLAG_ACK, 0, b"wrongone"))  # not our payload: still waiting
    peer.clock.advance(0.5)
    peer.feed(frame(PING, FLAG_ACK, 0, ping[3]))
    acked_at = [peer.clock.seconds()]
    for _ in range(600):  # a minute of a silent server that answers every PING
        peer.clock.advance(0.1)
        for p in pings(peer):
            assert peer.clock.seconds() - acked_at[-1] >= 10.0 - 1e-6  # never sooner
            peer.feed(frame(PING, FLAG_ACK, 0, p[3]))
            acked_at.append(peer.clock.seconds())
    assert peer.conn.lost is None and not peer.closed
    assert stream.events == []
    assert len(acked_at) >= 4  # it went on pinging the silent server
    # The server's own PINGs are answered with the same payload, within PING_ACK_DELAY.
    peer.feed(frame(PING, 0, 0, b"srvping!"))
    peer.clock.advance(PING_ACK_DELAY)
    assert (PING, FLAG_ACK, 0, b"srvping!") in peer.sent()


def test_ping_ack_is_held_for_its_delay() -> None:
    """A server PING's ACK goes out PING_ACK_DELAY later, on its own: a request written
    meanwhile does not carry it (grpc-go's server would PING again on that request's DATA)."""
    peer = Peer()
    peer.feed(frame(PING, 0, 0, b"bdp-ping"))
    assert peer.sent() == []  # held back
    assert len(peer.clock.getDelayedCalls()) == 1
    peer.open(b"request")
    assert [f[0] for f in peer.sent()] == [HEADERS, DATA]  # no ACK among them
    peer.clock.advance(PING_ACK_DELAY / 2)
    peer.feed(frame(PING, 0, 0, b"ping-two"))  # a second PING shares the first one's wait
    assert len(peer.clock.getDelayedCalls()) == 1
    peer.clock.advance(PING_ACK_DELAY / 2)
    acks = [f for f in peer.sent() if f[0] == PING]
    assert acks == [(PING, FLAG_ACK, 0, b"bdp-ping"), (PING, FLAG_ACK, 0, b"ping-two")]
    assert peer.clock.getDelayedCalls() == []
    peer.clock.advance(PING_ACK_DELAY)
    assert peer.sent() == []  # each answered once
    # A connection lost with an ACK pending leaves no timer behind and sends nothing.
    peer.feed(frame(PING, 0, 0, b"lastping"))
    peer.conn.connectionLost()
    assert peer.clock.getDelayedCalls() == []


def test_keepalive_timeout_fails_every_stream() -> None:
    peer = Peer(keepalive_interval=10.0, keepalive_timeout=5.0)
    streams = [peer.open() for _ in range(3)]
    pending_peer_stream = streams[0]
    peer.clock.advance(10.0)
    peer.clock.advance(10.0)
    assert len(pings(peer)) == 1
    peer.feed(frame(PING, FLAG_ACK, 0, b"wrongone"))
    peer.clock.advance(4.9)
    assert not peer.transport.disconnected
    peer.clock.advance(0.1)
    assert peer.transport.disconnected  # aborted, not closed politely
    for stream in streams:
        failure = stream.failure
        assert failure is not None and "keepalive" in failure.reason
        # They were sent: outcome unknown
        assert not isinstance(failure, StreamNotProcessed)
    assert pending_peer_stream.closed
    assert len(peer.lost) == 1 and "keepalive" in peer.lost[0].reason
    assert peer.clock.getDelayedCalls() == []


def test_keepalive_interval_limits() -> None:
    with pytest.raises(ValueError):
        H2Connection(Clock(), keepalive_interval=4.99)
    H2Connection(Clock(), keepalive_interval=5.0)
    peer = Peer(keepalive_interval=None)
    peer.open()
    assert peer.clock.getDelayedCalls() == []


def test_close_leaves_no_timers() -> None:
    peer = Peer(keepalive_interval=10.0, keepalive_timeout=5.0)
    stream = peer.open()
    peer.clock.advance(20.0)  # a PING is out, its deadline armed
    assert len(peer.clock.getDelayedCalls()) == 1
    peer.conn.close()
    assert peer.clock.getDelayedCalls() == []
    assert stream.failure is not None
    goaways = [f for f in iter_frames(peer.transport.value()) if f[0] == GOAWAY]
    assert goaways and struct.unpack(">II", goaways[0][3][:8]) == (0, NO_ERROR)


# -- stream ids, GOAWAY ------------------------------------------------------------------------


def test_stream_id_exhaustion_drains_the_connection() -> None:
    peer = Peer()
    peer.conn.next_stream_id = MAX_STREAM_ID - 2
    first = peer.open()
    assert peer.conn.accepting and peer.goaways == 0
    last = peer.open()
    assert (first.stream_id, last.stream_id) == (MAX_STREAM_ID - 2, MAX_STREAM_ID)
    assert not peer.conn.accepting
    assert peer.goaways == 1  # the channel is told to make a new connection
    late = peer.open()
    assert isinstance(late.failure, StreamNotProcessed)  # safe to send elsewhere
    peer.respond(first.stream_id)
    assert first.events[-1] == ("ended",) and not peer.closed  # `last` is still open
    peer.respond(last.stream_id)
    assert last.events[-1] == ("ended",)
    assert peer.closed and len(peer.lost) == 1


def test_stream_id_exhaustion_refuses_queued_streams() -> None:
    peer = Peer(server_settings=settings_payload(max_streams=1))
    peer.conn.next_stream_id = MAX_STREAM_ID - 2
    a = peer.open()
    b = peer.open()
    c = peer.open()
    assert (b.stream_id, c.stream_id) == (0, 0)  # queued for the one slot
    peer.respond(a.stream_id)
    assert b.stream_id == MAX_STREAM_ID
    assert isinstance(c.failure, StreamNotProcessed)
    assert peer.goaways == 1 and not peer.closed
    peer.respond(b.stream_id)
    assert peer.closed


def test_goaway_fails_only_streams_above_last_stream_id() -> None:
    peer = Peer(server_settings=settings_payload(max_streams=3))
    s1, s3, s5 = peer.open(), peer.open(), peer.open()
    queued = peer.open()
    assert queued.stream_id == 0
    peer.sent()
    peer.feed(goaway(3, NO_ERROR, b"bye"))
    assert isinstance(s5.failure, StreamNotProcessed) and "bye" in s5.failure.reason
    assert isinstance(queued.failure, StreamNotProcessed)
    assert s1.events == s3.events == []
    assert peer.goaways == 1 and not peer.conn.accepting
    assert peer.conn.goaway_last_stream_id == 3 and peer.conn.goaway_debug == b"bye"
    refused = peer.open()
    assert isinstance(refused.failure, StreamNotProcessed)
    # A later GOAWAY may lower the last stream id, never raise it.
    peer.feed(goaway(1))
    assert isinstance(s3.failure, StreamNotProcessed)
    peer.feed(goaway(5))
    assert peer.conn.goaway_last_stream_id == 1
    assert peer.goaways == 1
    assert not peer.closed
    peer.respond(s1.stream_id)
    assert s1.events[-1] == ("ended",)
    assert peer.closed  # the last stream finished: the connection closes
    assert [f for f in peer.sent() if f[0] == HEADERS] == []  # nothing new was started


def test_graceful_double_goaway() -> None:
    """GOAWAY(2^31-1) then GOAWAY(n), as a server shutting down gracefully sends them."""
    peer = Peer()
    s1, s3 = peer.open(), peer.open()
    peer.feed(goaway(MAX_STREAM_ID))
    assert s1.events == s3.events == [] and peer.goaways == 1
    peer.feed(goaway(1))
    assert isinstance(s3.failure, StreamNotProcessed)
    peer.respond(1)
    assert s1.events[-1] == ("ended",) and peer.closed


def test_goaway_without_streams_closes_at_once() -> None:
    peer = Peer()
    peer.feed(goaway(0, PROTOCOL_ERROR))
    assert peer.closed and peer.goaways == 1
    assert peer.conn.goaway_code == PROTOCOL_ERROR


def test_refused_stream_is_not_processed_and_rst_after_status_is_not_an_error() -> None:
    peer = Peer()
    a, b = peer.open(), peer.open()
    peer.feed(frame(RST_STREAM, 0, a.stream_id, struct.pack(">I", 7)))
    assert isinstance(a.failure, StreamNotProcessed)
    peer.feed(frame(RST_STREAM, 0, b.stream_id, struct.pack(">I", CANCEL)))
    assert b.events == [("reset", CANCEL)]


# -- flow control ------------------------------------------------------------------------------


def test_end_stream_goes_out_even_when_the_window_is_negative() -> None:
    """An empty DATA frame with END_STREAM costs no window: it must not wait for window.

    Regression: after SETTINGS shrank INITIAL_WINDOW_SIZE below what a stream had already sent,
    its window went negative and a half-close (``send_data(b"", True)``) was silently dropped:
    the server never saw END_STREAM and the call hung.
    """
    peer = Peer()
    stream = peer.open(b"x" * 60000, end_stream=False)
    peer.sent()
    peer.feed(frame(SETTINGS, 0, 0, settings_payload(initial_window=1000)))
    assert stream.send_window == 1000 - 60000
    stream.send_data(b"", True)
    data = [f for f in peer.sent() if f[0] == DATA]
    assert data == [(DATA, FLAG_END_STREAM, stream.stream_id, b"")]


def test_settings_window_changes_mid_flight() -> None:
    """A smaller initial window holds DATA back; a larger one (or WINDOW_UPDATE) lets it go."""
    peer = Peer(server_settings=settings_payload(initial_window=100))
    stream = peer.open(b"y" * 1000, end_stream=True)
    sent = [f for f in peer.sent() if f[0] == DATA]
    assert sum(len(f[3]) for f in sent) == 100 and stream.queued_bytes == 900
    peer.feed(frame(SETTINGS, 0, 0, settings_payload(initial_window=50)))  # now -50
    assert [f for f in peer.sent() if f[0] == DATA] == []
    # +400 usable
    peer.feed(frame(WINDOW_UPDATE, 0, stream.stream_id, struct.pack(">I", 450)))
    sent = [f for f in peer.sent() if f[0] == DATA]
    assert sum(len(f[3]) for f in sent) == 400 and not any(f[1] & FLAG_END_STREAM for f in sent)
    peer.feed(frame(SETTINGS, 0, 0, settings_payload(initial_window=100_000)))
    sent = [f for f in peer.sent() if f[0] == DATA]
    assert sum(len(f[3]) for f in sent) == 500 and sent[-1][1] & FLAG_END_STREAM
    assert stream.queued_bytes == 0 and ("writable",) in stream.events


def test_max_concurrent_streams_lowered_mid_flight_queues() -> None:
    peer = Peer()
    a, b = peer.open(), peer.open()
    peer.feed(frame(SETTINGS, 0, 0, settings_payload(max_streams=1)))
    c = peer.open()
    assert c.stream_id == 0 and c.failure is None and list(peer.conn.pending) == [c]
    peer.respond(a.stream_id)
    assert c.stream_id == 0  # b still holds the only slot
    peer.respond(b.stream_id)
    assert c.stream_id == 5
    peer.respond(c.stream_id)
    assert c.events[-1] == ("ended",)


def test_big_request_headers_use_continuation() -> None:
    peer = Peer()
    block = REQUEST_BLOCK + encode_literal(b"x-big", b"z" * 40000)
    stream = Recorder()
    peer.conn.start_stream(stream, block, b"", True)
    frames = peer.sent()
    assert [f[0] for f in frames] == [HEADERS, CONTINUATION, CONTINUATION]
    assert frames[0][1] == FLAG_END_STREAM and frames[-1][1] == FLAG_END_HEADERS
    assert all(len(f[3]) <= 16384 for f in frames)
    assert [tuple(h) for h in Decoder().decode(b"".join(f[3] for f in frames), raw=True)][-1] == (
        b"x-big",
        b"z" * 40000,
    )


def test_server_settings_are_acked_and_frame_size_is_honoured() -> None:
    peer = Peer()
    peer.feed(frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 20000)))
    assert (SETTINGS, FLAG_ACK, 0, b"") in peer.sent()
    peer.feed(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 100000)))
    peer.feed(frame(SETTINGS, 0, 0, settings_payload(initial_window=200000)))
    peer.sent()
    peer.open(b"q" * 50000)
    sizes = [len(f[3]) for f in peer.sent() if f[0] == DATA]
    assert sizes == [20000, 20000, 10000]


def test_data_on_stream_zero_and_window_overflow_are_connection_errors() -> None:
    """Both are connection errors (RFC 9113 6.1, 6.9.2): GOAWAY, then the connection ends."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from txetcd._h2 import frames as h
    from txetcd._h2.connection import H2Connection, H2Stream

    for bad in (
        h.frame(h.DATA, 0, 0, b"x"),
        h.frame(h.SETTINGS, 0, 0, h._SETTING.pack(h.SETTINGS_INITIAL_WINDOW_SIZE, h.MAX_WINDOW)),
    ):
        conn = H2Connection(Clock(), keepalive_interval=None)
        transport = StringTransport()
        conn.makeConnection(transport)
        stream = H2Stream()
        conn.start_stream(stream, b"\x83")
        stream.send_window = h.MAX_WINDOW - 10  # as if the peer had granted almost all
        transport.clear()
        conn.dataReceived(bad)
        frames = list(h.iter_frames(transport.value()))
        assert frames and frames[0][0] == h.GOAWAY
        assert h._GOAWAY.unpack_from(frames[0][3])[0] == 0  # no server stream was processed
        assert conn.lost is not None
        assert transport.disconnecting


# -- Held reads (TLS hands over one record at a time) -------------------------------------------


def test_held_reads_are_handled_as_one_read_with_one_send() -> None:
    """What arrives between hold_reads() and release_reads() is handled in one pass: nothing
    before the release, then every answer, and the calls they start leave in one write."""
    peer = Peer()
    first = [peer.open(b"request") for _ in range(3)]
    peer.sent()
    follow: list[Recorder] = []

    class Next(Recorder):
        def stream_ended(self) -> None:
            super().stream_ended()
            follow.append(peer.open(b"next"))

    for stream in first:
        stream.__class__ = Next
    writes: list[bytes] = []
    write = peer.transport.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    peer.transport.write = counted
    peer.conn.hold_reads()
    for sid in (1, 3, 5):
        peer.respond(sid)  # three records each, as a TLS layer would hand them over
    assert all(s.events == [] for s in first) and writes == []
    peer.conn.release_reads()
    assert all(s.events[-1] == ("ended",) for s in first)
    assert len(follow) == 3 and len(writes) == 1
    assert [f[0] for f in peer.sent()] == [HEADERS, DATA] * 3


def test_a_connection_lost_while_reads_are_held_handles_them_first() -> None:
    peer = Peer()
    stream = peer.open(b"request")
    peer.conn.hold_reads()
    peer.respond(1)
    peer.conn.connectionLost()
    assert stream.events[-1] == ("ended",) and stream.failure is None
    peer.conn.release_reads()  # nothing left: a no-op
    assert stream.events[-1] == ("ended",)
