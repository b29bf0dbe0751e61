"""Gateway answers straight to results: the JSON of a range, put, delete or txn answer decoded
into :class:`RangeResult` and friends without building the protobuf message in between.

The generic path (``_pbjson`` into a protobuf message, then ``_kv``'s decoders) stays the
reference: a dict with a key these decoders do not know (a camelCase name, a field added by a
later etcd) raises :class:`Fallback` and the caller takes that path instead, so both give the
same result for every answer (``test_kvjson`` checks it on generated messages).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from txetcd._gateway.pbjson import b64decode_text, bool_value, int64_value
from txetcd._kv import delete_result, put_result, range_result, txn_result
from txetcd._types import (
    DeleteResult,
    KeyValue,
    OpResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    TxnResult,
)


class Fallback(Exception):
    """The answer has something the direct decoders do not know: use the generic path."""


_new = tuple.__new__

_HEADER = frozenset(("cluster_id", "member_id", "revision", "raft_term"))
_KV = frozenset(("key", "value", "create_revision", "mod_revision", "version", "lease"))
_RANGE = frozenset(("header", "kvs", "more", "count"))
_PUT = frozenset(("header", "prev_kv"))
_DELETE = frozenset(("header", "deleted", "prev_kvs"))
_TXN = frozenset(("header", "succeeded", "responses"))
_OP = frozenset(("response_range", "response_put", "response_delete_range", "response_txn"))


def _int(value: Any) -> int:
    """An int64 field; null or absent is 0."""
    return 0 if value is None else int64_value(value)


def _bool(value: Any) -> bool:
    return False if value is None else bool_value(value)


def _bytes(value: Any) -> bytes:
    return b"" if value is None else b64decode_text(value)


def _object(data: Any, known: frozenset[str]) -> Dict[str, Any]:
    if type(data) is not dict:
        raise ValueError(f"expected a JSON object, not {data!r}")
    if not data.keys() <= known:
        raise Fallback()
    return data


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise ValueError(f"expected a list, not {value!r}")
    return value


def _header(data: Any) -> ResponseHeader:
    if data is None:
        return _new(ResponseHeader, (0, 0, 0, 0))
    g = _object(data, _HEADER).get
    return _new(
        ResponseHeader,
        (_int(g("cluster_id")), _int(g("member_id")), _int(g("revision")), _int(g("raft_term"))),
    )


def _kv(data: Any) -> KeyValue:
    g = _object(data, _KV).get
    return _new(
        KeyValue,
        (
            _bytes(g("key")),
            _bytes(g("value")),
            _int(g("create_revision")),
            _int(g("mod_revision")),
            _int(g("version")),
            _int(g("lease")),
        ),
    )


def _range(data: Any) -> RangeResult:
    g = _object(data, _RANGE).get
    kvs = tuple([_kv(kv) for kv in _list(g("kvs"))])
    return _new(RangeResult, (_header(g("header")), kvs, _bool(g("more")), _int(g("count"))))


def _put(data: Any) -> PutResult:
    g = _object(data, _PUT).get
    prev = g("prev_kv")
    return _new(PutResult, (_header(g("header")), None if prev is None else _kv(prev)))


def _delete(data: Any) -> DeleteResult:
    g = _object(data, _DELETE).get
    prev = tuple([_kv(kv) for kv in _list(g("prev_kvs"))])
    return _new(DeleteResult, (_header(g("header")), _int(g("deleted")), prev))


_OPS: Dict[str, Callable[[Any], OpResult]] = {}


def _op(data: Any) -> Optional[OpResult]:
    items = [(k, v) for k, v in _object(data, _OP).items() if v is not None]
    if not items:
        return None  # no branch set: the generic path skips it too
    if len(items) > 1:
        raise ValueError(f"more than one response in {data!r}")
    kind, value = items[0]
    return _OPS[kind](value)


def _txn(data: Any) -> TxnResult:
    g = _object(data, _TXN).get
    ops = [_op(op) for op in _list(g("responses"))]
    return _new(
        TxnResult,
        (_header(g("header")), _bool(g("succeeded")), tuple([op for op in ops if op is not None])),
    )


_OPS.update(
    response_range=_range, response_put=_put, response_delete_range=_delete, response_txn=_txn
)

#: the protobuf-based decoder each direct decoder stands in for
DIRECT: Dict[Callable[[Any], Any], Callable[[Any], Any]] = {
    range_result: _range,
    put_result: _put,
    delete_result: _delete,
    txn_result: _txn,
}
