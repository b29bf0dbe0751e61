"""``-w json`` as etcdctl 3.5 writes it: Go's ``encoding/json`` of etcd's protobuf structs.

That means the protobuf field names (``create_revision``), ``omitempty`` everywhere (a zero
number, an empty byte string, ``false`` and a missing message are left out), byte strings in
base64, 64-bit numbers as plain JSON numbers (``cluster_id`` as an unsigned decimal), and
Go's escaping of ``<``, ``>`` and ``&`` inside strings. A watch answer is clientv3's
``WatchResponse``, whose fields have no JSON names: ``Header``, ``Events``,
``CompactRevision``, ``Canceled``, ``Created``, always present.
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Iterable, List, Optional

from txetcd._types import (
    DeleteResult,
    Event,
    KeyValue,
    PutResult,
    RangeResult,
    ResponseHeader,
    TxnResult,
)

__all__ = [
    "b64",
    "delete_json",
    "encode",
    "header_json",
    "kv_json",
    "put_json",
    "range_json",
    "txn_json",
    "watch_json",
]


def b64(data: bytes) -> str:
    """A byte string as Go's encoding/json writes ``[]byte``."""
    return base64.b64encode(data).decode("ascii")


def omit_empty(pairs: Iterable["tuple[str, Any]"]) -> Dict[str, Any]:
    """The pairs whose value is not Go's zero value (``omitempty``)."""
    return {k: v for k, v in pairs if v}


def header_json(header: ResponseHeader) -> Dict[str, Any]:
    """etcdserverpb.ResponseHeader."""
    return omit_empty(
        (
            ("cluster_id", header.cluster_id),
            ("member_id", header.member_id),
            ("revision", header.revision),
            ("raft_term", header.raft_term),
        )
    )


def kv_json(kv: KeyValue) -> Dict[str, Any]:
    """mvccpb.KeyValue."""
    return omit_empty(
        (
            ("key", b64(kv.key) if kv.key else ""),
            ("create_revision", kv.create_revision),
            ("mod_revision", kv.mod_revision),
            ("version", kv.version),
            ("value", b64(kv.value) if kv.value else ""),
            ("lease", kv.lease),
        )
    )


def _header(header: Optional[ResponseHeader]) -> Optional[Dict[str, Any]]:
    return None if header is None else header_json(header)


def range_json(result: RangeResult) -> Dict[str, Any]:
    """etcdserverpb.RangeResponse."""
    return omit_empty(
        (
            ("header", _header(result.header)),
            ("kvs", [kv_json(kv) for kv in result.kvs]),
            ("more", result.more),
            ("count", result.count),
        )
    )


def put_json(result: PutResult) -> Dict[str, Any]:
    """etcdserverpb.PutResponse."""
    prev = None if result.prev_kv is None else kv_json(result.prev_kv)
    return omit_empty((("header", _header(result.header)), ("prev_kv", prev)))


def delete_json(result: DeleteResult) -> Dict[str, Any]:
    """etcdserverpb.DeleteRangeResponse."""
    return omit_empty(
        (
            ("header", _header(result.header)),
            ("deleted", result.deleted),
            ("prev_kvs", [kv_json(kv) for kv in result.prev_kvs]),
        )
    )


def txn_json(result: TxnResult) -> Dict[str, Any]:
    """etcdserverpb.TxnResponse; each of ``responses`` is a ResponseOp, whose oneof Go
    writes as ``{"Response": {"response_range": ...}}``."""
    return omit_empty(
        (
            ("header", _header(result.header)),
            ("succeeded", result.succeeded),
            ("responses", [_response_op(r) for r in result.responses]),
        )
    )


def _response_op(response: Any) -> Dict[str, Any]:
    if isinstance(response, RangeResult):
        inner = {"response_range": range_json(response)}
    elif isinstance(response, PutResult):
        inner = {"response_put": put_json(response)}
    elif isinstance(response, DeleteResult):
        inner = {"response_delete_range": delete_json(response)}
    else:
        inner = {"response_txn": txn_json(response)}
    return {"Response": inner}


def event_json(event: Event) -> Dict[str, Any]:
    """mvccpb.Event."""
    prev = None if event.prev_kv is None else kv_json(event.prev_kv)
    return omit_empty((("type", int(event.type)), ("kv", kv_json(event.kv)), ("prev_kv", prev)))


def watch_json(
    header: ResponseHeader,
    events: List[Event],
    *,
    compact_revision: int = 0,
    canceled: bool = False,
    created: bool = False,
) -> Dict[str, Any]:
    """clientv3.WatchResponse (its fields have no JSON tags; ``Events`` is ``[]`` when empty,
    as in a progress notification: clientv3 makes the slice for every answer of etcd)."""
    return {
        "Header": header_json(header),
        "Events": [event_json(e) for e in events],
        "CompactRevision": compact_revision,
        "Canceled": canceled,
        "Created": created,
    }


# -- Go's encoding/json ----------------------------------------------------------------------

_ESCAPE = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _ESCAPE.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        elif "\ud800" <= char <= "\udfff":  # not UTF-8: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def encode(value: Any) -> str:
    """``value`` (dicts, lists, str, int, bool, None) as Go's ``json.Marshal`` writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bytes):
        return _string(b64(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
