"""The v3 auth admin API: enable and disable auth, users, roles and their permissions.

:class:`AuthMethods` is mixed into :class:`txetcd.Client`. Every call checks its arguments
before anything is sent (``TypeError`` or ``ValueError`` naming the argument), goes through the
client's one call path, and fires with a frozen record. Reads (``auth_status``, ``user_get``,
``user_list``, ``role_get``, ``role_list``) are retried like any read; every other call is a
write, sent again only when it certainly never reached etcd. Passwords are never part of a
repr, a log line or an error message.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._args import NOT_GIVEN, check_bool, check_enum, key_range
from txetcd._kv import header_of
from txetcd._methods import (
    AUTH_DISABLE,
    AUTH_ENABLE,
    AUTH_STATUS,
    ROLE_ADD,
    ROLE_DELETE,
    ROLE_GET,
    ROLE_GRANT_PERMISSION,
    ROLE_LIST,
    ROLE_REVOKE_PERMISSION,
    USER_ADD,
    USER_CHANGE_PASSWORD,
    USER_DELETE,
    USER_GET,
    USER_GRANT_ROLE,
    USER_LIST,
    USER_REVOKE_ROLE,
)
from txetcd._proto import auth_pb2, rpc_pb2
from txetcd._types import ResponseHeader, _ListRecord, _new, _Record

if TYPE_CHECKING:
    from typing import TypeVar

    from txetcd._transport import Method

    T = TypeVar("T")

__all__ = [
    "AuthMethods",
    "AuthResult",
    "AuthStatus",
    "Permission",
    "PermissionType",
    "PermissionTypeName",
    "Role",
    "RolesResult",
    "User",
    "UsersResult",
]

#: the names ``permission`` takes besides :class:`PermissionType` itself (any case)
PermissionTypeName = Literal["read", "write", "readwrite"]


class PermissionType(enum.IntEnum):
    """What a permission allows on its keys (etcd's ``authpb.Permission.Type``)."""

    READ = 0
    WRITE = 1
    READWRITE = 2


# -- results -----------------------------------------------------------------------------------


class AuthResult(_Record):
    """The answer to an auth admin call that changes something: only its ``header``."""

    __slots__ = ()
    __match_args__ = _fields = ("header",)
    if TYPE_CHECKING:
        header: ResponseHeader

    def __new__(cls, header: ResponseHeader) -> "AuthResult":
        return _new(cls, (header,))


class AuthStatus(_Record):
    """Whether auth is ``enabled``, and the auth store's revision (``auth_revision``: it moves
    with every change of users, roles or permissions)."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "enabled", "auth_revision")
    if TYPE_CHECKING:
        header: ResponseHeader
        enabled: bool
        auth_revision: int

    def __new__(cls, header: ResponseHeader, enabled: bool, auth_revision: int) -> "AuthStatus":
        return _new(cls, (header, enabled, auth_revision))


class User(_Record):
    """A user: its ``name`` and the names of its ``roles`` (sorted, as etcd keeps them)."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "name", "roles")
    if TYPE_CHECKING:
        header: ResponseHeader
        name: str
        roles: Tuple[str, ...]

    def __new__(cls, header: ResponseHeader, name: str, roles: Tuple[str, ...]) -> "User":
        return _new(cls, (header, name, roles))


class Permission(_Record):
    """One permission of a role: ``type`` (:class:`PermissionType`) on ``key``, or on the keys
    from ``key`` up to ``range_end`` (excluded) when ``range_end`` is not empty (``b"\\0"``:
    every key from ``key`` on)."""

    __slots__ = ()
    __match_args__ = _fields = ("type", "key", "range_end")
    if TYPE_CHECKING:
        type: PermissionType
        key: bytes
        range_end: bytes

    def __new__(cls, type: PermissionType, key: bytes, range_end: bytes = b"") -> "Permission":
        return _new(cls, (type, key, range_end))


class Role(_Record):
    """A role: its ``name`` and its ``permissions`` (:class:`Permission`, sorted by key)."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "name", "permissions")
    if TYPE_CHECKING:
        header: ResponseHeader
        name: str
        permissions: Tuple[Permission, ...]

    def __new__(
        cls, header: ResponseHeader, name: str, permissions: Tuple[Permission, ...]
    ) -> "Role":
        return _new(cls, (header, name, permissions))


class UsersResult(_ListRecord[str]):
    """Every user: a sequence of their names (``users``), sorted.

    ``for name in result``, ``len(result)`` and ``"alice" in result`` go to ``users``.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "users")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        users: Tuple[str, ...]

    def __new__(cls, header: ResponseHeader, users: Tuple[str, ...]) -> "UsersResult":
        return _new(cls, (header, users))


