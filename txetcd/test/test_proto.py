"""
Tests for the generated protobuf modules in L{txetcd._proto}.

The field numbers, enum values and method names checked here were read from
etcd 3.5's own .proto files; they are the wire format, so a mismatch would
make txetcd talk nonsense to a real server.
"""

import glob
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from txetcd._proto import auth_pb2, kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2

MODULES = [kv_pb2, auth_pb2, rpc_pb2, v3lock_pb2, v3election_pb2]
PROTO_DIR = os.path.dirname(rpc_pb2.__file__)


def _all_message_classes() -> list[type[Message]]:
    """
    Every message class (top-level and nested) defined by our modules.
    """
    classes: list[type[Message]] = []

    def walk(cls: type[Message]) -> None:
        classes.append(cls)
        for nested in cls.DESCRIPTOR.nested_types:
            walk(getattr(cls, nested.name))

    for module in MODULES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(getattr(module, descriptor.name))
    return classes


ALL_MESSAGES = _all_message_classes()


def _is_repeated(field: Any) -> bool:
    """
    Whether C{field} is repeated (newer runtimes dropped C{label} for
    C{is_repeated}).
    """
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def _fill(message: Message, depth: int = 0) -> None:
    """
    Set every field of C{message} to a non-default value (the first member of
    each oneof only), recursing into sub-messages up to a small depth (the
    Txn messages are recursive).
    """
    seen_oneofs: set[str] = set()
    fields: list[Any] = list(message.DESCRIPTOR.fields)
    for index, field in enumerate(fields):
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        repeated = _is_repeated(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if repeated:
                _fill(getattr(message, field.name).add(), depth + 1)
                _fill(getattr(message, field.name).add(), depth + 1)
            else:
                sub = getattr(message, field.name)
                sub.SetInParent()
                _fill(sub, depth + 1)
            continue
        value: object
        if field.type == FieldDescriptor.TYPE_BYTES:
            value = b"\x00\xffv" + str(index).encode()
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = f"v\u00e9{index}"
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = True
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = field.enum_type.values[-1].number
        elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_INT32):
            value = -(2**40) - index if field.type == FieldDescriptor.TYPE_INT64 else -7
        elif field.type == FieldDescriptor.TYPE_UINT64:
            value = 2**64 - 1 - index
        elif field.type == FieldDescriptor.TYPE_UINT32:
            value = 2**32 - 1 - index
        else:  # pragma: no cover - etcd's API uses no other scalar types
            raise AssertionError(f"unexpected type {field.type} in {field.full_name}")
        if repeated:
            getattr(message, field.name).extend([value, value])
        else:
            setattr(message, field.name, value)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=[c.DESCRIPTOR.full_name for c in ALL_MESSAGES])
def test_round_trip(cls: type[Message]) -> None:
    """
    Every message serializes and parses back to an equal message, both empty
    and with every field set.
    """
    empty = cls()
    assert empty.SerializeToString() == b""
    assert cls.FromString(b"") == empty

    full = cls()
    _fill(full)
    data = full.SerializeToString()
    if full.DESCRIPTOR.fields:
        assert data != b""
    parsed = cls.FromString(data)
    assert parsed == full
    assert parsed.SerializeToString(deterministic=True) == full.SerializeToString(
        deterministic=True
    )


def test_message_count() -> None:
    """
    All of etcd 3.5's messages are there (95 top-level messages in
    etcdserverpb, 2 in mvccpb, 4 in authpb, 4 in v3lockpb, 9 in
    v3electionpb).
    """
    counts = {m.DESCRIPTOR.package: len(m.DESCRIPTOR.message_types_by_name) for m in MODULES}
    assert counts == {
        "mvccpb": 2,
        "authpb": 4,
        "etcdserverpb": 95,
        "v3lockpb": 4,
        "v3electionpb": 9,
    }


def _services(module: ModuleType) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    """
    The services of a generated module, as descriptor protos (which carry the
    streaming flags on every protobuf runtime version).
    """
    proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    return {service.name: service for service in proto.service}


