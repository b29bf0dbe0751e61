"""The auth verbs: ``user add/delete/get/list/passwd/grant-role/revoke-role``, ``role
add/delete/get/list/grant-permission/revoke-permission`` and ``auth enable/disable/status``,
with etcdctl 3.5's checks, messages, output and exit codes.

A new password comes from ``--new-user-password``, from ``user:password``, from stdin
(``--interactive=false``: the first word of the first line) or, by default, from two prompts.
etcdctl accepts an empty password from stdin; txetcd refuses it (``empty password``, as for
the prompts).
"""

from __future__ import annotations

import getpass
from typing import Any, Callable, List, Optional, Tuple

from txetcd._authadmin import PermissionType
from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    Bool,
    CommandError,
    Context,
    Option,
    Str,
    register,
)
from txetcd._cli._printer_admin import prefix_end
from txetcd._cli._printer_auth import (
    show_auth_status,
    show_changed,
    show_role,
    show_roles,
    show_user,
    show_users,
)
from txetcd._errors import NoRootRole

__all__ = ["permission_range"]

# etcd's answers to an empty name (the client refuses to send one)
_USER_EMPTY = "etcdserver: user name is empty"
_USER_NOT_FOUND = "etcdserver: user name not found"
_ROLE_EMPTY = "etcdserver: role name is empty"
_ROLE_NOT_FOUND = "etcdserver: role name not found"


def _arg(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _need(name: str, message: str) -> None:
    """What etcd answers for an empty user or role name."""
    if not name:
        raise CommandError(EXIT_ERROR, message)


async def _check_role_name(client: Any, user: str, role: str, message: str) -> None:
    """An empty role name: etcd looks the user up first (an unknown user is the error), then
    answers ``message``."""
    if not role:
        await client.user_get(user)
        raise CommandError(EXIT_ERROR, message)


# -- passwords -------------------------------------------------------------------------------


def _read_word(ctx: Context) -> str:
    """Go's ``fmt.Scanf("%s")`` on stdin: the first word of the first line, after any
    spaces ("" when the line has none)."""
    line = ctx.stdin.readline().decode("utf-8", "surrogateescape")
    rest = line.lstrip(" \t\r")
    word = rest.split(None, 1)[0] if rest[:1] not in ("", "\n") else ""
    return word


def _ask(ctx: Context, name: str) -> str:
    """etcdctl's two prompts for a password (exit 128 when empty or not the same twice)."""
    prompt: Callable[[str], str] = ctx.prompt or getpass.getpass
    try:
        first = prompt(f"Password of {name}: ")
        if not first:
            raise CommandError(EXIT_BAD_ARGS, "empty password")
        second = prompt(f"Type password of {name} again for confirmation: ")
    except (EOFError, OSError) as e:
        raise CommandError(EXIT_BAD_ARGS, f"failed to ask password: {e or 'EOF'}") from None
    if first != second:
        raise CommandError(EXIT_BAD_ARGS, "given passwords are different")
    return first


def _new_password(ctx: Context, name: str) -> str:
    password = _ask(ctx, name) if ctx.options.interactive else _read_word(ctx)
    if not password:
        raise CommandError(EXIT_BAD_ARGS, "empty password")
    return password


# -- user ------------------------------------------------------------------------------------


async def _user_add(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "user add command requires user name as its argument")
    password: Optional[str] = None
    if ctx.options.no_password:
        user = ctx.args[0]
    elif ctx.options.new_user_password:
        user, password = ctx.args[0], ctx.options.new_user_password
    elif ":" in ctx.args[0]:
        user, password = ctx.args[0].split(":", 1)
        if not user:
            raise CommandError(EXIT_BAD_ARGS, "empty user name is not allowed")
        if not password:
            raise CommandError(EXIT_BAD_ARGS, "empty password")
    else:
        user = ctx.args[0]
        password = _new_password(ctx, user)
    client = await ctx.client()
    _need(user, _USER_EMPTY)
    if password is None:
        result = await client.user_add(user, no_password=True)
    else:
        result = await client.user_add(user, password)
    show_changed(ctx.out, _arg(f"User {user} created"), result)


async def _user_delete(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "user delete command requires user name as its argument")
    user = ctx.args[0]
    client = await ctx.client()
    _need(user, _USER_NOT_FOUND)
    result = await client.user_delete(user)
    show_changed(ctx.out, _arg(f"User {user} deleted"), result)


async def _user_get(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "user get command requires user name as its argument")
    user = ctx.args[0]
    client = await ctx.client()
    _need(user, _USER_NOT_FOUND)
    result = await client.user_get(user)
    if not ctx.options.detail:
        show_user(ctx.out, user, result)
        return
    ctx.out.line(f"User: {user}")
    for role in result.roles:
        ctx.out.line()
        show_role(ctx.out, role, await client.role_get(role))


async def _user_list(ctx: Context) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "user list command requires no arguments")
    client = await ctx.client()
    result = await client.user_list()
    show_users(ctx.out, result)


