"""One error hierarchy for everything txetcd raises, rooted at :class:`EtcdError`.

Server errors are translated in one place, :func:`error_from_status`, by a table keyed on etcd's
exact message first and the gRPC status code second (several distinct errors share a code).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "EtcdError",
    "ClientError",
    "ClientClosed",
    "ConnectionFailed",
    "OutcomeUnknown",
    "Timeout",
    "WriteTimeout",
    "ProtocolViolation",
    "RevisionWentBackwards",
    "WatchCancelled",
    "ServerError",
    "Cancelled",
    "InvalidArgument",
    "EmptyKey",
    "KeyNotFound",
    "ValueProvided",
    "LeaseProvided",
    "TooManyOperations",
    "TooLarge",
    "RequestTooLarge",
    "DuplicateKey",
    "OutOfRange",
    "RevisionError",
    "RevisionCompacted",
    "FutureRevision",
    "LeaseNotFound",
    "LeaseExists",
    "LeaseTTLTooLarge",
    "Unavailable",
    "NoLeader",
    "RequestTimedOut",
    "LearnerNotSupported",
    "ResourceExhausted",
    "DatabaseSpaceExceeded",
    "MessageTooLarge",
    "MemberNotFound",
    "MemberExists",
    "PeerURLExists",
    "InvalidPeerURLs",
    "NotEnoughStartedMembers",
    "MemberNotLearner",
    "LearnerNotReady",
    "TooManyLearners",
    "NotLeader",
    "BadLeaderTransferee",
    "UnhealthyCluster",
    "ClusterCorrupt",
    "SnapshotChecksumMismatch",
    "AuthError",
    "AuthFailed",
    "InvalidAuthManagement",
    "NoRootUser",
    "NoRootRole",
    "UserNotFound",
    "UserExists",
    "RoleNotFound",
    "RoleExists",
    "RoleNameEmpty",
    "RoleNotGranted",
    "PermissionNotGiven",
    "PermissionNotGranted",
    "UserNameEmpty",
    "AuthRevisionOld",
    "AuthNotEnabled",
    "InvalidAuthToken",
    "PermissionDenied",
    "WatchPermissionDenied",
    "Unauthenticated",
    "FailedPrecondition",
    "NotFound",
    "Internal",
    "Unimplemented",
    "DeadlineExceeded",
    "ConcurrencyError",
    "LockHeld",
    "LockNotHeld",
    "LockLost",
    "SessionExpired",
    "NotElectionLeader",
    "NoElectionLeader",
    "error_from_status",
    "GRPC_CODE_NAMES",
]

GRPC_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class EtcdError(Exception):
    """The root of every error txetcd raises.

    :ivar code: the gRPC status code (``None`` for errors made on the client side).
    :ivar message: the server's message, or the client's description.
    :ivar payload: extra data about the error (e.g. ``compact_revision``), or ``None``.
    """

    code: Optional[int] = None

    def __init__(
        self, message: str = "", *, code: Optional[int] = None, payload: object = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.payload = payload

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


# -- raised by the client itself ---------------------------------------------------------------


class ClientError(EtcdError):
    """An error made on the client side (no server status behind it)."""


class ClientClosed(ClientError):
    """The client was closed; calls made after (or pending at) ``close()`` fail with this."""


class ConnectionFailed(ClientError, ConnectionError):
    """No connection to etcd could be made or kept (refused, reset, unreachable).

    ``maybe_sent`` is True when a (read) request had been written before the connection broke,
    so the server may have seen it; False when it certainly never left (given at construction).
    """

    def __init__(self, message: str = "", *, maybe_sent: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.maybe_sent = maybe_sent


class OutcomeUnknown(ClientError):
    """A mutation was sent but its answer was lost: it may or may not have been applied.

    txetcd never re-sends such a request by itself; read the key to find out. ``cause`` says
    what went wrong.
    """

    def __init__(
        self, message: str = "", *, cause: Optional[BaseException] = None, **kw: object
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.cause = cause


class Timeout(ClientError, TimeoutError):
    """The call's deadline passed before an answer came."""


class WriteTimeout(Timeout, OutcomeUnknown):
    """A mutation's deadline passed after it was sent: its outcome is unknown."""


