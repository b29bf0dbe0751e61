"""What the recipes share: waiting on the client's clock, resending safe calls, owner keys, and
the guard that notices when an owner key is lost.

Everything here uses the public :class:`txetcd.Client` API only.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, TypeVar
from weakref import WeakKeyDictionary

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from txetcd._errors import (
    ConnectionFailed,
    LeaseLost,
    LockLost,
    OutcomeUnknown,
    SessionExpired,
    Timeout,
    Unavailable,
)
from txetcd._retry import RESEND_BACKOFF
from txetcd._signal import Signal
from txetcd._types import EventType, WatchBatch
from txetcd.concurrency._feed import View
from txetcd.concurrency._session import Session

__all__ = ["sleep", "resending", "owner_key", "wait_deleted", "session_lease", "Guard"]

T = TypeVar("T")

#: errors after which a recipe sends an idempotent-in-effect call again
TRANSIENT = (ConnectionFailed, OutcomeUnknown, Unavailable, Timeout)


def failure(error: BaseException) -> Failure:
    """A Failure of ``error`` (typed for mypy)."""
    return Failure(error)  # type: ignore[no-untyped-call]


def sleep(clock: Any, seconds: float) -> "Deferred[None]":
    """Fires after ``seconds`` on ``clock``; cancelling it cancels the timer."""
    d: Deferred[None] = Deferred(lambda _: call.cancel())
    call = clock.callLater(seconds, d.callback, None)
    return d


async def resending(
    clock: Any, call: Callable[[], "Deferred[T]"], limit: Optional[int] = None
) -> T:
    """``call()``'s result, calling it again (after the resend backoff, on ``clock``) while it
    fails with a connection error or an unknown outcome, at most ``limit`` times in all if
    given. Only for calls whose effect is the same however often they are applied (a
    create-if-absent txn, a read, a fenced delete)."""
    failures = 0
    while True:
        try:
            return await call()
        except TRANSIENT:
            failures += 1
            if limit is not None and failures >= limit:
                raise
            await sleep(clock, RESEND_BACKOFF(failures - 1))


def owner_key(prefix: bytes, lease_id: int) -> bytes:
    """``prefix`` + the lease ID in lower-case hex: one session's key in a lock or election
    (etcd's lock service and Go's recipes name it the same way)."""
    return prefix + b"%x" % (lease_id & 0xFFFFFFFFFFFFFFFF)


class _SessionLoss:
    """The one subscription to a session's ``lost`` that every guard on the session shares, so
    that a hold costs no Deferred of its own (nor the Failure of cancelling it)."""

    def __init__(self, session: Session) -> None:
        self.reason: Optional[LeaseLost] = None
        self.guards: Dict[Guard, None] = {}
        session.lost.addCallback(self._fire)

    def _fire(self, reason: LeaseLost) -> None:
        self.reason = reason
        for guard in list(self.guards):
            guard._lease_lost(reason)


_losses: "WeakKeyDictionary[Session, _SessionLoss]" = WeakKeyDictionary()


def _loss_of(session: Session) -> _SessionLoss:
    loss = _losses.get(session)
    if loss is None:
        loss = _losses[session] = _SessionLoss(session)
    return loss


async def session_lease(session: Session) -> int:
    """The session's lease, once granted; :class:`SessionExpired` if it is lost already."""
    if session.lease_id is None or session.keepalive is None:  # not ready, lost or closed
        await session.ready
    reason = _loss_of(session).reason
    if reason is not None:
        raise SessionExpired(f"the session's lease was lost: {reason}", cause=reason)
    assert session.lease_id is not None
    return session.lease_id


def wait_deleted(client: Any, key: bytes, after: int) -> "Deferred[None]":
    """Fires once ``key`` is deleted at a revision after ``after`` (it resumes across
    connection breaks like any watch); cancelling it cancels the watch."""
    done: Deferred[None] = Deferred(lambda _: watch.cancel())

    def seen(batch: WatchBatch) -> None:
        if done.called:
            return
        for event in batch.events:
            if event.type == EventType.DELETE:
                done.callback(None)
                watch.cancel()
                return

    def ended(result: object) -> None:
        if not done.called:
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.errback(failure(CancelledError(f"the watch of {key!r} ended")))

    watch = client.watch(key, start_revision=after + 1, callback=seen)
    watch.done.addBoth(ended)
    return done


