"""The auth admin API (users, roles, permissions, auth on and off) against real etcd with auth
enabled, over gRPC and the JSON gateway; argument checks before sending; errors by type; no
password in any repr, message or log line."""

from __future__ import annotations

import pickle
import re
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, List, cast

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher

import txetcd
from txetcd import (
    AuthError,
    AuthFailed,
    AuthNotEnabled,
    AuthResult,
    AuthStatus,
    Client,
    FailedPrecondition,
    InvalidArgument,
    InvalidAuthManagement,
    NoRootRole,
    NoRootUser,
    Permission,
    PermissionDenied,
    PermissionNotGiven,
    PermissionNotGranted,
    PermissionType,
    ResponseHeader,
    Role,
    RoleExists,
    RoleNameEmpty,
    RoleNotFound,
    RoleNotGranted,
    RolesResult,
    Timeout,
    User,
    UserExists,
    UserNameEmpty,
    UserNotFound,
    UsersResult,
)
from txetcd._errors import error_from_status
from txetcd._methods import AUTHENTICATE, ROLE_ADD, ROLE_GRANT_PERMISSION
from txetcd._proto import rpc_pb2
from txetcd.test.helpers import client_of, grpc_channel, reactor
from txetcd.testing import EtcdServer

ROOT_PASSWORD = "r00t-S3cret-pw"  # what must never show up anywhere
SECRET = "alice-S3cret-pw"
H = ResponseHeader(1, 2, 3, 4)

# -- a real etcd with auth enabled, shared by this module --------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EtcdServer]:
    """One etcd with auth enabled (root's password ROOT_PASSWORD) for this module."""
    with EtcdServer(auth=True, root_password=ROOT_PASSWORD) as server:
        yield server


@pytest.fixture
def names(request: Any) -> Dict[str, str]:
    """User and role names of this test's own (the server is shared)."""
    tag = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-24:] + uuid.uuid4().hex[:6]
    return {"user": f"u-{tag}", "role": f"r-{tag}", "key": f"k/{tag}/"}


@pytest_twisted.async_yield_fixture(params=["grpc", "gateway"])
async def root(request: Any, auth_server: EtcdServer) -> AsyncIterator[Client]:
    """A client logged in as root, over each transport in turn."""
    async with client_of(
        auth_server.endpoint,
        transport=request.param,
        user="root",
        password=ROOT_PASSWORD,
        allow_insecure_credentials=True,
    ) as client:
        yield client


def user_client(server: EtcdServer, root: Client, user: str, password: str) -> Any:
    """A client (same transport as ``root``) logged in as ``user``."""
    return client_of(
        server.endpoint,
        transport=root.transport,
        user=user,
        password=password,
        allow_insecure_credentials=True,
    )


async def fails(d: Any, cls: type) -> Any:
    """The error ``d`` fails with, checked to be exactly a ``cls``."""
    with pytest.raises(cls) as info:
        await d
    assert type(info.value) is cls, repr(info.value)
    return info.value


# -- every call against real etcd, on both transports ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_auth_status(root: Client) -> None:
    status = await root.auth_status()
    assert isinstance(status, AuthStatus)
    assert status.enabled is True and status.auth_revision > 0
    assert isinstance(status.header, ResponseHeader) and status.header.cluster_id != 0


@pytest_twisted.ensureDeferred
async def test_users(root: Client, names: Dict[str, str]) -> None:
    user, role = names["user"], names["role"]
    added = await root.user_add(user, SECRET)
    assert type(added) is AuthResult and added.header.member_id != 0
    err = await fails(root.user_add(user, SECRET), UserExists)
    assert isinstance(err, FailedPrecondition) and err.code == 9
    got = await root.user_get(user)
    assert got == User(got.header, user, ()) and got.header.revision >= added.header.revision
    users = await root.user_list()
    assert isinstance(users, UsersResult) and user in users and "root" in users
    assert list(users) == sorted(users)

    await root.role_add(role)
    await root.user_grant_role(user, role)
    await root.user_grant_role(user, role)  # again: not an error
    got = await root.user_get(user)
    assert (got.name, got.roles) == (user, (role,))
    await fails(root.user_grant_role(user, "no-such-role"), RoleNotFound)
    await fails(root.user_grant_role("no-such-user", role), UserNotFound)
    await root.user_revoke_role(user, role)
    assert (await root.user_get(user)).roles == ()
    await fails(root.user_revoke_role(user, role), RoleNotGranted)

    await root.user_delete(user)
    missing = await fails(root.user_get(user), UserNotFound)
    assert isinstance(missing, KeyError) and str(missing) == "etcdserver: user name not found"
    await fails(root.user_delete(user), UserNotFound)
    await fails(root.user_change_password(user, SECRET), UserNotFound)
    assert user not in await root.user_list()
    await root.role_delete(role)


