"""Lock: a fair, fenced distributed lock on a :class:`~txetcd.Session` (Go's ``Mutex``)."""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, Union

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure

from txetcd._args import check_timeout, key_bytes
from txetcd._errors import LockHeld, LockLost, LockNotHeld, Timeout
from txetcd._signal import Signal
from txetcd._txn import Compare, CreateRevision
from txetcd.concurrency._common import Guard, failure
from txetcd.concurrency._queue import enqueue, fenced_delete, wait_turn, withdraw
from txetcd.concurrency._session import Session

__all__ = ["Lock"]

T = TypeVar("T")

#: seconds a lock taken at once is held before it watches its owner key for a delete
WATCH_AFTER = 0.05


class Lock:
    """A distributed lock named ``name`` held with ``session``'s lease; reads like Twisted's
    ``DeferredLock``::

        lock = Lock(session, "jobs/cleanup")
        async with lock:
            await client.txn(compare=[lock.is_owner()], success=[Put(b"jobs/last", b"me")])

    Waiters are served in the order they queued (their key's create revision); the waiters of
    one client share one watch of the lock's deletes, and a release hands the lock to the next
    waiter with no further request. The owner key, ``name/<lease in hex>``, lives on the
    session's lease: if the session is lost, so is the lock (:attr:`lost` fires). Cancelling a
    pending :meth:`acquire` (or its timeout) removes its key. :attr:`revision`, the owner key's
    create revision, increases with every new holder: use it as a fencing token, or put
    :meth:`is_owner` in a txn's compares.

    A delete of the owner key is seen at once by a lock that waited for its turn (the shared
    watch sees it); a lock taken at once watches its key only once it has been held for
    ``watch_after`` seconds (0.05 by default; 0: at once), so that short holds cost no watch.
    A shorter hold learns of such a loss from :meth:`release` (fenced: it fails with
    :class:`~txetcd.LockLost`); the session's loss and the lease's deadline are noticed at
    once either way.

    A Lock is not re-entrant: ``acquire()`` while it holds or is acquiring fails with
    :class:`~txetcd.LockHeld`. Two Lock objects of one session with the same name share one
    key (as in Go): both believe they hold it, and either's release frees it; give each
    holder its own session instead.

    :ivar key: the owner key while held or acquiring (``None`` otherwise).
    :ivar revision: the owner key's create revision (the fencing token), or ``None``.
    """

    def __init__(
        self, session: Session, name: Union[bytes, str], *, watch_after: float = WATCH_AFTER
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError(f"session must be a txetcd.Session, not {type(session).__name__}")
        if isinstance(watch_after, bool) or not isinstance(watch_after, (int, float)):
            kind = type(watch_after).__name__
            raise TypeError(f"watch_after must be a number of seconds, not {kind}")
        if not 0 <= watch_after < float("inf"):
            raise ValueError(f"watch_after must be >= 0 seconds, not {watch_after}")
        self.watch_after = float(watch_after)
        self.session = session
        self.client: Any = session.client
        self.name = key_bytes(name, "name")
        self.prefix = self.name + b"/"
        self.key: Optional[bytes] = None
        self.revision: Optional[int] = None
        self._guard: Optional[Guard] = None
        self._acquiring: Optional[Deferred[None]] = None
        self._lost: Signal[LockLost] = Signal()

    def __repr__(self) -> str:
        state = "locked" if self.locked else "acquiring" if self._acquiring else "unlocked"
        return f"<Lock {self.name!r} {state} revision={self.revision}>"

    @property
    def locked(self) -> bool:
        """True while this Lock holds the lock (and has not noticed its loss)."""
        return self._guard is not None and not self._guard.is_lost

    @property
    def lost(self) -> "Deferred[LockLost]":
        """Fires, with a :class:`~txetcd.LockLost` as its result, if the lock is lost while
        held (its key deleted, the session's lease lost or past its deadline: see
        ``watch_after``); a release does not fire it. A new Deferred on each access, for the
        current (or next) hold."""
        return self._lost.wait()

    def is_owner(self) -> Compare:
        """The compare that holds only while this Lock owns the lock (the owner key still has
        our create revision): put it in a txn to fence its writes."""
        if self.key is None or self.revision is None:
            raise LockNotHeld(f"lock {self.name!r} was not acquired")
        return CreateRevision(self.key) == self.revision

    # -- acquiring -------------------------------------------------------------------------------
    def acquire(self, timeout: Optional[float] = None) -> "Deferred[Lock]":
        """Fires with the Lock once it holds the lock; waits as long as it takes unless
        ``timeout`` seconds (on the client's clock) are given: then
        :class:`~txetcd.Timeout`. A waiter whose session is lost fails with
        :class:`~txetcd.SessionExpired`. Either way, and on cancel, no key is left behind."""
        seconds = check_timeout(timeout)
        if self._guard is not None or self._acquiring is not None:
            return fail(LockHeld(f"lock {self.name!r} is held or being acquired by this Lock"))
        d: Deferred[Any] = Deferred.fromCoroutine(self._acquire(wait=True))
        self._acquiring = d
        if seconds:
            d.addTimeout(seconds, self.client.clock)
            d.addErrback(self._timed_out, seconds)
        d.addBoth(self._acquired)
        return d

    def try_acquire(self) -> "Deferred[bool]":
        """Take the lock if nobody holds it (True), or give up at once (False), leaving no
        key behind."""
        if self._guard is not None or self._acquiring is not None:
            return fail(LockHeld(f"lock {self.name!r} is held or being acquired by this Lock"))
        d: Deferred[Any] = Deferred.fromCoroutine(self._acquire(wait=False))
        self._acquiring = d
        d.addBoth(self._acquired)
        return d.addCallback(lambda got: got is not None)

    def _timed_out(self, f: Failure, seconds: float) -> Failure:
        if f.check(DeferredTimeout):  # type: ignore[no-untyped-call]
            return failure(Timeout(f"lock {self.name!r} not acquired within {seconds} s"))
        return f

    def _acquired(self, result: Any) -> Any:
        self._acquiring = None
        return result

    async def _acquire(self, wait: bool) -> Optional["Lock"]:
        entry, view = await enqueue(self.client, self.session, self.prefix, b"")
        key, revision = entry.key, entry.revision
        self.key, self.revision = key, revision
        guard = Guard(self.client, self.session, key, revision)
        if view is not None:
            guard.follow(view)
        try:
            if not entry.first and not wait:
                guard.stop()
                if entry.created:
                    await withdraw(self.client, key, revision)
                self.key = self.revision = None
                return None
            if view is None and entry.first:
                guard.watch_key(self.watch_after)
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

    # -- releasing -------------------------------------------------------------------------------
    def release(self) -> "Deferred[None]":
        """Give the lock up: its key is deleted only if it is still ours (fenced: a newer
        holder's key is never touched). Fails with :class:`~txetcd.LockLost` if the lock was
        lost meanwhile, with :class:`~txetcd.LockNotHeld` if it was not held."""
        guard = self._guard
        if guard is None or self.key is None or self.revision is None:
            return fail(LockNotHeld(f"lock {self.name!r} is not held by this Lock"))
        key, revision = self.key, self.revision
        self._guard = None
        self.key = self.revision = None
        lost = guard.is_lost
        guard.stop()
        return Deferred.fromCoroutine(self._release(key, revision, lost))

    async def _release(self, key: bytes, revision: int, lost: bool) -> None:
        deleted = await fenced_delete(self.client, key, revision)
        if lost or not deleted:
            raise LockLost(f"lock {self.name!r} was lost before its release", key=key)

    # -- DeferredLock's conveniences -----------------------------------------------------------
    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "Deferred[Any]":
        """Acquire, call ``f(*args, **kwargs)`` (it may return a Deferred or be ``async``),
        release, and fire with its result. If the lock was lost meanwhile, the release's
        :class:`~txetcd.LockLost` fails the call (unless ``f`` failed)."""
        return Deferred.fromCoroutine(self._run(f, args, kwargs))

    async def _run(self, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        await self.acquire()
        try:
            result = await maybeDeferred(f, *args, **kwargs)
        except BaseException:
            try:
                await self.release()
            except LockLost:
                pass
            raise
        await self.release()
        return result

    async def __aenter__(self) -> "Lock":
        await self.acquire()
        return self

    async def __aexit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            await self.release()
        except LockLost:
            if kind is None:
                raise
