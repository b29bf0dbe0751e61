"""The v2 client: python-etcd's API shape, every method returning a ``Deferred``.

One request path (:meth:`Client._call`) for everything: it picks the current endpoint, sends
through the HTTP/1.1 client (txetcd's keep-alive pool, or any treq ``HTTPClient``/``IAgent``),
fails over to the next endpoint when that is safe, and turns the answer into an
:class:`~txetcd.v2.EtcdResult` or the v2 error it carries.

Retry rule, the same as the v3 client's: a request that certainly never reached the server (no
connection) goes to the next endpoint; a read that may have been sent goes to the next endpoint
too; a write that may have been sent is never sent again, it fails with
:class:`~txetcd.OutcomeUnknown` (or :class:`~txetcd.WriteTimeout`).
"""

from __future__ import annotations

import base64
import json
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN, check_timeout
from txetcd._errors import ConnectionFailed, EtcdError, OutcomeUnknown, ProtocolViolation
from txetcd._http1 import HTTPResponse, maybe_sent
from txetcd.v2._errors import (
    EtcdClusterIdChanged,
    EtcdConnectionFailed,
    EtcdInvalidRequest,
    EtcdKeyNotFound,
    EtcdRaftInternal,
    EtcdV2Error,
    EtcdWatchTimedOut,
    from_json,
)
from txetcd.v2._keys import (
    Key,
    V2Request,
    append_request,
    delete_request,
    get_request,
    set_request,
)
from txetcd.v2._result import EtcdResult
from txetcd.v2._tls import tls_endpoint_factory

__all__ = ["Client", "DEFAULT_TIMEOUT"]

#: ``Failure(exc)`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

T = TypeVar("T")
Value = Union[str, bytes]


#: ``timeout=`` not given: the client's ``read_timeout`` (the v3 client's sentinel, the same object)
DEFAULT_TIMEOUT: Any = NOT_GIVEN

#: python-etcd's spellings of options -> txetcd's
_ALIASES = {
    "prevValue": "prev_value",
    "prevIndex": "prev_index",
    "prevExist": "prev_exist",
    "waitIndex": "wait_index",
}

_FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
_JSON = (b"Content-Type", b"application/json")

#: server answers to a write after which it may still commit (raft timed out, leader lost)
_UNCERTAIN = ("timed out", "leader changed", "stopped", "unhealthy")


def _options(given: Mapping[str, Any], allowed: Sequence[str], call: str) -> Dict[str, Any]:
    """``given`` keyword options with python-etcd's names mapped to txetcd's, checked."""
    out: Dict[str, Any] = {}
    for name, value in given.items():
        canonical = _ALIASES.get(name, name)
        if canonical not in allowed:
            raise TypeError(f"{call}() got an unexpected keyword argument {name!r}")
        if canonical in out:
            raise TypeError(f"{call}() got {canonical!r} twice (under two spellings)")
        out[canonical] = value
    return out


def _endpoint_urls(host: Any, port: int, protocol: str) -> List[str]:
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


def _json_body(response: HTTPResponse, what: str) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        raise ProtocolViolation(
            f"{what}: the answer is not JSON: {response.body[:200]!r}"
        ) from None


def _plain_error(response: HTTPResponse, what: str) -> EtcdError:
    """The error of a non-keys v2 answer (``{"message"}`` bodies of members and stats)."""
    error = from_json(response.body, response.status)
    if response.status in (404, 410) and error.error_code is None:
        return EtcdKeyNotFound(f"{what}: {error}", status=response.status, payload=error.payload)
    return error