@pytest_twisted.ensureDeferred
async def test_change_password(
    root: Client, names: Dict[str, str], auth_server: EtcdServer
) -> None:
    user = names["user"]
    await root.user_add(user, SECRET)
    async with user_client(auth_server, root, user, SECRET) as alice:
        assert (await alice.user_get(user)).name == user  # a user may read itself
        await root.user_change_password(user, "n3w-" + SECRET)
        # alice's token died with the change: the client logs in again, with the old password
        err = await fails(alice.user_get(user), AuthFailed)
        assert SECRET not in str(err) and SECRET not in repr(err)
    async with user_client(auth_server, root, user, "n3w-" + SECRET) as alice:
        assert (await alice.user_get(user)).roles == ()
    await root.user_delete(user)


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_auth_failed(
    root: Client, names: Dict[str, str], auth_server: EtcdServer
) -> None:
    await root.user_add(names["user"], SECRET)
    for user in (names["user"], "no-such-user"):
        async with user_client(auth_server, root, user, "wrong-" + SECRET) as client:
            err = await fails(client.get(b"k"), AuthFailed)
            assert isinstance(err, AuthError) and isinstance(err, InvalidArgument)
            assert err.message == "etcdserver: authentication failed, invalid user ID or password"
            assert SECRET not in str(err) + repr(err)
    await root.user_delete(names["user"])


@pytest_twisted.ensureDeferred
async def test_no_password_user(
    root: Client, names: Dict[str, str], auth_server: EtcdServer
) -> None:
    user = names["user"]
    await root.user_add(user, no_password=True)
    assert (await root.user_get(user)).name == user
    async with user_client(auth_server, root, user, SECRET) as client:
        err = await fails(client.get(b"k"), AuthFailed)
        assert err.code == 2 and "no password user" in err.message
    await root.user_delete(user)


@pytest_twisted.ensureDeferred
async def test_roles_and_permissions(
    root: Client, names: Dict[str, str], auth_server: EtcdServer
) -> None:
    user, role, prefix = names["user"], names["role"], names["key"].encode()
    await root.role_add(role)
    await fails(root.role_add(role), RoleExists)
    empty = await root.role_get(role)
    assert isinstance(empty, Role) and (empty.name, empty.permissions) == (role, ())
    assert role in await root.role_list()

    await root.role_grant_permission(role, prefix, prefix=True, permission="read")
    await root.role_grant_permission(role, prefix + b"w", permission=PermissionType.WRITE)
    await root.role_grant_permission(
        role, prefix + b"rw/a", range_end=prefix + b"rw/z", permission="readwrite"
    )
    got = await root.role_get(role)
    assert got.permissions == (
        Permission(PermissionType.READ, prefix, prefix[:-1] + b"0"),
        Permission(PermissionType.READWRITE, prefix + b"rw/a", prefix + b"rw/z"),
        Permission(PermissionType.WRITE, prefix + b"w", b""),
    )  # sorted by key
    assert all(type(p.type) is PermissionType for p in got.permissions)

    await root.put(prefix + b"x", b"1")
    await root.user_add(user, SECRET)
    await root.user_grant_role(user, role)
    async with user_client(auth_server, root, user, SECRET) as alice:
        assert (await alice.get(prefix + b"x")).value == b"1"
        await fails(alice.put(prefix + b"x", b"2"), PermissionDenied)
        await alice.put(prefix + b"w", b"2")
        await alice.put(prefix + b"rw/b", b"3")
        await fails(alice.get(b"elsewhere"), PermissionDenied)
        await fails(alice.user_list(), PermissionDenied)
        await fails(alice.role_add(role + "x"), PermissionDenied)

        await root.role_revoke_permission(role, prefix + b"w")
        await fails(root.role_revoke_permission(role, prefix), PermissionNotGranted)
        await root.role_revoke_permission(role, prefix, prefix=True)
        await fails(alice.get(prefix + b"x"), PermissionDenied)
    assert [p.key for p in (await root.role_get(role)).permissions] == [prefix + b"rw/a"]

    await root.role_delete(role)
    await fails(root.role_get(role), RoleNotFound)
    await fails(root.role_delete(role), RoleNotFound)
    await fails(root.role_grant_permission(role, b"k", permission="read"), RoleNotFound)
    await fails(root.role_revoke_permission(role, b"k"), RoleNotFound)
    assert (await root.user_get(user)).roles == ()
    assert role not in await root.role_list()
    await root.user_delete(user)