# (method, input type, output type, client streaming, server streaming)
SERVICES = {
    (rpc_pb2, "KV"): [
        ("Range", "RangeRequest", "RangeResponse", False, False),
        ("Put", "PutRequest", "PutResponse", False, False),
        ("DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse", False, False),
        ("Txn", "TxnRequest", "TxnResponse", False, False),
        ("Compact", "CompactionRequest", "CompactionResponse", False, False),
    ],
    (rpc_pb2, "Watch"): [
        ("Watch", "WatchRequest", "WatchResponse", True, True),
    ],
    (rpc_pb2, "Lease"): [
        ("LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse", False, False),
        ("LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse", False, False),
        (
            "LeaseKeepAlive",
            "LeaseKeepAliveRequest",
            "LeaseKeepAliveResponse",
            True,
            True,
        ),
        (
            "LeaseTimeToLive",
            "LeaseTimeToLiveRequest",
            "LeaseTimeToLiveResponse",
            False,
            False,
        ),
        ("LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse", False, False),
    ],
    (rpc_pb2, "Cluster"): [
        ("MemberAdd", "MemberAddRequest", "MemberAddResponse", False, False),
        ("MemberRemove", "MemberRemoveRequest", "MemberRemoveResponse", False, False),
        ("MemberUpdate", "MemberUpdateRequest", "MemberUpdateResponse", False, False),
        ("MemberList", "MemberListRequest", "MemberListResponse", False, False),
        (
            "MemberPromote",
            "MemberPromoteRequest",
            "MemberPromoteResponse",
            False,
            False,
        ),
    ],
    (rpc_pb2, "Maintenance"): [
        ("Alarm", "AlarmRequest", "AlarmResponse", False, False),
        ("Status", "StatusRequest", "StatusResponse", False, False),
        ("Defragment", "DefragmentRequest", "DefragmentResponse", False, False),
        ("Hash", "HashRequest", "HashResponse", False, False),
        ("HashKV", "HashKVRequest", "HashKVResponse", False, False),
        ("Snapshot", "SnapshotRequest", "SnapshotResponse", False, True),
        ("MoveLeader", "MoveLeaderRequest", "MoveLeaderResponse", False, False),
        ("Downgrade", "DowngradeRequest", "DowngradeResponse", False, False),
    ],
    (rpc_pb2, "Auth"): [
        (name, f"{req}Request", f"{req}Response", False, False)
        for name, req in [
            ("AuthEnable", "AuthEnable"),
            ("AuthDisable", "AuthDisable"),
            ("AuthStatus", "AuthStatus"),
            ("Authenticate", "Authenticate"),
            ("UserAdd", "AuthUserAdd"),
            ("UserGet", "AuthUserGet"),
            ("UserList", "AuthUserList"),
            ("UserDelete", "AuthUserDelete"),
            ("UserChangePassword", "AuthUserChangePassword"),
            ("UserGrantRole", "AuthUserGrantRole"),
            ("UserRevokeRole", "AuthUserRevokeRole"),
            ("RoleAdd", "AuthRoleAdd"),
            ("RoleGet", "AuthRoleGet"),
            ("RoleList", "AuthRoleList"),
            ("RoleDelete", "AuthRoleDelete"),
            ("RoleGrantPermission", "AuthRoleGrantPermission"),
            ("RoleRevokePermission", "AuthRoleRevokePermission"),
        ]
    ],
    (v3lock_pb2, "Lock"): [
        ("Lock", "LockRequest", "LockResponse", False, False),
        ("Unlock", "UnlockRequest", "UnlockResponse", False, False),
    ],
    (v3election_pb2, "Election"): [
        ("Campaign", "CampaignRequest", "CampaignResponse", False, False),
        ("Proclaim", "ProclaimRequest", "ProclaimResponse", False, False),
        ("Leader", "LeaderRequest", "LeaderResponse", False, False),
        ("Observe", "LeaderRequest", "LeaderResponse", False, True),
        ("Resign", "ResignRequest", "ResignResponse", False, False),
    ],
}


@pytest.mark.parametrize("module, service", list(SERVICES), ids=[s for _, s in SERVICES])
def test_service_methods(module: ModuleType, service: str) -> None:
    """
    Each service has exactly etcd's methods, with etcd's request and response
    types and streaming kinds.
    """
    package = module.DESCRIPTOR.package
    actual = [
        (
            m.name,
            m.input_type,
            m.output_type,
            m.client_streaming,
            m.server_streaming,
        )
        for m in _services(module)[service].method
    ]
    expected = [
        (name, f".{package}.{req}", f".{package}.{resp}", cs, ss)
        for name, req, resp, cs, ss in SERVICES[(module, service)]
    ]
    assert actual == expected


