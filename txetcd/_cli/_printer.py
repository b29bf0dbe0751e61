"""Output of the CLI as etcdctl 3.5 writes it: ``simple``, ``fields``, ``table`` and the helpers
behind them (Go's ``%q`` quoting, tablewriter's tables); JSON is in :mod:`._printer_json`.

A verb writes through the :class:`Output` it is given (``ctx.out``). The printers for the KV
answers (get, put, del, txn, watch) are here, one function per answer, dispatching on the
format: :func:`show_get`, :func:`show_put`, :func:`show_delete`, :func:`show_txn`,
:func:`show_watch`, :func:`show_watch_progress`.
"""

from __future__ import annotations

import unicodedata
from typing import IO, Any, List, NoReturn, Optional, Sequence, Union

from txetcd._cli import _printer_json as pj
from txetcd._cli import _printer_pb as pb
from txetcd._cli._exit import EXIT_BAD_FEATURE, CommandError
from txetcd._types import (
    DeleteResult,
    EventType,
    KeyValue,
    PutResult,
    RangeResult,
    ResponseHeader,
    TxnResult,
    WatchBatch,
)

__all__ = [
    "FORMATS",
    "Output",
    "go_quote",
    "hex_bytes",
    "show_delete",
    "show_get",
    "show_put",
    "show_txn",
    "show_watch",
    "show_watch_progress",
]

#: the ``-w`` values etcdctl knows
FORMATS = ("simple", "json", "fields", "table", "protobuf")


class Output:
    """Where a verb writes: ``format`` (``-w``) and ``hex`` (``--hex``) are the user's choice;
    ``value_only`` is get's ``--print-value-only``. Everything goes out as bytes."""

    def __init__(self, stream: IO[bytes], format: str = "simple", hex: bool = False) -> None:
        self.stream = stream
        self.format = format
        self.hex = hex
        self.value_only = False

    def write(self, data: Union[str, bytes]) -> None:
        """Write ``data`` as it is (text as UTF-8)."""
        self.stream.write(
            data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        )

    def line(self, data: Union[str, bytes] = b"") -> None:
        """Write ``data`` and a newline (Go's ``fmt.Println``)."""
        self.write(data)
        self.stream.write(b"\n")

    def flush(self) -> None:
        self.stream.flush()

    def json(self, value: Any) -> None:
        """``value`` as Go's ``json.Marshal`` writes it, on one line."""
        self.line(pj.encode(value))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table as etcdctl's tablewriter draws it (header upper-cased and centred, cells
        right-aligned)."""
        self.write(render_table(header, rows))

    def unsupported(self) -> NoReturn:
        """Refuse the chosen format, as etcdctl does (exit 4)."""
        raise CommandError(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")

    def kv(self, kv: KeyValue) -> None:
        """etcdctl's ``printKV``: the key line (unless value-only), then the value line."""
        key, value = kv.key, kv.value
        if self.hex:
            key, value = hex_bytes(key), hex_bytes(value)
        if not self.value_only:
            self.line(key)
        self.line(value)


def hex_bytes(data: bytes) -> bytes:
    """``--hex``: every byte as ``\\xNN``."""
    return "".join(f"\\x{b:02x}" for b in data).encode("ascii")


# -- Go's %q ---------------------------------------------------------------------------------

_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def go_quote(data: Union[str, bytes]) -> str:
    """Go's ``strconv.Quote`` (``%q``): printable runes as they are, the rest escaped; bytes
    that are not UTF-8 as ``\\xNN``."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    out = ['"']
    index = 0
    while index < len(raw):
        rune, size = _decode_rune(raw, index)
        if rune is None:
            out.append(f"\\x{raw[index]:02x}")
        elif rune in (0x22, 0x5C):
            out.append("\\" + chr(rune))
        elif rune in _ESCAPES:
            out.append(_ESCAPES[rune])
        elif _printable(rune):
            out.append(chr(rune))
        elif rune < 0x80:
            out.append(f"\\x{rune:02x}")
        elif rune < 0x10000:
            out.append(f"\\u{rune:04x}")
        else:
            out.append(f"\\U{rune:08x}")
        index += size
    out.append('"')
    return "".join(out)


def _printable(rune: int) -> bool:
    if rune == 0x20:
        return True
    if rune < 0x20 or rune == 0x7F:
        return False
    return unicodedata.category(chr(rune))[0] not in ("C", "Z")


def _decode_rune(raw: bytes, index: int) -> "tuple[Optional[int], int]":
    """The UTF-8 rune at ``index`` and its size, or (None, 1) for a byte that starts none."""
    first = raw[index]
    if first < 0x80:
        return first, 1
    for size in (2, 3, 4):
        chunk = raw[index : index + size]
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(text) == 1:
            return ord(text), size
    return None, 1


# -- tables ----------------------------------------------------------------------------------


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """olekukonko/tablewriter as etcdctl configures it (ALIGN_RIGHT cells)."""
    titles = [h.upper() for h in header]
    widths = [len(t) for t in titles]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def centred(text: str, width: int) -> str:
        gap = width - len(text)
        left = gap // 2
        return " " * left + text + " " * (gap - left)

    lines = [border]
    lines.append(
        "|" + "|".join(f" {centred(t, w)} " for t, w in zip(titles, widths, strict=True)) + "|\n"
    )
    lines.append(border)
    for row in rows:
        lines.append(
            "|" + "|".join(f" {c:>{w}} " for c, w in zip(row, widths, strict=True)) + "|\n"
        )
    lines.append(border)
    return "".join(lines)


# -- fields ----------------------------------------------------------------------------------


def _fields_header(out: Output, header: ResponseHeader) -> None:
    out.line(f'"ClusterID" : {header.cluster_id}')
    out.line(f'"MemberID" : {header.member_id}')
    out.line(f'"Revision" : {header.revision}')
    out.line(f'"RaftTerm" : {header.raft_term}')


def _fields_kv(out: Output, kv: KeyValue, prefix: str = "") -> None:
    out.line(f'"{prefix}Key" : {go_quote(kv.key)}')
    out.line(f'"{prefix}CreateRevision" : {kv.create_revision}')
    out.line(f'"{prefix}ModRevision" : {kv.mod_revision}')
    out.line(f'"{prefix}Version" : {kv.version}')
    out.line(f'"{prefix}Value" : {go_quote(kv.value)}')
    out.line(f'"{prefix}Lease" : {kv.lease}')


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


# -- the KV answers --------------------------------------------------------------------------


def show_get(out: Output, result: RangeResult) -> None:
    """A get's answer."""
    if out.format == "simple":
        for kv in result.kvs:
            out.kv(kv)
    elif out.format == "json":
        out.json(pj.range_json(result))
    elif out.format == "fields":
        _fields_header(out, result.header)
        for kv in result.kvs:
            _fields_kv(out, kv)
        out.line(f'"More" : {_go_bool(result.more)}')
        out.line(f'"Count" : {result.count}')
    elif out.format == "protobuf":
        out.write(pb.answer_bytes(result))
    else:
        out.unsupported()


