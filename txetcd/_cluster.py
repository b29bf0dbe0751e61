"""Cluster membership: list, add (as a learner or a voter), remove, update, promote.

:class:`ClusterMethods` is mixed into :class:`txetcd.Client`. Every call goes through the
client's one call path; listing is a read (sent again after a broken connection), every change
of membership a write (never sent twice once it may have been seen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Tuple, Union
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred

from txetcd._args import NOT_GIVEN, check_bool
from txetcd._kv import header_of
from txetcd._methods import MEMBER_ADD, MEMBER_LIST, MEMBER_PROMOTE, MEMBER_REMOVE, MEMBER_UPDATE
from txetcd._proto import rpc_pb2
from txetcd._types import ResponseHeader, _ListRecord, _new, _Record

if TYPE_CHECKING:
    from typing import TypeVar

    from txetcd._transport import Method

    T = TypeVar("T")

__all__ = [
    "ClusterMethods",
    "Member",
    "MemberAddResult",
    "MemberListResult",
    "MemberLike",
    "check_member_id",
    "check_urls",
]

#: URL schemes etcd accepts for peer URLs
_URL_SCHEMES = ("http", "https", "unix", "unixs")


class Member(_Record):
    """One member of the cluster.

    ``id`` is its member ID (an unsigned 64-bit int, often above 2**63); ``name`` and
    ``client_urls`` are empty until the member has started once (see :attr:`started`);
    ``is_learner``: it receives the log but does not vote (promote it with
    :meth:`~txetcd.Client.member_promote`).
    """

    __slots__ = ()
    __match_args__ = _fields = ("id", "name", "peer_urls", "client_urls", "is_learner")
    if TYPE_CHECKING:
        id: int
        name: str
        peer_urls: Tuple[str, ...]
        client_urls: Tuple[str, ...]
        is_learner: bool

    def __new__(
        cls,
        id: int,
        name: str,
        peer_urls: Tuple[str, ...],
        client_urls: Tuple[str, ...],
        is_learner: bool,
    ) -> "Member":
        return _new(cls, (id, name, peer_urls, client_urls, is_learner))

    @property
    def started(self) -> bool:
        """Whether the member has started (etcd knows its name only from then on)."""
        return bool(self.name)


class MemberListResult(_ListRecord[Member]):
    """The cluster's members (after a change: as the change left them), in etcd's order.

    ``for member in result``, ``len(result)``, ``result[0]`` go to ``members``. Cluster answers
    carry no revision: ``header.revision`` is 0.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "members")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        members: Tuple[Member, ...]

    def __new__(cls, header: ResponseHeader, members: Tuple[Member, ...]) -> "MemberListResult":
        return _new(cls, (header, members))

    def by_id(self, member_id: int) -> Member:
        """The member with that ID (``KeyError`` if there is none)."""
        for member in self:
            if member.id == member_id:
                return member
        raise KeyError(member_id)


class MemberAddResult(_ListRecord[Member]):
    """The answer to :meth:`~txetcd.Client.member_add`: the new ``member`` (not started yet: no
    name, no client URLs) and every member now in the cluster (``members``, which the result
    iterates like :class:`MemberListResult`)."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "member", "members")
    _list = 2
    if TYPE_CHECKING:
        header: ResponseHeader
        member: Member
        members: Tuple[Member, ...]

    def __new__(
        cls, header: ResponseHeader, member: Member, members: Tuple[Member, ...]
    ) -> "MemberAddResult":
        return _new(cls, (header, member, members))


#: a member, wherever one is expected: its ID, or a :class:`Member`
MemberLike = Union[int, Member]


def check_member_id(value: object, what: str = "member_id") -> int:
    """A member ID from a :data:`MemberLike`: an unsigned 64-bit int other than 0."""
    if isinstance(value, Member):
        value = value.id
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (or a Member), not {type(value).__name__}")
    if not 0 < value < 2**64:
        raise ValueError(f"{what} must be a member ID (1 to 2**64 - 1), not {value}")
    return value


def check_urls(urls: object, what: str = "peer_urls") -> list[str]:
    """One URL or a non-empty sequence of them, each ``scheme://host:port`` with a scheme etcd
    takes (http, https, unix, unixs)."""
    if isinstance(urls, str):
        urls = [urls]
    elif isinstance(urls, (bytes, bytearray)) or not isinstance(urls, Iterable):
        raise TypeError(f"{what} must be a URL (str) or a list of URLs, not {type(urls).__name__}")
    out = list(urls)
    if not out:
        raise ValueError(f"{what} must name at least one URL")
    for url in out:
        if not isinstance(url, str):
            raise TypeError(f"each of {what} must be a URL (str), not {type(url).__name__}")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in _URL_SCHEMES or not parts.hostname or port is None:
            raise ValueError(
                f"each of {what} must be a URL such as 'http://10.0.0.1:2380' "
                f"(scheme {', '.join(_URL_SCHEMES)}, host and port), not {url!r}"
            )
    return out


def member_of(m: Any) -> Member:
    """A :class:`Member` from etcd's ``Member`` message."""
    return _new(Member, (m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner))