class Guard:
    """Notices the loss of an owner key ``key`` (created at ``revision``) however it happens:
    the session's ``lost``, the lease's deadline passing on the clock with no refresh answered
    (a stopped keepalive never reports), or the key's delete, seen through a queue
    :class:`~txetcd.concurrency._feed.View` it follows (:meth:`follow`) or a watch on the key
    (:meth:`watch_key`). :attr:`lost` fires, with a :class:`~txetcd.LockLost` as its result, at
    the first of these."""

    def __init__(self, client: Any, session: Session, key: bytes, revision: int) -> None:
        self.key = key
        self.revision = revision
        self._client = client
        self._clock = client.clock
        self._lost: Signal[LockLost] = Signal()
        self._stopped = False
        self._deleted: Optional[Deferred[None]] = None
        self._watch_timer: Any = None
        self._view: Optional[View] = None
        self._handle = session.keepalive
        self._timer: Any = None
        self._arm()
        self._loss = _loss_of(session)
        self._loss.guards[self] = None
        if self._loss.reason is not None:
            self._lease_lost(self._loss.reason)

    @property
    def lost(self) -> "Deferred[LockLost]":
        """Fires with a :class:`~txetcd.LockLost` once the key is lost."""
        return self._lost.wait()

    @property
    def is_lost(self) -> bool:
        """True once the key is known to be lost."""
        return self._lost.fired

    def follow(self, view: View) -> None:
        """See the key's delete through ``view`` (closed with the guard)."""
        self._view = view
        view.on_lost(self._view_lost)

    def watch_key(self, delay: float) -> None:
        """Watch the key for its delete, from the revision after its creation, once ``delay``
        seconds have passed on the clock (0: now) if the guard is still running then: a key
        held for less never costs a watch."""
        if delay > 0:
            self._watch_timer = self._clock.callLater(delay, self._watch_now)
        else:
            self._watch_now()

    def stop(self) -> None:
        """Stop watching (``lost`` will not fire any more)."""
        if self._stopped:
            return
        self._stopped = True
        for timer in (self._timer, self._watch_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._watch_timer = None
        if self._deleted is not None:
            self._deleted.cancel()
        if self._view is not None:
            self._view.close()
        self._loss.guards.pop(self, None)

    def _watch_now(self) -> None:
        self._watch_timer = None
        if self._stopped:
            return
        self._deleted = wait_deleted(self._client, self.key, self.revision)
        self._deleted.addCallbacks(lambda _: self._lose("its owner key was deleted"), self._broke)

    def _view_lost(self, why: Optional[Failure]) -> None:
        if why is None:
            self._lose("its owner key was deleted")
        else:
            self._broke(why)

    def _arm(self) -> None:
        handle = self._handle
        if handle is None or self._stopped:
            return
        delay = max(handle.deadline - self._clock.seconds(), 0.0)
        self._timer = self._clock.callLater(delay, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        handle = self._handle
        if handle is None or self._stopped:
            return
        if handle.deadline > self._clock.seconds():
            self._arm()
        else:
            self._lose(f"its lease {handle.lease_id} reached its deadline with no refresh answered")

    def _lease_lost(self, reason: LeaseLost) -> None:
        self._lose(f"its lease was lost: {reason}", reason)

    def _broke(self, f: Failure) -> None:
        if not f.check(CancelledError) or not self._stopped:  # type: ignore[no-untyped-call]
            self._lose(f"its watch ended: {f.value}", f.value)

    def _lose(self, why: str, cause: Optional[BaseException] = None) -> None:
        if self._stopped or self._lost.fired:
            return
        error = LockLost(f"{self.key!r} lost: {why}", key=self.key, cause=cause)
        self.stop()
        self._lost.fire(error)
