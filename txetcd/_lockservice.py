"""etcd's server-side lock and election services (v3lock, v3election) as plain client calls.

:class:`LockServiceMethods` is mixed into :class:`txetcd.Client`. These calls block on the
server (``lock`` until acquired, ``campaign`` until elected), so give them a ``timeout``, and
always pass a lease the client keeps alive: with lease 0 etcd grants a 60 s lease nobody
refreshes. The recipes in :mod:`txetcd.concurrency` do the same on the KV API, with fencing
and loss detection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

from twisted.internet.defer import Deferred

from txetcd._args import NOT_GIVEN, key_bytes, to_bytes
from txetcd._kv import header_of, kv_of
from txetcd._lease import LeaseLike, check_lease_id
from txetcd._methods import CAMPAIGN, LEADER, LOCK, OBSERVE, PROCLAIM, RESIGN, UNLOCK
from txetcd._proto import v3election_pb2, v3lock_pb2
from txetcd._signal import Signal
from txetcd._types import KeyValue, ResponseHeader

if TYPE_CHECKING:
    from typing import TypeVar

    from txetcd._transport import Method, Stream, Transport

    T = TypeVar("T")

__all__ = ["LockServiceMethods", "LockResult", "LeaderKey", "CampaignResult", "LeaderResult"]


class LockResult(NamedTuple):
    """The answer to :meth:`~LockServiceMethods.lock`: the owner ``key`` (give it to
    ``unlock``); its create revision is the fencing token."""

    header: ResponseHeader
    key: bytes


class LeaderKey(NamedTuple):
    """A candidate's key in an election (what ``proclaim`` and ``resign`` take back)."""

    name: bytes
    key: bytes
    rev: int
    lease: int


class CampaignResult(NamedTuple):
    """The answer to :meth:`~LockServiceMethods.campaign`: we lead, as ``leader``."""

    header: ResponseHeader
    leader: LeaderKey


class LeaderResult(NamedTuple):
    """An election's leader: its key and value (``kv``)."""

    header: ResponseHeader
    kv: KeyValue


def _lock_result(r: Any) -> LockResult:
    return LockResult(header_of(r.header), r.key)


def _header(r: Any) -> ResponseHeader:
    return header_of(r.header)


def _campaign_result(r: Any) -> CampaignResult:
    leader = r.leader
    return CampaignResult(
        header_of(r.header), LeaderKey(leader.name, leader.key, leader.rev, leader.lease)
    )


def _leader_result(r: Any) -> LeaderResult:
    return LeaderResult(header_of(r.header), kv_of(r.kv))


def _leader_pb(leader: LeaderKey) -> Any:
    if not isinstance(leader, LeaderKey):
        raise TypeError(f"leader must be a LeaderKey (from campaign), not {type(leader).__name__}")
    return v3election_pb2.LeaderKey(
        name=leader.name, key=leader.key, rev=leader.rev, lease=leader.lease
    )


class Observation:
    """An open ``observe`` stream of the election service: ``on_leader`` gets each
    :class:`LeaderResult`; :attr:`done` fires when it ends (``None`` after :meth:`cancel`)."""

    def __init__(self) -> None:
        self._done: Signal[None] = Signal()
        self._stream: Optional[Stream] = None
        self._cancelled = False

    @property
    def done(self) -> "Deferred[None]":
        """Fires with ``None`` once cancelled, or fails with why the stream ended."""
        return self._done.wait()

    def cancel(self) -> None:
        """Close the stream."""
        self._cancelled = True
        if self._stream is not None and not self._stream.ended:
            self._stream.cancel()

    def _closed(self, error: Optional[BaseException]) -> None:
        from twisted.python.failure import Failure

        if error is None or self._cancelled:
            self._done.fire(None)
        else:
            self._done.fire(Failure(error))  # type: ignore[no-untyped-call]


class LockServiceMethods:
    """The lock and election service calls of :class:`txetcd.Client`."""

    if TYPE_CHECKING:
        _channel: Transport

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

    def lock(
        self, name: Union[bytes, str], lease: LeaseLike, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[LockResult]":
        """Take the lock ``name`` with etcd's lock service, holding it with ``lease``; fires
        once acquired (the server waits for earlier holders). Cancelling (or the timeout)
        withdraws the waiter: etcd deletes its key."""
        req = v3lock_pb2.LockRequest(name=key_bytes(name, "name"), lease=check_lease_id(lease))
        return self._call(LOCK, req, _lock_result, idempotent=False, timeout=timeout, leader=True)

    def unlock(
        self, key: Union[bytes, str], *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[ResponseHeader]":
        """Release a lock taken with :meth:`lock`, by its owner ``key`` (unfenced: it deletes
        the key whoever holds it; a missing key is no error)."""
        req = v3lock_pb2.UnlockRequest(key=key_bytes(key))
        return self._call(UNLOCK, req, _header, idempotent=False, timeout=timeout, leader=True)

    def campaign(
        self,
        name: Union[bytes, str],
        lease: LeaseLike,
        value: Union[bytes, str],
        *,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[CampaignResult]":
        """Campaign in election ``name`` with ``value``; fires once elected."""
        req = v3election_pb2.CampaignRequest(
            name=key_bytes(name, "name"),
            lease=check_lease_id(lease),
            value=to_bytes(value, "value"),
        )
        return self._call(
            CAMPAIGN, req, _campaign_result, idempotent=False, timeout=timeout, leader=True
        )

    def proclaim(
        self, leader: LeaderKey, value: Union[bytes, str], *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[ResponseHeader]":
        """Change the leader's value; :class:`~txetcd.NotElectionLeader` if ``leader`` no
        longer leads."""
        req = v3election_pb2.ProclaimRequest(
            leader=_leader_pb(leader), value=to_bytes(value, "value")
        )
        return self._call(PROCLAIM, req, _header, idempotent=False, timeout=timeout, leader=True)

    def leader(
        self, name: Union[bytes, str], *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[LeaderResult]":
        """The leader of election ``name``; :class:`~txetcd.NoElectionLeader` if none."""
        req = v3election_pb2.LeaderRequest(name=key_bytes(name, "name"))
        return self._call(
            LEADER, req, _leader_result, idempotent=True, timeout=timeout, leader=True
        )

    def resign(self, leader: LeaderKey, *, timeout: Any = NOT_GIVEN) -> "Deferred[ResponseHeader]":
        """Give up leadership (deletes the leader key; resigning twice is no error)."""
        req = v3election_pb2.ResignRequest(leader=_leader_pb(leader))
        return self._call(RESIGN, req, _header, idempotent=False, timeout=timeout, leader=True)

    def observe(
        self, name: Union[bytes, str], on_leader: Callable[[LeaderResult], Any]
    ) -> Observation:
        """Follow election ``name`` with the election service's stream: ``on_leader`` gets the
        current leader, each proclaim and each new leader. The stream does not resume after a
        break (its ``done`` fails then); :meth:`txetcd.concurrency.Election.observe` does."""
        if not callable(on_leader):
            raise TypeError("on_leader must be callable")
        req = v3election_pb2.LeaderRequest(name=key_bytes(name, "name"))
        observation = Observation()

        def on_message(resp: Any) -> None:
            on_leader(_leader_result(resp))

        stream = self._channel.stream(OBSERVE, on_message, observation._closed)
        observation._stream = stream
        stream.send(req, end=True)
        return observation
