"""Every etcd RPC txetcd calls, in one table: gRPC path, message types, gateway route."""

from __future__ import annotations

from txetcd._proto import rpc_pb2
from txetcd._transport import Method

__all__ = [
    "RANGE",
    "PUT",
    "DELETE_RANGE",
    "TXN",
    "COMPACT",
    "WATCH",
    "LEASE_GRANT",
    "LEASE_REVOKE",
    "LEASE_KEEPALIVE",
    "LEASE_TIME_TO_LIVE",
    "LEASE_LEASES",
]

_pb = rpc_pb2

RANGE = Method.of(b"/etcdserverpb.KV/Range", _pb.RangeRequest, _pb.RangeResponse, "/v3/kv/range")
PUT = Method.of(b"/etcdserverpb.KV/Put", _pb.PutRequest, _pb.PutResponse, "/v3/kv/put")
DELETE_RANGE = Method.of(
    b"/etcdserverpb.KV/DeleteRange",
    _pb.DeleteRangeRequest,
    _pb.DeleteRangeResponse,
    "/v3/kv/deleterange",
)
TXN = Method.of(b"/etcdserverpb.KV/Txn", _pb.TxnRequest, _pb.TxnResponse, "/v3/kv/txn")
COMPACT = Method.of(
    b"/etcdserverpb.KV/Compact", _pb.CompactionRequest, _pb.CompactionResponse, "/v3/kv/compaction"
)
WATCH = Method.of(b"/etcdserverpb.Watch/Watch", _pb.WatchRequest, _pb.WatchResponse, "/v3/watch")
LEASE_GRANT = Method.of(
    b"/etcdserverpb.Lease/LeaseGrant",
    _pb.LeaseGrantRequest,
    _pb.LeaseGrantResponse,
    "/v3/lease/grant",
)
LEASE_REVOKE = Method.of(
    b"/etcdserverpb.Lease/LeaseRevoke",
    _pb.LeaseRevokeRequest,
    _pb.LeaseRevokeResponse,
    "/v3/lease/revoke",
)
LEASE_KEEPALIVE = Method.of(
    b"/etcdserverpb.Lease/LeaseKeepAlive",
    _pb.LeaseKeepAliveRequest,
    _pb.LeaseKeepAliveResponse,
    "/v3/lease/keepalive",
)
LEASE_TIME_TO_LIVE = Method.of(
    b"/etcdserverpb.Lease/LeaseTimeToLive",
    _pb.LeaseTimeToLiveRequest,
    _pb.LeaseTimeToLiveResponse,
    "/v3/lease/timetolive",
)
LEASE_LEASES = Method.of(
    b"/etcdserverpb.Lease/LeaseLeases",
    _pb.LeaseLeasesRequest,
    _pb.LeaseLeasesResponse,
    "/v3/lease/leases",
)
