"""The v2 client's one request path: endpoints, member discovery, failover and the resend rule.

:class:`RequestPath` is the base of :class:`txetcd.v2.Client`; the keys API
(:mod:`txetcd.v2._keys_api`) and the cluster and stats API (:mod:`txetcd.v2._cluster_api`) send
everything through its :meth:`~RequestPath._call`. It picks the current endpoint, sends through
the HTTP/1.1 client (txetcd's keep-alive pool, or any treq ``HTTPClient``/``IAgent``), and fails
over to the next endpoint when the one resend rule allows (:func:`txetcd._retry.may_resend`, the
v3 client's): a request that certainly never reached the server (no connection), or a read, is
sent again to the next member after a short jittered wait (:data:`txetcd._retry.RESEND_BACKOFF`)
on the client's clock; a write that may have been sent is never sent again, it fails with
:class:`~txetcd.OutcomeUnknown` (or :class:`~txetcd.WriteTimeout`).

A server without the v2 API (etcd 3.4 and 3.5 without ``--enable-v2``; etcd 3.6) answers every
``/v2`` request with Go's plain ``404 page not found``: that is
:class:`~txetcd.v2.EtcdV2NotEnabled`, whatever the call.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Set, Tuple, TypeVar, Union

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN, check_timeout
from txetcd._errors import ClientClosed, ConnectionFailed
from txetcd._http1.interface import HTTPResponse, maybe_sent
from txetcd._retry import RESEND_BACKOFF, may_resend
from txetcd.v2._errors import (
    EtcdClusterIdChanged,
    EtcdConnectionFailed,
    EtcdV2NotEnabled,
)
from txetcd.v2._keys import V2Request
from txetcd.v2._tls import tls_endpoint_factory

__all__ = ["DEFAULT_TIMEOUT", "GO_NOT_FOUND", "RequestPath", "endpoint_urls", "not_enabled"]

#: ``Failure(exc)`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

_Self = TypeVar("_Self", bound="RequestPath")

#: ``timeout=`` not given: the client's ``read_timeout`` (the v3 client's sentinel, the same object)
DEFAULT_TIMEOUT: Any = NOT_GIVEN

FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
JSON = (b"Content-Type", b"application/json")

#: the body of Go's ``http.NotFound``: what etcd answers for a path it does not serve
GO_NOT_FOUND = b"404 page not found"


def not_enabled(base_uri: str, target: str) -> EtcdV2NotEnabled:
    """The error for a ``404 page not found`` answer to a v2 request."""
    path = target.partition("?")[0]
    return EtcdV2NotEnabled(
        f"the server at {base_uri} does not serve etcd's v2 API (it answered 404 page not "
        f"found for {path}): etcd 3.4 and 3.5 serve it only with --enable-v2, etcd 3.6 not at "
        "all; use txetcd.Client (v3) there",
        status=404,
    )


def endpoint_urls(host: Any, port: int, protocol: str) -> List[str]:
    if protocol not in ("http", "https"):
        raise ValueError(f"protocol must be 'http' or 'https', not {protocol!r}")
    if isinstance(host, str):
        pairs: List[Tuple[str, int]] = [(host, port)]
    elif (
        isinstance(host, (tuple, list))
        and host
        and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in host)
    ):
        pairs = [(str(h), int(p)) for h, p in host]
    else:
        raise TypeError(f"host must be a str or a tuple of (host, port) pairs, not {host!r}")
    urls = []
    for h, p in pairs:
        if not isinstance(p, int) or not 0 < p < 65536:
            raise ValueError(f"bad port {p!r}")
        authority = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        urls.append(f"{protocol}://{authority}")
    return urls


class RequestPath:
    """The request path of :class:`txetcd.v2.Client` (its state is set by the constructor)."""

    reactor: Any
    clock: Any
    protocol: str
    version_prefix: str
    allow_reconnect: bool
    srv_domain: Optional[str]
    read_timeout: Optional[float]
    closed: bool
    _endpoints: List[str]
    _current: int
    _cluster_id: Optional[str]
    _headers: Tuple[Tuple[bytes, bytes], ...]
    _form_headers: Tuple[Tuple[bytes, bytes], ...]
    _json_headers: Tuple[Tuple[bytes, bytes], ...]
    _resolver: Any
    _setup_waiters: List["Deferred[None]"]
    _needs_setup: bool
    _resending: Set["_Call"]
    _http: Any

    def _make_http(
        self,
        given: Any,
        cert: Union[None, str, Tuple[str, str]],
        ca_cert: Optional[str],
        connect_timeout: float,
        pool_size: int,
    ) -> Any:
        from txetcd._http1.pool import PoolClient
        from txetcd._http1.treq import TreqClient

        if given is None:
            factory = None
            if self.protocol == "https" or cert is not None or ca_cert is not None:
                factory = tls_endpoint_factory(cert=cert, ca_cert=ca_cert)
            return PoolClient(
                self.reactor,
                max_connections_per_endpoint=pool_size,
                connect_timeout=connect_timeout,
                endpoint_factory=factory,
            )
        if cert is not None or ca_cert is not None:
            raise TypeError("cert/ca_cert configure the default pool: set TLS on your http_client")
        if isinstance(given, (PoolClient, TreqClient)):
            return given
        return TreqClient(given, self.reactor, connect_timeout=connect_timeout)

    # -- endpoints -----------------------------------------------------------------------------

    @property
    def endpoints(self) -> List[str]:
        """The members' URLs in the order they are tried (learned ones included)."""
        return list(self._endpoints)

    @property
    def base_uri(self) -> str:
        """The URL of the member requests go to now (python-etcd's name)."""
        if not self._endpoints:
            raise EtcdConnectionFailed("no endpoint known yet (the SRV lookup has not run)")
        return self._endpoints[self._current % len(self._endpoints)]

    def _setup(self) -> "Deferred[None]":
        """SRV lookup and member discovery, once, before the first request (again after a
        failure)."""
        from twisted.internet.defer import ensureDeferred

        d: Deferred[None] = Deferred()
        self._setup_waiters.append(d)
        if len(self._setup_waiters) == 1:
            ensureDeferred(self._discover()).addBoth(self._setup_finished)
        return d

    def _setup_finished(self, result: object) -> None:
        waiters, self._setup_waiters = self._setup_waiters, []
        if not isinstance(result, Failure):
            self._needs_setup = False
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    async def _discover(self) -> None:
        if self.srv_domain is not None and not self._endpoints:
            from txetcd.v2._srv import lookup_endpoints

            self._endpoints = await lookup_endpoints(
                self.srv_domain, self.protocol, resolver=self._resolver
            )
        if self.allow_reconnect:
            machines = self.version_prefix + "/machines"
            response = await _Call(
                self, b"GET", machines, b"", self._headers, True, self.read_timeout, False, None
            ).start()  # not self._call: this is the setup
            if response.status == 200:
                for url in response.body.decode("utf-8", "replace").split(","):
                    url = url.strip().rstrip("/")
                    if url and url not in self._endpoints:
                        self._endpoints.append(url)

    def _failover(self) -> None:
        self._current = (self._current + 1) % max(1, len(self._endpoints))

    # -- the one request path ------------------------------------------------------------------

    def _call(
        self,
        method: bytes,
        target: str,
        *,
        body: bytes = b"",
        headers: Optional[Tuple[Tuple[bytes, bytes], ...]] = None,
        idempotent: bool,
        timeout: Optional[float],
        exclusive: bool = False,
        parse: Optional[Callable[[HTTPResponse, bool], Any]] = None,
    ) -> "Deferred[Any]":
        """Send one request (``target`` = path and query), failing over when safe; fires with
        the answer, or ``parse(answer, mutation)``. The SRV lookup and member discovery run
        first when they have not yet."""
        call = _Call(
            self,
            method,
            target,
            body,
            self._headers if headers is None else headers,
            idempotent,
            timeout,
            exclusive,
            parse,
        )
        if self._needs_setup:
            return self._setup().addCallback(lambda _: call.start())
        return call.start()

    def _describe(self) -> str:
        if len(self._endpoints) == 1:
            return self._endpoints[0]
        return f"tried {', '.join(self._endpoints)}"

    def _check_cluster(self, response: HTTPResponse) -> HTTPResponse:
        cluster = response.headers.get(b"x-etcd-cluster-id")
        if cluster is not None:
            text = cluster.decode("ascii", "replace")
            if self._cluster_id is None:
                self._cluster_id = text
            elif text != self._cluster_id:
                raise EtcdClusterIdChanged(
                    f"the answer came from cluster {text}, not {self._cluster_id}"
                )
        return response

    def _target(self, request: V2Request) -> str:
        """The request's path and query under ``version_prefix`` (``/v2`` in the builders)."""
        target = request.path
        if self.version_prefix != "/v2":
            target = self.version_prefix + target[len("/v2") :]
        return target + "?" + request.query if request.query else target

    def _timeout(self, timeout: Any) -> Optional[float]:
        return self.read_timeout if timeout is DEFAULT_TIMEOUT else check_timeout(timeout)

    # -- streams (for the eternal watch) -------------------------------------------------------

    def _stream(self, request: V2Request, on_line: Callable[[bytes], None]) -> Any:
        """A keys GET as a stream on its own connection (headers early, body by lines)."""
        url = self.base_uri + self._target(request)
        return self._http.stream(b"GET", url, headers=self._headers, on_line=on_line)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> "Deferred[None]":
        """Close every connection; calls in flight fail (writes with
        :class:`~txetcd.OutcomeUnknown` if already sent), and so do calls waiting to be sent
        again (:class:`~txetcd.ClientClosed`)."""
        self.closed = True
        for call in list(self._resending):
            call.stop_waiting(ClientClosed("the client is closed"))
        d: Deferred[None] = self._http.close()
        return d

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Call:
    """One request's attempts (see :meth:`RequestPath._call`).

    A class rather than closures: closures naming each other make a reference cycle per
    request, left to the garbage collector (a measurable share of a busy client's time).
    """

    __slots__ = (
        "client",
        "method",
        "target",
        "body",
        "headers",
        "idempotent",
        "timeout",
        "exclusive",
        "parse",
        "tries",
        "timer",
        "waiting",
    )

    def __init__(
        self,
        client: RequestPath,
        method: bytes,
        target: str,
        body: bytes,
        headers: Tuple[Tuple[bytes, bytes], ...],
        idempotent: bool,
        timeout: Optional[float],
        exclusive: bool,
        parse: Optional[Callable[[HTTPResponse, bool], Any]],
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.body = body
        self.headers = headers
        self.idempotent = idempotent
        self.timeout = timeout
        self.exclusive = exclusive
        self.parse = parse
        self.tries = 0
        self.timer: Optional[IDelayedCall] = None  # the backoff before the next attempt
        self.waiting: Optional[Deferred[Any]] = None  # fires with the next attempt's outcome

    def start(self) -> "Deferred[Any]":
        client = self.client
        if client.closed:
            return fail(ClientClosed("the client is closed"))
        if not client._endpoints:
            return fail(EtcdConnectionFailed("no etcd endpoint to send to"))
        # each member once; a read (it may be sent twice) once more, on a new connection
        self.tries = len(client._endpoints) + (1 if self.idempotent else 0)
        return self(1)

    def __call__(self, n: int) -> "Deferred[Any]":
        client = self.client
        url = client._endpoints[client._current % len(client._endpoints)] + self.target
        d: Deferred[Any] = client._http.request(
            self.method,
            url,
            headers=self.headers,
            body=self.body,
            timeout=self.timeout,
            idempotent=self.idempotent,
            exclusive=self.exclusive,
        )
        return d.addCallbacks(self.answered, self.failed, errbackArgs=(n,))

    def answered(self, response: HTTPResponse) -> Any:
        client = self.client
        if response.status == 404 and response.body.startswith(GO_NOT_FOUND):
            raise not_enabled(client.base_uri, self.target)
        client._check_cluster(response)
        parse = self.parse
        return response if parse is None else parse(response, not self.idempotent)

    def failed(self, failure: Failure, n: int) -> Any:
        client = self.client
        err = failure.value
        if isinstance(err, ConnectionFailed) and not isinstance(err, EtcdConnectionFailed):
            sent = maybe_sent(err)
            if not client.closed and may_resend(idempotent=self.idempotent, maybe_sent=sent):
                client._failover()  # this request's next attempt, or the next request
                if n < self.tries:
                    return self._resend_after_backoff(n)
            return _failure(
                EtcdConnectionFailed(
                    f"no answer from etcd ({client._describe()}): {err}", cause=err, maybe_sent=sent
                )
            )
        return failure

    # -- the wait between attempts ---------------------------------------------------------------

    def _resend_after_backoff(self, n: int) -> "Deferred[Any]":
        """Attempt ``n + 1`` after ``RESEND_BACKOFF`` on the client's clock (cancellable; the
        client's ``close()`` ends the wait with :class:`~txetcd.ClientClosed`)."""
        client = self.client
        waiting: Deferred[Any] = Deferred(self._cancel_wait)
        self.waiting = waiting
        self.timer = client.clock.callLater(RESEND_BACKOFF(n - 1), self._resend, n + 1)
        client._resending.add(self)
        return waiting

    def _resend(self, n: int) -> None:
        self.timer = None
        self.client._resending.discard(self)
        waiting, self.waiting = self.waiting, None
        if waiting is None:
            return
        if self.client.closed:
            waiting.errback(ClientClosed("the client is closed"))
            return
        self(n).chainDeferred(waiting)

    def _cancel_wait(self, waiting: "Deferred[Any]") -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.client._resending.discard(self)
        self.waiting = None

    def stop_waiting(self, error: BaseException) -> None:
        """The client closed during the backoff: no more attempts, fail with ``error``."""
        waiting = self.waiting
        if waiting is not None:
            self._cancel_wait(waiting)
            waiting.errback(error)
