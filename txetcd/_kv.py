"""KV request building and response decoding, shared by the client and the txn ops.

Arguments are checked here, before anything is sent: wrong types raise ``TypeError``, bad
values (an empty key, a negative revision) raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from txetcd._args import (
    check_bool,
    check_enum,
    check_int,
    key_bytes,
    key_range,
    to_bytes,
)
from txetcd._proto import rpc_pb2
from txetcd._types import (
    CompactResult,
    DeleteResult,
    KeyValue,
    OpResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnResult,
)

# Typed loosely: the generated stubs want enum wrapper types where plain ints are fine.
RangeRequest: Any = rpc_pb2.RangeRequest
PutRequest: Any = rpc_pb2.PutRequest
DeleteRangeRequest: Any = rpc_pb2.DeleteRangeRequest


def range_request(
    key: object,
    range_end: object = None,
    *,
    prefix: bool = False,
    limit: int = 0,
    revision: int = 0,
    sort_order: object = SortOrder.NONE,
    sort_target: object = SortTarget.KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> Any:
    """A ``RangeRequest`` with every option etcd has (see :meth:`txetcd.Client.get`)."""
    k, end = key_range(key, range_end, prefix)
    req = RangeRequest(key=k, range_end=end)
    if limit:
        req.limit = check_int(limit, "limit")
    if revision:
        req.revision = check_int(revision, "revision")
    order = check_enum(sort_order, SortOrder, "sort_order")
    target = check_enum(sort_target, SortTarget, "sort_target")
    if order:
        req.sort_order = order
    if target:
        req.sort_target = target
    if check_bool(serializable, "serializable"):
        req.serializable = True
    if check_bool(keys_only, "keys_only"):
        req.keys_only = True
    if check_bool(count_only, "count_only"):
        req.count_only = True
    if min_mod_revision:
        req.min_mod_revision = check_int(min_mod_revision, "min_mod_revision")
    if max_mod_revision:
        req.max_mod_revision = check_int(max_mod_revision, "max_mod_revision")
    if min_create_revision:
        req.min_create_revision = check_int(min_create_revision, "min_create_revision")
    if max_create_revision:
        req.max_create_revision = check_int(max_create_revision, "max_create_revision")
    return req


def put_request(
    key: object,
    value: object = b"",
    *,
    lease: object = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> Any:
    """A ``PutRequest``. ``lease`` is the lease (its ID, or a :data:`~txetcd._lease.LeaseLike`);
    0 detaches the key from any lease it had (etcd's rule)."""
    k = key_bytes(key)
    v = to_bytes(value, "value")
    req = PutRequest(key=k, value=v)
    if lease:
        if type(lease) is not int:  # a LeaseGrantResult, a KeepAlive, a Session...
            from txetcd._lease import lease_id_of  # (_lease decodes with this module)

            lease = lease_id_of(lease)
        req.lease = check_int(lease, "lease_id", minimum=None)
    if check_bool(prev_kv, "prev_kv"):
        req.prev_kv = True
    if check_bool(ignore_value, "ignore_value"):
        if v:
            raise ValueError("ignore_value=True keeps the stored value: give no value")
        req.ignore_value = True
    if check_bool(ignore_lease, "ignore_lease"):
        if lease:
            raise ValueError("ignore_lease=True keeps the stored lease: give no lease")
        req.ignore_lease = True
    return req


def delete_request(
    key: object, range_end: object = None, *, prefix: bool = False, prev_kv: bool = False
) -> Any:
    """A ``DeleteRangeRequest``."""
    k, end = key_range(key, range_end, prefix)
    req = DeleteRangeRequest(key=k, range_end=end)
    if check_bool(prev_kv, "prev_kv"):
        req.prev_kv = True
    return req


# -- decoding ----------------------------------------------------------------------------------


_new = tuple.__new__  # every result type is a tuple underneath: built in one C call


def header_of(h: Any) -> ResponseHeader:
    return _new(ResponseHeader, (h.cluster_id, h.member_id, h.revision, h.raft_term))


def kv_of(kv: Any) -> KeyValue:
    return _new(
        KeyValue, (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
    )


def range_result(resp: Any) -> RangeResult:
    return _new(
        RangeResult,
        (header_of(resp.header), tuple([kv_of(kv) for kv in resp.kvs]), resp.more, resp.count),
    )


def put_result(resp: Any) -> PutResult:
    prev = kv_of(resp.prev_kv) if resp.HasField("prev_kv") else None
    return _new(PutResult, (header_of(resp.header), prev))


def delete_result(resp: Any) -> DeleteResult:
    return _new(
        DeleteResult,
        (header_of(resp.header), resp.deleted, tuple([kv_of(kv) for kv in resp.prev_kvs])),
    )


def txn_result(resp: Any) -> TxnResult:
    out: list[OpResult] = []
    for op in resp.responses:
        kind = op.WhichOneof("response")
        if kind == "response_range":
            out.append(range_result(op.response_range))
        elif kind == "response_put":
            out.append(put_result(op.response_put))
        elif kind == "response_delete_range":
            out.append(delete_result(op.response_delete_range))
        elif kind == "response_txn":
            out.append(txn_result(op.response_txn))
    return _new(TxnResult, (header_of(resp.header), resp.succeeded, tuple(out)))


def compact_result(resp: Any) -> CompactResult:
    return _new(CompactResult, (header_of(resp.header),))
