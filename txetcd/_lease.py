"""Leases: grant, revoke, time-to-live, list, refresh; the client side of the keepalive loop.

:class:`LeaseMethods` is mixed into :class:`txetcd.Client`. Its :meth:`~LeaseMethods.keepalive`
hands leases to the client's keepalive loop (:mod:`txetcd._keepalive`), which keeps any number
of them alive over one stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._args import NOT_GIVEN, check_bool, check_int
from txetcd._errors import LeaseExpired
from txetcd._keepalive import (
    KeepAlive,
    LeaseKeepAliveResult,
    _KeepAliveHub,
)
from txetcd._kv import header_of
from txetcd._methods import (
    LEASE_GRANT,
    LEASE_KEEPALIVE,
    LEASE_LEASES,
    LEASE_REVOKE,
    LEASE_TIME_TO_LIVE,
)
from txetcd._proto import rpc_pb2
from txetcd._types import ResponseHeader, _ListRecord, _new, _Record

if TYPE_CHECKING:
    from typing import TypeVar

    from txetcd._transport import Method, Transport

    T = TypeVar("T")

__all__ = [
    "LeaseMethods",
    "LeaseGrantResult",
    "LeaseRevokeResult",
    "LeaseTimeToLiveResult",
    "LeasesResult",
    "LeaseLike",
    "check_lease_id",
    "lease_id_of",
    "check_ttl",
]


_NOT_GIVEN = NOT_GIVEN


# -- results -----------------------------------------------------------------------------------


class LeaseGrantResult(_Record):
    """A granted lease: its ``id`` and the ``ttl`` the server granted, in seconds.

    ``ttl`` may be more than was asked for: the server raises TTLs below its minimum (2 s with
    etcd's default timings) without saying so. Give the result itself wherever a lease is
    expected (``put(..., lease_id=grant)``, ``keepalive(grant)``, ``revoke(grant)``).
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "id", "ttl")
    if TYPE_CHECKING:
        header: ResponseHeader
        id: int
        ttl: int

    def __new__(cls, header: ResponseHeader, id: int, ttl: int) -> "LeaseGrantResult":
        return _new(cls, (header, id, ttl))


class LeaseRevokeResult(_Record):
    """The answer to a revoke; the lease's keys were deleted at ``header.revision``."""

    __slots__ = ()
    __match_args__ = _fields = ("header",)
    if TYPE_CHECKING:
        header: ResponseHeader

    def __new__(cls, header: ResponseHeader) -> "LeaseRevokeResult":
        return _new(cls, (header,))


class LeaseTimeToLiveResult(_Record):
    """What the server knows of a lease.

    ``ttl`` is the number of seconds left, or -1 when the lease does not exist (expired, revoked
    or never granted: etcd does not tell these apart, and answers without an error).
    ``granted_ttl`` is the TTL it was granted with (0 when unknown); ``keys`` the keys attached
    to it, unsorted, when they were asked for.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "id", "ttl", "granted_ttl", "keys")
    if TYPE_CHECKING:
        header: ResponseHeader
        id: int
        ttl: int
        granted_ttl: int
        keys: Tuple[bytes, ...]

    def __new__(
        cls, header: ResponseHeader, id: int, ttl: int, granted_ttl: int, keys: Tuple[bytes, ...]
    ) -> "LeaseTimeToLiveResult":
        return _new(cls, (header, id, ttl, granted_ttl, keys))


class LeasesResult(_ListRecord[int]):
    """Every lease the server holds: a sequence of their IDs (``leases``), unsorted.

    ``for lease_id in result``, ``len(result)`` and ``lease_id in result`` go to ``leases``.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "leases")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        leases: Tuple[int, ...]

    def __new__(cls, header: ResponseHeader, leases: Tuple[int, ...]) -> "LeasesResult":
        return _new(cls, (header, leases))


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


class _HasLeaseId(Protocol):
    @property
    def lease_id(self) -> Optional[int]: ...


#: a lease, wherever one is expected: its ID, a result that names it (:class:`LeaseGrantResult`,
#: :class:`LeaseTimeToLiveResult`, :class:`~txetcd.LeaseKeepAliveResult`: ``.id``), or what holds
#: it (:class:`~txetcd.KeepAlive`, :class:`~txetcd.Session`: ``.lease_id``)
LeaseLike = Union[int, _HasId, _HasLeaseId]

