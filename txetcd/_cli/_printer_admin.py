"""What the admin and coordination verbs share when they write as etcdctl 3.5 does: the
``fields`` header, a header flattened into a JSON object (clientv3's lease answers embed it),
Go's spellings of IDs, sizes (go-humanize), durations and errors, and Go's reading of numbers
(``strconv``) with its messages.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Union

from txetcd._cli._exit import EXIT_BAD_CONNECTION, EXIT_ERROR, CommandError
from txetcd._cli._printer import Output
from txetcd._cli._printer_json import header_json
from txetcd._errors import AuthFailed, ConnectionFailed, EtcdError, Timeout
from txetcd._proto import rpc_pb2
from txetcd._types import ResponseHeader

__all__ = [
    "call_failed",
    "compact_header",
    "header_pb",
    "set_header",
    "fields_header",
    "flat_header",
    "go_duration",
    "go_error",
    "go_list",
    "parse_go_int",
    "hex_id",
    "humanize_bytes",
    "prefix_end",
    "header_or_empty",
]

#: grpc-go's names of the status codes, as ``rpc error: code = ...`` spells them
_CODE_NAMES = {
    1: "Canceled",
    2: "Unknown",
    3: "InvalidArgument",
    4: "DeadlineExceeded",
    5: "NotFound",
    6: "AlreadyExists",
    7: "PermissionDenied",
    8: "ResourceExhausted",
    9: "FailedPrecondition",
    10: "Aborted",
    11: "OutOfRange",
    12: "Unimplemented",
    13: "Internal",
    14: "Unavailable",
    15: "DataLoss",
    16: "Unauthenticated",
}


def fields_header(out: Output, header: Optional[ResponseHeader]) -> None:
    """The four header lines of ``-w fields`` (zeros for an answer without a header)."""
    h = header or ResponseHeader(0, 0, 0, 0)
    out.line(f'"ClusterID" : {h.cluster_id}')
    out.line(f'"MemberID" : {h.member_id}')
    out.line(f'"Revision" : {h.revision}')
    out.line(f'"RaftTerm" : {h.raft_term}')


def flat_header(header: Optional[ResponseHeader]) -> Dict[str, Any]:
    """A header as the first fields of a JSON object (a Go struct embedding
    ``*pb.ResponseHeader``: its fields are promoted, zeros left out)."""
    return {} if header is None else header_json(header)


def header_pb(header: ResponseHeader) -> Any:
    """A header as etcd's ``ResponseHeader`` message (for ``-w protobuf``)."""
    return rpc_pb2.ResponseHeader(
        cluster_id=header.cluster_id,
        member_id=header.member_id,
        revision=header.revision,
        raft_term=header.raft_term,
    )


def set_header(message: Any, header: Optional[ResponseHeader]) -> Any:
    """``message`` with ``header`` set (left out when None), for ``-w protobuf``."""
    if header is not None:
        message.header.SetInParent()
        message.header.CopyFrom(header_pb(header))
    return message


def compact_header(header: ResponseHeader) -> str:
    """A header in protobuf's compact text (Go's ``%v`` of it): the fields that are not 0,
    each followed by a space."""
    return "".join(f"{name}:{value} " for name, value in header._asdict().items() if value)


def header_or_empty(header: Optional[ResponseHeader]) -> Dict[str, Any]:
    """``{"header": ...}`` unless the header is all zeros (etcd 3.5 leaves it out of some
    maintenance answers: Go then writes ``{}``)."""
    if header is None or not any(header):
        return {}
    return {"header": header_json(header)}


def hex_id(value: int) -> str:
    """A member or cluster ID as Go's ``types.ID`` and ``%x`` write it (unsigned)."""
    return f"{value & 0xFFFFFFFFFFFFFFFF:x}"


