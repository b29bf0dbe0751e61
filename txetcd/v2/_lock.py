"""A distributed lock over etcd's v2 keys API, with python-etcd's ``Lock`` semantics.

How it works
------------
:meth:`Lock.acquire` creates an in-order key (``POST``) in the directory
``<client.lock_prefix>/<name>``. etcd names the key by its creation index, zero-padded, so a
sorted listing of the directory is a queue in arrival order: the first key holds the lock.
Every other waiter long-polls the key just *before* its own and looks again when that key goes
(deleted, expired) or anything else happens; each release wakes one waiter only, first come
first served.

Every key has a TTL, so the key of a client that dies goes away after at most ``ttl`` seconds.
While a key lives (queued and held) a loop on the client's clock refreshes its TTL every
``ttl / 3`` seconds (a TTL refresh wakes no watcher). If a refresh finds the key gone, or the
refreshes keep failing until the key may have expired (``ttl`` seconds after the last refresh
that worked was sent), the lock is lost: :attr:`Lock.lost` fires and :attr:`Lock.is_acquired`
turns false.

Fencing
-------
A lock kept by a TTL cannot stop a holder that stalls (a long GC pause, a swapped-out process, a
blocked reactor) past its TTL from writing after somebody else acquired the lock. Fence the
writes you protect with :attr:`Lock.token`, the created index of the lock's key: it grows with
every acquisition, by anyone. Store it beside the guarded data, refuse to write over a newer
token, and write by compare-and-swap on the modified index you read, so a stale holder's write
fails instead of landing::

    async with lock:
        current = await client.read("/jobs/state")
        state = json.loads(current.value)
        if state["token"] > lock.token:
            raise RuntimeError("a later holder has written: this lock was lost")
        state.update(token=lock.token, done=state["done"] + 1)
        await client.compare_and_swap(
            "/jobs/state", json.dumps(state), prev_index=current.modified_index
        )  # EtcdCompareFailed: somebody wrote since the read
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import OutcomeUnknown
from txetcd._signal import Signal
from txetcd.v2._client import DEFAULT_TIMEOUT, Client
from txetcd.v2._errors import (
    EtcdCompareFailed,
    EtcdEventIndexCleared,
    EtcdKeyNotFound,
    EtcdLockExpired,
    EtcdWatcherCleared,
    EtcdWatchTimedOut,
)
from txetcd.v2._keys import normalize_key
from txetcd.v2._refresh import (
    _fail,
    _Refresher,
    backoff,
    check_name,
    check_ttl,
    check_value,
    delete_quietly,
    is_transient,
)
from txetcd.v2._result import EtcdResult

__all__ = ["Lock"]

#: ``Failure(exc)``, or ``Failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure


_IDLE, _ACQUIRING, _HELD, _LOST = "idle", "acquiring", "held", "lost"


class Lock:
    """A distributed lock: FIFO, kept alive by a TTL refresh loop, with a fencing token.

    See the module docstring for how it works and how to fence writes with :attr:`token`::

        lock = Lock(client, "reports", ttl=30)
        async with lock:
            ...  # exclusive

        if await lock.acquire(timeout=5):  # or from inlineCallbacks: yield lock.acquire()
            try:
                ...
            finally:
                await lock.release()

    :param client: the :class:`~txetcd.v2.Client`; its ``lock_prefix`` is where the lock's
        keys go, and its ``clock`` drives the refresh loop and acquire timeouts.
    :param name: the lock's name (``<lock_prefix>/<name>`` is its directory).
    :param ttl: seconds a key outlives its last refresh (whole seconds, >= 1); python-etcd
        took it as ``acquire(lock_ttl=...)``.
    :param value: the value of the lock's keys (default: a fresh ``uuid4().hex`` per
        acquisition). It must differ from every other holder's: release deletes the key only
        if it holds this value.
    :param poll_timeout: seconds a queued acquire waits on its predecessor before looking
        again (default: the client's ``read_timeout``).

    :ivar path: the lock's directory, ``/_locks/<name>``.
    :ivar key: this acquisition's key (queued or held), or ``None``.
    :ivar token: the fencing token: the created index of :attr:`key`, or ``None``.
    :ivar value: the value of this acquisition's key.
    """

    log = Logger()

    def __init__(
        self,
        client: Client,
        name: str,
        ttl: int = 60,
        *,
        value: Optional[str] = None,
        poll_timeout: Optional[float] = None,
    ) -> None:
        self.client = client
        self.name = check_name(name)
        self.ttl = check_ttl(ttl)
        self._fixed_value = None if value is None else check_value(value, "value")
        self.poll_timeout: Any = DEFAULT_TIMEOUT if poll_timeout is None else poll_timeout
        self.path = normalize_key(client.lock_prefix.rstrip("/") + "/" + name)
        self.key: Optional[str] = None
        self.token: Optional[int] = None
        self.value: Optional[str] = self._fixed_value
        self._state = _IDLE
        self._attempt: Optional[_Acquisition] = None
        self._refresher: Optional[_Refresher] = None
        self._loss: Optional[EtcdLockExpired] = None
        self._lost: Signal[EtcdLockExpired] = Signal()

    # -- state ---------------------------------------------------------------------------------
    @property
    def is_acquired(self) -> bool:
        """True while this lock is held (local state: false from the moment it is lost)."""
        return self._state == _HELD

    @property
    def lost(self) -> "Deferred[EtcdLockExpired]":
        """Fires, with an :class:`~txetcd.v2.EtcdLockExpired` as its *result*, if the lock is
        lost while held: its key vanished or could not be refreshed in time. Stop the work the
        lock protects then; another client may hold the lock.

        A new Deferred on each access; it concerns the current (or next) acquisition and does
        not fire when the lock is released.
        """
        return self._lost.wait()

    @property
    def lock_key(self) -> Optional[str]:
        """:attr:`key` under python-etcd's name."""
        return self.key

    @property
    def uuid(self) -> Optional[str]:
        """:attr:`value` under python-etcd's name."""
        return self.value

    # -- acquire -------------------------------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> "Deferred[bool]":
        """Queue for the lock; fires with ``True`` once held.

        With ``blocking=False`` (or ``timeout=0``) it fires with ``False`` at once if someone
        else holds the lock; with ``timeout`` (seconds on the client's clock) it fires with
        ``False`` when that time has passed. Either way this acquisition's key is deleted first.
        Cancelling the Deferred deletes the key as well.

        Fails with :class:`~txetcd.v2.EtcdLockExpired` if the queued key vanished, or with the
        error of a request that cannot be retried. A lock object is one holder: acquiring it
        again while held or acquiring raises ``RuntimeError``.
        """
        if self._state in (_ACQUIRING, _HELD):
            raise RuntimeError(f"lock {self.path} is already {self._state}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
                raise ValueError(f"timeout must be seconds >= 0 or None, not {timeout!r}")
            if not blocking:
                raise ValueError("a timeout makes no sense with blocking=False")
            if timeout == 0:
                blocking, timeout = False, None
        self._reset()
        self._state = _ACQUIRING
        self.value = self._fixed_value if self._fixed_value is not None else uuid.uuid4().hex
        attempt = _Acquisition(self, self.value, bool(blocking), timeout)
        self._attempt = attempt
        attempt.start()
        return attempt.result

    def _reset(self) -> None:
        """Forget the current (or lost) acquisition."""
        if self._refresher is not None:
            self._refresher.stop()
        self._refresher = None
        self._attempt = None
        self._state = _IDLE
        self.key = self.token = None
        if self._loss is not None or self._lost.fired:
            self._lost = Signal()
        self._loss = None

    def _queued(self, attempt: "_Acquisition", created: EtcdResult, sent_at: float) -> None:
        if attempt is not self._attempt:
            return
        self.key, self.token = created.key, created.created_index
        self._refresher = _Refresher(
            self.client,
            created.key,
            self.ttl,
            alive_since=sent_at,
            modified_index=created.modified_index,
            on_lost=self._refresher_lost,
        )

    def _won(self, attempt: "_Acquisition") -> None:
        if attempt is self._attempt:
            self._attempt = None
            self._state = _HELD

    def _forget(self, attempt: "_Acquisition") -> None:
        if attempt is self._attempt:
            self._reset()

    def _refresher_lost(self, refresher: _Refresher, reason: str, maybe_alive: bool) -> None:
        if refresher is not self._refresher:
            return
        self._refresher = None
        error = EtcdLockExpired(f"lock {self.path}: {reason}")
        if self._state == _ACQUIRING and self._attempt is not None:
            self._attempt.key_lost(error)
            return
        if self._state != _HELD:
            return
        self._state, self._loss = _LOST, error
        self.log.warn("{error}", error=error)
        if maybe_alive and self.key is not None:
            delete_quietly(self.client, self.key, self.log, prev_value=self.value)
        self._lost.fire(error)

    # -- holding -------------------------------------------------------------------------------
    def renew(self, ttl: Optional[int] = None) -> "Deferred[None]":
        """Refresh the key's TTL now (and from now on use ``ttl`` if given).

        Fails with :class:`~txetcd.v2.EtcdLockExpired` if the lock was lost (or is lost by
        this refresh); raises ``RuntimeError`` if there is no key to refresh.
        """
        if ttl is not None:
            check_ttl(ttl)
        if self._state == _LOST and self._loss is not None:
            return _fail(self._loss)
        refresher = self._refresher
        if refresher is None:
            raise RuntimeError(f"lock {self.path} has no key to renew ({self._state})")
        d = refresher.refresh(ttl)

        def done(result: EtcdResult) -> None:
            if ttl is not None and refresher is self._refresher:
                self.ttl = ttl

        def failed(f: Failure) -> Failure:
            if refresher.stopped and self._loss is not None:
                return _failure(self._loss)
            if isinstance(f.value, EtcdKeyNotFound):
                return _failure(EtcdLockExpired(f"lock {self.path}: {refresher.key} is gone"))
            return f

        return d.addCallbacks(done, failed)

    def release(self) -> "Deferred[None]":
        """Stop refreshing and delete the key (only if it still holds our value).

        Fails with :class:`~txetcd.v2.EtcdLockExpired` if the lock had been lost, or its key was
        already gone: the critical section may not have been exclusive. Other errors (no
        answer) are passed on; the key then expires after its TTL. Either way the lock object
        is released and can be acquired again. Raises ``RuntimeError`` if the lock is not held.
        """
        if self._state == _LOST and self._loss is not None:
            loss = self._loss
            self._reset()
            return _fail(loss)
        if self._state != _HELD or self.key is None:
            raise RuntimeError(f"lock {self.path} is not held ({self._state})")
        key, value = self.key, self.value
        self._reset()
        self._lost = Signal()  # waiters of this holding's loss wait for nothing now
        d = self.client.compare_and_delete(key, prev_value=value)

        def failed(f: Failure) -> Failure:
            if isinstance(f.value, (EtcdKeyNotFound, EtcdCompareFailed)):
                error = EtcdLockExpired(
                    f"lock {self.path}: {key} was gone at release: the lock had expired, so "
                    "the critical section may not have been exclusive"
                )
                error.__cause__ = f.value
                return _failure(error)
            return f

        return d.addCallbacks(lambda _: None, failed)

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "Deferred[Any]":
        """Acquire, call ``f(*args, **kwargs)`` (it may return a Deferred or a coroutine),
        release, and fire with its result."""

        async def locked() -> Any:
            await self.acquire()
            try:
                result = maybeDeferred(f, *args, **kwargs)
                return await result
            finally:
                await self.release()

        return ensureDeferred(locked())

    async def __aenter__(self) -> "Lock":
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"<Lock {self.path} {self._state} key={self.key} token={self.token}>"


class _Acquisition:
    """One acquire: create the key, then list, wait and list again until first."""

    def __init__(self, lock: Lock, value: str, blocking: bool, timeout: Optional[float]) -> None:
        self.lock = lock
        self.client = lock.client
        self.clock: Any = lock.client.clock
        self.value = value
        self.blocking = blocking
        self.timeout = timeout
        self.result: Deferred[bool] = Deferred(self._cancelled)
        self.key: Optional[str] = None
        self.over = False
        self._creating = False
        self._after_create: List[Deferred[None]] = []
        self._pending: Optional[Deferred[Any]] = None
        self._retry: Optional[IDelayedCall] = None
        self._timer: Optional[IDelayedCall] = None
        self._failures = 0

    def start(self) -> None:
        if self.timeout is not None:
            self._timer = self.clock.callLater(self.timeout, self._timed_out)
        self._creating = True
        sent_at = self.clock.seconds()
        d = self.client.append(self.lock.path, self.value, self.lock.ttl)
        d.addCallbacks(self._created, self._create_failed, callbackArgs=(sent_at,))

    # -- the key -------------------------------------------------------------------------------
    def _created(self, created: EtcdResult, sent_at: float) -> None:
        self._creating = False
        self.key = created.key
        if self.over:  # cancelled or timed out meanwhile
            self._delete_key().chainDeferred(_gather(self._after_create))
            return
        self.lock._queued(self, created, sent_at)
        self._list(quorum=False)

    def _create_failed(self, failure: Failure) -> None:
        self._creating = False
        if isinstance(failure.value, OutcomeUnknown):
            self._sweep()  # the key may exist under a name we never learnt
        if self.over:
            _gather(self._after_create).callback(None)
            return
        self._fail(failure)

    def _sweep(self) -> None:
        """Delete any key of the lock's queue holding our value (after a lost answer)."""
        d = self.client.read(self.lock.path, sorted=True)

        def listed(listing: EtcdResult) -> None:
            for node in listing.nodes:
                if node.value == self.value:
                    delete_quietly(self.client, node.key, self.lock.log, prev_value=self.value)

        d.addCallbacks(listed, lambda _: None)

    def _delete_key(self) -> "Deferred[None]":
        """Delete our key (once it exists)."""
        if self.key is not None:
            return delete_quietly(self.client, self.key, self.lock.log, prev_value=self.value)
        if self._creating:
            d: Deferred[None] = Deferred()
            self._after_create.append(d)
            return d
        return succeed(None)

    # -- the queue -----------------------------------------------------------------------------
    def _list(self, quorum: bool) -> None:
        self._retry = None
        if self.over:
            return
        d = self.client.read(self.lock.path, sorted=True, quorum=True if quorum else None)
        self._pending = d
        d.addCallbacks(
            self._listed, self._list_failed, callbackArgs=(quorum,), errbackArgs=(quorum,)
        )

    def _listed(self, listing: EtcdResult, quorum: bool) -> None:
        self._pending = None
        if self.over:
            return
        self._failures = 0
        keys = [node.key for node in listing.nodes]
        if self.key not in keys:
            if not quorum:  # maybe a member behind the others: ask the leader
                self._list(quorum=True)
            else:
                self.key_lost(EtcdLockExpired(f"lock {self.lock.path}: {self.key} is gone"))
            return
        position = keys.index(self.key)
        if position == 0:
            self._won()
        elif not self.blocking:
            self._give_up()
        else:
            index = listing.etcd_index + 1 if listing.etcd_index is not None else None
            self._wait(keys[position - 1], index)

    def _list_failed(self, failure: Failure, quorum: bool) -> None:
        self._pending = None
        if self.over:
            return
        err = failure.value
        if isinstance(err, EtcdKeyNotFound):  # the directory is gone, our key with it
            self._listed(EtcdResult({"key": self.lock.path, "dir": True}), quorum)
        elif is_transient(err):
            self._retry_later(lambda: self._list(quorum))
        else:
            self._fail(failure)

    def _wait(self, predecessor: str, index: Optional[int]) -> None:
        d = self.client.watch(predecessor, index=index, timeout=self.lock.poll_timeout)
        self._pending = d
        d.addCallbacks(self._woken, self._wait_failed)

    def _woken(self, event: EtcdResult) -> None:
        self._pending = None
        self._list(quorum=False)  # whatever happened, look again

    def _wait_failed(self, failure: Failure) -> None:
        self._pending = None
        if self.over:
            return
        err = failure.value
        if isinstance(err, (EtcdWatchTimedOut, EtcdEventIndexCleared, EtcdWatcherCleared)):
            self._list(quorum=False)
        elif is_transient(err):
            self._retry_later(lambda: self._list(False))
        else:
            self._fail(failure)

    def _retry_later(self, again: Callable[[], None]) -> None:
        self._failures += 1
        self._retry = self.clock.callLater(backoff(self._failures), again)

    # -- endings -------------------------------------------------------------------------------
    def _stop(self) -> None:
        self.over = True
        for call in (self._timer, self._retry):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._retry = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _won(self) -> None:
        self._stop()
        self.lock._won(self)
        self.result.callback(True)

    def _give_up(self) -> None:
        """Not first (non-blocking) or timed out: delete the key, then fire ``False``."""
        self._stop()
        self.lock._forget(self)
        self._delete_key().addCallback(self._gave_up)

    def _gave_up(self, _: object) -> None:
        if not self.result.called:  # not cancelled while the key was being deleted
            self.result.callback(False)

    def _timed_out(self) -> None:
        self._timer = None
        if not self.over:
            self._give_up()

    def _fail(self, failure: Failure) -> None:
        self._stop()
        self.lock._forget(self)
        self.result.errback(failure)
        self._delete_key()

    def key_lost(self, error: EtcdLockExpired) -> None:
        """The refresher (or a listing) found our queued key gone."""
        if not self.over:
            self._fail(_failure(error))

    def _cancelled(self, result: "Deferred[bool]") -> None:
        if self.over:
            return
        self._stop()
        self.lock._forget(self)
        self._delete_key()  # Deferred.cancel fires the result with CancelledError


def _gather(waiters: List["Deferred[None]"]) -> "Deferred[None]":
    """A Deferred that, when fired, fires every one of ``waiters`` with its result."""
    d: Deferred[None] = Deferred()

    def fan_out(result: Any) -> None:
        for w in list(waiters):
            w.callback(None)
        waiters.clear()

    return d.addBoth(fan_out)
