"""Maintenance: status, alarms, defragment, hash_kv, move_leader, snapshot.

:class:`MaintenanceMethods` is mixed into :class:`txetcd.Client`. Calls that concern one member
(``status(endpoint)``, ``defragment(endpoint)``, ``hash_kv(endpoint)``, and ``move_leader``,
which only the leader serves) go to that member through a short-lived client of that URL alone
with the client's own options (transport, timeouts, clock, TLS, credentials), closed after the
call; with a client of that one URL they go through the client itself.
"""

from __future__ import annotations

import enum
import functools
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    List,
    Optional,
    Tuple,
    Union,
    overload,
)

from twisted.internet.defer import Deferred, gatherResults

from txetcd._args import NOT_GIVEN, check_enum, check_int, check_timeout
from txetcd._cluster import MemberLike, check_member_id
from txetcd._errors import EtcdError, NoLeader
from txetcd._kv import header_of
from txetcd._methods import ALARM, DEFRAGMENT, HASH_KV, MOVE_LEADER, STATUS
from txetcd._proto import rpc_pb2
from txetcd._snapshot import ProgressCallback, SnapshotResult, start_snapshot
from txetcd._types import ResponseHeader, _ListRecord, _new, _Record

if TYPE_CHECKING:
    import os
    from typing import TypeVar

    from txetcd._client import Client
    from txetcd._cluster import MemberListResult
    from txetcd._transport import Method, Transport

    T = TypeVar("T")

__all__ = [
    "MaintenanceMethods",
    "AlarmType",
    "Alarm",
    "AlarmResult",
    "StatusResult",
    "HashKVResult",
    "DefragmentResult",
    "MoveLeaderResult",
    "SnapshotResult",
]

_ZERO_HEADER = ResponseHeader(0, 0, 0, 0)


class AlarmType(enum.IntEnum):
    """An alarm etcd raises (etcd's ``AlarmType``)."""

    NONE = 0
    #: the database reached ``--quota-backend-bytes``: writes fail with
    #: :class:`~txetcd.DatabaseSpaceExceeded` until space is freed (compact, defragment) and the
    #: alarm disarmed
    NOSPACE = 1
    #: the members' data differ: writes fail with :class:`~txetcd.ClusterCorrupt`
    CORRUPT = 2


AlarmName = Union[AlarmType, str, int]


class Alarm(_Record):
    """An alarm raised on a member: ``member_id`` and ``alarm`` (an :class:`AlarmType`)."""

    __slots__ = ()
    __match_args__ = _fields = ("member_id", "alarm")
    if TYPE_CHECKING:
        member_id: int
        alarm: AlarmType

    def __new__(cls, member_id: int, alarm: AlarmType) -> "Alarm":
        return _new(cls, (member_id, alarm))