@pytest_twisted.ensureDeferred
async def test_every_key_permission(root: Client, names: Dict[str, str]) -> None:
    role = names["role"]
    await root.role_add(role)
    await root.role_grant_permission(role, "", prefix=True, permission="readwrite")
    await root.role_grant_permission(role, b"a", range_end=b"\0", permission="read")
    perms = (await root.role_get(role)).permissions
    assert Permission(PermissionType.READWRITE, b"\0", b"\0") in perms
    assert Permission(PermissionType.READ, b"a", b"\0") in perms
    await root.role_delete(role)


@pytest_twisted.ensureDeferred
async def test_root_is_protected(root: Client) -> None:
    assert "root" in await root.role_list()  # EtcdServer(auth=True) added the role
    assert (await root.user_get("root")).roles == ("root",)
    await fails(root.role_delete("root"), InvalidAuthManagement)
    await fails(root.user_delete("root"), InvalidAuthManagement)
    await fails(root.user_revoke_role("root", "root"), InvalidAuthManagement)


@pytest_twisted.ensureDeferred
async def test_the_server_checks_what_the_client_lets_through(root: Client) -> None:
    """Messages the client never builds, sent raw: the server's refusals are typed too."""
    await fails(
        root._call(
            ROLE_ADD, rpc_pb2.AuthRoleAddRequest(name=""), lambda r: r, idempotent=False, timeout=5
        ),
        RoleNameEmpty,
    )
    await fails(
        root._call(
            ROLE_GRANT_PERMISSION,
            rpc_pb2.AuthRoleGrantPermissionRequest(name="root"),
            lambda r: r,
            idempotent=False,
            timeout=5,
        ),
        PermissionNotGiven,
    )


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_auth_on_and_off(transport: str) -> None:
    """From a fresh server: enable needs root and its role; disable, status, enable again."""
    with EtcdServer() as server:
        async with client_of(server.endpoint, transport=transport) as client:
            assert (await client.auth_status()).enabled is False
            await fails(client.auth_enable(), NoRootUser)
            await client.user_add("root", ROOT_PASSWORD)
            await fails(client.auth_enable(), NoRootRole)
            await client.role_add("root")
            await client.user_grant_role("root", "root")
            err = await fails(
                client._call(
                    AUTHENTICATE,
                    rpc_pb2.AuthenticateRequest(name="root", password=ROOT_PASSWORD),
                    lambda r: r,
                    idempotent=True,
                    timeout=5,
                ),
                AuthNotEnabled,
            )
            assert ROOT_PASSWORD not in str(err) + repr(err)
            await client.auth_enable()
            await fails(client.get(b"k"), UserNameEmpty)  # from now on, a token is needed
        async with client_of(
            server.endpoint,
            transport=transport,
            user="root",
            password=ROOT_PASSWORD,
            allow_insecure_credentials=True,
        ) as root:
            revision = (await root.auth_status()).auth_revision
            assert (await root.auth_status()).enabled is True
            await root.auth_enable()  # again: not an error
            await root.auth_disable()
            status = await root.auth_status()
            assert status.enabled is False and status.auth_revision > revision
            await root.auth_enable()
            assert (await root.auth_status()).enabled is True


