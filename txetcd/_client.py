"""The v3 client: KV and transactions over gRPC on our HTTP/2 layer.

Every method builds a protobuf request (checking its arguments first, synchronously), sends it
through the one call path (:class:`txetcd._grpc.channel.Channel`) and decodes the answer into frozen
values. Every method returns a ``Deferred``, which ``inlineCallbacks`` code yields and
``async def`` code awaits.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Literal, Optional, Sequence, TypeVar, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txetcd._args import NOT_GIVEN, check_bool, check_int, check_timeout
from txetcd._auth import AuthTransport
from txetcd._authadmin import AuthMethods
from txetcd._cluster import ClusterMethods
from txetcd._connect import (
    _credentials,
    _endpoint_list,
    _given_options,
    _make_transport,
    _shown_url,
    _sibling_http_client,
    _tls_options,
)
from txetcd._discovery import DiscoveryMethods, check_interval
from txetcd._kv import (
    compact_result,
    delete_request,
    delete_result,
    put_request,
    put_result,
    range_request,
    range_result,
    txn_result,
)
from txetcd._lease import LeaseLike, LeaseMethods
from txetcd._lockservice import LockServiceMethods
from txetcd._maintenance import MaintenanceMethods
from txetcd._methods import COMPACT, DELETE_RANGE, PUT, RANGE, TXN
from txetcd._ordering import ORDERED_PATHS, Ordering
from txetcd._proto import rpc_pb2
from txetcd._tls import PEMSource
from txetcd._transport import REQUIRE_LEADER, Method, Transport
from txetcd._txn import (
    Compare,
    Op,
    SortOrderName,
    SortTargetName,
    lease_alias,
    txn_request,
)
from txetcd._types import (
    CompactResult,
    DeleteResult,
    PutResult,
    RangeResult,
    SortOrder,
    SortTarget,
    TxnResult,
)
from txetcd._watch import WatchHub, WatchMethods

__all__ = ["Client", "TransportName"]

T = TypeVar("T")

#: what carries a :class:`Client`'s calls
TransportName = Literal["grpc", "gateway"]


class Client(
    LeaseMethods,
    AuthMethods,
    ClusterMethods,
    MaintenanceMethods,
    DiscoveryMethods,
    LockServiceMethods,
    WatchMethods,
):
    """An etcd v3 client.

    :param endpoints: etcd client URLs (``http://host:port``), tried in order; a single str is
        accepted too.
    :param reactor: the reactor (TCP, and time unless ``clock`` is given); the global one by
        default.
    :param clock: the ``IReactorTime`` every timer of the client runs on: call deadlines and
        resend backoff, connect timeouts, keepalive PINGs, the lease keepalive loop, watch
        resumes (``reactor`` by default; a ``twisted.internet.task.Clock`` in tests).
    :param timeout: default deadline of each call, in seconds (``None`` or ``0``: no deadline,
        as in :class:`txetcd.v2.Client`). Every method takes ``timeout=`` to override it per
        call, with the same meaning.
    :param connect_timeout: seconds to wait for a TCP connection to one endpoint.
    :param keepalive_interval: seconds of silence after which a PING checks the connection
        while calls are open (at least 5: etcd closes connections that ping more often).
    :param keepalive_timeout: seconds to wait for the PING's answer before the connection is
        declared dead.

    ``client.timeout`` is the default deadline, ``client.reactor`` the reactor and
    ``client.clock`` the clock in use. ``async with Client(...) as client:`` closes the client
    on the way out.

    :param transport: ``"grpc"`` (the default: gRPC on txetcd's own HTTP/2 layer) or
        ``"gateway"`` (etcd's JSON gateway over HTTP/1.1, for proxies and load balancers that
        only speak HTTP/1.1; every call, watches and the lease keepalive loop included).
    :param http_client: with ``transport="gateway"``: the HTTP/1.1 client to use, a treq
        ``HTTPClient`` or any ``IAgent`` (custom TLS, proxies, ``treq.testing.StubTreq``'s agent),
        or one of txetcd's own; by default a lean keep-alive pool.

    TLS, for ``https://`` endpoints (verified by default: the chain against ``ca_cert`` or the
    system's trust store, the host name or IP address against the certificate):

    :param ca_cert: CA certificate(s) to trust, a PEM file's path or PEM bytes.
    :param cert: a client certificate (path or PEM bytes) for servers that want one
        (``--client-cert-auth``); with etcd's auth on and no password, its common name is the
        user.
    :param key: the client certificate's private key (path or PEM bytes), if not in ``cert``.
    :param server_name: the name to verify instead of the endpoint's host.
    :param insecure_skip_verify: do not verify the server at all (logged as a warning).
    :param tls: any Twisted ``IOpenSSLClientConnectionCreator`` (or a function of the host
        giving one), used as it is, for TLS setups the options above cannot express. Over gRPC
        it must offer ALPN ``h2``.

    Authentication (etcd's ``--auth``):

    :param user: log in as this user before the first call, and again whenever etcd says the
        token expired (the refused call is then sent again, once).
    :param password: that user's password (never shown in reprs, logs or errors).
    :param allow_insecure_credentials: send a password over plain ``http://`` anyway (refused
        by default: it would cross the network in clear).

    Cluster (see :doc:`cluster`):

    :param auto_sync_interval: every so many seconds (on ``clock``), replace the endpoints by
        the client URLs of the cluster's started, non-learner members (:meth:`sync_endpoints`),
        so members added later are used and removed ones dropped; a failed sync is logged as a
        warning and tried again at the next interval. ``None`` (the default): never.
    :param ordering: reads never go back in time: a read answered from a revision older than
        one this client has seen (a member behind the others) is sent again to another member
        within its deadline, or fails with :class:`~txetcd.RevisionWentBackwards` (Go's
        ``ordering`` KV).

    Reads (gets, read-only txns) whose connection breaks are sent again on a new connection.
    Writes are sent again only when they certainly never reached the server; otherwise they fail
    with :class:`~txetcd.OutcomeUnknown` and the caller decides.
    """

    log = Logger()

    def __init__(
        self,
        endpoints: Union[str, Sequence[str]] = ("http://127.0.0.1:2379",),
        *,
        reactor: Any = None,
        clock: Any = None,
        timeout: Optional[float] = 30.0,
        connect_timeout: float = 5.0,
        keepalive_interval: Optional[float] = 10.0,
        keepalive_timeout: float = 10.0,
        transport: TransportName = "grpc",
        http_client: Any = None,
        ca_cert: Optional[PEMSource] = None,
        cert: Optional[PEMSource] = None,
        key: Optional[PEMSource] = None,
        server_name: Optional[str] = None,
        insecure_skip_verify: bool = False,
        tls: Any = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        allow_insecure_credentials: bool = False,
        auto_sync_interval: Optional[float] = None,
        ordering: bool = False,
        _transport: Optional[Transport] = None,
    ) -> None:
        #: the options as given, for :meth:`_sibling`
        self._options: Dict[str, Any] = _given_options(locals())
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.clock: Any = reactor if clock is None else clock
        endpoints = _endpoint_list(endpoints)
        self.timeout = check_timeout(timeout)
        sync_interval = check_interval(auto_sync_interval)
        self._ordering = Ordering() if check_bool(ordering, "ordering") else None
        if keepalive_interval is not None and keepalive_interval < 5.0:
            raise ValueError(
                "keepalive_interval must be >= 5 s: etcd closes connections that ping more often"
            )
        tls_options = _tls_options(
            endpoints,
            ca_cert=ca_cert,
            cert=cert,
            key=key,
            server_name=server_name,
            insecure_skip_verify=insecure_skip_verify,
            tls=tls,
        )
        credentials = _credentials(endpoints, user, password, allow_insecure_credentials)
        self._channel: Transport = _transport or _make_transport(
            transport,
            list(endpoints),
            reactor,
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            http_client=http_client,
            clock=self.clock,
            tls=tls_options,
        )
        if credentials is not None:
            self._channel = AuthTransport(self._channel, credentials, self.timeout)
        self.user = None if credentials is None else credentials.user
        if insecure_skip_verify:
            self.log.warn(
                "TLS verification is off for {endpoints} (insecure_skip_verify=True)",
                endpoints=", ".join(_shown_url(u) for u in endpoints),
            )
        self.transport = transport
        self.reactor = reactor
        self._watch_hub: Optional[WatchHub] = None
        if sync_interval is not None:
            self._start_auto_sync(sync_interval)

    def __repr__(self) -> str:
        urls = ", ".join(_shown_url(url) for url in self.endpoints)
        closed = " closed" if self._channel.closed else ""
        user = f" user={self.user!r}" if self.user is not None else ""
        return f"<txetcd.Client {self.transport} {urls}{user}{closed}>"

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def endpoints(self) -> list[str]:
        """The client URLs this client connects to."""
        return list(self._channel.endpoint_urls)

    def _sibling(self, url: str) -> "Client":
        """A new client of ``url`` alone with this client's options (transport, timeouts,
        clock, TLS, credentials), for calls aimed at one member; the caller closes it."""
        options = dict(self._options, reactor=self.reactor, clock=self.clock)
        options["auto_sync_interval"] = None  # it is aimed at one member
        options["http_client"] = _sibling_http_client(options.get("http_client"))
        return Client(url, **options)

    def _call(
        self,
        method: Method,
        request: Any,
        decode: Callable[[Any], T],
        *,
        idempotent: bool,
        timeout: Any,
        leader: bool = False,
    ) -> "Deferred[T]":
        """The one call path every unary method of the client goes through.

        ``leader``: the call needs the cluster's leader (KV, txn, leases): it is sent with
        ``hasleader``, so a member without one refuses it before proposing anything, and the
        call waits for a leader (within its deadline) instead of timing out with an unknown
        outcome. Calls a member answers alone (status, member list) leave it False.
        """
        t = self.timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        if self._ordering is not None and method.path in ORDERED_PATHS:
            decode = self._ordering.wrap(decode, read=idempotent)
        return self._channel.unary(
            method,
            request,
            timeout=t,
            idempotent=idempotent,
            decode=decode,
            metadata=REQUIRE_LEADER if leader else (),
        )

    # -- reads -----------------------------------------------------------------------------
    def get(
        self,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: Union[SortOrder, SortOrderName] = SortOrder.NONE,
        sort_target: Union[SortTarget, SortTargetName] = SortTarget.KEY,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[RangeResult]":
        """Read one key. The result is empty (``result.kvs == ()``, false) when the key does not
        exist; ``result.value`` is then ``None``.

        Range options (keyword-only, all optional):

        - ``revision``: read the store as it was at that revision (0: now)
        - ``serializable``: answer from the local member without a quorum read (may be stale)
        - ``keys_only``: leave values out; ``count_only``: only count
        - ``limit``: at most this many keys (0: no limit); ``result.more`` says if some were cut
        - ``sort_order`` (``"none"``, ``"ascend"``, ``"descend"`` or :class:`SortOrder`) and
          ``sort_target`` (``"key"``, ``"version"``, ``"create"``, ``"mod"``, ``"value"``)
        - ``min_mod_revision``, ``max_mod_revision``, ``min_create_revision``,
          ``max_create_revision``: filters on the keys' revisions (``count`` ignores them)
        - ``range_end``, ``prefix``: see :meth:`get_range` and :meth:`get_prefix`
        - ``timeout``: this call's deadline in seconds (``None`` or ``0``: none), instead of
          the client's
        """
        req = range_request(
            key,
            range_end,
            prefix=prefix,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )
        return self._call(
            RANGE, req, range_result, idempotent=True, timeout=timeout, leader=not serializable
        )

    def get_prefix(
        self,
        prefix: Union[bytes, str],
        *,
        limit: int = 0,
        revision: int = 0,
        sort_order: Union[SortOrder, SortOrderName] = SortOrder.NONE,
        sort_target: Union[SortTarget, SortTargetName] = SortTarget.KEY,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[RangeResult]":
        """Read every key starting with ``prefix`` (``b""``: every key), sorted by key unless
        asked otherwise; the options are :meth:`get`'s."""
        return self.get(
            prefix,
            prefix=True,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
            timeout=timeout,
        )

    def get_range(
        self,
        start: Union[bytes, str],
        end: Union[bytes, str],
        *,
        limit: int = 0,
        revision: int = 0,
        sort_order: Union[SortOrder, SortOrderName] = SortOrder.NONE,
        sort_target: Union[SortTarget, SortTargetName] = SortTarget.KEY,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[RangeResult]":
        """Read the keys in ``[start, end)`` (``end=b"\\0"``: every key >= ``start``); the
        options are :meth:`get`'s."""
        if end is None:
            raise TypeError("end must be bytes or str (b'\\0': every key from start on)")
        return self.get(
            start,
            range_end=end,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
            timeout=timeout,
        )

    # -- writes ----------------------------------------------------------------------------
    def put(
        self,
        key: Union[bytes, str],
        value: Union[bytes, str],
        *,
        lease_id: LeaseLike = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        timeout: Any = NOT_GIVEN,
        lease: Any = None,
    ) -> "Deferred[PutResult]":
        """Write ``key = value``.

        ``lease_id``: attach the key to that lease: its ID, or the :class:`LeaseGrantResult`,
        :class:`KeepAlive` or :class:`Session` that holds it (0, the default, *detaches* the key
        from any lease: etcd's rule; use ``ignore_lease=True`` to keep it). ``lease=`` is the
        old spelling of ``lease_id=``. ``prev_kv``: return the key's previous state.
        ``ignore_value``: keep the stored value (give ``b""``) and change only the lease.
        """
        if lease is not None:
            lease_id = lease_alias(lease, lease_id)
        req = put_request(
            key,
            value,
            lease=lease_id,
            prev_kv=prev_kv,
            ignore_value=ignore_value,
            ignore_lease=ignore_lease,
        )
        return self._call(PUT, req, put_result, idempotent=False, timeout=timeout, leader=True)

    def delete(
        self,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        prev_kv: bool = False,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[DeleteResult]":
        """Delete one key (or, with ``range_end=``/``prefix=True``, a range).

        ``prev_kv``: return the deleted keys as they were. ``result.deleted`` counts them; a
        delete that finds nothing is not an error (and makes no new revision).
        """
        req = delete_request(key, range_end, prefix=prefix, prev_kv=prev_kv)
        return self._call(
            DELETE_RANGE, req, delete_result, idempotent=False, timeout=timeout, leader=True
        )

    def delete_prefix(
        self, prefix: Union[bytes, str], *, prev_kv: bool = False, timeout: Any = NOT_GIVEN
    ) -> "Deferred[DeleteResult]":
        """Delete every key starting with ``prefix``."""
        return self.delete(prefix, prefix=True, prev_kv=prev_kv, timeout=timeout)

    def delete_range(
        self,
        start: Union[bytes, str],
        end: Union[bytes, str],
        *,
        prev_kv: bool = False,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[DeleteResult]":
        """Delete the keys in ``[start, end)``; ``end=b"\\0"`` means every key >= ``start``."""
        return self.delete(start, range_end=end, prev_kv=prev_kv, timeout=timeout)

    def txn(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
        *,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[TxnResult]":
        """Run ``success`` if every compare holds, else ``failure``, atomically.

        A failed compare is a result with ``succeeded=False``, not an error. A txn of reads only
        is retried like a get; one that writes is never re-sent once it may have been seen.
        """
        req, read_only = txn_request(compare, success, failure)
        return self._call(TXN, req, txn_result, idempotent=read_only, timeout=timeout, leader=True)

    def compact(
        self, revision: int, *, physical: bool = False, timeout: Any = NOT_GIVEN
    ) -> "Deferred[CompactResult]":
        """Forget history before ``revision``; ``physical``: answer once the backend has it."""
        req = rpc_pb2.CompactionRequest(
            revision=check_int(revision, "revision"), physical=check_bool(physical, "physical")
        )
        return self._call(COMPACT, req, compact_result, idempotent=False, timeout=timeout)

    def namespace(self, prefix: Union[bytes, str]) -> Any:
        """A :class:`txetcd.concurrency.Namespace`: this client with every key under
        ``prefix`` (prefixed on the way in, stripped on the way out)."""
        from txetcd.concurrency import Namespace

        return Namespace(self, prefix)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> "Deferred[None]":
        """Drop every connection and fire once no connection or timer of this client is left.

        Pending reads and calls not yet sent fail with :class:`~txetcd.ClientClosed`; writes
        already sent fail with :class:`~txetcd.OutcomeUnknown` (they may have been applied).
        Calls made after ``close()`` fail with ``ClientClosed``. Watches end (their ``done``
        fires with ``None``); kept-alive leases stop being refreshed (their ``lost`` fires with
        :class:`~txetcd.LeaseAbandoned`); nothing is revoked.
        """
        self._stop_auto_sync()
        if self._watch_hub is not None:
            self._watch_hub.close()
        self._lease_hub_close()
        return self._channel.close()