def member_list_result(r: Any) -> MemberListResult:
    return _new(MemberListResult, (header_of(r.header), tuple([member_of(m) for m in r.members])))


def _member_add_result(r: Any) -> MemberAddResult:
    members = tuple([member_of(m) for m in r.members])
    return _new(MemberAddResult, (header_of(r.header), member_of(r.member), members))


class ClusterMethods:
    """The membership calls of :class:`txetcd.Client`."""

    if TYPE_CHECKING:

        def _call(
            self,
            method: Method,
            request: Any,
            decode: Callable[[Any], T],
            *,
            idempotent: bool,
            timeout: Any,
        ) -> "Deferred[T]": ...

    def member_list(
        self, *, linearizable: bool = False, timeout: Any = NOT_GIVEN
    ) -> "Deferred[MemberListResult]":
        """Every member of the cluster, learners and members not started yet included.

        ``linearizable``: answer only once the member serving it has caught up with the leader
        (by default it answers from what it knows, which may lag a change that just happened).
        """
        req = rpc_pb2.MemberListRequest(linearizable=check_bool(linearizable, "linearizable"))
        return self._call(MEMBER_LIST, req, member_list_result, idempotent=True, timeout=timeout)

    def member_add(
        self,
        peer_urls: Union[str, Iterable[str]],
        *,
        is_learner: bool = False,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[MemberAddResult]":
        """Add a member with these peer URLs; then start its etcd with ``--initial-cluster`` naming
        every member and ``--initial-cluster-state existing``.

        ``is_learner``: add it as a learner, which does not vote (and cannot cost the cluster
        its quorum) until :meth:`member_promote` makes it a voting member: the safe way to grow
        a cluster. A voting member added to a cluster counts towards its quorum at once, started
        or not.

        Errors: :class:`~txetcd.PeerURLExists`, :class:`~txetcd.TooManyLearners`,
        :class:`~txetcd.NotEnoughStartedMembers`, :class:`~txetcd.MemberNotFound` (the new ID
        collides with a member removed in the same second: add it again a second later).
        """
        req = rpc_pb2.MemberAddRequest(
            peerURLs=check_urls(peer_urls), isLearner=check_bool(is_learner, "is_learner")
        )
        return self._call(MEMBER_ADD, req, _member_add_result, idempotent=False, timeout=timeout)

    def member_remove(
        self, member_id: MemberLike, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[MemberListResult]":
        """Remove a member (its ID or the :class:`Member`); its etcd stops by itself once it
        learns of it. The result lists the members left.

        Errors: :class:`~txetcd.MemberNotFound`, :class:`~txetcd.UnhealthyCluster` (the removal
        would leave too few started members for a quorum).
        """
        req = rpc_pb2.MemberRemoveRequest(ID=check_member_id(member_id))
        return self._call(MEMBER_REMOVE, req, member_list_result, idempotent=False, timeout=timeout)

    def member_update(
        self,
        member_id: MemberLike,
        peer_urls: Union[str, Iterable[str]],
        *,
        timeout: Any = NOT_GIVEN,
    ) -> "Deferred[MemberListResult]":
        """Change a member's peer URLs (only those: its name and client URLs are its own).

        Errors: :class:`~txetcd.MemberNotFound`, :class:`~txetcd.PeerURLExists`.
        """
        req = rpc_pb2.MemberUpdateRequest(
            ID=check_member_id(member_id), peerURLs=check_urls(peer_urls)
        )
        return self._call(MEMBER_UPDATE, req, member_list_result, idempotent=False, timeout=timeout)

    def member_promote(
        self, member_id: MemberLike, *, timeout: Any = NOT_GIVEN
    ) -> "Deferred[MemberListResult]":
        """Make a learner a voting member.

        Errors: :class:`~txetcd.LearnerNotReady` (not started, or still catching up with the
        leader: try again a little later), :class:`~txetcd.MemberNotLearner` (it votes
        already), :class:`~txetcd.MemberNotFound`.
        """
        req = rpc_pb2.MemberPromoteRequest(ID=check_member_id(member_id))
        return self._call(
            MEMBER_PROMOTE, req, member_list_result, idempotent=False, timeout=timeout
        )