class RolesResult(_ListRecord[str]):
    """Every role: a sequence of their names (``roles``), sorted.

    ``for name in result``, ``len(result)`` and ``"root" in result`` go to ``roles``.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "roles")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        roles: Tuple[str, ...]

    def __new__(cls, header: ResponseHeader, roles: Tuple[str, ...]) -> "RolesResult":
        return _new(cls, (header, roles))


# -- argument checks and decoders --------------------------------------------------------------


def _name(value: object, what: str) -> str:
    """A user or role name: a non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _password(value: object, what: str = "password") -> str:
    """A password: a non-empty str. The value itself never appears in the error."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty (use no_password=True for a user without one)")
    return value


def _auth_result(r: Any) -> AuthResult:
    return _new(AuthResult, (header_of(r.header),))


def _status_result(r: Any) -> AuthStatus:
    return _new(AuthStatus, (header_of(r.header), r.enabled, r.authRevision))


def _users_result(r: Any) -> UsersResult:
    return _new(UsersResult, (header_of(r.header), tuple(r.users)))


def _roles_result(r: Any) -> RolesResult:
    return _new(RolesResult, (header_of(r.header), tuple(r.roles)))


def _user_result(name: str) -> Callable[[Any], User]:
    def decode(r: Any) -> User:
        return _new(User, (header_of(r.header), name, tuple(r.roles)))

    return decode


def _role_result(name: str) -> Callable[[Any], Role]:
    def decode(r: Any) -> Role:
        perms = tuple(
            [_new(Permission, (PermissionType(p.permType), p.key, p.range_end)) for p in r.perm]
        )
        return _new(Role, (header_of(r.header), name, perms))

    return decode


# -- the client methods ------------------------------------------------------------------------


class AuthMethods:
    """The auth admin calls of :class:`txetcd.Client`.

    With auth enabled, each needs a user allowed to make it (the root role; a user may read its
    own :meth:`user_get`), else it fails with :class:`~txetcd.PermissionDenied`.
    """

    if TYPE_CHECKING:

        def _call(
            self,
            method: Method,
            request: Any,
            decode: Callable[[Any], T],
            *,
            idempotent: bool,
            timeout: Any,
        ) -> "Deferred[T]": ...

    # -- auth on and off ---------------------------------------------------------------------
    def auth_enable(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthResult]":
        """Turn authentication on: from then on every call needs a user's token.

        A ``root`` user holding the ``root`` role must exist first, else it fails with
        :class:`~txetcd.NoRootUser` or :class:`~txetcd.NoRootRole`. Enabling it again (as root)
        is not an error.
        """
        return self._call(
            AUTH_ENABLE,
            rpc_pb2.AuthEnableRequest(),
            _auth_result,
            idempotent=False,
            timeout=timeout,
        )

    def auth_disable(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthResult]":
        """Turn authentication off (as root); users and roles are kept for the next enable."""
        return self._call(
            AUTH_DISABLE,
            rpc_pb2.AuthDisableRequest(),
            _auth_result,
            idempotent=False,
            timeout=timeout,
        )

    def auth_status(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthStatus]":
        """Whether authentication is on, and the auth store's revision."""
        return self._call(
            AUTH_STATUS,
            rpc_pb2.AuthStatusRequest(),
            _status_result,
            idempotent=True,
            timeout=timeout,
        )

    # -- users -------------------------------------------------------------------------------
    def user_add(
        self,
        name: str,
        password: Optional[str] = None,
        *,
        no_password: bool = False,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[AuthResult]":
        """Add a user with a ``password``, or one that has none (``no_password=True``: it can
        only be authenticated by the common name of a TLS client certificate); give exactly one.

        Fails with :class:`~txetcd.UserExists` when the name is taken.
        """
        req = rpc_pb2.AuthUserAddRequest(name=_name(name, "name"))
        if check_bool(no_password, "no_password"):
            if password is not None:
                raise TypeError("give a password or no_password=True, not both")
            req.options.no_password = True
        elif password is None:
            raise TypeError("user_add needs a password (or no_password=True)")
        else:
            req.password = _password(password)
        return self._call(USER_ADD, req, _auth_result, idempotent=False, timeout=timeout)

    def user_get(self, name: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[User]":
        """A user and the roles it holds; :class:`~txetcd.UserNotFound` if there is none."""
        name = _name(name, "name")
        return self._call(
            USER_GET,
            rpc_pb2.AuthUserGetRequest(name=name),
            _user_result(name),
            idempotent=True,
            timeout=timeout,
        )

    def user_list(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[UsersResult]":
        """The names of every user (sorted)."""
        return self._call(
            USER_LIST,
            rpc_pb2.AuthUserListRequest(),
            _users_result,
            idempotent=True,
            timeout=timeout,
        )

    def user_delete(self, name: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthResult]":
        """Delete a user (its tokens stop working at once).

        Fails with :class:`~txetcd.UserNotFound`, or :class:`~txetcd.InvalidAuthManagement`
        for ``root`` while auth is enabled.
        """
        req = rpc_pb2.AuthUserDeleteRequest(name=_name(name, "name"))
        return self._call(USER_DELETE, req, _auth_result, idempotent=False, timeout=timeout)

    def user_change_password(
        self, name: str, password: str, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[AuthResult]":
        """Give a user a new password (its tokens stop working at once).

        Fails with :class:`~txetcd.UserNotFound`.
        """
        req = rpc_pb2.AuthUserChangePasswordRequest(
            name=_name(name, "name"), password=_password(password)
        )
        return self._call(
            USER_CHANGE_PASSWORD, req, _auth_result, idempotent=False, timeout=timeout
        )

    def user_grant_role(
        self, user: str, role: str, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[AuthResult]":
        """Give ``user`` the ``role`` (granting it again is not an error).

        Fails with :class:`~txetcd.UserNotFound` or :class:`~txetcd.RoleNotFound`.
        """
        req = rpc_pb2.AuthUserGrantRoleRequest(user=_name(user, "user"), role=_name(role, "role"))
        return self._call(USER_GRANT_ROLE, req, _auth_result, idempotent=False, timeout=timeout)

    def user_revoke_role(
        self, user: str, role: str, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[AuthResult]":
        """Take the ``role`` from ``user``.

        Fails with :class:`~txetcd.UserNotFound`, :class:`~txetcd.RoleNotGranted`, or
        :class:`~txetcd.InvalidAuthManagement` for root's ``root`` role while auth is enabled.
        """
        req = rpc_pb2.AuthUserRevokeRoleRequest(name=_name(user, "user"), role=_name(role, "role"))
        return self._call(USER_REVOKE_ROLE, req, _auth_result, idempotent=False, timeout=timeout)

    # -- roles -------------------------------------------------------------------------------
    def role_add(self, role: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthResult]":
        """Add a role, without permissions; :class:`~txetcd.RoleExists` if the name is taken."""
        req = rpc_pb2.AuthRoleAddRequest(name=_name(role, "role"))
        return self._call(ROLE_ADD, req, _auth_result, idempotent=False, timeout=timeout)

    def role_get(self, role: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[Role]":
        """A role and its permissions; :class:`~txetcd.RoleNotFound` if there is none.

        etcd knows the ``root`` role only once it was added: granting ``root`` to a user does
        not add it.
        """
        role = _name(role, "role")
        return self._call(
            ROLE_GET,
            rpc_pb2.AuthRoleGetRequest(role=role),
            _role_result(role),
            idempotent=True,
            timeout=timeout,
        )

    def role_list(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[RolesResult]":
        """The names of every role (sorted)."""
        return self._call(
            ROLE_LIST,
            rpc_pb2.AuthRoleListRequest(),
            _roles_result,
            idempotent=True,
            timeout=timeout,
        )

    def role_delete(self, role: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[AuthResult]":
        """Delete a role (users holding it lose it).

        Fails with :class:`~txetcd.RoleNotFound`, or :class:`~txetcd.InvalidAuthManagement`
        for ``root`` while auth is enabled.
        """
        req = rpc_pb2.AuthRoleDeleteRequest(role=_name(role, "role"))
        return self._call(ROLE_DELETE, req, _auth_result, idempotent=False, timeout=timeout)

    def role_grant_permission(
        self,
        role: str,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        permission: Union[PermissionType, PermissionTypeName],
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[AuthResult]":
        """Let ``role`` read, write or both (``permission``: :class:`PermissionType` or
        ``"read"``, ``"write"``, ``"readwrite"``; no default) one key, a range
        (``range_end``, excluded; ``b"\\0"``: every key from ``key`` on) or a prefix
        (``prefix=True``; ``key=""`` with it: every key).

        Fails with :class:`~txetcd.RoleNotFound`. Granting the same key and range again
        replaces its permission type.
        """
        k, end = key_range(key, range_end, prefix)
        perm_type = PermissionType(check_enum(permission, PermissionType, "permission"))
        req = rpc_pb2.AuthRoleGrantPermissionRequest(
            name=_name(role, "role"),
            perm=auth_pb2.Permission(permType=perm_type.name, key=k, range_end=end),
        )
        return self._call(
            ROLE_GRANT_PERMISSION, req, _auth_result, idempotent=False, timeout=timeout
        )

    def role_revoke_permission(
        self,
        role: str,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[AuthResult]":
        """Take a permission from ``role``: ``key``, ``range_end`` and ``prefix`` as it was
        granted with (they must name the same range exactly).

        Fails with :class:`~txetcd.RoleNotFound` or :class:`~txetcd.PermissionNotGranted`.
        """
        k, end = key_range(key, range_end, prefix)
        req = rpc_pb2.AuthRoleRevokePermissionRequest(
            role=_name(role, "role"), key=k, range_end=end
        )
        return self._call(
            ROLE_REVOKE_PERMISSION, req, _auth_result, idempotent=False, timeout=timeout
        )