async def _user_passwd(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "user passwd command requires user name as its argument")
    user = ctx.args[0]
    password = _new_password(ctx, user)
    client = await ctx.client()
    _need(user, _USER_NOT_FOUND)
    result = await client.user_change_password(user, password)
    show_changed(ctx.out, b"Password updated", result)


async def _user_grant_role(ctx: Context) -> None:
    if len(ctx.args) != 2:
        raise CommandError(
            EXIT_BAD_ARGS, "user grant command requires user name and role name as its argument"
        )
    user, role = ctx.args
    client = await ctx.client()
    _need(user, _USER_NOT_FOUND)
    await _check_role_name(client, user, role, _ROLE_NOT_FOUND)
    result = await client.user_grant_role(user, role)
    show_changed(ctx.out, _arg(f"Role {role} is granted to user {user}"), result)


async def _user_revoke_role(ctx: Context) -> None:
    if len(ctx.args) != 2:
        raise CommandError(
            EXIT_BAD_ARGS, "user revoke-role requires user name and role name as its argument"
        )
    user, role = ctx.args
    client = await ctx.client()
    _need(user, _USER_NOT_FOUND)
    await _check_role_name(client, user, role, "etcdserver: role is not granted to the user")
    result = await client.user_revoke_role(user, role)
    show_changed(ctx.out, _arg(f"Role {role} is revoked from user {user}"), result)


# -- role ------------------------------------------------------------------------------------


def _one_role(ctx: Context, verb: str) -> str:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, f"role {verb} command requires role name as its argument")
    return ctx.args[0]


async def _role_add(ctx: Context) -> None:
    role = _one_role(ctx, "add")
    client = await ctx.client()
    _need(role, _ROLE_EMPTY)
    result = await client.role_add(role)
    show_changed(ctx.out, _arg(f"Role {role} created"), result)


async def _role_delete(ctx: Context) -> None:
    role = _one_role(ctx, "delete")
    client = await ctx.client()
    _need(role, _ROLE_NOT_FOUND)
    result = await client.role_delete(role)
    show_changed(ctx.out, _arg(f"Role {role} deleted"), result)


async def _role_get(ctx: Context) -> None:
    role = _one_role(ctx, "get")
    client = await ctx.client()
    _need(role, _ROLE_NOT_FOUND)
    result = await client.role_get(role)
    show_role(ctx.out, role, result)


async def _role_list(ctx: Context) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "role list command requires no arguments")
    client = await ctx.client()
    result = await client.role_list()
    show_roles(ctx.out, result)


def permission_range(args: List[str], prefix: bool, from_key: bool) -> Tuple[bytes, bytes]:
    """etcdctl's ``permRange``: (key, range_end) of a permission from its key words and the
    ``--prefix``/``--from-key`` flags; an empty key means every key."""
    key = _arg(args[0])
    if not key:
        if prefix and from_key:
            raise CommandError(
                EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive"
            )
        return b"\0", (b"\0" if prefix or from_key else b"")
    if len(args) == 1:
        if prefix:
            if from_key:
                raise CommandError(
                    EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive"
                )
            return key, prefix_end(key)
        return key, (b"\0" if from_key else b"")
    if prefix:
        raise CommandError(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix flag")
    if from_key:
        raise CommandError(EXIT_BAD_ARGS, "unexpected endkey argument with --from-key flag")
    return key, _arg(args[1])


async def _role_grant_permission(ctx: Context) -> None:
    if len(ctx.args) < 3:
        raise CommandError(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its"
            " argument",
        )
    role, kind = ctx.args[0], ctx.args[1]
    try:
        permission = PermissionType[kind.upper()]
    except KeyError:
        raise CommandError(EXIT_BAD_ARGS, f"invalid permission type: {kind}") from None
    key, end = permission_range(ctx.args[2:], ctx.options.prefix, ctx.options.from_key)
    client = await ctx.client()
    _need(role, _ROLE_NOT_FOUND)
    result = await client.role_grant_permission(role, key, range_end=end, permission=permission)
    show_changed(ctx.out, _arg(f"Role {role} updated"), result)


async def _role_revoke_permission(ctx: Context) -> None:
    if len(ctx.args) < 2:
        raise CommandError(
            EXIT_BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        )
    role = ctx.args[0]
    key, end = permission_range(ctx.args[1:], ctx.options.prefix, ctx.options.from_key)
    client = await ctx.client()
    _need(role, _ROLE_NOT_FOUND)
    result = await client.role_revoke_permission(role, key, range_end=end)
    shown = _arg(ctx.args[1])
    if not end:
        message = b"Permission of key " + shown
    elif end != b"\0":
        message = b"Permission of range [" + shown + b", " + end + b")"
    else:
        message = b"Permission of range [" + shown + b", <open ended>"
    show_changed(ctx.out, message + b" is revoked from role " + _arg(role), result)


# -- auth ------------------------------------------------------------------------------------


def _no_args(ctx: Context, verb: str) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, f"auth {verb} command does not accept any arguments")


