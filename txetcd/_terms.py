"""Writes in flight across a change of leader, for every transport.

A write sent to a follower is forwarded to the leader; if that leader dies, the follower holds
the write until etcd's own request timeout (about 7 s with default timings) and then answers
"request timed out": the client learns nothing sooner. Every answer carries the member's raft
term, which grows when a new leader is elected. :class:`TermWatch` keeps the highest term seen;
each write in flight remembers the term when it was sent, and once a higher one is seen the write
is ended at once with :class:`~txetcd.OutcomeUnknown` (it may have reached the old leader and be
applied by the new one: only the caller can tell), so writers move on to the new leader. While
writes are in flight a cheap probe (Maintenance/Status: any member answers it at once, without a
leader, and without an auth token, since it runs below the auth layer) asks for the term every
``interval`` seconds, so a new leader is noticed even when nothing else is answered.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Set

from twisted.internet.interfaces import IDelayedCall

from txetcd._proto import rpc_pb2
from txetcd._transport import REQUIRE_LEADER

__all__ = ["PROBE_REQUEST", "TermWatch", "Write", "term_of"]

#: a call any member answers at once, even without a leader and without an auth token (a read
#: would need one): its header carries the term
PROBE_REQUEST = rpc_pb2.StatusRequest()


class Write(Protocol):
    """A write in flight, as :class:`TermWatch` sees it."""

    #: the highest term seen when it was sent (0: none seen yet, so nothing to compare)
    term: Optional[int]

    def superseded(self, term: int) -> None:
        """A new leader (raft term ``term``) was elected since it was sent: end it."""


def term_of(answer: Any) -> int:
    """The raft term in an answer's header (a message or a result), 0 when it has none."""
    try:
        term: int = answer.header.raft_term
    except AttributeError:
        return 0
    return term


class TermWatch:
    """The highest raft term seen, the writes in flight, and the probe (see the module doc).

    :param clock: the ``IReactorTime`` the probe runs on.
    :param probe: sends the probe; its answer must come back through :meth:`saw`.
    :param interval: seconds between probes while writes are in flight.
    """

    def __init__(self, clock: Any, probe: Callable[[], None], interval: float = 0.5) -> None:
        self.clock = clock
        self.probe = probe
        self.interval = interval
        self.term = 0
        self.writes: Set[Write] = set()
        self._timer: Optional[IDelayedCall] = None
        self._busy_since = 0.0  # when self.writes last became non-empty
        self.closed = False
        self.suspect_until = 0.0  # see suspect()

    def saw(self, answer: Any) -> None:
        """Note an answer's term; a higher one than ever seen ends the writes sent before it."""
        try:  # term_of(answer), inline: this runs for every answer
            term: int = answer.header.raft_term
        except AttributeError:
            return
        if term > self.term:
            if self.term:
                self.suspect()  # a new leader: the cluster was without one a moment ago
            self.term = term
            if self.writes:
                for write in [w for w in self.writes if w.term and w.term < term]:
                    self.writes.discard(write)
                    write.superseded(term)

    def sent(self, write: Write) -> None:
        """A write goes out now."""
        write.term = self.term
        writes = self.writes
        if not writes:
            self._busy_since = self.clock.seconds()
        writes.add(write)
        if self._timer is None and not self.closed:
            self._timer = self.clock.callLater(self.interval, self._tick)

    def done(self, write: Write) -> None:
        """A write ended (answered, failed, cancelled). The timer is left to run out: the
        probe goes only once writes have been in flight for ``interval`` without a break, and
        a timer per write (set, then cancelled) would cost more than the writes' bookkeeping."""
        self.writes.discard(write)

    def _tick(self) -> None:
        self._timer = None
        if not self.writes or self.closed:
            return
        due = self._busy_since + self.interval
        now = self.clock.seconds()
        if now + 1e-6 >= due:  # (a clock's float sums may land just short)
            if self.term:
                self.probe()
            due = now + self.interval
        self._timer = self.clock.callLater(due - now, self._tick)

    #: how long (seconds) calls carry ``hasleader`` after a sign of trouble
    SUSPECT_FOR = 30.0

    def suspect(self) -> None:
        """A sign that the cluster may be without a leader (a new term, a lost connection, a "not
        now" answer): for the next :attr:`SUSPECT_FOR` seconds, calls that need the leader carry
        ``hasleader``, so a leaderless member refuses them at once and they wait for the new
        leader. In quiet times they go without it: etcd pays for checking it on every call."""
        self.suspect_until = self.clock.seconds() + self.SUSPECT_FOR

    def metadata(self, metadata: Any) -> Any:
        """``metadata``, less :data:`~txetcd._transport.REQUIRE_LEADER` in quiet times."""
        if metadata is REQUIRE_LEADER and self.clock.seconds() >= self.suspect_until:
            return ()
        return metadata

    def close(self) -> None:
        """Stop probing (no timer left)."""
        self.closed = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