# -- arguments are checked before anything is sent ---------------------------------------------


class _NoNetworkReactor(task.Clock):
    def connectTCP(self, *a: Any, **kw: Any) -> Any:  # pragma: no cover - must not be reached
        raise AssertionError("a bad argument was sent to the network")


@pytest.fixture
def offline() -> Client:
    """A client that must never connect (its clock never runs)."""
    return Client("http://127.0.0.1:9", reactor=_NoNetworkReactor(), timeout=1)


@pytest.mark.parametrize(
    "call,exc,what",
    [
        (lambda c: c.user_add("", SECRET), ValueError, "name"),
        (lambda c: c.user_add(b"alice", SECRET), TypeError, "name"),
        (lambda c: c.user_add("alice"), TypeError, "password"),
        (lambda c: c.user_add("alice", SECRET, no_password=True), TypeError, "not both"),
        (lambda c: c.user_add("alice", no_password="yes"), TypeError, "no_password"),
        (lambda c: c.user_add("alice", ""), ValueError, "password"),
        (lambda c: c.user_add("alice", SECRET.encode()), TypeError, "password"),
        (lambda c: c.user_add("alice", SECRET, timeout=-1), ValueError, "timeout"),
        (lambda c: c.user_get(None), TypeError, "name"),
        (lambda c: c.user_delete(""), ValueError, "name"),
        (lambda c: c.user_change_password("alice", 12345), TypeError, "password"),
        (lambda c: c.user_change_password("alice", ""), ValueError, "password"),
        (lambda c: c.user_grant_role("alice", ""), ValueError, "role"),
        (lambda c: c.user_grant_role(3, "r"), TypeError, "user"),
        (lambda c: c.user_revoke_role("alice", None), TypeError, "role"),
        (lambda c: c.role_add(""), ValueError, "role"),
        (lambda c: c.role_get(7), TypeError, "role"),
        (lambda c: c.role_delete(""), ValueError, "role"),
        (lambda c: c.role_grant_permission("r", b"k"), TypeError, "permission"),
        (
            lambda c: c.role_grant_permission("r", b"k", permission="admin"),
            ValueError,
            "permission",
        ),
        (lambda c: c.role_grant_permission("r", b"k", permission=7), ValueError, "PermissionType"),
        (lambda c: c.role_grant_permission("r", b"k", permission=1.0), TypeError, "permission"),
        (lambda c: c.role_grant_permission("r", b"", permission="read"), ValueError, "key"),
        (lambda c: c.role_grant_permission("r", 5, permission="read"), TypeError, "key"),
        (
            lambda c: c.role_grant_permission("r", b"k", range_end=b"z", prefix=True, permission=0),
            TypeError,
            "prefix",
        ),
        (lambda c: c.role_grant_permission("", b"k", permission="read"), ValueError, "role"),
        (lambda c: c.role_revoke_permission("r", b""), ValueError, "key"),
        (lambda c: c.role_revoke_permission("r", b"k", prefix="no"), TypeError, "prefix"),
        (lambda c: c.auth_status(timeout="1"), TypeError, "timeout"),
    ],
)
def test_bad_arguments_raise_before_sending(
    offline: Client, call: Any, exc: type, what: str
) -> None:
    with pytest.raises(exc, match=what) as info:
        call(offline)
    assert SECRET not in str(info.value)
    assert grpc_channel(offline).connection is None and grpc_channel(offline)._connecting is None
    assert offline.reactor.getDelayedCalls() == []


def test_a_password_of_the_wrong_type_is_not_shown(offline: Client) -> None:
    with pytest.raises(TypeError) as info:
        offline.user_add("alice", 31337424242)  # type: ignore[arg-type]
    assert "31337424242" not in str(info.value) and "int" in str(info.value)


