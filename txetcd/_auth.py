"""User/password authentication, once, in the call path of every transport.

:class:`AuthTransport` wraps any :class:`~txetcd._transport.Transport` and is a transport
itself: it logs in (``Auth/Authenticate``) before the first call, sends the token with every
call and stream (gRPC metadata ``token``; the gateway turns it into ``Authorization``), and keeps
it fresh. When etcd answers a call with ``invalid auth token`` (the token expired: simple tokens
slide with use and die ``--auth-token-ttl`` seconds after their last use) or ``revision of auth
store is old``, it logs in again (one login shared by every call that saw the error at once) and
sends that call again. A call refused for its token was not applied, so re-sending it is safe
even for a write; it is re-sent at most once for this reason, and a second refusal fails with
:class:`~txetcd.InvalidAuthToken`. Nothing else about the resend rule changes.

A wrong password fails at once with the server's error (never retried in a loop). A server with
auth switched off answers a login with :class:`~txetcd.AuthNotEnabled`: calls then go without a
token (as Go's clientv3 does), until one is refused for a missing token
(:class:`~txetcd.UserNameEmpty`: auth was switched on since), which logs in again.

Streams get the token current when they open; the watch and keepalive machinery reopen a
broken stream by calling :meth:`AuthTransport.stream` again, which waits for a login in progress.
:meth:`reauthenticate` lets them ask for a fresh token when etcd refuses a stream's request for
its token (a watch create answered ``permission denied``).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import (
    AuthNotEnabled,
    AuthRevisionOld,
    InvalidAuthToken,
    UserNameEmpty,
)
from txetcd._methods import AUTHENTICATE
from txetcd._proto import rpc_pb2
from txetcd._transport import Capabilities, Metadata, Method, Stream, Transport

__all__ = ["AuthTransport", "Credentials"]

#: errors that mean "this call's token is no good: log in again and resend"
_STALE = (InvalidAuthToken, AuthRevisionOld, UserNameEmpty)


class Credentials:
    """A user name and password; the password never shows in a repr or a message."""

    __slots__ = ("user", "_password")

    def __init__(self, user: str, password: str) -> None:
        if not isinstance(user, str) or not user:
            raise TypeError("user must be a non-empty str")
        if not isinstance(password, str):
            raise TypeError(f"password must be a str, not {type(password).__name__}")
        self.user = user
        self._password = password

    def request(self) -> Any:
        """The Authenticate request."""
        return rpc_pb2.AuthenticateRequest(name=self.user, password=self._password)

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=<hidden>)"


class AuthTransport:
    """A :class:`~txetcd._transport.Transport` that logs in and sends a token (see the module
    docstring).

    :param inner: the transport calls go through.
    :param credentials: who to log in as.
    :param login_timeout: the deadline of one login (seconds, ``None``: none).
    """

    log = Logger()

    def __init__(
        self, inner: Transport, credentials: Credentials, login_timeout: Optional[float]
    ) -> None:
        self.inner = inner
        self.credentials = credentials
        self.login_timeout = login_timeout
        self.token: Optional[str] = None
        self.enabled = True  # False once the server said auth is off
        self.logins = 0  # logins sent (for tests and metrics)
        self._login: Optional[Deferred[None]] = None  # the login in flight
        self._waiting: List[Deferred[None]] = []

    # -- the Transport protocol, delegated ----------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def closed(self) -> bool:
        return self.inner.closed

    @property
    def clock(self) -> Any:
        return self.inner.clock

    @property
    def endpoint_urls(self) -> Sequence[str]:
        return self.inner.endpoint_urls

    def update_endpoints(self, urls: Sequence[str]) -> None:
        """Replace the endpoints of the transport under it (the token stays valid: it is the
        cluster's)."""
        self.inner.update_endpoints(urls)

    def close(self) -> "Deferred[None]":
        """Close the transport under it; waiters for a login fail with ``CancelledError``."""
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(CancelledError())
        return self.inner.close()

    def __repr__(self) -> str:
        return f"AuthTransport({self.inner!r}, user={self.credentials.user!r})"

    # -- the token --------------------------------------------------------------------------
    def _metadata(self, metadata: Metadata) -> Metadata:
        token = self.token
        if token is None:
            return metadata
        return (*metadata, (b"token", token.encode("ascii")))

    def ready(self) -> "Deferred[None]":
        """Fires once a token is held (or auth is known to be off); logs in if needed."""
        if self.token is not None or not self.enabled:
            return succeed(None)
        return self._shared_login()

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        """Log in again, unless the token has changed since ``stale`` (another caller already
        did); fires True once a fresh token is held."""
        if stale is not None and self.token is not None and self.token != stale:
            return succeed(True)  # another caller logged in again already
        if self._login is not None:
            return self._shared_login().addCallback(lambda _: self.token is not None)
        self.token = None
        self.enabled = True
        return self._shared_login().addCallback(lambda _: self.token is not None)

    def _shared_login(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred(self._waiting.remove)
        self._waiting.append(d)
        if self._login is None:
            self._login = self._send_login()
        return d

    def _send_login(self) -> "Deferred[None]":
        self.logins += 1
        login: Deferred[None] = self.inner.unary(
            AUTHENTICATE,
            self.credentials.request(),
            timeout=self.login_timeout,
            idempotent=True,  # a login changes nothing: safe to send again
            decode=self._logged_in,
        )
        login.addBoth(self._login_done)
        return login

    def _logged_in(self, response: Any) -> None:
        self.token = response.token
        self.enabled = True

    def _login_done(self, result: Any) -> None:
        self._login = None
        waiting, self._waiting = self._waiting, []
        if isinstance(result, Failure) and isinstance(result.value, AuthNotEnabled):
            self.enabled = False  # go on without a token, as Go's clientv3 does
            self.token = None
            result = None
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        # A failed login nobody waits for any more (every waiter cancelled): nothing to report.

    # -- calls ------------------------------------------------------------------------------
    def unary(
        self,
        method: Method,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        metadata: Metadata = (),
    ) -> "Deferred[Any]":
        """A unary call with the token; re-sent once after a fresh login if the token is
        refused."""
        call = _AuthCall(self, method, request, timeout, idempotent, decode, metadata)
        return call.start()

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> Stream:
        """A stream with the token; opened once a login in progress is done."""
        if self.token is not None or not self.enabled:
            return self._open(method, on_message, on_close, metadata)
        return _PendingStream(self, method, on_message, on_close, metadata)

    def _open(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata,
    ) -> Stream:
        token = self.token

        def closed(error: Optional[BaseException]) -> None:
            if isinstance(error, _STALE) and self.token == token:
                self.token = None  # the next stream (or call) logs in first
            on_close(error)

        return self.inner.stream(method, on_message, closed, metadata=self._metadata(metadata))


class _AuthCall:
    """One unary call through an :class:`AuthTransport`: login first if needed, and one resend
    after a refused token."""

    __slots__ = ("auth", "method", "request", "deadline", "idempotent", "decode", "metadata")

    def __init__(
        self,
        auth: AuthTransport,
        method: Method,
        request: Any,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        metadata: Metadata,
    ) -> None:
        self.auth = auth
        self.method = method
        self.request = request
        self.deadline = None if timeout is None else auth.clock.seconds() + timeout
        self.idempotent = idempotent
        self.decode = decode
        self.metadata = metadata

    def _left(self) -> Optional[float]:
        if self.deadline is None:
            return None
        left: float = self.deadline - self.auth.clock.seconds()
        return max(left, 0.001)

    def start(self) -> "Deferred[Any]":
        auth = self.auth
        if auth.token is not None or not auth.enabled:
            return self._send(retry=True)
        return auth.ready().addCallback(lambda _: self._send(retry=True))

    def _send(self, retry: bool) -> "Deferred[Any]":
        auth = self.auth
        token = auth.token
        d = auth.inner.unary(
            self.method,
            self.request,
            timeout=self._left(),
            idempotent=self.idempotent,
            decode=self.decode,
            metadata=auth._metadata(self.metadata),
        )
        if retry:
            d.addErrback(self._refused, token)
        return d

    def _refused(self, failure: Failure, token: Optional[str]) -> Any:
        if not isinstance(failure.value, _STALE):
            return failure
        if isinstance(failure.value, UserNameEmpty) and token is not None:
            return failure  # a token was sent: this is not about logging in
        # Refused for its token, so not applied: log in again (once for everyone) and resend.
        return self.auth.reauthenticate(token).addCallback(lambda _: self._send(retry=False))


class _PendingStream:
    """A stream asked for while a login is in flight: its requests are held and the real
    stream opens (with the new token) once the login is done."""

    def __init__(
        self,
        auth: AuthTransport,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata,
    ) -> None:
        self.on_close = on_close
        self.ended = False
        self.paused = False
        self._inner: Optional[Stream] = None
        self._held: List[Tuple[str, Tuple[Any, ...]]] = []
        self._ready = auth.ready()
        self._ready.addCallbacks(
            lambda _: self._opened(auth._open(method, on_message, self._closed, metadata)),
            self._failed,
        )

    def _opened(self, inner: Stream) -> None:
        self._inner = inner
        held, self._held = self._held, []
        for name, args in held:
            getattr(inner, name)(*args)

    def _failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, CancelledError) or not self.ended:
            self._closed(failure.value)

    def _closed(self, error: Optional[BaseException]) -> None:
        if self.ended:
            return
        self.ended = True
        self.on_close(error)

    def _do(self, name: str, *args: Any) -> Any:
        if self._inner is not None:
            return getattr(self._inner, name)(*args)
        if self.ended:
            if name == "send":
                raise RuntimeError("stream is closed for sending")
            return None
        self._held.append((name, args))
        return False

    def send(self, message: Any, end: bool = False) -> bool:
        return bool(self._do("send", message, end))

    def close_send(self) -> None:
        self._do("close_send")

    def pause(self) -> None:
        self.paused = True
        self._do("pause")

    def resume(self) -> None:
        self.paused = False
        self._do("resume")

    def cancel(self) -> None:
        if self._inner is not None:
            self._inner.cancel()
            return
        if not self.ended:
            self._ready.cancel()
            self._closed(CancelledError())


def refused_for_token(error: BaseException) -> bool:
    """Whether an error says the call's token was no good (log in again and resend)."""
    return isinstance(error, _STALE)
