"""``-w protobuf``: etcd's answers in protobuf's wire format, as etcdctl writes them (no
newline; a watch writes one ``WatchResponse`` per answer of etcd). The answers are rebuilt
from txetcd's results; fields go out in field-number order, as gogoproto writes them, so the
bytes match."""

from __future__ import annotations

from typing import Any, Iterable

from txetcd._proto import rpc_pb2
from txetcd._types import (
    DeleteResult,
    Event,
    KeyValue,
    PutResult,
    RangeResult,
    ResponseHeader,
    TxnResult,
)

__all__ = ["answer_bytes", "watch_bytes"]


def _header(message: Any, header: ResponseHeader) -> None:
    target = message.header
    target.SetInParent()
    target.cluster_id = header.cluster_id
    target.member_id = header.member_id
    target.revision = header.revision
    target.raft_term = header.raft_term


def _kv(target: Any, kv: KeyValue) -> None:
    target.SetInParent()
    target.key = kv.key
    target.create_revision = kv.create_revision
    target.mod_revision = kv.mod_revision
    target.version = kv.version
    target.value = kv.value
    target.lease = kv.lease


def _message(result: Any) -> Any:
    message: Any
    if isinstance(result, RangeResult):
        message = rpc_pb2.RangeResponse(more=result.more, count=result.count)
        for kv in result.kvs:
            _kv(message.kvs.add(), kv)
    elif isinstance(result, PutResult):
        message = rpc_pb2.PutResponse()
        if result.prev_kv is not None:
            _kv(message.prev_kv, result.prev_kv)
    elif isinstance(result, DeleteResult):
        message = rpc_pb2.DeleteRangeResponse(deleted=result.deleted)
        for kv in result.prev_kvs:
            _kv(message.prev_kvs.add(), kv)
    elif isinstance(result, TxnResult):
        message = rpc_pb2.TxnResponse(succeeded=result.succeeded)
        for response in result.responses:
            op = message.responses.add()
            field = {
                RangeResult: "response_range",
                PutResult: "response_put",
                DeleteResult: "response_delete_range",
                TxnResult: "response_txn",
            }[type(response)]
            getattr(op, field).CopyFrom(_message(response))
    else:
        raise TypeError(f"no protobuf form for {type(result).__name__}")
    _header(message, result.header)
    return message


def answer_bytes(result: Any) -> bytes:
    """A get, put, del or txn answer as etcd sent it."""
    data: bytes = _message(result).SerializeToString()
    return data


def watch_bytes(header: ResponseHeader, events: Iterable[Event]) -> bytes:
    """A watch answer as an ``etcdserverpb.WatchResponse`` (header and events)."""
    message: Any = rpc_pb2.WatchResponse()
    _header(message, header)
    for event in events:
        target = message.events.add()
        target.type = int(event.type)
        _kv(target.kv, event.kv)
        if event.prev_kv is not None:
            _kv(target.prev_kv, event.prev_kv)
    data: bytes = message.SerializeToString()
    return data