def go_list(items: Sequence[Union[str, bytes]]) -> bytes:
    """``fmt.Print`` of a Go ``[]string``: ``[a b c]``."""
    parts = [i.encode("utf-8", "surrogateescape") if isinstance(i, str) else i for i in items]
    return b"[" + b" ".join(parts) + b"]"


def prefix_end(key: bytes) -> bytes:
    """clientv3's ``GetPrefixRangeEnd``: the end of the range of keys starting with ``key``."""
    end = bytearray(key)
    for index in range(len(end) - 1, -1, -1):
        if end[index] < 0xFF:
            end[index] += 1
            return bytes(end[: index + 1])
    return b"\0"


_SIZES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def humanize_bytes(size: int) -> str:
    """go-humanize's ``Bytes``: SI units, one decimal below 10 (``20 kB``, ``1.5 MB``)."""
    if size < 10:
        return f"{size} B"
    exponent = math.floor(math.log(size) / math.log(1000))
    value = math.floor(size / 1000**exponent * 10 + 0.5) / 10
    spec = "{:.1f} {}" if value < 10 else "{:.0f} {}"
    return spec.format(value, _SIZES[exponent])


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` (``2.535368ms``, ``635.232µs``, ``1.5s``, ``1m2s``)."""
    nanos = int(round(seconds * 1e9))
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return sign + _decimal(nanos, 1000) + "µs"
    if nanos < 1_000_000_000:
        return sign + _decimal(nanos, 1_000_000) + "ms"
    total_seconds, fraction = divmod(nanos, 1_000_000_000)
    minutes, secs = divmod(total_seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = _decimal(secs * 1_000_000_000 + fraction, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


def go_error(error: BaseException) -> str:
    """What etcdctl prints for a failed call: etcd's own message for the errors clientv3 knows
    (``etcdserver: ...``), grpc-go's ``rpc error: code = ... desc = ...`` for the others, and
    ``context deadline exceeded`` for a call that ran out of time. A member that could not be
    reached is said so (``could not connect to etcd: ...``), as everywhere in the CLI, where
    etcdctl waits for its deadline."""
    if isinstance(error, Timeout):
        return "context deadline exceeded"
    if isinstance(error, ConnectionFailed):
        return str(error)
    if isinstance(error, EtcdError):
        message = error.message or type(error).__name__
        code = error.code
        if code and code in _CODE_NAMES and not message.startswith("etcdserver: "):
            return f"rpc error: code = {_CODE_NAMES[code]} desc = {message}"
        return message
    return str(error)


def parse_go_int(text: str, base: int, *, unsigned: bool = False) -> int:
    """Go's ``strconv.ParseInt(text, base, 64)`` (``ParseUint`` when ``unsigned``) for base
    10 or 16; a
    ValueError whose message is Go's (``strconv.ParseInt: parsing "x": invalid syntax``)."""
    function = "ParseUint" if unsigned else "ParseInt"
    body = text
    if not unsigned and text[:1] in ("+", "-"):
        body = text[1:]
    if base not in (10, 16):
        raise ValueError(f"base {base} is not read here")
    digits = "0123456789" if base == 10 else "0123456789abcdefABCDEF"
    if not body or any(c not in digits for c in body):
        raise ValueError(f'strconv.{function}: parsing "{text}": invalid syntax')
    value = int(text, base)
    low, high = (0, 2**64) if unsigned else (-(2**63), 2**63)
    if not low <= value < high:
        raise ValueError(f'strconv.{function}: parsing "{text}": value out of range')
    return value


def call_failed(error: BaseException, code: int = EXIT_ERROR, template: str = "{}") -> CommandError:
    """The CommandError etcdctl ends with when a call failed: ``template`` around
    :func:`go_error`'s text, exit ``code``. A refused login is etcdctl's failure to make a
    client: exit 2, its message alone."""
    if isinstance(error, AuthFailed):
        return CommandError(EXIT_BAD_CONNECTION, go_error(error))
    return CommandError(code, template.format(go_error(error)))
