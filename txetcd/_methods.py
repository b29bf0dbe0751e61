"""Every etcd RPC txetcd calls, in one table: gRPC path, message types, gateway route."""

from __future__ import annotations

from txetcd._proto import rpc_pb2, v3election_pb2, v3lock_pb2
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
    "MEMBER_ADD",
    "MEMBER_REMOVE",
    "MEMBER_UPDATE",
    "MEMBER_LIST",
    "MEMBER_PROMOTE",
    "ALARM",
    "STATUS",
    "DEFRAGMENT",
    "HASH",
    "HASH_KV",
    "SNAPSHOT",
    "MOVE_LEADER",
    "AUTH_ENABLE",
    "AUTH_DISABLE",
    "AUTH_STATUS",
    "AUTHENTICATE",
    "USER_ADD",
    "USER_GET",
    "USER_LIST",
    "USER_DELETE",
    "USER_CHANGE_PASSWORD",
    "USER_GRANT_ROLE",
    "USER_REVOKE_ROLE",
    "ROLE_ADD",
    "ROLE_GET",
    "ROLE_LIST",
    "ROLE_DELETE",
    "ROLE_GRANT_PERMISSION",
    "ROLE_REVOKE_PERMISSION",
    "LOCK",
    "UNLOCK",
    "CAMPAIGN",
    "PROCLAIM",
    "LEADER",
    "OBSERVE",
    "RESIGN",
]

_pb = rpc_pb2


def _rpc(service: str, name: str, request: str, response: str, gateway: "str | None") -> Method:
    return Method.of(
        f"/etcdserverpb.{service}/{name}".encode("ascii"),
        getattr(_pb, request),
        getattr(_pb, response),
        gateway,
    )


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

# -- cluster ---------------------------------------------------------------------------------------
MEMBER_ADD = _rpc(
    "Cluster", "MemberAdd", "MemberAddRequest", "MemberAddResponse", "/v3/cluster/member/add"
)
MEMBER_REMOVE = _rpc(
    "Cluster",
    "MemberRemove",
    "MemberRemoveRequest",
    "MemberRemoveResponse",
    "/v3/cluster/member/remove",
)
MEMBER_UPDATE = _rpc(
    "Cluster",
    "MemberUpdate",
    "MemberUpdateRequest",
    "MemberUpdateResponse",
    "/v3/cluster/member/update",
)
MEMBER_LIST = _rpc(
    "Cluster", "MemberList", "MemberListRequest", "MemberListResponse", "/v3/cluster/member/list"
)
MEMBER_PROMOTE = _rpc(
    "Cluster",
    "MemberPromote",
    "MemberPromoteRequest",
    "MemberPromoteResponse",
    "/v3/cluster/member/promote",
)

# -- maintenance -----------------------------------------------------------------------------------
ALARM = _rpc("Maintenance", "Alarm", "AlarmRequest", "AlarmResponse", "/v3/maintenance/alarm")
STATUS = _rpc("Maintenance", "Status", "StatusRequest", "StatusResponse", "/v3/maintenance/status")
DEFRAGMENT = _rpc(
    "Maintenance",
    "Defragment",
    "DefragmentRequest",
    "DefragmentResponse",
    "/v3/maintenance/defragment",
)
HASH = _rpc("Maintenance", "Hash", "HashRequest", "HashResponse", "/v3/maintenance/hash")
#: not routed by the gateway in etcd 3.4 or 3.5 (404): gRPC only
HASH_KV = _rpc("Maintenance", "HashKV", "HashKVRequest", "HashKVResponse", None)
SNAPSHOT = _rpc(
    "Maintenance", "Snapshot", "SnapshotRequest", "SnapshotResponse", "/v3/maintenance/snapshot"
)
MOVE_LEADER = _rpc(
    "Maintenance",
    "MoveLeader",
    "MoveLeaderRequest",
    "MoveLeaderResponse",
    "/v3/maintenance/transfer-leadership",
)