_ID_RESULTS = (LeaseGrantResult, LeaseTimeToLiveResult, LeaseKeepAliveResult)


# -- the client methods ------------------------------------------------------------------------


def lease_id_of(lease: object, what: str = "lease_id") -> object:
    """The ID of a :data:`LeaseLike` (anything else is returned as it is, for the int check).

    A lease's holder that has none (a :class:`~txetcd.Session` not started yet) is a
    ``ValueError``.
    """
    if type(lease) is int:
        return lease
    if isinstance(lease, _ID_RESULTS):
        return lease.id
    lease_id = getattr(lease, "lease_id", lease)
    if lease_id is None and lease is not None:
        raise ValueError(f"{what}: the {type(lease).__name__} holds no lease (yet)")
    return lease_id


def check_lease_id(value: object, what: str = "lease_id") -> int:
    """A lease ID from a :data:`LeaseLike`: a signed 64-bit int other than 0 (0 means "no
    lease")."""
    lease_id = check_int(lease_id_of(value, what), what, minimum=None)
    if lease_id == 0:
        raise ValueError(f"{what} must not be 0 (0 means no lease)")
    return lease_id


def check_ttl(value: object, what: str = "ttl") -> int:
    """A TTL in whole seconds, at least 1."""
    return check_int(value, what, minimum=1)


def _grant_result(r: Any) -> LeaseGrantResult:
    return _new(LeaseGrantResult, (header_of(r.header), r.ID, r.TTL))


def _revoke_result(r: Any) -> LeaseRevokeResult:
    return _new(LeaseRevokeResult, (header_of(r.header),))


def _time_to_live_result(r: Any) -> LeaseTimeToLiveResult:
    return _new(
        LeaseTimeToLiveResult,
        (header_of(r.header), r.ID, r.TTL, r.grantedTTL, tuple(r.keys)),
    )


def _leases_result(r: Any) -> LeasesResult:
    return _new(LeasesResult, (header_of(r.header), tuple([s.ID for s in r.leases])))


def _keepalive_result(r: Any) -> LeaseKeepAliveResult:
    return LeaseKeepAliveResult(header_of(r.header), r.ID, r.TTL)


def _alive(lease_id: int) -> Callable[[LeaseKeepAliveResult], LeaseKeepAliveResult]:
    def check(result: LeaseKeepAliveResult) -> LeaseKeepAliveResult:
        if result.ttl <= 0:
            raise LeaseExpired(
                f"lease {lease_id} expired or was revoked (the server does not know it)",
                lease_id=lease_id,
            )
        return result

    return check