class RevisionWentBackwards(ClientError):
    """With ``Client(ordering=True)``: every member asked answered a read from a revision older
    than one this client has already seen (members behind the cluster, e.g. just restarted),
    and no better answer came within the call's deadline.

    :ivar revision: the revision of the answer refused last.
    :ivar seen: the newest revision this client had seen when the call was made.
    """

    def __init__(self, message: str = "", *, revision: int = 0, seen: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.revision = revision
        self.seen = seen


class WatchCancelled(EtcdError):
    """The server cancelled a watch (``reason`` says why, e.g. permission denied)."""

    @property
    def reason(self) -> str:
        return self.message


class ProtocolViolation(ClientError):
    """The server's answer broke the gRPC or HTTP/2 protocol."""


class HTTPStatusError(EtcdError):
    """An HTTP/1.1 stream was answered with a non-2xx status; ``response`` holds its whole body.

    The gateway and v2 layers translate the body (etcd's JSON error) into the right error.
    """

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP status {response.status}", payload=response)
        self.response = response


# -- translated from the server's status -------------------------------------------------------


class ServerError(EtcdError):
    """An error status from the server (``code`` and ``message`` as etcd sent them)."""


class Cancelled(ServerError):
    """CANCELLED (1) from the server."""

    code = 1


class InvalidArgument(ServerError, ValueError):
    """INVALID_ARGUMENT (3)."""

    code = 3


class EmptyKey(InvalidArgument):
    """etcdserver: key is not provided."""


class KeyNotFound(InvalidArgument, KeyError):
    """etcdserver: key not found (``ignore_value``/``ignore_lease`` on a missing key)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ValueProvided(InvalidArgument):
    """etcdserver: value is provided (with ``ignore_value``)."""


class LeaseProvided(InvalidArgument):
    """etcdserver: lease is provided (with ``ignore_lease``)."""


class TooManyOperations(InvalidArgument):
    """etcdserver: too many operations in txn request (over ``--max-txn-ops``)."""


class TooLarge(ServerError):
    """A request etcd refused for its size (catch this one for "value too large"); sending it
    again cannot help, and nothing was written.

    Which one comes depends on the size of the whole request message (key, value and options;
    every operation of a txn): over etcd's ``--max-request-bytes`` (1.5 MiB by default) it is
    :class:`RequestTooLarge`; over gRPC's receive limit, 512 KiB above that (2 MiB by default),
    gRPC refuses it before etcd sees it: :class:`MessageTooLarge`. The same on both transports.
    """


class RequestTooLarge(InvalidArgument, TooLarge):
    """etcdserver: request is too large: the request is over ``--max-request-bytes`` (1.5 MiB
    by default) but within gRPC's receive limit (see :class:`TooLarge`)."""


class DuplicateKey(InvalidArgument):
    """etcdserver: duplicate key given in txn request."""


class DeadlineExceeded(ServerError):
    """DEADLINE_EXCEEDED (4) from the server."""

    code = 4


class NotFound(ServerError):
    """NOT_FOUND (5)."""

    code = 5


class LeaseNotFound(NotFound):
    """etcdserver: requested lease not found."""


class ResourceExhausted(ServerError):
    """RESOURCE_EXHAUSTED (8)."""

    code = 8


class DatabaseSpaceExceeded(ResourceExhausted):
    """etcdserver: mvcc: database space exceeded (the NOSPACE alarm is raised)."""


class MessageTooLarge(ResourceExhausted, TooLarge):
    """grpc: received message larger than max: gRPC's receive limit (``--max-request-bytes``
    + 512 KiB, 2 MiB by default) refused the request before etcd saw it (see
    :class:`TooLarge`)."""


class FailedPrecondition(ServerError):
    """FAILED_PRECONDITION (9)."""

    code = 9


class LeaseExists(FailedPrecondition):
    """etcdserver: lease already exists."""


class OutOfRange(ServerError):
    """OUT_OF_RANGE (11)."""

    code = 11


class RevisionError(OutOfRange):
    """A revision outside the store's history (compacted away, or not reached yet)."""


class RevisionCompacted(RevisionError):
    """etcdserver: mvcc: required revision has been compacted.

    ``compact_revision`` is the store's compaction point when the server told it (watches).
    """

    @property
    def compact_revision(self) -> Optional[int]:
        return self.payload if isinstance(self.payload, int) else None


class FutureRevision(RevisionError):
    """etcdserver: mvcc: required revision is a future revision."""


class LeaseTTLTooLarge(OutOfRange):
    """etcdserver: too large lease TTL."""


class Unimplemented(ServerError):
    """UNIMPLEMENTED (12)."""

    code = 12


class Internal(ServerError):
    """INTERNAL (13), UNKNOWN (2) and other unexpected codes."""

    code = 13


class Unavailable(ServerError):
    """UNAVAILABLE (14)."""

    code = 14


class NoLeader(Unavailable):
    """etcdserver: no leader."""


class RequestTimedOut(Unavailable):
    """etcdserver: request timed out (no leader, or the proposal was not committed in time)."""


class LearnerNotSupported(Unavailable):
    """etcdserver: rpc not supported for learner."""


# -- cluster membership and maintenance -----------------------------------------------------


class MemberNotFound(NotFound):
    """etcdserver: member not found (no member has that ID).

    A :meth:`~txetcd.Client.member_add` can get it too: etcd derives a new member's ID from its
    peer URLs and the time in whole seconds, so re-adding the peer URLs of a member removed in
    the same second computes the removed member's ID. Wait a second and add it again.
    """


class MemberExists(FailedPrecondition):
    """etcdserver: member ID already exist."""


class PeerURLExists(FailedPrecondition):
    """etcdserver: Peer URLs already exists (another member has one of those peer URLs)."""


class InvalidPeerURLs(InvalidArgument):
    """etcdserver: given member URLs are invalid."""


class NotEnoughStartedMembers(FailedPrecondition):
    """etcdserver: re-configuration failed due to not enough started members (the change
    would leave the cluster without a quorum of started members; etcd answers it with
    UNKNOWN, code 2)."""


class MemberNotLearner(FailedPrecondition):
    """etcdserver: can only promote a learner member (the member is a voting member
    already)."""


class LearnerNotReady(FailedPrecondition):
    """etcdserver: can only promote a learner member which is in sync with leader (not
    started yet, or still catching up: try again later)."""


class TooManyLearners(FailedPrecondition):
    """etcdserver: too many learner members in cluster (etcd 3.5 allows one)."""


class NotLeader(FailedPrecondition):
    """etcdserver: not leader (a call that only the leader serves, such as MoveLeader, went to
    a follower)."""


class BadLeaderTransferee(FailedPrecondition):
    """etcdserver: bad leader transferee (MoveLeader to an unknown member or a learner)."""


class UnhealthyCluster(Unavailable):
    """etcdserver: unhealthy cluster (a membership change refused because the cluster would
    lose its quorum of healthy members)."""


class ClusterCorrupt(ServerError):
    """etcdserver: corrupt cluster (the CORRUPT alarm is raised; code DATA_LOSS, 15)."""

    code = 15


class SnapshotChecksumMismatch(ClientError):
    """A snapshot's data does not match the SHA-256 etcd sent after it (or it ended before
    one): the snapshot is not saved."""


class AuthError(ServerError):
    """An authentication or authorisation failure, or a change of users, roles or permissions
    that etcd refused."""


class Unauthenticated(AuthError):
    """UNAUTHENTICATED (16)."""

    code = 16


class InvalidAuthToken(Unauthenticated):
    """etcdserver: invalid auth token (garbage, expired or revoked)."""


class UserNameEmpty(AuthError, InvalidArgument):
    """etcdserver: user name is empty (auth is enabled and no token was sent)."""

    code = 3


class AuthRevisionOld(AuthError, InvalidArgument):
    """etcdserver: revision of auth store is old (the roles changed under the token: log in
    again)."""

    code = 3


class AuthNotEnabled(AuthError, FailedPrecondition):
    """etcdserver: authentication is not enabled (an Authenticate to a server without auth)."""

    code = 9


class PermissionDenied(AuthError, PermissionError):
    """PERMISSION_DENIED (7), e.g. etcdserver: permission denied."""

    code = 7


class WatchPermissionDenied(WatchCancelled, PermissionDenied):
    """etcd refused to create a watch (``permission denied``) although the client had just
    logged in again: the user may not read those keys. Both a :exc:`WatchCancelled` and a
    :exc:`PermissionDenied`."""


class AuthFailed(AuthError, InvalidArgument):
    """etcdserver: authentication failed, invalid user ID or password (an unknown user too);
    also a password given for a user made with ``no_password`` (code 2 from etcd)."""

    code = 3


class InvalidAuthManagement(AuthError, InvalidArgument):
    """etcdserver: invalid auth management: a change that would lock root out (deleting the
    root user or role, revoking the root role from root) while auth is enabled."""

    code = 3


class NoRootUser(AuthError, FailedPrecondition):
    """etcdserver: root user does not exist: add a ``root`` user before enabling auth."""

    code = 9


class NoRootRole(AuthError, FailedPrecondition):
    """etcdserver: root user does not have root role: grant it before enabling auth."""

    code = 9


class UserNotFound(AuthError, FailedPrecondition, KeyError):
    """etcdserver: user name not found."""

    code = 9

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class UserExists(AuthError, FailedPrecondition):
    """etcdserver: user name already exists."""

    code = 9


class RoleNotFound(AuthError, FailedPrecondition, KeyError):
    """etcdserver: role name not found (granting a role that does not exist too)."""

    code = 9

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class RoleExists(AuthError, FailedPrecondition):
    """etcdserver: role name already exists."""

    code = 9


class RoleNameEmpty(AuthError, InvalidArgument):
    """etcdserver: role name is empty."""

    code = 3


class RoleNotGranted(AuthError, FailedPrecondition):
    """etcdserver: role is not granted to the user (revoking a role the user lacks)."""

    code = 9


class PermissionNotGiven(AuthError, InvalidArgument):
    """etcdserver: permission not given (a grant without a permission)."""

    code = 3


class PermissionNotGranted(AuthError, FailedPrecondition):
    """etcdserver: permission is not granted to the role (revoking a permission the role lacks:
    key and range end must match the grant exactly)."""

    code = 9


# -- leases kept alive -------------------------------------------------------------------------


class LeaseLost(EtcdError):
    """A lease can no longer be counted on; the reason of every :attr:`KeepAlive.lost`.

    :ivar lease_id: the lease.
    :ivar cause: the error behind it, if any (e.g. why the keepalive stream broke).
    """

    def __init__(
        self,
        message: str = "",
        *,
        lease_id: int = 0,
        cause: Optional[BaseException] = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.lease_id = lease_id
        self.cause = cause


class LeaseExpired(LeaseLost, LeaseNotFound):
    """The server does not know the lease (any more): it expired, was revoked, or never was.

    etcd answers a keepalive for such a lease with a TTL of 0 rather than an error; this is how
    txetcd reports it. It is a :class:`~txetcd.LeaseNotFound`, like a revoke's answer.
    """


class LeaseKeepAliveTimeout(LeaseLost, Timeout):
    """No refresh of the lease was answered before its deadline: it may have expired already.

    ``cause`` is the last error of the keepalive stream, if there was one.
    """


class LeaseAbandoned(LeaseLost, ClientClosed):
    """The client was closed while it kept the lease alive; the lease now runs out its TTL."""


# -- coordination recipes (txetcd.concurrency) ------------------------------------------------


class ConcurrencyError(EtcdError):
    """A lock, an election or a session of :mod:`txetcd.concurrency` cannot do what was asked."""


class LockHeld(ConcurrencyError):
    """``acquire()`` on a :class:`~txetcd.Lock` that already holds (or is acquiring) it: a Lock
    is not re-entrant."""


class LockNotHeld(ConcurrencyError):
    """``release()`` on a :class:`~txetcd.Lock` that does not hold the lock."""


class LockLost(ConcurrencyError):
    """The lock (or leadership) was held and is no longer: its owner key is gone or its lease
    expired. What a :attr:`~txetcd.Lock.lost` fires with, and how ``release()`` reports it.

    :ivar key: the owner key.
    :ivar cause: the error behind it, if any (a :class:`LeaseLost`).
    """

    def __init__(
        self,
        message: str = "",
        *,
        key: bytes = b"",
        cause: Optional[BaseException] = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.key = key
        self.cause = cause


class SessionExpired(ConcurrencyError):
    """The session's lease was lost before a lock was acquired or a campaign won (the waiter's
    key went with it): the wait ends with this instead of going on forever.

    :ivar cause: the session's :class:`LeaseLost`, if known.
    """

    def __init__(
        self, message: str = "", *, cause: Optional[BaseException] = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.cause = cause


class NotElectionLeader(ConcurrencyError, ServerError):
    """``proclaim``/fenced calls of an election by a candidate that does not lead it (etcd's
    election service says ``election: not leader``). Not the cluster's :class:`NotLeader`."""


class NoElectionLeader(ConcurrencyError, ServerError):
    """Nobody leads the election (etcd's election service says ``election: no leader``). Not
    the cluster's :class:`NoLeader`."""


_BY_MESSAGE: Dict[str, Type[ServerError]] = {
    "etcdserver: key is not provided": EmptyKey,
    "etcdserver: key not found": KeyNotFound,
    "etcdserver: value is provided": ValueProvided,
    "etcdserver: lease is provided": LeaseProvided,
    "etcdserver: too many operations in txn request": TooManyOperations,
    "etcdserver: request is too large": RequestTooLarge,
    "etcdserver: duplicate key given in txn request": DuplicateKey,
    "etcdserver: mvcc: required revision has been compacted": RevisionCompacted,
    "etcdserver: mvcc: required revision is a future revision": FutureRevision,
    "etcdserver: requested lease not found": LeaseNotFound,
    "etcdserver: lease already exists": LeaseExists,
    "etcdserver: too large lease TTL": LeaseTTLTooLarge,
    "etcdserver: mvcc: database space exceeded": DatabaseSpaceExceeded,
    "etcdserver: no space": DatabaseSpaceExceeded,
    "etcdserver: member not found": MemberNotFound,
    "etcdserver: member ID already exist": MemberExists,
    "etcdserver: Peer URLs already exists": PeerURLExists,
    "etcdserver: given member URLs are invalid": InvalidPeerURLs,
    "etcdserver: re-configuration failed due to not enough started members": (
        NotEnoughStartedMembers
    ),
    "etcdserver: can only promote a learner member": MemberNotLearner,
    "etcdserver: can only promote a learner member which is in sync with leader": LearnerNotReady,
    "etcdserver: too many learner members in cluster": TooManyLearners,
    "etcdserver: not leader": NotLeader,
    "etcdserver: bad leader transferee": BadLeaderTransferee,
    "etcdserver: unhealthy cluster": UnhealthyCluster,
    "etcdserver: corrupt cluster": ClusterCorrupt,
    "etcdserver: no leader": NoLeader,
    "etcdserver: request timed out": RequestTimedOut,
    "etcdserver: request timed out, possibly due to previous leader failure": RequestTimedOut,
    "etcdserver: request timed out, possibly due to connection lost": RequestTimedOut,
    "etcdserver: rpc not supported for learner": LearnerNotSupported,
    "etcdserver: invalid auth token": InvalidAuthToken,
    "etcdserver: user name is empty": UserNameEmpty,
    "etcdserver: revision of auth store is old": AuthRevisionOld,
    "auth: revision in header is old": AuthRevisionOld,  # the server's own text, unwrapped
    "etcdserver: authentication is not enabled": AuthNotEnabled,
    "etcdserver: permission denied": PermissionDenied,
    "etcdserver: authentication failed, invalid user ID or password": AuthFailed,
    "auth: authentication failed, password was given for no password user": AuthFailed,
    "etcdserver: invalid auth management": InvalidAuthManagement,
    "etcdserver: root user does not exist": NoRootUser,
    "etcdserver: root user does not have root role": NoRootRole,
    "etcdserver: user name not found": UserNotFound,
    "etcdserver: user name already exists": UserExists,
    "etcdserver: role name not found": RoleNotFound,
    "etcdserver: role name already exists": RoleExists,
    "etcdserver: role name is empty": RoleNameEmpty,
    "etcdserver: role is not granted to the user": RoleNotGranted,
    "etcdserver: permission not given": PermissionNotGiven,
    "etcdserver: permission is not granted to the role": PermissionNotGranted,
    "election: not leader": NotElectionLeader,
    "election: no leader": NoElectionLeader,
}

_BY_CODE: Dict[int, Type[ServerError]] = {
    1: Cancelled,
    2: Internal,
    3: InvalidArgument,
    4: DeadlineExceeded,
    5: NotFound,
    7: PermissionDenied,
    8: ResourceExhausted,
    9: FailedPrecondition,
    11: OutOfRange,
    12: Unimplemented,
    13: Internal,
    14: Unavailable,
    15: ClusterCorrupt,
    16: Unauthenticated,
}

#: server answers that leave a mutation's outcome unknown: the proposal may have been made and
#: may still be committed (timeouts, a leader change or a stop while waiting for the apply)
_UNCERTAIN = (RequestTimedOut, DeadlineExceeded, Cancelled)
_UNCERTAIN_MESSAGES = frozenset(
    {
        "etcdserver: leader changed",
        "etcdserver: server stopped",
        "context deadline exceeded",
        "context canceled",
    }
)


def error_from_status(code: int, message: str, *, mutation: bool = False) -> EtcdError:
    """The exception for a non-OK gRPC status, chosen by etcd's message, then by code.

    For a mutation, a status that leaves the outcome unknown (``request timed out``, ``leader
    changed``, ``server stopped``, ``context deadline exceeded``, DEADLINE_EXCEEDED, CANCELLED)
    comes back as :class:`OutcomeUnknown` with the server's error as its ``cause``.
    """
    cls = _BY_MESSAGE.get(message)
    if cls is None:
        if message.startswith("grpc: received message larger than max"):
            cls = MessageTooLarge
        else:
            cls = _BY_CODE.get(code, Internal)
    err = cls(message, code=code)
    if mutation and (isinstance(err, _UNCERTAIN) or message in _UNCERTAIN_MESSAGES):
        return OutcomeUnknown(
            f"the write's outcome is unknown: {message} (code {GRPC_CODE_NAMES.get(code, code)})",
            cause=err,
            code=code,
        )
    return err
