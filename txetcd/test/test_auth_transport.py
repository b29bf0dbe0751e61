"""The login and token refresh in the call path (``AuthTransport``), on a scripted transport.

Real etcd with auth is exercised in the security tests; here every interleaving that matters is
driven by hand: many calls seeing one expired token, a second refusal, a wrong password, a
server with auth off, streams opened while a login is in flight.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txetcd import (
    AuthNotEnabled,
    Client,
    InvalidArgument,
    InvalidAuthToken,
    PermissionDenied,
    UserNameEmpty,
)
from txetcd._auth import AuthTransport, Credentials
from txetcd._methods import AUTHENTICATE, PUT, RANGE, WATCH
from txetcd._proto import rpc_pb2
from txetcd._transport import Capabilities, Method

SECRET = "s3cret-pw"


class Scripted:
    """A transport whose calls wait in ``calls`` until the test answers them."""

    capabilities = Capabilities(duplex_streams=True, stream_window=True)
    closed = False
    endpoint_urls = ["https://etcd:2379"]

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.calls: List[Tuple[Method, Any, dict[bytes, bytes], Deferred[Any], Any]] = []
        self.streams: List[Tuple[Method, dict[bytes, bytes], Any]] = []

    def unary(
        self,
        method: Method,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        metadata: Any = (),
    ) -> "Deferred[Any]":
        d: Deferred[Any] = Deferred()
        self.calls.append((method, request, dict(metadata), d, decode))
        return d

    def stream(self, method: Method, on_message: Any, on_close: Any, *, metadata: Any = ()) -> Any:
        stream = FakeStream(on_close)
        self.streams.append((method, dict(metadata), stream))
        return stream

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        raise AssertionError("the inner transport has no login")

    def update_endpoints(self, urls: Sequence[str]) -> None:
        self.endpoint_urls = list(urls)

    def close(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

    # -- answering ----------------------------------------------------------------------------
    def pending(self, method: Method) -> List[Tuple[Any, dict[bytes, bytes], Deferred[Any], Any]]:
        out = [(r, m, d, dec) for (meth, r, m, d, dec) in self.calls if meth is method]
        return [c for c in out if not c[2].called]

    def login(self, token: str) -> None:
        ((_, _, d, decode),) = self.pending(AUTHENTICATE)
        d.callback(decode(rpc_pb2.AuthenticateResponse(token=token)))

    def fail_login(self, error: BaseException) -> None:
        ((_, _, d, _),) = self.pending(AUTHENTICATE)
        d.errback(error)


class FakeStream:
    def __init__(self, on_close: Any) -> None:
        self.on_close = on_close
        self.sent: List[Any] = []
        self.ended = False
        self.paused = False

    def send(self, message: Any, end: bool = False) -> bool:
        self.sent.append(message)
        return True

    def close_send(self) -> None:
        pass

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def cancel(self) -> None:
        self.ended = True


def auth() -> Tuple[AuthTransport, Scripted]:
    inner = Scripted()
    return AuthTransport(inner, Credentials("alice", SECRET), 5.0), inner


def get(transport: AuthTransport) -> Tuple[Deferred[Any], List[Any]]:
    out: List[Any] = []
    d = transport.unary(
        RANGE, rpc_pb2.RangeRequest(key=b"k"), timeout=10.0, idempotent=True, decode=lambda m: m
    )
    d.addBoth(out.append)
    return d, out


def test_logs_in_before_the_first_call_and_sends_the_token() -> None:
    transport, inner = auth()
    _, out = get(transport)
    assert [c[0] for c in inner.calls] == [AUTHENTICATE]
    assert inner.calls[0][1].name == "alice" and inner.calls[0][1].password == SECRET
    inner.login("tok.1")
    ((_, meta, d, _),) = inner.pending(RANGE)
    assert meta[b"token"] == b"tok.1"
    d.callback("answer")
    assert out == ["answer"] and transport.logins == 1


def test_twenty_calls_that_see_an_expired_token_cause_one_login_and_are_all_resent() -> None:
    transport, inner = auth()
    get(transport)
    inner.login("tok.1")
    inner.pending(RANGE)[0][2].callback("first")
    outs = [get(transport)[1] for _ in range(20)]
    for _, meta, d, _ in inner.pending(RANGE):
        assert meta[b"token"] == b"tok.1"
        d.errback(InvalidAuthToken("etcdserver: invalid auth token", code=16))
    assert transport.logins == 2 and len(inner.pending(AUTHENTICATE)) == 1
    inner.login("tok.2")
    resent = inner.pending(RANGE)
    assert len(resent) == 20 and all(meta[b"token"] == b"tok.2" for _, meta, _, _ in resent)
    for i, (_, _, d, _) in enumerate(resent):
        d.callback(i)
    assert sorted(o[0] for o in outs) == list(range(20))


def test_a_write_refused_for_its_token_is_resent_once_then_fails_typed() -> None:
    transport, inner = auth()
    out: List[Any] = []
    transport.unary(
        PUT, rpc_pb2.PutRequest(key=b"k"), timeout=10.0, idempotent=False, decode=lambda m: m
    ).addBoth(out.append)
    inner.login("tok.1")
    inner.pending(PUT)[0][2].errback(InvalidAuthToken("etcdserver: invalid auth token"))
    inner.login("tok.2")
    (again,) = inner.pending(PUT)  # refused for its token: not applied, safe to resend
    again[2].errback(InvalidAuthToken("etcdserver: invalid auth token"))
    assert isinstance(out[0], Failure) and isinstance(out[0].value, InvalidAuthToken)
    assert inner.pending(PUT) == [] and inner.pending(AUTHENTICATE) == []


def test_other_errors_are_not_resent() -> None:
    transport, inner = auth()
    _, out = get(transport)
    inner.login("tok.1")
    inner.pending(RANGE)[0][2].errback(PermissionDenied("etcdserver: permission denied"))
    assert isinstance(out[0].value, PermissionDenied)
    assert inner.pending(RANGE) == [] and transport.logins == 1


def test_a_wrong_password_fails_every_waiting_call_at_once_without_a_loop() -> None:
    transport, inner = auth()
    outs = [get(transport)[1] for _ in range(3)]
    wrong = InvalidArgument("etcdserver: authentication failed, invalid user ID or password")
    inner.fail_login(wrong)
    assert all(isinstance(o[0], Failure) and o[0].value is wrong for o in outs)
    assert transport.logins == 1 and inner.pending(RANGE) == []
    assert SECRET not in str(wrong) and SECRET not in repr(transport)


def test_auth_off_means_no_token_until_the_server_asks_for_one() -> None:
    transport, inner = auth()
    _, out = get(transport)
    inner.fail_login(AuthNotEnabled("etcdserver: authentication is not enabled"))
    ((_, meta, d, _),) = inner.pending(RANGE)
    assert b"token" not in meta
    d.callback("plain")
    _, out2 = get(transport)
    ((_, meta, d, _),) = inner.pending(RANGE)
    assert b"token" not in meta and transport.logins == 1
    # auth was switched on since: the server wants a user; log in and resend
    d.errback(UserNameEmpty("etcdserver: user name is empty"))
    inner.login("tok.1")
    ((_, meta, d, _),) = inner.pending(RANGE)
    assert meta[b"token"] == b"tok.1"
    d.callback("with token")
    assert out2 == ["with token"]


def test_a_stream_asked_for_during_a_login_opens_with_the_new_token() -> None:
    transport, inner = auth()
    closed: List[Any] = []
    stream = transport.stream(
        WATCH, lambda m: None, closed.append, metadata=((b"hasleader", b"true"),)
    )
    stream.send("create")
    assert inner.streams == []  # waits for the login
    inner.login("tok.9")
    ((method, meta, real),) = inner.streams
    assert method is WATCH and meta == {b"hasleader": b"true", b"token": b"tok.9"}
    assert real.sent == ["create"]
    # a stream refused for its token drops the token: the next stream logs in first
    real.on_close(InvalidAuthToken("etcdserver: invalid auth token"))
    assert isinstance(closed[0], InvalidAuthToken)
    transport.stream(WATCH, lambda m: None, closed.append)
    assert len(inner.streams) == 1 and len(inner.pending(AUTHENTICATE)) == 1


def test_reauthenticate_is_shared_and_skipped_when_someone_already_did() -> None:
    transport, inner = auth()
    get(transport)
    inner.login("tok.1")
    first: List[Any] = []
    transport.reauthenticate("tok.1").addCallback(first.append)
    second: List[Any] = []
    transport.reauthenticate("tok.1").addCallback(second.append)
    assert len(inner.pending(AUTHENTICATE)) == 1
    inner.login("tok.2")
    assert first == [True] and second == [True]
    late: List[Any] = []
    transport.reauthenticate("tok.1").addCallback(late.append)  # stale: tok.2 is held already
    assert late == [True] and transport.logins == 2


def test_credentials_never_show_the_password() -> None:
    creds = Credentials("alice", SECRET)
    assert SECRET not in repr(creds)
    client = Client("https://127.0.0.1:1", user="alice", password=SECRET, reactor=task.Clock())
    assert SECRET not in repr(client) and "alice" in repr(client)
    assert SECRET not in repr(client._channel)


def test_a_password_over_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(ValueError, match="in clear") as info:
        Client("http://127.0.0.1:2379", user="alice", password=SECRET)
    assert SECRET not in str(info.value)
    Client(
        "http://127.0.0.1:2379",
        user="alice",
        password=SECRET,
        allow_insecure_credentials=True,
        reactor=task.Clock(),
    )
    with pytest.raises(TypeError):
        Client("https://127.0.0.1:2379", user="alice")