class LeaseMethods:
    """The lease calls of :class:`txetcd.Client` and its keepalive loop."""

    if TYPE_CHECKING:
        _channel: Transport
        clock: Any
        timeout: Optional[float]

        def _call(
            self,
            method: Method,
            request: Any,
            decode: Callable[[Any], T],
            *,
            idempotent: bool,
            timeout: Any,
            leader: bool = False,
        ) -> "Deferred[T]": ...

    _lease_hub: Optional[_KeepAliveHub] = None

    def _lease_timeout(self, timeout: Any) -> Any:
        return self.timeout if timeout is _NOT_GIVEN else timeout

    def grant(
        self,
        ttl: int,
        *,
        lease_id: Optional[int] = None,
        timeout: Any = _NOT_GIVEN,
        id: Optional[int] = None,
    ) -> "Deferred[LeaseGrantResult]":
        """Grant a lease of ``ttl`` seconds; the server picks its ID unless ``lease_id`` is
        given (``id=``, the old spelling, still works).

        The result's ``ttl`` is what the server granted: it raises TTLs below its minimum.
        Errors: :class:`~txetcd.LeaseExists` (the ID is in use),
        :class:`~txetcd.LeaseTTLTooLarge`. A grant is a write: it is not sent again once it may
        have reached the server.
        """
        req = rpc_pb2.LeaseGrantRequest(TTL=check_ttl(ttl))
        if id is not None:
            if lease_id is not None:
                raise TypeError("give lease_id or id (its old spelling), not both")
            lease_id = id
        if lease_id is not None:
            req.ID = check_lease_id(lease_id)
        return self._call(
            LEASE_GRANT,
            req,
            _grant_result,
            idempotent=False,
            timeout=self._lease_timeout(timeout),
            leader=True,
        )

    def revoke(
        self, lease_id: LeaseLike, *, timeout: Any = _NOT_GIVEN
    ) -> "Deferred[LeaseRevokeResult]":
        """Revoke a lease (its ID, or what holds it: see :meth:`put`): every key attached to it is
        deleted, in one revision.

        Fails with :class:`~txetcd.LeaseNotFound` when the lease does not exist (any more).
        """
        req = rpc_pb2.LeaseRevokeRequest(ID=check_lease_id(lease_id))
        return self._call(
            LEASE_REVOKE,
            req,
            _revoke_result,
            idempotent=False,
            timeout=self._lease_timeout(timeout),
            leader=True,
        )

    def time_to_live(
        self, lease_id: LeaseLike, *, keys: bool = False, timeout: Any = _NOT_GIVEN
    ) -> "Deferred[LeaseTimeToLiveResult]":
        """How long a lease has left (``ttl`` -1: no such lease); ``keys``: list its keys too."""
        req = rpc_pb2.LeaseTimeToLiveRequest(
            ID=check_lease_id(lease_id), keys=check_bool(keys, "keys")
        )
        return self._call(
            LEASE_TIME_TO_LIVE,
            req,
            _time_to_live_result,
            idempotent=True,
            timeout=self._lease_timeout(timeout),
            leader=True,
        )

    def leases(self, *, timeout: Any = _NOT_GIVEN) -> "Deferred[LeasesResult]":
        """The IDs of every lease the server holds (unsorted)."""
        return self._call(
            LEASE_LEASES,
            rpc_pb2.LeaseLeasesRequest(),
            _leases_result,
            idempotent=True,
            timeout=self._lease_timeout(timeout),
            leader=True,
        )

    def keepalive_once(
        self, lease_id: LeaseLike, *, timeout: Any = _NOT_GIVEN
    ) -> "Deferred[LeaseKeepAliveResult]":
        """Refresh a lease once: its countdown restarts at its full TTL.

        Fails with :class:`LeaseExpired` (a :class:`~txetcd.LeaseNotFound`) when the server
        does not know the lease. Safe to send again, so it is retried like a read.
        """
        lease_id = check_lease_id(lease_id)
        req = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)
        # One request on the bidi method, then half-close: one answer, then status OK.
        d = self._call(
            LEASE_KEEPALIVE,
            req,
            _keepalive_result,
            idempotent=True,
            timeout=self._lease_timeout(timeout),
            leader=True,
        )
        return d.addCallback(_alive(lease_id))

    def keepalive(self, lease_id: LeaseLike, ttl: Optional[int] = None) -> KeepAlive:
        """Keep a lease alive until :meth:`KeepAlive.stop` or until it is lost.

        A refresh is sent at once, then a third of the TTL after each answer, on the client's
        clock; every kept lease of the client shares one stream. ``ttl`` is the lease's TTL if
        known: it sets the first deadline; given a :class:`LeaseGrantResult`
        (``client.keepalive(await client.grant(10))``) its ``ttl`` is used. Otherwise the first
        answer must come within the client's timeout. Watch the handle's ``lost`` Deferred. Not
        a Deferred itself: the handle is returned at once.
        """
        if ttl is None and isinstance(lease_id, LeaseGrantResult):
            ttl = lease_id.ttl
        lease = check_lease_id(lease_id)
        if ttl is not None:
            ttl = check_ttl(ttl)
        hub = self._lease_hub
        if hub is None or hub.closed:
            hub = self._lease_hub = _KeepAliveHub(
                self._channel, self.clock, self.timeout if self.timeout else 30.0
            )
        return hub.add(lease, ttl)

    def _lease_hub_close(self) -> None:
        """Stop the keepalive loop: each kept lease's ``lost`` fires with LeaseAbandoned."""
        hub = self._lease_hub
        if hub is not None:
            hub.close()
