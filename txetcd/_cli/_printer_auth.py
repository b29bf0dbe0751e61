"""The auth answers as etcdctl 3.5 writes them: users, roles and their permissions, the auth
status.

``json`` and ``protobuf`` are etcd's own answer; ``fields`` is the header (with a role's
permissions, or the role names); the user lists and the auth status have no ``fields``, and no
auth answer has a ``table``: those are refused with exit 4, after the call was made, as
etcdctl does.
"""

from __future__ import annotations

from typing import Any, Dict

from txetcd._authadmin import (
    AuthResult,
    AuthStatus,
    Permission,
    PermissionType,
    Role,
    RolesResult,
    User,
    UsersResult,
)
from txetcd._cli._printer import Output, go_quote
from txetcd._cli._printer_admin import fields_header, prefix_end, set_header
from txetcd._cli._printer_json import b64, header_json, omit_empty
from txetcd._proto import rpc_pb2

__all__ = [
    "show_auth_status",
    "show_changed",
    "show_role",
    "show_roles",
    "show_user",
    "show_users",
]


def _header_only(result: AuthResult) -> Dict[str, Any]:
    return {"header": header_json(result.header)}


def show_changed(out: Output, message: bytes, result: AuthResult) -> None:
    """The answer to a change of a user or role: ``message`` in ``simple``, the header
    otherwise."""
    if out.format == "simple":
        out.line(message)
    elif out.format == "json":
        out.json(_header_only(result))
    elif out.format == "fields":
        fields_header(out, result.header)
    elif out.format == "protobuf":
        # (every such answer is a header alone: one message on the wire)
        out.write(set_header(rpc_pb2.AuthRoleAddResponse(), result.header).SerializeToString())
    else:
        out.unsupported()


def show_user(out: Output, name: str, result: User) -> None:
    """``user get``'s answer (without ``--detail``)."""
    if out.format == "simple":
        out.line(f"User: {name}")
        out.line("Roles:" + "".join(f" {role}" for role in result.roles))
    elif out.format == "json":
        out.json(
            omit_empty((("header", header_json(result.header)), ("roles", list(result.roles))))
        )
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.AuthUserGetResponse(roles=result.roles), result.header)
        out.write(message.SerializeToString())
    else:
        out.unsupported()


def show_users(out: Output, result: UsersResult) -> None:
    """``user list``'s answer."""
    if out.format == "simple":
        for name in result.users:
            out.line(name)
    elif out.format == "json":
        out.json(
            omit_empty((("header", header_json(result.header)), ("users", list(result.users))))
        )
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.AuthUserListResponse(users=result.users), result.header)
        out.write(message.SerializeToString())
    else:
        out.unsupported()


def _range_text(perm: Permission) -> bytes:
    key, end = perm.key, perm.range_end
    if end != b"\0":
        text = b"\t[" + key + b", " + end + b")"
    else:
        text = b"\t[" + key + b", <open ended>"
    if prefix_end(key) == end:
        text += b" (prefix " + key + b")"
    return text


def show_role(out: Output, name: str, result: Role) -> None:
    """``role get``'s answer."""
    if out.format == "simple":
        out.line(f"Role {name}")
        kinds = (
            ("KV Read:", (PermissionType.READ, PermissionType.READWRITE)),
            ("KV Write:", (PermissionType.WRITE, PermissionType.READWRITE)),
        )
        for title, types in kinds:
            out.line(title)
            for perm in result.permissions:
                if perm.type in types:
                    out.line(b"\t" + perm.key if not perm.range_end else _range_text(perm))
    elif out.format == "json":
        perms = [
            omit_empty(
                (
                    ("permType", int(p.type)),
                    ("key", b64(p.key) if p.key else ""),
                    ("range_end", b64(p.range_end) if p.range_end else ""),
                )
            )
            for p in result.permissions
        ]
        out.json(omit_empty((("header", header_json(result.header)), ("perm", perms))))
    elif out.format == "fields":
        fields_header(out, result.header)
        for perm in result.permissions:
            out.line(f'"PermType" :  {PermissionType(perm.type).name}')
            out.line(f'"Key" : {go_quote(perm.key)}')
            out.line(f'"RangeEnd" : {go_quote(perm.range_end)}')
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.AuthRoleGetResponse(), result.header)
        for perm in result.permissions:
            message.perm.add(permType=int(perm.type), key=perm.key, range_end=perm.range_end)
        out.write(message.SerializeToString())
    else:
        out.unsupported()


def show_roles(out: Output, result: RolesResult) -> None:
    """``role list``'s answer."""
    if out.format == "simple":
        for name in result.roles:
            out.line(name)
    elif out.format == "json":
        out.json(
            omit_empty((("header", header_json(result.header)), ("roles", list(result.roles))))
        )
    elif out.format == "fields":
        fields_header(out, result.header)
        out.line('"Roles" :' + "".join(f" {go_quote(name)}" for name in result.roles))
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.AuthRoleListResponse(roles=result.roles), result.header)
        out.write(message.SerializeToString())
    else:
        out.unsupported()


def show_auth_status(out: Output, result: AuthStatus) -> None:
    """``auth status``'s answer."""
    if out.format == "simple":
        out.line(f"Authentication Status: {'true' if result.enabled else 'false'}")
        out.line(f"AuthRevision: {result.auth_revision}")
    elif out.format == "json":
        out.json(
            omit_empty(
                (
                    ("header", header_json(result.header)),
                    ("enabled", result.enabled),
                    ("authRevision", result.auth_revision),
                )
            )
        )
    elif out.format == "protobuf":
        message = rpc_pb2.AuthStatusResponse(
            enabled=result.enabled, authRevision=result.auth_revision
        )
        out.write(set_header(message, result.header).SerializeToString())
    else:
        out.unsupported()