class AlarmResult(_ListRecord[Alarm]):
    """A sequence of :class:`Alarm` (``alarms``): the alarms raised (:meth:`alarm_list`), the
    one raised (:meth:`alarm_activate`), or those cleared (:meth:`alarm_disarm`); false when
    empty."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "alarms")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        alarms: Tuple[Alarm, ...]

    def __new__(cls, header: ResponseHeader, alarms: Tuple[Alarm, ...]) -> "AlarmResult":
        return _new(cls, (header, alarms))


class StatusResult(_Record):
    """The status of the member at ``endpoint``, as it sees itself and the cluster.

    ``header.member_id`` is the member's ID; ``leader`` the leader's ID (0: it knows of no
    leader); ``version`` its etcd version; ``db_size`` / ``db_size_in_use`` its backend's size
    on disk and the part in use (defragmenting frees the difference); ``raft_index``,
    ``raft_term``, ``raft_applied_index`` its raft state; ``is_learner``; ``errors`` what etcd
    reports as wrong (raised alarms, ``etcdserver: no leader``).

    From :meth:`~txetcd.Client.status` without an endpoint, a member that could not be asked
    comes back as a result too: ``error`` is then the exception (else ``None``), ``header`` is
    ``None``, ``errors`` holds its message and the other fields are empty.
    """

    __slots__ = ()
    __match_args__ = _fields = (
        "endpoint",
        "header",
        "version",
        "db_size",
        "db_size_in_use",
        "leader",
        "raft_index",
        "raft_term",
        "raft_applied_index",
        "is_learner",
        "errors",
        "error",
    )
    if TYPE_CHECKING:
        endpoint: str
        header: Optional[ResponseHeader]
        version: str
        db_size: int
        db_size_in_use: int
        leader: int
        raft_index: int
        raft_term: int
        raft_applied_index: int
        is_learner: bool
        errors: Tuple[str, ...]
        error: Optional[EtcdError]

    def __new__(
        cls,
        endpoint: str,
        header: Optional[ResponseHeader],
        version: str,
        db_size: int,
        db_size_in_use: int,
        leader: int,
        raft_index: int,
        raft_term: int,
        raft_applied_index: int,
        is_learner: bool,
        errors: Tuple[str, ...],
        error: Optional[EtcdError] = None,
    ) -> "StatusResult":
        return _new(
            cls,
            (
                endpoint,
                header,
                version,
                db_size,
                db_size_in_use,
                leader,
                raft_index,
                raft_term,
                raft_applied_index,
                is_learner,
                errors,
                error,
            ),
        )

    @property
    def member_id(self) -> int:
        """The member's ID (0 if it could not be asked)."""
        header = self.header
        return 0 if header is None else header.member_id

    @property
    def is_leader(self) -> bool:
        """Whether this member is the leader."""
        return self.leader != 0 and self.leader == self.member_id


class HashKVResult(_Record):
    """A member's hash of its key-value store up to a revision (:meth:`hash_kv`).

    Members holding the same data at the same revision have the same ``hash``;
    ``compact_revision`` is the member's compaction point, which the hash starts from (-1:
    never compacted).
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "hash", "compact_revision")
    if TYPE_CHECKING:
        header: ResponseHeader
        hash: int
        compact_revision: int

    def __new__(cls, header: ResponseHeader, hash: int, compact_revision: int) -> "HashKVResult":
        return _new(cls, (header, hash, compact_revision))


class DefragmentResult(_Record):
    """The answer to :meth:`defragment`, once the member has finished (etcd 3.5 sends an empty
    header: its fields are 0)."""

    __slots__ = ()
    __match_args__ = _fields = ("header",)
    if TYPE_CHECKING:
        header: ResponseHeader

    def __new__(cls, header: ResponseHeader) -> "DefragmentResult":
        return _new(cls, (header,))


class MoveLeaderResult(_Record):
    """The answer to :meth:`move_leader`: the leader was ``previous`` and is now ``target``
    (etcd 3.5 sends an empty ``header``)."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "previous", "target")
    if TYPE_CHECKING:
        header: ResponseHeader
        previous: int
        target: int

    def __new__(cls, header: ResponseHeader, previous: int, target: int) -> "MoveLeaderResult":
        return _new(cls, (header, previous, target))


# -- decoders ----------------------------------------------------------------------------------


def _status_result(endpoint: str, r: Any) -> StatusResult:
    return _new(
        StatusResult,
        (
            endpoint,
            header_of(r.header),
            r.version,
            r.dbSize,
            r.dbSizeInUse,
            r.leader,
            r.raftIndex,
            r.raftTerm,
            r.raftAppliedIndex,
            r.isLearner,
            tuple(r.errors),
            None,
        ),
    )


def _status_error(endpoint: str, error: EtcdError) -> StatusResult:
    return StatusResult(endpoint, None, "", 0, 0, 0, 0, 0, 0, False, (str(error),), error)


def _alarm_result(r: Any) -> AlarmResult:
    alarms = tuple([_new(Alarm, (a.memberID, AlarmType(a.alarm))) for a in r.alarms])
    return _new(AlarmResult, (header_of(r.header), alarms))