async def _auth_enable(ctx: Context) -> None:
    _no_args(ctx, "enable")
    client = await ctx.client()
    while True:
        try:
            await client.auth_enable()
            break
        except NoRootRole:
            # etcdctl makes the root role and gives it to root, then tries again
            await client.role_add("root")
            await client.user_grant_role("root", "root")
    ctx.out.line("Authentication Enabled")


async def _auth_disable(ctx: Context) -> None:
    _no_args(ctx, "disable")
    client = await ctx.client()
    await client.auth_disable()
    ctx.out.line("Authentication Disabled")


async def _auth_status(ctx: Context) -> None:
    _no_args(ctx, "status")
    client = await ctx.client()
    result = await client.auth_status()
    show_auth_status(ctx.out, result)


# -- registration ----------------------------------------------------------------------------

_INTERACTIVE = Option(
    "interactive", "Read password from stdin instead of interactive terminal", True, None, "bool"
)

register(
    "user add",
    _user_add,
    summary="Adds a new user",
    usage="<user name or user:password>",
    flags=[
        _INTERACTIVE,
        Str("new-user-password", "Supply password from the command line flag"),
        Bool("no-password", "Create a user without password (CN based auth only)"),
    ],
)
register("user delete", _user_delete, summary="Deletes a user", usage="<user name>")
register(
    "user get",
    _user_get,
    summary="Gets detailed information of a user",
    usage="<user name>",
    flags=[Bool("detail", "Show permissions of roles granted to the user")],
)
register("user list", _user_list, summary="Lists all users")
register(
    "user passwd",
    _user_passwd,
    summary="Changes password of user",
    usage="<user name>",
    flags=[_INTERACTIVE],
)
register(
    "user grant-role",
    _user_grant_role,
    summary="Grants a role to a user",
    usage="<user name> <role name>",
)
register(
    "user revoke-role",
    _user_revoke_role,
    summary="Revokes a role from a user",
    usage="<user name> <role name>",
)
register("role add", _role_add, summary="Adds a new role", usage="<role name>")
register("role delete", _role_delete, summary="Deletes a role", usage="<role name>")
register("role get", _role_get, summary="Gets detailed information of a role", usage="<role name>")
register("role list", _role_list, summary="Lists all roles")
register(
    "role grant-permission",
    _role_grant_permission,
    summary="Grants a key to a role",
    usage="<role name> <permission type> <key> [endkey]",
    flags=[
        Bool("prefix", "grant a prefix permission"),
        Bool(
            "from-key",
            "grant a permission of keys that are greater than or equal to the given key using"
            " byte compare",
        ),
    ],
)
register(
    "role revoke-permission",
    _role_revoke_permission,
    summary="Revokes a key from a role",
    usage="<role name> <key> [endkey]",
    flags=[
        Bool("prefix", "revoke a prefix permission"),
        Bool(
            "from-key",
            "revoke a permission of keys that are greater than or equal to the given key using"
            " byte compare",
        ),
    ],
)
register("auth enable", _auth_enable, summary="Enables authentication")
register("auth disable", _auth_disable, summary="Disables authentication")
register("auth status", _auth_status, summary="Returns authentication status")
