"""Where the members are: the endpoint list kept in sync with the cluster's membership
(``Client(auto_sync_interval=...)``, :meth:`~txetcd.Client.sync_endpoints`), and clients built
from DNS SRV records (:meth:`~txetcd.Client.from_srv`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN, check_bool
from txetcd._errors import ConnectionFailed
from txetcd._srv import SRVLookupFailed, check_domain, check_service_name, lookup_srv

if TYPE_CHECKING:
    from txetcd._client import Client
    from txetcd._cluster import MemberListResult
    from txetcd._transport import Transport

__all__ = ["DiscoveryMethods", "member_urls"]


def member_urls(members: "MemberListResult") -> List[str]:
    """The client URLs to use from a member list (as Go's auto-sync takes them): those of the
    started (named) members that are not learners, http(s) only, without repeats."""
    urls: List[str] = []
    for member in members:
        if not member.name or member.is_learner:
            continue
        for url in member.client_urls:
            if url.startswith(("http://", "https://")) and url not in urls:
                urls.append(url)
    return urls


def check_interval(value: object) -> Optional[float]:
    """``auto_sync_interval`` checked: None, or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"auto_sync_interval must be seconds or None, not {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError(f"auto_sync_interval must be > 0 seconds (None: off), not {value}")
    return float(value)


class DiscoveryMethods:
    """Endpoint discovery for :class:`txetcd.Client`."""

    log = Logger()

    if TYPE_CHECKING:
        _channel: Transport
        clock: Any
        timeout: Optional[float]

        def member_list(
            self, *, linearizable: bool = False, timeout: Any = NOT_GIVEN
        ) -> "Deferred[MemberListResult]": ...

    _auto_sync: Optional[LoopingCall] = None
    _syncing: "Optional[Deferred[Any]]" = None

    def sync_endpoints(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[List[str]]":
        """Replace the client's endpoints by the cluster's: the client URLs of its started,
        non-learner members (from :meth:`member_list`). Fires with the new list
        (:attr:`endpoints`). Endpoints that stay keep their health; calls in flight finish
        where they are. A member list with no usable URL changes nothing (and fails with
        :class:`~txetcd.ConnectionFailed`).
        """
        return self.member_list(timeout=timeout).addCallback(self._synced)

    def _synced(self, members: "MemberListResult") -> List[str]:
        urls = member_urls(members)
        if not urls:
            raise ConnectionFailed("the member list names no started member's client URL")
        if urls != list(self._channel.endpoint_urls):
            self._channel.update_endpoints(urls)
        return urls

    # -- the auto-sync loop ------------------------------------------------------------------
    def _start_auto_sync(self, interval: float) -> None:
        loop = LoopingCall(self._sync_now, interval)
        loop.clock = self.clock
        self._auto_sync = loop
        loop.start(interval, now=False)

    def _sync_now(self, interval: float) -> "Deferred[None]":
        """One auto-sync; a failure is logged and the next interval tries again."""
        timeout = interval if self.timeout is None else min(self.timeout, interval)
        d = self._syncing = self.sync_endpoints(timeout=timeout)

        def done(result: Any) -> None:
            self._syncing = None
            stopped = self._auto_sync is None or self._channel.closed
            if isinstance(result, Failure) and not stopped:
                self.log.warn(
                    "auto-sync of the endpoints failed ({error}); trying again in {interval:g} s",
                    error=result.getErrorMessage() or repr(result.value),
                    interval=interval,
                )

        return d.addBoth(done)

    def _stop_auto_sync(self) -> None:
        loop, self._auto_sync = self._auto_sync, None
        if loop is not None and loop.running:
            loop.stop()
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            syncing.cancel()

    # -- DNS SRV -----------------------------------------------------------------------------
    @classmethod
    def from_srv(
        cls,
        domain: str,
        service_name: Optional[str] = None,
        *,
        resolver: Any = None,
        insecure_discovery: bool = True,
        **client_options: Any,
    ) -> "Deferred[Client]":
        """A client of the members named by ``domain``'s DNS SRV records (etcdctl's
        ``--discovery-srv``).

        ``_etcd-client-ssl._tcp.<domain>`` gives ``https://`` endpoints and
        ``_etcd-client._tcp.<domain>`` ``http://`` ones (both are looked up; either may be
        missing); ``service_name`` selects ``_etcd-client-ssl-<name>._tcp.<domain>`` and
        ``_etcd-client-<name>._tcp.<domain>`` (``--discovery-srv-name``). Targets are ordered
        by priority, then weight (heaviest first), https ones first. TLS certificates are
        verified against ``domain`` unless ``server_name`` says otherwise (the SRV records
        themselves are not trusted).

        :param resolver: a ``twisted.names`` ``IResolver`` (the system's by default).
        :param insecure_discovery: accept ``http://`` endpoints (etcdctl's
            ``--insecure-discovery``, on by default); False keeps only ``https://`` ones.
        :param client_options: :class:`~txetcd.Client`'s keyword arguments.

        Fires with the client; fails with :class:`~txetcd.ConnectionFailed` naming the SRV
        names looked up when none gave an endpoint. Arguments are checked at once.
        """
        domain = check_domain(domain)
        service_name = check_service_name(service_name)
        check_bool(insecure_discovery, "insecure_discovery")
        if "endpoints" in client_options:
            raise TypeError("from_srv finds the endpoints: do not pass endpoints=")
        coro = _from_srv(cls, domain, service_name, resolver, insecure_discovery, client_options)
        return Deferred.fromCoroutine(coro)


async def _from_srv(
    cls: Any,
    domain: str,
    service_name: Optional[str],
    resolver: Any,
    insecure: bool,
    options: dict[str, Any],
) -> Any:
    urls: List[str] = []
    errors: List[str] = []
    schemes: Sequence[str] = ("https", "http") if insecure else ("https",)
    for scheme in schemes:
        try:
            urls += await lookup_srv(domain, scheme, service_name=service_name, resolver=resolver)
        except SRVLookupFailed as e:
            errors.append(str(e))
    if not urls:
        raise ConnectionFailed("no etcd endpoint found by DNS SRV: " + "; ".join(errors))
    if any(u.startswith("https://") for u in urls) and options.get("tls") is None:
        options.setdefault("server_name", domain.rstrip("."))
    return cls(urls, **options)
