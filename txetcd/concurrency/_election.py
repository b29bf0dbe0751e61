"""Election: leader election on a :class:`~txetcd.Session` (Go's ``concurrency.Election``)."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from txetcd._args import key_bytes, to_bytes
from txetcd._errors import LockLost, NoElectionLeader, NotElectionLeader
from txetcd._signal import Signal
from txetcd._txn import Compare, CreateRevision, Put
from txetcd._types import EventType, KeyValue, WatchBatch
from txetcd.concurrency._common import Guard, resending
from txetcd.concurrency._queue import enqueue, fenced_delete, first_of, wait_turn, withdraw
from txetcd.concurrency._session import Session

__all__ = ["Election", "Observer"]


class Election:
    """Leader election named ``name`` among sessions::

        election = Election(session, "service/leader")
        await election.campaign(b"node-1")      # fires once we lead
        await election.proclaim(b"node-1 v2")   # only the leader may
        await election.resign()

    Candidates are served in the order they campaigned; the candidates of one client share one
    watch of the election's deletes, and a resignation hands leadership to the next with no
    further request.
    The leader's key, ``name/<lease in hex>``, lives on the session's lease: if the session is
    lost, leadership goes with it (:attr:`lost` fires). :meth:`is_leader` is a compare that
    fences txns on leadership.

    :ivar key: our candidate key while campaigning or leading (``None`` otherwise).
    :ivar revision: its create revision (a fencing token), or ``None``.
    """

    def __init__(self, session: Session, name: Union[bytes, str]) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"session must be a txetcd.Session, not {type(session).__name__}")
        self.session = session
        self.client: Any = session.client
        self.name = key_bytes(name, "name")
        self.prefix = self.name + b"/"
        self.key: Optional[bytes] = None
        self.revision: Optional[int] = None
        self._guard: Optional[Guard] = None
        self._campaigning = False
        self._lost: Signal[LockLost] = Signal()

    def __repr__(self) -> str:
        state = "leader" if self.leading else "campaigning" if self._campaigning else "idle"
        return f"<Election {self.name!r} {state} revision={self.revision}>"

    @property
    def leading(self) -> bool:
        """True while we lead (as far as we know: see :attr:`lost`)."""
        return self._guard is not None and not self._guard.is_lost

    @property
    def lost(self) -> "Deferred[LockLost]":
        """Fires, with a :class:`~txetcd.LockLost`, if leadership is lost while we lead (not
        on :meth:`resign`)."""
        return self._lost.wait()

    def is_leader(self) -> Compare:
        """A compare that holds only while we lead: fences a txn on leadership."""
        if self.key is None or self.revision is None:
            raise NotElectionLeader(f"not a candidate in election {self.name!r}")
        return CreateRevision(self.key) == self.revision

    def campaign(self, value: Union[bytes, str]) -> "Deferred[Election]":
        """Stand with ``value``; fires with the election once we lead. Cancelling it removes
        our key; if the session is lost first it fails with :class:`~txetcd.SessionExpired`.
        Campaigning again while leading only changes the value."""
        data = to_bytes(value, "value")
        if self._campaigning:
            return fail(NotElectionLeader(f"already campaigning in {self.name!r}"))
        if self.leading:
            return self.proclaim(data).addCallback(lambda _: self)
        self._campaigning = True
        d: Deferred[Election] = Deferred.fromCoroutine(self._campaign(data))

        def done(result: Any) -> Any:
            self._campaigning = False
            return result

        return d.addBoth(done)

    async def _campaign(self, value: bytes) -> "Election":
        entry, view = await enqueue(self.client, self.session, self.prefix, value)
        key, revision = entry.key, entry.revision
        self.key, self.revision = key, revision
        guard = Guard(self.client, self.session, key, revision)
        if view is not None:
            guard.follow(view)
        try:
            if not entry.created:  # our key from before: make its value ours now
                await self._put_value(key, revision, value)
            if view is None and entry.first:
                guard.watch_key(0)
            else:
                await wait_turn(self.client, guard, self.prefix, entry, view)
        except BaseException:
            guard.stop()
            self.key = self.revision = None
            if entry.created:
                await withdraw(self.client, key, revision)
            raise
        self._guard = guard
        self._lost = Signal()
        guard.lost.addCallback(self._lost.fire)
        return self

    async def _put_value(self, key: bytes, revision: int, value: bytes) -> None:
        lease = self.session.lease_id
        assert lease is not None
        result = await resending(
            self.client.clock,
            lambda: self.client.txn(
                compare=[CreateRevision(key) == revision],
                success=[Put(key, value, lease_id=lease)],
            ),
        )
        if not result.succeeded:
            raise NotElectionLeader(f"our key in election {self.name!r} is gone")

    def proclaim(self, value: Union[bytes, str]) -> "Deferred[None]":
        """Change the leader's value without an election; only the leader may
        (:class:`~txetcd.NotElectionLeader` otherwise, also if leadership was lost)."""
        data = to_bytes(value, "value")
        if not self.leading or self.key is None or self.revision is None:
            return fail(NotElectionLeader(f"not the leader of election {self.name!r}"))
        return Deferred.fromCoroutine(self._put_value(self.key, self.revision, data))

    def resign(self) -> "Deferred[None]":
        """Give leadership up (our key is deleted if it is still ours); nothing if we do not
        lead."""
        guard = self._guard
        if guard is None or self.key is None or self.revision is None:
            return succeed(None)
        key, revision = self.key, self.revision
        self._guard = None
        self.key = self.revision = None
        guard.stop()
        d = Deferred.fromCoroutine(fenced_delete(self.client, key, revision))
        return d.addCallback(lambda _: None)

    def leader(self) -> "Deferred[KeyValue]":
        """The current leader's key and value; :class:`~txetcd.NoElectionLeader` if nobody
        leads."""

        def pick(result: Any) -> KeyValue:
            if not result:
                raise NoElectionLeader(f"nobody leads election {self.name!r}")
            kv: KeyValue = result.kv
            return kv

        d: Deferred[Any] = self.client.txn(success=[first_of(self.prefix)])
        got: Deferred[KeyValue] = d.addCallback(lambda r: pick(r.responses[0]))
        return got

    def observe(self, callback: Optional[Callable[[KeyValue], Any]] = None) -> "Observer":
        """Follow the leader: each change of leader, and each proclaim, once and in order,
        as a :class:`~txetcd.KeyValue` (the leader's key and value). Use ``async for kv in
        election.observe()`` or give ``callback``. It resumes across connection breaks (a
        watch from the revision it read) with no change lost or repeated; ``cancel()`` ends it.
        """
        return Observer(self.client, self.prefix, callback)


class Observer:
    """A running :meth:`Election.observe`: an async iterator of leader
    :class:`~txetcd.KeyValue` values, or a callback's feed. :attr:`done` fires when it ends."""

    def __init__(
        self, client: Any, prefix: bytes, callback: Optional[Callable[[KeyValue], Any]]
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        self._client = client
        self._prefix = prefix
        self._callback = callback
        self._candidates: Dict[bytes, KeyValue] = {}
        self._shown: Optional[Tuple[bytes, int]] = None
        self._backlog: Deque[KeyValue] = deque()
        self._waiter: Optional[Deferred[KeyValue]] = None
        self._done: Signal[None] = Signal()
        self._ended: Optional[Failure] = None
        self._watch: Any = None
        self._listing = client.get(prefix, prefix=True)
        self._listing.addCallbacks(self._listed, self._end)

    @property
    def done(self) -> "Deferred[None]":
        """Fires with ``None`` after :meth:`cancel`, or fails with why it ended."""
        return self._done.wait()

    def cancel(self) -> None:
        """Stop observing."""
        if self._watch is not None:
            self._watch.cancel()
        else:
            self._listing.cancel()
        self._end(None)

    def _listed(self, result: Any) -> None:
        if self._done.fired:
            return
        for kv in result:
            self._candidates[kv.key] = kv
        self._show()
        self._watch = self._client.watch(
            self._prefix,
            prefix=True,
            start_revision=result.header.revision + 1,
            callback=self._batch,
        )
        self._watch.done.addBoth(self._end)

    def _batch(self, batch: WatchBatch) -> None:
        for event in batch.events:
            if event.type == EventType.DELETE:
                self._candidates.pop(event.kv.key, None)
            else:
                self._candidates[event.kv.key] = event.kv
        self._show()

    def _show(self) -> None:
        if not self._candidates:
            return
        leader = min(self._candidates.values(), key=lambda kv: kv.create_revision)
        seen = (leader.key, leader.mod_revision)
        if seen == self._shown:
            return
        self._shown = seen
        if self._callback is not None:
            self._callback(leader)
        elif self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(leader)
        else:
            self._backlog.append(leader)

    def _end(self, result: Any) -> None:
        if self._done.fired:
            return
        if isinstance(result, Failure):
            self._ended = result
        self._done.fire(result if isinstance(result, Failure) else None)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            if self._ended is not None:
                waiter.errback(self._ended)
            else:
                waiter.errback(Failure(StopAsyncIteration()))  # type: ignore[no-untyped-call]

    def __aiter__(self) -> "Observer":
        if self._callback is not None:
            raise TypeError("this observer delivers to a callback; it cannot also be iterated")
        return self

    async def __anext__(self) -> KeyValue:
        if self._backlog:
            return self._backlog.popleft()
        if self._done.fired:
            if self._ended is not None:
                self._ended.raiseException()
            raise StopAsyncIteration
        d: Deferred[KeyValue] = Deferred()
        self._waiter = d
        return await d