def show_put(out: Output, result: PutResult) -> None:
    """A put's answer."""
    if out.format == "simple":
        out.line("OK")
        if result.prev_kv is not None:
            out.kv(result.prev_kv)
    elif out.format == "json":
        out.json(pj.put_json(result))
    elif out.format == "fields":
        _fields_header(out, result.header)
        if result.prev_kv is not None:
            _fields_kv(out, result.prev_kv, "Prev")
    elif out.format == "protobuf":
        out.write(pb.answer_bytes(result))
    else:
        out.unsupported()


def show_delete(out: Output, result: DeleteResult) -> None:
    """A del's answer."""
    if out.format == "simple":
        out.line(str(result.deleted))
        for kv in result.prev_kvs:
            out.kv(kv)
    elif out.format == "json":
        out.json(pj.delete_json(result))
    elif out.format == "fields":
        _fields_header(out, result.header)
        out.line(f'"Deleted" : {result.deleted}')
        for kv in result.prev_kvs:
            _fields_kv(out, kv, "Prev")
    elif out.format == "protobuf":
        out.write(pb.answer_bytes(result))
    else:
        out.unsupported()


def show_txn(out: Output, result: TxnResult) -> None:
    """A txn's answer (etcdctl leaves out nested txns: it cannot write them)."""
    if out.format == "simple":
        out.line("SUCCESS" if result.succeeded else "FAILURE")
        for response in result.responses:
            out.line()
            _show_op(out, response)
    elif out.format == "json":
        out.json(pj.txn_json(result))
    elif out.format == "fields":
        _fields_header(out, result.header)
        out.line(f'"Succeeded" : {_go_bool(result.succeeded)}')
        for response in result.responses:
            _show_op(out, response)
    elif out.format == "protobuf":
        out.write(pb.answer_bytes(result))
    else:
        out.unsupported()


def _show_op(out: Output, response: Any) -> None:
    if isinstance(response, RangeResult):
        show_get(out, response)
    elif isinstance(response, PutResult):
        show_put(out, response)
    elif isinstance(response, DeleteResult):
        show_delete(out, response)
    elif out.format == "simple":
        out.line(f"unexpected response {response!r}")


def show_watch(out: Output, header: ResponseHeader, batches: Sequence[WatchBatch]) -> None:
    """The events of one watch answer of etcd (one or more revisions, one header)."""
    events = [e for b in batches for e in b.events]
    if out.format == "simple":
        for event in events:
            out.line(event.type.name)
            if event.prev_kv is not None:
                out.kv(event.prev_kv)
            out.kv(event.kv)
    elif out.format == "json":
        out.json(pj.watch_json(header, events))
    elif out.format == "fields":
        _fields_header(out, header)
        for event in events:
            out.line(f'"Type" : {EventType(event.type).name}')
            if event.prev_kv is not None:
                _fields_kv(out, event.prev_kv, "Prev")
            _fields_kv(out, event.kv)
    elif out.format == "protobuf":
        out.write(pb.watch_bytes(header, events))
    else:
        out.unsupported()


def show_watch_progress(out: Output, header: ResponseHeader) -> None:
    """A progress notification as etcdctl's watch prints it: its ``progress notify: N`` line,
    then the answer in the chosen format (a header and no events; nothing in ``simple``)."""
    out.line(f"progress notify: {header.revision}")
    show_watch(out, header, ())


def kvs_of(batches: Sequence[WatchBatch]) -> List[KeyValue]:
    """Every event's key in ``batches`` (for tests and exec)."""
    return [e.kv for b in batches for e in b.events]