def test_service_names() -> None:
    """
    The services are exactly those of etcd, and their full names give the
    gRPC paths etcd serves, e.g. C{/etcdserverpb.KV/Range}.
    """
    assert sorted(_services(rpc_pb2)) == sorted(
        ["KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"]
    )
    assert list(_services(v3lock_pb2)) == ["Lock"]
    assert list(_services(v3election_pb2)) == ["Election"]
    kv = rpc_pb2.DESCRIPTOR.services_by_name["KV"]
    assert f"/{kv.full_name}/{kv.methods_by_name['Range'].name}" == "/etcdserverpb.KV/Range"
    lock = v3lock_pb2.DESCRIPTOR.services_by_name["Lock"]
    assert f"/{lock.full_name}/Lock" == "/v3lockpb.Lock/Lock"
    election = v3election_pb2.DESCRIPTOR.services_by_name["Election"]
    assert election.full_name == "v3electionpb.Election"


def _number(cls: type[Message], field: str) -> int:
    number: int = cls.DESCRIPTOR.fields_by_name[field].number
    return number


@pytest.mark.parametrize(
    "cls, field, number",
    [
        (rpc_pb2.ResponseHeader, "cluster_id", 1),
        (rpc_pb2.ResponseHeader, "raft_term", 4),
        (rpc_pb2.RangeRequest, "range_end", 2),
        (rpc_pb2.RangeRequest, "limit", 3),
        (rpc_pb2.RangeRequest, "revision", 4),
        (rpc_pb2.RangeRequest, "serializable", 7),
        (rpc_pb2.RangeRequest, "count_only", 9),
        (rpc_pb2.RangeRequest, "max_create_revision", 13),
        (rpc_pb2.RangeResponse, "count", 4),
        (rpc_pb2.PutRequest, "lease", 3),
        (rpc_pb2.PutRequest, "prev_kv", 4),
        (rpc_pb2.PutRequest, "ignore_lease", 6),
        (rpc_pb2.DeleteRangeRequest, "prev_kv", 3),
        (rpc_pb2.DeleteRangeResponse, "prev_kvs", 3),
        (rpc_pb2.RequestOp, "request_txn", 4),
        (rpc_pb2.ResponseOp, "response_delete_range", 3),
        (rpc_pb2.Compare, "key", 3),
        (rpc_pb2.Compare, "version", 4),
        (rpc_pb2.Compare, "value", 7),
        (rpc_pb2.Compare, "lease", 8),
        # etcd jumps to 64 here.
        (rpc_pb2.Compare, "range_end", 64),
        (rpc_pb2.TxnResponse, "succeeded", 2),
        (rpc_pb2.CompactionRequest, "physical", 2),
        (rpc_pb2.HashKVResponse, "compact_revision", 3),
        (rpc_pb2.SnapshotResponse, "blob", 3),
        (rpc_pb2.WatchRequest, "progress_request", 3),
        (rpc_pb2.WatchCreateRequest, "filters", 5),
        (rpc_pb2.WatchCreateRequest, "watch_id", 7),
        (rpc_pb2.WatchCreateRequest, "fragment", 8),
        (rpc_pb2.WatchResponse, "cancel_reason", 6),
        (rpc_pb2.WatchResponse, "fragment", 7),
        # etcd skips 8 to 10 here.
        (rpc_pb2.WatchResponse, "events", 11),
        (rpc_pb2.LeaseGrantRequest, "TTL", 1),
        (rpc_pb2.LeaseGrantRequest, "ID", 2),
        (rpc_pb2.LeaseGrantResponse, "error", 4),
        (rpc_pb2.LeaseCheckpoint, "remaining_TTL", 2),
        (rpc_pb2.LeaseTimeToLiveResponse, "grantedTTL", 4),
        (rpc_pb2.LeaseTimeToLiveResponse, "keys", 5),
        (rpc_pb2.Member, "clientURLs", 4),
        (rpc_pb2.Member, "isLearner", 5),
        (rpc_pb2.MemberAddRequest, "isLearner", 2),
        (rpc_pb2.MemberListRequest, "linearizable", 1),
        (rpc_pb2.MoveLeaderRequest, "targetID", 1),
        (rpc_pb2.AlarmRequest, "memberID", 2),
        (rpc_pb2.AlarmRequest, "alarm", 3),
        (rpc_pb2.StatusResponse, "raftAppliedIndex", 7),
        (rpc_pb2.StatusResponse, "dbSizeInUse", 9),
        (rpc_pb2.StatusResponse, "isLearner", 10),
        (rpc_pb2.AuthUserAddRequest, "options", 3),
        (rpc_pb2.AuthUserAddRequest, "hashedPassword", 4),
        (rpc_pb2.AuthUserChangePasswordRequest, "hashedPassword", 3),
        (rpc_pb2.AuthUserGrantRoleRequest, "user", 1),
        (rpc_pb2.AuthRoleGrantPermissionRequest, "perm", 2),
        (rpc_pb2.AuthRoleRevokePermissionRequest, "range_end", 3),
        (rpc_pb2.AuthStatusResponse, "authRevision", 3),
        (kv_pb2.KeyValue, "value", 5),
        (kv_pb2.KeyValue, "lease", 6),
        (kv_pb2.Event, "prev_kv", 3),
        (auth_pb2.Permission, "permType", 1),
        (auth_pb2.Role, "keyPermission", 2),
        (auth_pb2.User, "options", 4),
        (auth_pb2.UserAddOptions, "no_password", 1),
        (v3lock_pb2.LockRequest, "lease", 2),
        (v3lock_pb2.LockResponse, "key", 2),
        (v3election_pb2.CampaignRequest, "value", 3),
        (v3election_pb2.LeaderKey, "rev", 3),
        (v3election_pb2.LeaderKey, "lease", 4),
        (v3election_pb2.ProclaimRequest, "value", 2),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_field_numbers(cls: type[Message], field: str, number: int) -> None:
    """
    Key fields carry etcd's field numbers.
    """
    assert _number(cls, field) == number


def test_field_types() -> None:
    """
    Member and cluster IDs are unsigned, lease IDs and revisions are signed,
    hashes are 32-bit: the types decide how the varints are read.
    """
    F = FieldDescriptor
    assert rpc_pb2.ResponseHeader.DESCRIPTOR.fields_by_name["cluster_id"].type == F.TYPE_UINT64
    assert rpc_pb2.ResponseHeader.DESCRIPTOR.fields_by_name["revision"].type == F.TYPE_INT64
    assert rpc_pb2.Member.DESCRIPTOR.fields_by_name["ID"].type == F.TYPE_UINT64
    assert rpc_pb2.LeaseGrantRequest.DESCRIPTOR.fields_by_name["ID"].type == F.TYPE_INT64
    assert rpc_pb2.HashResponse.DESCRIPTOR.fields_by_name["hash"].type == F.TYPE_UINT32
    assert rpc_pb2.WatchResponse.DESCRIPTOR.fields_by_name["cancel_reason"].type == F.TYPE_STRING
    assert kv_pb2.KeyValue.DESCRIPTOR.fields_by_name["key"].type == F.TYPE_BYTES
    assert auth_pb2.User.DESCRIPTOR.fields_by_name["name"].type == F.TYPE_BYTES
    assert rpc_pb2.AuthUserAddRequest.DESCRIPTOR.fields_by_name["name"].type == F.TYPE_STRING


def test_oneofs() -> None:
    """
    The oneofs have etcd's names and members.
    """

    def members(cls: type[Message], oneof: str) -> list[str]:
        return [f.name for f in cls.DESCRIPTOR.oneofs_by_name[oneof].fields]

    assert members(rpc_pb2.Compare, "target_union") == [
        "version",
        "create_revision",
        "mod_revision",
        "value",
        "lease",
    ]
    assert members(rpc_pb2.WatchRequest, "request_union") == [
        "create_request",
        "cancel_request",
        "progress_request",
    ]
    assert members(rpc_pb2.RequestOp, "request") == [
        "request_range",
        "request_put",
        "request_delete_range",
        "request_txn",
    ]
    assert members(rpc_pb2.ResponseOp, "response") == [
        "response_range",
        "response_put",
        "response_delete_range",
        "response_txn",
    ]
    compare = rpc_pb2.Compare(value=b"x")
    assert compare.WhichOneof("target_union") == "value"
    # An explicit zero in a oneof is still sent (etcd needs it for
    # "version == 0", i.e. "key does not exist").
    zero = rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.VERSION, version=0)
    assert (
        rpc_pb2.Compare.FromString(zero.SerializeToString()).WhichOneof("target_union") == "version"
    )
    progress = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
    assert progress.SerializeToString() == b"\x1a\x00"


@pytest.mark.parametrize(
    "enum, values",
    [
        (rpc_pb2.RangeRequest.SortOrder, {"NONE": 0, "ASCEND": 1, "DESCEND": 2}),
        (
            rpc_pb2.RangeRequest.SortTarget,
            {"KEY": 0, "VERSION": 1, "CREATE": 2, "MOD": 3, "VALUE": 4},
        ),
        (
            rpc_pb2.Compare.CompareResult,
            {"EQUAL": 0, "GREATER": 1, "LESS": 2, "NOT_EQUAL": 3},
        ),
        (
            rpc_pb2.Compare.CompareTarget,
            {"VERSION": 0, "CREATE": 1, "MOD": 2, "VALUE": 3, "LEASE": 4},
        ),
        (rpc_pb2.WatchCreateRequest.FilterType, {"NOPUT": 0, "NODELETE": 1}),
        (rpc_pb2.AlarmType, {"NONE": 0, "NOSPACE": 1, "CORRUPT": 2}),
        (rpc_pb2.AlarmRequest.AlarmAction, {"GET": 0, "ACTIVATE": 1, "DEACTIVATE": 2}),
        (
            rpc_pb2.DowngradeRequest.DowngradeAction,
            {"VALIDATE": 0, "ENABLE": 1, "CANCEL": 2},
        ),
        (kv_pb2.Event.EventType, {"PUT": 0, "DELETE": 1}),
        (auth_pb2.Permission.Type, {"READ": 0, "WRITE": 1, "READWRITE": 2}),
    ],
    ids=lambda v: v.DESCRIPTOR.full_name if hasattr(v, "DESCRIPTOR") else "",
)
def test_enum_values(enum: object, values: dict[str, int]) -> None:
    """
    Enums carry etcd's names and numbers.
    """
    descriptor = enum.DESCRIPTOR  # type: ignore[attr-defined]
    assert {v.name: v.number for v in descriptor.values} == values


def test_known_encoding() -> None:
    """
    A few messages encode to the exact bytes etcd expects.
    """
    assert rpc_pb2.RangeRequest(key=b"foo", limit=1).SerializeToString() == (b"\x0a\x03foo\x18\x01")
    assert rpc_pb2.PutRequest(key=b"a", value=b"b", prev_kv=True).SerializeToString() == (
        b"\x0a\x01a\x12\x01b\x20\x01"
    )
    # field 64, wire type 2: tag varint 0x202 -> b"\x82\x04"
    assert rpc_pb2.Compare(range_end=b"z").SerializeToString() == b"\x82\x04\x01z"
    assert rpc_pb2.WatchCancelRequest(watch_id=5).SerializeToString() == b"\x08\x05"
    # Negative int64 (lease IDs may be negative) is a ten-byte varint.
    assert rpc_pb2.LeaseGrantRequest(ID=-5).SerializeToString() == (
        b"\x10\xfb\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    )


def test_generated_imports() -> None:
    """
    The generated modules import each other absolutely within the package,
    and there are no gRPC stubs (txetcd does not use grpcio at run time).
    """
    assert glob.glob(os.path.join(PROTO_DIR, "*_pb2_grpc.py")) == []
    with open(os.path.join(PROTO_DIR, "v3election_pb2.py")) as f:
        source = f.read()
    assert "from txetcd._proto import rpc_pb2" in source
    assert "from txetcd._proto import kv_pb2" in source
    for module in MODULES:
        with open(module.__file__ or "") as f:
            assert "import grpc" not in f.read()
        assert os.path.exists(os.path.splitext(module.__file__ or "")[0] + ".pyi")


def test_generated_code_is_current() -> None:
    """
    The committed C{*_pb2.py} modules match the C{.proto} sources (run
    C{tools/regen-protos} after editing a C{.proto}). Skipped when
    grpcio-tools, a development-only tool, is not installed.
    """
    pytest.importorskip("grpc_tools.protoc")
    root = os.path.dirname(os.path.dirname(PROTO_DIR))
    protos = sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(PROTO_DIR, "*.proto")))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-I",
                ".",
                f"--descriptor_set_out={out}",
            ]
            + protos,
            cwd=root,
            check=True,
        )
        with open(out, "rb") as f:
            fresh = descriptor_pb2.FileDescriptorSet.FromString(f.read())

    def clear_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        # protoc writes json_name into descriptor sets, not into generated code
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            clear_json_names(message.nested_type)

    for file_proto in fresh.file:
        clear_json_names(file_proto.message_type)
    committed = {
        m.DESCRIPTOR.name: descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
        for m in MODULES
    }
    assert {p.name: p for p in fresh.file} == committed