def _hash_kv_result(r: Any) -> HashKVResult:
    return _new(HashKVResult, (header_of(r.header), r.hash, r.compact_revision))


def _defragment_result(r: Any) -> DefragmentResult:
    return _new(DefragmentResult, (header_of(r.header),))


def _check_endpoint(endpoint: object) -> str:
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint must be a client URL (str), not {type(endpoint).__name__}")
    if "://" not in endpoint:
        raise ValueError(
            f"endpoint must be a client URL such as 'http://host:2379', not {endpoint!r}"
        )
    return endpoint


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class MaintenanceMethods:
    """The maintenance calls of :class:`txetcd.Client`."""

    if TYPE_CHECKING:
        _channel: Transport
        clock: Any
        timeout: Optional[float]

        @property
        def endpoints(self) -> List[str]: ...

        def _call(
            self,
            method: Method,
            request: Any,
            decode: Callable[[Any], T],
            *,
            idempotent: bool,
            timeout: Any,
        ) -> "Deferred[T]": ...

        def _sibling(self, url: str) -> Client: ...

        def member_list(
            self, *, linearizable: bool = False, timeout: Any = NOT_GIVEN
        ) -> "Deferred[MemberListResult]": ...

    def _call_at(
        self,
        endpoint: Optional[str],
        method: "Method",
        request: Any,
        decode: Callable[[Any], "T"],
        *,
        idempotent: bool,
        timeout: Any,
    ) -> "Deferred[T]":
        """A call to the member at ``endpoint`` (``None``: wherever the client's calls go)."""
        endpoints = self.endpoints
        if endpoint is None or (len(endpoints) == 1 and _same_url(endpoints[0], endpoint)):
            return self._call(method, request, decode, idempotent=idempotent, timeout=timeout)
        sibling = self._sibling(endpoint)
        d = sibling._call(method, request, decode, idempotent=idempotent, timeout=timeout)

        def close(result: Any) -> Any:
            return sibling.close().addBoth(lambda _: result)

        return d.addBoth(close)

    # -- status --------------------------------------------------------------------------------
    @overload
    def status(self, endpoint: str, *, timeout: Any = NOT_GIVEN) -> "Deferred[StatusResult]": ...

    @overload
    def status(
        self, endpoint: None = None, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[Tuple[StatusResult, ...]]": ...

    def status(
        self, endpoint: Optional[str] = None, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[Any]":
        """The status of one member, or of every endpoint of the client.

        ``status(url)`` fires with the :class:`StatusResult` of the member at ``url`` (any
        member's client URL, not only the client's endpoints), or fails with why it could not
        be asked. ``status()`` fires with a tuple of one :class:`StatusResult` per endpoint of
        the client, in order, once every one has answered or failed: a member that could not
        be asked is a result whose ``error`` says why, so one member down does not fail the
        whole call.
        """
        if timeout is not NOT_GIVEN:
            check_timeout(timeout)
        req = rpc_pb2.StatusRequest()
        if endpoint is not None:
            url = _check_endpoint(endpoint)
            decode = functools.partial(_status_result, url)
            return self._call_at(url, STATUS, req, decode, idempotent=True, timeout=timeout)
        endpoints = self.endpoints
        if len(endpoints) == 1:
            calls = [self._one_status(None, endpoints[0], req, timeout)]
        else:
            calls = [self._one_status(url, url, req, timeout) for url in endpoints]
        return gatherResults(calls).addCallback(tuple)

    def _one_status(
        self, endpoint: Optional[str], shown: str, req: Any, timeout: Any
    ) -> "Deferred[StatusResult]":
        decode = functools.partial(_status_result, shown)
        d = self._call_at(endpoint, STATUS, req, decode, idempotent=True, timeout=timeout)

        def as_data(failure: Any) -> StatusResult:
            failure.trap(EtcdError)
            return _status_error(shown, failure.value)

        return d.addErrback(as_data)

    # -- alarms --------------------------------------------------------------------------------
    def alarm_list(self, *, timeout: Any = NOT_GIVEN) -> "Deferred[AlarmResult]":
        """Every alarm raised in the cluster (false when none is)."""
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        return self._call(ALARM, req, _alarm_result, idempotent=True, timeout=timeout)

    def alarm_activate(
        self,
        member_id: MemberLike,
        alarm: AlarmName = AlarmType.NOSPACE,
        *,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[AlarmResult]":
        """Raise an alarm on a member, as etcd does when it runs out of space (``"nospace"``, the
        default) or finds its data corrupt (``"corrupt"``): for tests and drills. The result
        lists the alarm raised."""
        kind = check_enum(alarm, AlarmType, "alarm")
        if kind == AlarmType.NONE:
            raise ValueError("alarm must be nospace or corrupt to activate, not none")
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE,
            memberID=check_member_id(member_id),
            alarm=AlarmType(kind).name,
        )
        return self._call(ALARM, req, _alarm_result, idempotent=False, timeout=timeout)

    def alarm_disarm(
        self,
        member_id: MemberLike = 0,
        alarm: AlarmName = AlarmType.NONE,
        *,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[AlarmResult]":
        """Clear alarms; the result lists those cleared (false when none matched).

        With both ``member_id`` and ``alarm`` given, that one alarm; ``member_id=0`` means any
        member and ``alarm="none"`` any alarm, so ``alarm_disarm()`` clears every alarm (the
        alarms are listed first, then each cleared, as ``etcdctl alarm disarm`` does). Clear a
        NOSPACE alarm only once space was freed (:meth:`~txetcd.Client.compact`, then
        :meth:`defragment` every member), or etcd raises it again.
        """
        member = 0 if type(member_id) is int and member_id == 0 else check_member_id(member_id)
        kind = AlarmType(check_enum(alarm, AlarmType, "alarm"))
        if timeout is not NOT_GIVEN:
            check_timeout(timeout)
        if member and kind != AlarmType.NONE:
            return self._deactivate(Alarm(member, kind), timeout)
        return Deferred.fromCoroutine(self._disarm_matching(member, kind, timeout))

    def _deactivate(self, alarm: Alarm, timeout: Any) -> "Deferred[AlarmResult]":
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE,
            memberID=alarm.member_id,
            alarm=alarm.alarm.name,
        )
        return self._call(ALARM, req, _alarm_result, idempotent=False, timeout=timeout)

    async def _disarm_matching(self, member: int, kind: AlarmType, timeout: Any) -> AlarmResult:
        raised = await self.alarm_list(timeout=timeout)
        header = raised.header
        cleared: List[Alarm] = []
        for alarm in raised:
            if member and alarm.member_id != member:
                continue
            if kind != AlarmType.NONE and alarm.alarm != kind:
                continue
            result = await self._deactivate(alarm, timeout)
            header = result.header
            cleared.extend(result)
        return AlarmResult(header, tuple(cleared))

    # -- one member's backend ------------------------------------------------------------------
    def defragment(
        self, endpoint: Optional[str] = None, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[DefragmentResult]":
        """Defragment the backend of the member at ``endpoint`` (``None``: the member the
        client's calls go to), giving the space that compaction freed back to the file system;
        fires once it is done. Defragment one member at a time: it blocks the member's reads
        and writes meanwhile. With a large database, give a ``timeout`` to match.
        """
        url = None if endpoint is None else _check_endpoint(endpoint)
        req = rpc_pb2.DefragmentRequest()
        return self._call_at(
            url, DEFRAGMENT, req, _defragment_result, idempotent=False, timeout=timeout
        )

    def hash_kv(
        self, endpoint: Optional[str] = None, revision: int = 0, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[HashKVResult]":
        """The hash of the key-value store of the member at ``endpoint`` (``None``: the member
        the client's calls go to) up to ``revision`` (0: the latest): compare members' hashes
        at one revision to check that they hold the same data.

        gRPC only: etcd's JSON gateway does not route HashKV, so with ``transport="gateway"``
        it fails with :class:`~txetcd.Unimplemented`.
        """
        url = None if endpoint is None else _check_endpoint(endpoint)
        req = rpc_pb2.HashKVRequest(revision=check_int(revision, "revision"))
        return self._call_at(url, HASH_KV, req, _hash_kv_result, idempotent=True, timeout=timeout)

    # -- leadership ----------------------------------------------------------------------------
    def move_leader(
        self, target_id: MemberLike, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[MoveLeaderResult]":
        """Hand the leadership to the member ``target_id`` (a voting member), and fire once it
        has it.

        Only the leader takes this call: the leader is found with :meth:`status` of the client's
        endpoints (and, if none of them is the leader, its client URL with
        :meth:`~txetcd.Client.member_list`), and the call goes to it. Moving to the leader
        itself changes nothing. ``timeout`` applies to each of these calls.

        Errors: :class:`~txetcd.BadLeaderTransferee` (no such voting member),
        :class:`~txetcd.NotLeader` (the leadership moved meanwhile), :class:`~txetcd.NoLeader`
        (no member reachable knows a leader).
        """
        target = check_member_id(target_id, "target_id")
        if timeout is not NOT_GIVEN:
            check_timeout(timeout)
        return Deferred.fromCoroutine(self._move_leader(target, timeout))

    async def _move_leader(self, target: int, timeout: Any) -> MoveLeaderResult:
        url, leader = await self._find_leader(timeout)
        req = rpc_pb2.MoveLeaderRequest(targetID=target)

        def decode(r: Any) -> MoveLeaderResult:
            return _new(MoveLeaderResult, (header_of(r.header), leader, target))

        return await self._call_at(url, MOVE_LEADER, req, decode, idempotent=False, timeout=timeout)

    async def _find_leader(self, timeout: Any) -> Tuple[str, int]:
        """(client URL, member ID) of the leader, as the client's endpoints see it."""
        statuses = await self.status(timeout=timeout)
        answered = [s for s in statuses if s.error is None]
        if not answered:
            error = statuses[0].error
            assert error is not None
            raise error
        leader = next((s.leader for s in answered if s.leader), 0)
        if not leader:
            raise NoLeader("etcdserver: no leader (no member asked knows one)", code=14)
        for s in answered:
            if s.member_id == leader:
                return s.endpoint, leader
        for member in await self.member_list(timeout=timeout):
            if member.id == leader and member.client_urls:
                return member.client_urls[0], leader
        raise NoLeader(f"the leader {leader:x} has no client URL", code=14)

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(
        self,
        file_or_path: Union[str, "os.PathLike[str]", Any],
        *,
        progress: Optional[ProgressCallback] = None,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[SnapshotResult]":
        """Save a snapshot of the backend of the member the client's calls go to.

        ``file_or_path``: a path, or a binary file object open for writing. A path is written
        through a temporary file in the same directory, renamed to it once the whole snapshot
        has arrived and its SHA-256 (which etcd sends after the data, and which stays at the
        end of the file, as ``etcdctl snapshot save`` leaves it) matched; on any failure the
        temporary file is removed and nothing is at the path. A file object gets the data as
        it comes (clean it up yourself on failure).

        ``progress(received, total)`` is called after each chunk with the bytes saved so far
        and the size etcd announced (an exception it raises ends the snapshot with that
        exception). ``timeout``: seconds the stream may stay silent before the snapshot fails
        with :class:`~txetcd.Timeout` (not a limit on the whole transfer; ``None``: no limit).

        Fails with :class:`~txetcd.SnapshotChecksumMismatch` when the data do not match the
        checksum. A large database takes a while: etcd reads it whole.
        """
        idle = self.timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        return start_snapshot(self._channel, self.clock, file_or_path, progress, idle)