# -- no password anywhere: reprs, errors, logs -------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[List[str]]:
    """Every log event, formatted, while the test runs."""
    lines: List[str] = []

    def observe(event: Dict[str, Any]) -> None:
        lines.append(repr(event) + (formatEvent(event) or ""))

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observer)


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_passwords_never_shown(transport: str, log_lines: List[str]) -> None:
    """Calls that carry a password fail (timeout, closed client) without showing it."""
    clock = task.Clock()
    client = Client(
        "http://127.0.0.1:9",  # discard: the calls never get an answer
        reactor=reactor(),
        clock=clock,
        timeout=1,
        transport=cast(Any, transport),
        user="root",
        password=ROOT_PASSWORD,
        allow_insecure_credentials=True,
    )
    d1 = client.user_add("alice", SECRET)
    d2 = client.user_change_password("alice", SECRET)
    shown = [repr(client), repr(d1), repr(d2)]
    clock.advance(2)
    await client.close()
    for d in (d1, d2):
        with pytest.raises(Exception) as info:
            await d
        shown += [str(info.value), repr(info.value), repr(getattr(info.value, "cause", None))]
    for text in shown + log_lines:
        assert SECRET not in text and ROOT_PASSWORD not in text


@pytest_twisted.ensureDeferred
async def test_passwords_not_in_timeouts() -> None:
    clock = task.Clock()
    client = Client("http://127.0.0.1:9", reactor=reactor(), clock=clock, timeout=1)
    d = client.user_add("alice", SECRET)
    clock.advance(1.5)
    with pytest.raises(Timeout) as info:
        await d
    await client.close()
    assert SECRET not in str(info.value) + repr(info.value)


# -- records and the error table ---------------------------------------------------------------


def test_records() -> None:
    perm = Permission(PermissionType.READ, b"a", b"b")
    role = Role(H, "r", (perm,))
    assert repr(perm) == "Permission(type=<PermissionType.READ: 0>, key=b'a', range_end=b'b')"
    assert Permission(PermissionType.WRITE, b"k") == Permission(1, b"k", b"")  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(role)) == role and hash(role) == hash(Role(H, "r", (perm,)))
    with pytest.raises(TypeError, match="record"):
        iter(role)
    users = UsersResult(H, ("alice", "bob"))
    assert list(users) == ["alice", "bob"] and len(users) == 2 and "bob" in users
    assert users[0] == "alice" and users.users == ("alice", "bob") and bool(users)
    assert not RolesResult(H, ()) and RolesResult(H, ("root",)).roles == ("root",)
    assert User(H, "alice", ("r",))._asdict() == {"header": H, "name": "alice", "roles": ("r",)}
    assert AuthStatus(H, True, 3).auth_revision == 3 and AuthResult(H).header == H
    match AuthStatus(H, False, 9):
        case AuthStatus(enabled=False, auth_revision=rev):
            assert rev == 9
        case _:  # pragma: no cover
            raise AssertionError("no match")
    assert [int(t) for t in PermissionType] == [0, 1, 2]


@pytest.mark.parametrize(
    "code,message,cls,also",
    [
        (3, "etcdserver: authentication failed, invalid user ID or password", AuthFailed, ()),
        (2, "auth: authentication failed, password was given for no password user", AuthFailed, ()),
        (9, "etcdserver: authentication is not enabled", AuthNotEnabled, ()),
        (3, "etcdserver: invalid auth management", InvalidAuthManagement, (ValueError,)),
        (9, "etcdserver: root user does not exist", NoRootUser, ()),
        (9, "etcdserver: root user does not have root role", NoRootRole, ()),
        (9, "etcdserver: user name not found", UserNotFound, (KeyError,)),
        (9, "etcdserver: user name already exists", UserExists, ()),
        (9, "etcdserver: role name not found", RoleNotFound, (KeyError,)),
        (9, "etcdserver: role name already exists", RoleExists, ()),
        (3, "etcdserver: role name is empty", RoleNameEmpty, (ValueError,)),
        (9, "etcdserver: role is not granted to the user", RoleNotGranted, ()),
        (3, "etcdserver: permission not given", PermissionNotGiven, ()),
        (9, "etcdserver: permission is not granted to the role", PermissionNotGranted, ()),
    ],
)
def test_error_table(code: int, message: str, cls: type, also: tuple[type, ...]) -> None:
    err = error_from_status(code, message)
    assert type(err) is cls and isinstance(err, AuthError)
    for base in also:
        assert isinstance(err, base)
    assert err.code == code and err.message == message == str(err)
    assert getattr(txetcd, cls.__name__) is cls