# -- auth ------------------------------------------------------------------------------------------
AUTH_ENABLE = _rpc(
    "Auth", "AuthEnable", "AuthEnableRequest", "AuthEnableResponse", "/v3/auth/enable"
)
AUTH_DISABLE = _rpc(
    "Auth", "AuthDisable", "AuthDisableRequest", "AuthDisableResponse", "/v3/auth/disable"
)
AUTH_STATUS = _rpc(
    "Auth", "AuthStatus", "AuthStatusRequest", "AuthStatusResponse", "/v3/auth/status"
)
AUTHENTICATE = _rpc(
    "Auth", "Authenticate", "AuthenticateRequest", "AuthenticateResponse", "/v3/auth/authenticate"
)
USER_ADD = _rpc("Auth", "UserAdd", "AuthUserAddRequest", "AuthUserAddResponse", "/v3/auth/user/add")
USER_GET = _rpc("Auth", "UserGet", "AuthUserGetRequest", "AuthUserGetResponse", "/v3/auth/user/get")
USER_LIST = _rpc(
    "Auth", "UserList", "AuthUserListRequest", "AuthUserListResponse", "/v3/auth/user/list"
)
USER_DELETE = _rpc(
    "Auth", "UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse", "/v3/auth/user/delete"
)
USER_CHANGE_PASSWORD = _rpc(
    "Auth",
    "UserChangePassword",
    "AuthUserChangePasswordRequest",
    "AuthUserChangePasswordResponse",
    "/v3/auth/user/changepw",
)
USER_GRANT_ROLE = _rpc(
    "Auth",
    "UserGrantRole",
    "AuthUserGrantRoleRequest",
    "AuthUserGrantRoleResponse",
    "/v3/auth/user/grant",
)
USER_REVOKE_ROLE = _rpc(
    "Auth",
    "UserRevokeRole",
    "AuthUserRevokeRoleRequest",
    "AuthUserRevokeRoleResponse",
    "/v3/auth/user/revoke",
)
ROLE_ADD = _rpc("Auth", "RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse", "/v3/auth/role/add")
ROLE_GET = _rpc("Auth", "RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse", "/v3/auth/role/get")
ROLE_LIST = _rpc(
    "Auth", "RoleList", "AuthRoleListRequest", "AuthRoleListResponse", "/v3/auth/role/list"
)
ROLE_DELETE = _rpc(
    "Auth", "RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse", "/v3/auth/role/delete"
)
ROLE_GRANT_PERMISSION = _rpc(
    "Auth",
    "RoleGrantPermission",
    "AuthRoleGrantPermissionRequest",
    "AuthRoleGrantPermissionResponse",
    "/v3/auth/role/grant",
)
ROLE_REVOKE_PERMISSION = _rpc(
    "Auth",
    "RoleRevokePermission",
    "AuthRoleRevokePermissionRequest",
    "AuthRoleRevokePermissionResponse",
    "/v3/auth/role/revoke",
)

# -- the server-side lock and election services ----------------------------------------------------
LOCK = Method.of(
    b"/v3lockpb.Lock/Lock", v3lock_pb2.LockRequest, v3lock_pb2.LockResponse, "/v3/lock/lock"
)
UNLOCK = Method.of(
    b"/v3lockpb.Lock/Unlock", v3lock_pb2.UnlockRequest, v3lock_pb2.UnlockResponse, "/v3/lock/unlock"
)
CAMPAIGN = Method.of(
    b"/v3electionpb.Election/Campaign",
    v3election_pb2.CampaignRequest,
    v3election_pb2.CampaignResponse,
    "/v3/election/campaign",
)
PROCLAIM = Method.of(
    b"/v3electionpb.Election/Proclaim",
    v3election_pb2.ProclaimRequest,
    v3election_pb2.ProclaimResponse,
    "/v3/election/proclaim",
)
LEADER = Method.of(
    b"/v3electionpb.Election/Leader",
    v3election_pb2.LeaderRequest,
    v3election_pb2.LeaderResponse,
    "/v3/election/leader",
)
OBSERVE = Method.of(
    b"/v3electionpb.Election/Observe",
    v3election_pb2.LeaderRequest,
    v3election_pb2.LeaderResponse,
    "/v3/election/observe",
)
RESIGN = Method.of(
    b"/v3electionpb.Election/Resign",
    v3election_pb2.ResignRequest,
    v3election_pb2.ResignResponse,
    "/v3/election/resign",
)