class Client:
    """An etcd v2 client with python-etcd's API; every method returns a ``Deferred``.

    :param host: a host name or address, or a tuple of ``(host, port)`` pairs (the cluster's
        members, tried in order).
    :param port: the port when ``host`` is one name (etcd's client port, 2379).
    :param protocol: ``"http"`` or ``"https"``.
    :param version_prefix: the API prefix, ``"/v2"``.
    :param allow_reconnect: also learn the cluster's other members (``/v2/machines``, at the
        first request) and fail over to them. Endpoints given in ``host`` are failed over to in
        any case.
    :param srv_domain: find the members by DNS SRV: ``_etcd-client._tcp.<domain>``
        (``_etcd-client-ssl._tcp.<domain>`` with ``https``), looked up at the first request.
    :param cert: a client certificate for TLS: a PEM file holding certificate and key, or a
        ``(cert_file, key_file)`` pair.
    :param ca_cert: a PEM file of the CA certificates to trust (by default, the system's).
        The server's certificate is always verified.
    :param username: with ``password``: HTTP basic auth on every request (v2 auth).
    :param read_timeout: seconds each request may take (``None`` or 0: no deadline); every
        method takes ``timeout=`` to override it. Waits use it too unless given their own.
    :param lock_prefix: where :class:`~txetcd.v2.Lock` keeps its keys.
    :param expected_cluster_id: refuse answers of any other cluster
        (:class:`~txetcd.v2.EtcdClusterIdChanged`); otherwise the first answer's cluster id is
        expected from every member failed over to.
    :param http_client: the HTTP/1.1 client: a treq ``HTTPClient`` or any ``IAgent`` (your own
        TLS, proxies, ``treq.testing.StubTreq``), or one of txetcd's; by default txetcd's
        keep-alive pool. (``cert``/``ca_cert`` apply to the default pool only.)
    :param reactor: the reactor (TCP, and time unless ``clock`` is given).
    :param clock: the clock for the lock and election refresh loops and watch backoff.
    :param resolver: the ``IResolver`` for ``srv_domain`` (``twisted.names``' by default).
    :param per_host_pool_size: keep-alive connections per endpoint in the default pool.
    """

    def __init__(
        self,
        host: Any = "127.0.0.1",
        port: int = 2379,
        *,
        protocol: str = "http",
        version_prefix: str = "/v2",
        allow_reconnect: bool = False,
        srv_domain: Optional[str] = None,
        cert: Union[None, str, Tuple[str, str]] = None,
        ca_cert: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        read_timeout: Optional[float] = 60.0,
        lock_prefix: str = "/_locks",
        expected_cluster_id: Optional[str] = None,
        http_client: Any = None,
        reactor: Any = None,
        clock: Any = None,
        resolver: Any = None,
        connect_timeout: float = 5.0,
        per_host_pool_size: int = 32,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.protocol = protocol
        if srv_domain is not None:
            if not isinstance(srv_domain, str) or not srv_domain:
                raise TypeError("srv_domain must be a domain name")
            _endpoint_urls("x", 1, protocol)  # checks the protocol
            self._endpoints: List[str] = []
        else:
            self._endpoints = _endpoint_urls(host, port, protocol)
        if not isinstance(version_prefix, str) or not version_prefix.startswith("/"):
            raise ValueError(f"version_prefix must start with '/', not {version_prefix!r}")
        self.version_prefix = version_prefix.rstrip("/")
        self.allow_reconnect = bool(allow_reconnect)
        self.srv_domain = srv_domain
        self.read_timeout = check_timeout(read_timeout, "read_timeout")
        if not isinstance(lock_prefix, str):
            raise TypeError("lock_prefix must be a str")
        self.lock_prefix = lock_prefix
        self.expected_cluster_id = expected_cluster_id
        self._cluster_id = expected_cluster_id
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.username = username
        self._headers: Tuple[Tuple[bytes, bytes], ...] = ()
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._headers = ((b"Authorization", b"Basic " + token.encode("ascii")),)
        self._form_headers = self._headers + (_FORM,)
        self._json_headers = self._headers + (_JSON,)
        self._resolver = resolver
        self._current = 0
        self.closed = False
        self._setup_waiters: List[Deferred[None]] = []
        self._needs_setup = srv_domain is not None or self.allow_reconnect
        self._http = self._make_http(
            http_client, cert, ca_cert, connect_timeout, per_host_pool_size
        )

    def _make_http(
        self,
        given: Any,
        cert: Union[None, str, Tuple[str, str]],
        ca_cert: Optional[str],
        connect_timeout: float,
        pool_size: int,
    ) -> Any:
        from txetcd._http1_pool import PoolClient
        from txetcd._http1_treq import TreqClient

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

    def _keys(
        self, request: V2Request, timeout: Any, *, exclusive: bool = False
    ) -> "Deferred[EtcdResult]":
        """Send a keys request; fires with its typed result or fails with its v2 error."""
        method = request.method.encode("ascii")
        target = self._target(request)
        mutation = request.method != "GET"
        d: Deferred[EtcdResult] = self._call(
            method,
            target,
            body=request.body or b"",
            headers=self._form_headers if request.body is not None else self._headers,
            idempotent=not mutation,
            timeout=self._timeout(timeout),
            exclusive=exclusive,
            parse=_keys_result,
        )
        if exclusive:
            d.addErrback(_wait_timed_out)
        return d

    # -- reads ---------------------------------------------------------------------------------

    def read(
        self,
        key: Key,
        *,
        recursive: Optional[bool] = None,
        sorted: Optional[bool] = None,
        quorum: Optional[bool] = None,
        wait: bool = False,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Read ``key`` (a file or a directory).

        :param recursive: list a directory's whole subtree.
        :param sorted: children in key order.
        :param quorum: a linearizable read (through raft).
        :param wait: a long poll: fire at the key's next change (with ``recursive``, the next
            change below it), or at the first change at or after ``wait_index``.
        :param wait_index: (``waitIndex``) with ``wait``: the first index to look at.
        :param timeout: seconds (default ``read_timeout``; ``None`` or 0: none). A wait that
            times out fails with :class:`~txetcd.v2.EtcdWatchTimedOut`.
        :raises ~txetcd.v2.EtcdKeyNotFound: no such key.
        """
        opts = _options(options, ("wait_index",), "read")
        request = get_request(
            key,
            recursive=recursive,
            sorted=sorted,
            quorum=quorum,
            wait=True if wait else None,
            wait_index=opts.get("wait_index"),
        )
        return self._keys(request, timeout, exclusive=wait)

    def get(self, key: Key, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[EtcdResult]":
        """``read(key)``."""
        return self._keys(get_request(key), timeout)

    def exists(self, key: Key, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[bool]":
        """Whether ``key`` exists (python-etcd's ``key in client``)."""
        d = self._keys(get_request(key), timeout)

        def missing(f: Failure) -> Union[bool, Failure]:
            return False if isinstance(f.value, EtcdKeyNotFound) else f

        return d.addCallbacks(lambda _: True, missing)

    # -- writes --------------------------------------------------------------------------------

    def write(
        self,
        key: Key,
        value: Optional[Value],
        ttl: Optional[int] = None,
        dir: bool = False,
        append: bool = False,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Write ``key``: set, create, update or compare-and-swap, by the options given.

        :param value: the value (``None`` with ``dir=True``, or a refresh).
        :param ttl: seconds to live; without it a write drops any TTL the key had.
        :param dir: make a directory.
        :param append: create an in-order key in the directory ``key`` (POST).
        :param prev_value: (``prevValue``) only if the current value is this.
        :param prev_index: (``prevIndex``) only if the key's modified index is this.
        :param prev_exist: (``prevExist``) ``False``: only create; ``True``: only update.
        :param refresh: with ``ttl`` and no value: reset the TTL, waking no watcher.
        """
        opts = _options(options, ("prev_value", "prev_index", "prev_exist", "refresh"), "write")
        if append:
            if opts:
                raise EtcdInvalidRequest(f"append takes no {', '.join(sorted(opts))}")
            request = append_request(key, value, ttl=ttl, dir=True if dir else None)
        else:
            request = set_request(key, value, ttl=ttl, dir=True if dir else None, **opts)
        return self._keys(request, timeout)

    def set(
        self, key: Key, value: Value, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` (creating or replacing it)."""
        return self._keys(set_request(key, value, ttl=ttl), timeout)

    def update(self, obj: EtcdResult, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[EtcdResult]":
        """Write back a result read earlier (its ``value`` and ``ttl`` as changed), only if the
        key was not modified since (``prevIndex`` = its ``modified_index``)."""
        if not isinstance(obj, EtcdResult):
            raise TypeError(f"update() takes an EtcdResult, not {type(obj).__name__}")
        if obj.dir:
            request = set_request(obj.key, None, ttl=obj.ttl, dir=True, prev_exist=True)
        else:
            if obj.modified_index is None:
                raise EtcdInvalidRequest("update() needs a result with a modified index")
            request = set_request(
                obj.key,
                obj.value if obj.value is not None else "",
                ttl=obj.ttl,
                prev_index=obj.modified_index,
            )
        return self._keys(request, timeout)

    def test_and_set(
        self,
        key: Key,
        value: Value,
        prev_value: Value,
        ttl: Optional[int] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` only if its value is ``prev_value``."""
        return self._keys(set_request(key, value, ttl=ttl, prev_value=prev_value), timeout)

    def compare_and_swap(
        self,
        key: Key,
        value: Value,
        ttl: Optional[int] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **conditions: Any,
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` only if the conditions hold: ``prev_value``, ``prev_index``
        and/or ``prev_exist`` (python-etcd's spellings too); at least one is required.
        :raises ~txetcd.v2.EtcdCompareFailed: a condition did not hold.
        """
        opts = _options(conditions, ("prev_value", "prev_index", "prev_exist"), "compare_and_swap")
        if not any(v is not None for v in opts.values()):
            raise EtcdInvalidRequest("compare_and_swap needs prev_value, prev_index or prev_exist")
        return self._keys(set_request(key, value, ttl=ttl, **opts), timeout)

    def refresh(
        self, key: Key, ttl: int, *, timeout: Any = DEFAULT_TIMEOUT, **options: Any
    ) -> "Deferred[EtcdResult]":
        """Reset the TTL of the existing ``key`` without changing its value or waking
        watchers (``refresh=true``, ``prevExist=true``: the key must exist and keeps its created
        index). ``prev_value``/``prev_index`` add conditions.
        """
        opts = _options(options, ("prev_value", "prev_index", "prev_exist"), "refresh")
        opts.setdefault("prev_exist", True)
        return self._keys(set_request(key, None, ttl=ttl, refresh=True, **opts), timeout)

    def append(
        self, key: Key, value: Value, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Create an in-order key in the directory ``key``, named by its creation index."""
        return self._keys(append_request(key, value, ttl=ttl), timeout)

    def mkdir(
        self, key: Key, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Create the directory ``key``. :raises ~txetcd.v2.EtcdAlreadyExist: it exists."""
        return self._keys(set_request(key, None, ttl=ttl, dir=True, prev_exist=False), timeout)

    # -- deletes -------------------------------------------------------------------------------

    def delete(
        self,
        key: Key,
        recursive: Optional[bool] = None,
        dir: Optional[bool] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Delete ``key``; ``dir=True`` for an empty directory, ``recursive=True`` for a
        directory and everything below it; ``prev_value``/``prev_index`` make it a
        compare-and-delete."""
        opts = _options(options, ("prev_value", "prev_index", "prev_exist"), "delete")
        return self._keys(delete_request(key, recursive=recursive, dir=dir, **opts), timeout)

    def compare_and_delete(
        self,
        key: Key,
        *,
        prev_value: Optional[Value] = None,
        prev_index: Optional[int] = None,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[EtcdResult]":
        """Delete ``key`` only if its value is ``prev_value`` and/or its modified index is
        ``prev_index``. :raises ~txetcd.v2.EtcdCompareFailed: it is not."""
        if prev_value is None and prev_index is None:
            raise EtcdInvalidRequest("compare_and_delete needs prev_value or prev_index")
        request = delete_request(key, prev_value=prev_value, prev_index=prev_index)
        return self._keys(request, timeout)

    def pop(
        self,
        key: Key,
        recursive: Optional[bool] = None,
        dir: Optional[bool] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[Optional[EtcdResult]]":
        """Delete ``key`` and fire with the node as it was (its value included)."""
        d = self.delete(key, recursive, dir, timeout=timeout, **options)
        return d.addCallback(lambda result: result.prev_node)

    def rmdir(
        self, key: Key, recursive: bool = False, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Delete the directory ``key`` (it must be empty unless ``recursive``)."""
        request = delete_request(key, dir=True, recursive=True if recursive else None)
        return self._keys(request, timeout)

    # -- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        index: Optional[int] = None,
        timeout: Any = DEFAULT_TIMEOUT,
        recursive: Optional[bool] = None,
    ) -> "Deferred[EtcdResult]":
        """Wait for the next change of ``key`` (at or after ``index`` if given): one long poll.

        :raises ~txetcd.v2.EtcdWatchTimedOut: nothing happened within ``timeout``.
        :raises ~txetcd.v2.EtcdEventIndexCleared: ``index`` is older than etcd's history of
            the last 1,000 events (use :meth:`eternal_watch`, which recovers).
        """
        return self.read(key, wait=True, wait_index=index, recursive=recursive, timeout=timeout)

    def eternal_watch(
        self,
        key: Key,
        index: Optional[int] = None,
        recursive: bool = False,
        *,
        callback: Optional[Callable[[Any], object]] = None,
        poll_timeout: Optional[float] = None,
        max_backlog: int = 1000,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
    ) -> Any:
        """Watch ``key`` for ever: an :class:`~txetcd.v2.EternalWatch` (``async for`` it, or
        give ``callback``). It follows ``X-Etcd-Index``, recovers from ``EventIndexCleared`` by
        re-reading (a :class:`~txetcd.v2.Resynced` item says so) and reconnects with backoff
        and failover. ``cancel()`` it to stop.

        :param poll_timeout: seconds a poll may stay quiet before it is made again from
            ``X-Etcd-Index + 1`` (default ``read_timeout``, else 60).
        :param max_backlog: with ``async for``: items held before polling pauses.
        :param backoff_initial: first delay (seconds) before a failed poll is made again;
            doubled after each failure in a row, up to ``backoff_max``, with jitter.
        """
        from txetcd.v2._watch import EternalWatch

        return EternalWatch(
            self,
            key,
            index=index,
            recursive=recursive,
            callback=callback,
            poll_timeout=poll_timeout,
            max_backlog=max_backlog,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )

    #: python-etcd's misspelling, kept for code written against it
    ethernal_watch = eternal_watch

    # -- cluster -------------------------------------------------------------------------------

    def _plain(
        self,
        method: bytes,
        path: str,
        what: str,
        *,
        body: bytes = b"",
        timeout: Any = DEFAULT_TIMEOUT,
        json_body: bool = False,
        ok: Tuple[int, ...] = (200,),
    ) -> "Deferred[HTTPResponse]":
        d = self._call(
            method,
            path,
            body=body,
            headers=self._json_headers if json_body else self._headers,
            idempotent=method == b"GET",
            timeout=self._timeout(timeout),
        )

        def check(response: HTTPResponse) -> HTTPResponse:
            if response.status not in ok:
                raise _plain_error(response, what)
            return response

        return d.addCallback(check)

    def machines(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[List[str]]":
        """The client URLs of every member (``/v2/machines``)."""
        d = self._plain(b"GET", self.version_prefix + "/machines", "machines", timeout=timeout)
        return d.addCallback(
            lambda r: [u.strip() for u in r.body.decode("utf-8", "replace").split(",") if u.strip()]
        )

    def members(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Dict[str, Any]]]":
        """Every member by its hex id: ``{"id", "name", "peerURLs", "clientURLs"}``."""
        d = self._plain(b"GET", self.version_prefix + "/members", "members", timeout=timeout)

        def parse(response: HTTPResponse) -> Dict[str, Dict[str, Any]]:
            data = _json_body(response, "members")
            members = data.get("members") if isinstance(data, dict) else None
            if not isinstance(members, list):
                raise ProtocolViolation(f"members: unexpected answer {data!r}")
            return {m["id"]: m for m in members if isinstance(m, dict) and "id" in m}

        return d.addCallback(parse)

    def leader(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """The leader member: ``{"id", "name", "peerURLs", "clientURLs"}``."""
        d = self._plain(b"GET", self.version_prefix + "/members/leader", "leader", timeout=timeout)
        return d.addCallback(_json_body, "leader")

    def add_member(
        self, peer_urls: Union[str, Sequence[str]], *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[Dict[str, Any]]":
        """Add a member by its peer URLs; fires with the new member (its ``id``)."""
        urls = [peer_urls] if isinstance(peer_urls, str) else list(peer_urls)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise TypeError("peer_urls must be a URL or a list of URLs")
        body = json.dumps({"peerURLs": urls}).encode()
        d = self._plain(
            b"POST",
            self.version_prefix + "/members",
            "add_member",
            body=body,
            timeout=timeout,
            json_body=True,
            ok=(200, 201),
        )
        return d.addCallback(_json_body, "add_member")

    def update_member(
        self,
        member_id: str,
        peer_urls: Union[str, Sequence[str]],
        *,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[None]":
        """Change a member's peer URLs."""
        urls = [peer_urls] if isinstance(peer_urls, str) else list(peer_urls)
        body = json.dumps({"peerURLs": urls}).encode()
        d = self._plain(
            b"PUT",
            f"{self.version_prefix}/members/{_member_id(member_id)}",
            "update_member",
            body=body,
            timeout=timeout,
            json_body=True,
            ok=(200, 204),
        )
        return d.addCallback(lambda _: None)

    def remove_member(self, member_id: str, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[None]":
        """Remove a member by its hex id.
        :raises ~txetcd.v2.EtcdKeyNotFound: no such member (or removed already)."""
        d = self._plain(
            b"DELETE",
            f"{self.version_prefix}/members/{_member_id(member_id)}",
            "remove_member",
            timeout=timeout,
            ok=(200, 204),
        )
        return d.addCallback(lambda _: None)

    def stats(
        self, which: str = "self", *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[Dict[str, Any]]":
        """``/v2/stats/<which>``: ``"self"`` (this member), ``"store"`` or ``"leader"`` (only
        the leader answers that one)."""
        if which not in ("self", "store", "leader"):
            raise ValueError(f"stats are 'self', 'store' or 'leader', not {which!r}")
        d = self._plain(
            b"GET", f"{self.version_prefix}/stats/{which}", f"stats/{which}", timeout=timeout
        )
        return d.addCallback(_json_body, f"stats/{which}")

    def leader_stats(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """``stats("leader")``."""
        return self.stats("leader", timeout=timeout)

    def store_stats(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """``stats("store")``."""
        return self.stats("store", timeout=timeout)

    def version(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[str]":
        """The server's version, e.g. ``"3.5.1"``."""
        d = self._plain(b"GET", "/version", "version", timeout=timeout)
        return d.addCallback(lambda r: str(_json_body(r, "version")["etcdserver"]))

    def cluster_version(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[str]":
        """The cluster's version, e.g. ``"3.5.0"``."""
        d = self._plain(b"GET", "/version", "version", timeout=timeout)
        return d.addCallback(lambda r: str(_json_body(r, "version")["etcdcluster"]))

    def health(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[bool]":
        """Whether the member is healthy (``/health``: it has a leader)."""
        d = self._plain(b"GET", "/health", "health", timeout=timeout, ok=(200, 503))

        def parse(response: HTTPResponse) -> bool:
            data = _json_body(response, "health")
            return isinstance(data, dict) and data.get("health") in ("true", True)

        return d.addCallback(parse)

    # -- streams (for the eternal watch) -------------------------------------------------------

    def _stream(self, request: V2Request, on_line: Callable[[bytes], None]) -> Any:
        """A keys GET as a stream on its own connection (headers early, body by lines)."""
        url = self.base_uri + self._target(request)
        return self._http.stream(b"GET", url, headers=self._headers, on_line=on_line)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> "Deferred[None]":
        """Close every connection; calls in flight fail (writes with
        :class:`~txetcd.OutcomeUnknown` if already sent)."""
        self.closed = True
        d: Deferred[None] = self._http.close()
        return d

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _member_id(member_id: str) -> str:
    if (
        not isinstance(member_id, str)
        or not member_id
        or not all(c in "0123456789abcdefABCDEF" for c in member_id)
    ):
        raise ValueError(f"a member id is a hex string, not {member_id!r}")
    return member_id


def _keys_result(response: HTTPResponse, mutation: bool) -> EtcdResult:
    if response.status >= 400:
        error = from_json(response.body, response.status)
        if (
            mutation
            and isinstance(error, EtcdRaftInternal)
            and any(word in (error.cause or "") for word in _UNCERTAIN)
        ):
            raise OutcomeUnknown(f"the write's outcome is unknown: {error}", cause=error)
        raise error
    if response.status >= 300:
        raise EtcdV2Error(
            f"HTTP {response.status}: etcd redirected the request (not followed)",
            status=response.status,
        )
    return EtcdResult.from_response(response.body, response.headers, response.status)


def _wait_timed_out(failure: Failure) -> Failure:
    from txetcd._errors import Timeout, WriteTimeout

    err = failure.value
    if isinstance(err, Timeout) and not isinstance(err, (WriteTimeout, EtcdWatchTimedOut)):
        return _failure(EtcdWatchTimedOut(f"no change within the timeout ({err})", cause=err))
    return failure


class _Call:
    """One request's attempts (see :meth:`Client._call`).

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
    )

    def __init__(
        self,
        client: Client,
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

    def start(self) -> "Deferred[Any]":
        client = self.client
        if client.closed:
            from txetcd._errors import ClientClosed

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
        self.client._check_cluster(response)
        parse = self.parse
        return response if parse is None else parse(response, not self.idempotent)

    def failed(self, failure: Failure, n: int) -> Any:
        client = self.client
        err = failure.value
        if isinstance(err, ConnectionFailed) and not isinstance(err, EtcdConnectionFailed):
            sent = maybe_sent(err)
            if not client.closed and (not sent or self.idempotent):
                if n < self.tries:
                    client._failover()
                    return self(n + 1)
                client._failover()  # the next request starts on the next member
            return _failure(
                EtcdConnectionFailed(
                    f"no answer from etcd ({client._describe()}): {err}", cause=err, maybe_sent=sent
                )
            )
        return failure
