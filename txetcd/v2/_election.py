"""Leader election over etcd's v2 keys API: one key, created by whoever gets there first.

A candidate creates ``<prefix>/<name>`` with ``prevExist=false`` and a TTL; the one whose create
succeeds leads, and keeps the key alive with a TTL refresh every ``ttl / 3`` seconds on the
client's clock (only while the key still holds its value). The others long-poll the key and try
again when it is deleted or expires. The leader's value names it: give each candidate its own
(``host:pid``, a URL), since resigning and refreshing compare against it.

:meth:`Election.observe` follows the key with the client's eternal watch, for anyone (candidate
or not) who wants to know who leads.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import OutcomeUnknown
from txetcd._signal import Signal
from txetcd.v2._client import DEFAULT_TIMEOUT, Client
from txetcd.v2._errors import (
    EtcdAlreadyExist,
    EtcdCompareFailed,
    EtcdEventIndexCleared,
    EtcdKeyNotFound,
    EtcdLockExpired,
    EtcdWatcherCleared,
    EtcdWatchTimedOut,
)
from txetcd.v2._feed import ItemFeed
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
from txetcd.v2._watch import EternalWatch, Resynced

__all__ = ["Election", "EtcdLeadershipLost", "LeaderObserver"]

#: ``Failure(exc)``, or ``Failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

#: actions after which a key is gone
_GONE = ("delete", "expire", "compareAndDelete")

_IDLE, _CAMPAIGNING, _LEADING, _LOST = "idle", "campaigning", "leading", "lost"


class EtcdLeadershipLost(EtcdLockExpired):
    """The leader's key expired, vanished or was taken over: we no longer lead (or never did,
    when :meth:`Election.proclaim` is called by a candidate that is not the leader)."""


class Election:
    """Campaign for leadership of ``name``, proclaim a new value, resign, observe.

    ::

        election = Election(client, "scheduler", ttl=10)
        await election.campaign("host-a:4711")  # fires once elected
        election.lost.addCallback(stop_scheduling)
        ...
        await election.resign()

    :param client: the :class:`~txetcd.v2.Client` (its ``clock`` drives the refresh loop).
    :param name: the election's name; its key is ``<prefix>/<name>``.
    :param ttl: seconds the leader's key outlives its last refresh (whole seconds, >= 1).
    :param prefix: where election keys go (``/_elections``: hidden from listings).
    :param poll_timeout: seconds a candidate waits on the key before trying again (default: the
        client's ``read_timeout``).

    :ivar key: the election's key.
    :ivar value: our value while campaigning or leading, else ``None``.
    :ivar token: the created index of the leader key we created: grows with every term, by
        anyone; a fencing token as :attr:`txetcd.v2.Lock.token` is.
    """

    log = Logger()

    def __init__(
        self,
        client: Client,
        name: str,
        ttl: int = 60,
        *,
        prefix: str = "/_elections",
        poll_timeout: Optional[float] = None,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix is a str, not {type(prefix).__name__}")
        self.client = client
        self.name = check_name(name)
        self.ttl = check_ttl(ttl)
        self.poll_timeout: Any = DEFAULT_TIMEOUT if poll_timeout is None else poll_timeout
        self.key = normalize_key(prefix.rstrip("/") + "/" + name)
        self.value: Optional[str] = None
        self.token: Optional[int] = None
        self._state = _IDLE
        self._campaign: Optional[_Campaign] = None
        self._refresher: Optional[_Refresher] = None
        self._loss: Optional[EtcdLeadershipLost] = None
        self._lost: Signal[EtcdLeadershipLost] = Signal()
        self._serial = DeferredLock()

    @property
    def is_leader(self) -> bool:
        """True while we lead (local state: false from the moment leadership is lost)."""
        return self._state == _LEADING

    @property
    def lost(self) -> "Deferred[EtcdLeadershipLost]":
        """Fires, with an :class:`EtcdLeadershipLost` as its *result*, if we lose the lead: the
        key vanished, holds another value, or could not be refreshed in time. A new Deferred on
        each access; it concerns the current (or next) term and does not fire on resign.
        """
        return self._lost.wait()

    # -- campaign ------------------------------------------------------------------------------
    def campaign(self, value: str) -> "Deferred[None]":
        """Fire once elected with ``value`` as the leader's value.

        Waits (long polls) while another leads. Cancelling the Deferred stops the campaign (and
        deletes the key if it was created meanwhile). Raises ``RuntimeError`` if already
        campaigning or leading.
        """
        check_value(value, "value")
        if self._state in (_CAMPAIGNING, _LEADING):
            raise RuntimeError(f"election {self.key}: already {self._state}")
        self._reset()
        self._state, self.value = _CAMPAIGNING, value
        campaign = _Campaign(self, value)
        self._campaign = campaign
        campaign.start()
        return campaign.result

    def _reset(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
        self._refresher = None
        self._campaign = None
        self._state = _IDLE
        self.value = self.token = None
        if self._loss is not None or self._lost.fired:
            self._lost = Signal()
        self._loss = None

    def _elected(self, campaign: "_Campaign", created: EtcdResult, sent_at: float) -> None:
        if campaign is not self._campaign:
            return
        self._campaign = None
        self._state = _LEADING
        self.token = created.created_index
        self._refresher = _Refresher(
            self.client,
            self.key,
            self.ttl,
            alive_since=sent_at,
            modified_index=created.modified_index,
            on_lost=self._refresher_lost,
            prev_value=campaign.value,
        )

    def _campaign_over(self, campaign: "_Campaign") -> None:
        if campaign is self._campaign:
            self._reset()

    def _refresher_lost(self, refresher: _Refresher, reason: str, maybe_alive: bool) -> None:
        if refresher is not self._refresher or self._state != _LEADING:
            return
        self._refresher = None
        error = EtcdLeadershipLost(f"election {self.key}: {reason}")
        self._state, self._loss = _LOST, error
        self.log.warn("{error}", error=error)
        if maybe_alive and refresher.modified_index is not None:
            # only if untouched since our last refresh (never another candidate's key)
            delete_quietly(
                self.client,
                self.key,
                self.log,
                prev_value=refresher.prev_value,
                prev_index=refresher.modified_index,
            )
        self._lost.fire(error)

    # -- leading -------------------------------------------------------------------------------
    def proclaim(self, value: str) -> "Deferred[None]":
        """Change the leader's value to ``value`` (compare-and-swap on the old one); we keep
        leading. Fails with :class:`EtcdLeadershipLost` if we do not lead (any more)."""
        check_value(value, "value")
        return self._serial.run(self._proclaim, value)

    def _proclaim(self, value: str) -> "Deferred[None]":
        refresher = self._refresher
        if self._state != _LEADING or refresher is None or self.value is None:
            return _fail(self._loss or EtcdLeadershipLost(f"election {self.key}: not leading"))
        old = self.value
        refresher.busy = True
        sent_at = self.client.clock.seconds()
        d = self.client.compare_and_swap(self.key, value, self.ttl, prev_value=old)

        def swapped(result: EtcdResult) -> None:
            refresher.busy = False
            if refresher is not self._refresher:
                raise self._loss or EtcdLeadershipLost(f"election {self.key}: resigned")
            self.value = refresher.prev_value = value
            refresher.confirm(sent_at, self.ttl, result.modified_index)

        def failed(f: Failure) -> Any:
            err = f.value
            if refresher is not self._refresher:
                refresher.busy = False
                return f if isinstance(err, OutcomeUnknown) else _failure(self._loss or err)
            if isinstance(err, (EtcdCompareFailed, EtcdKeyNotFound)):
                refresher.busy = False
                refresher.lose(f"proclaim found {self.key} gone or changed", maybe_alive=False)
                return _failure(self._loss or err)
            if isinstance(err, OutcomeUnknown):
                return self._proclaim_unknown(refresher, old, value, sent_at, f)
            refresher.busy = False
            return f

        return d.addCallbacks(swapped, failed)

    def _proclaim_unknown(
        self, refresher: _Refresher, old: str, value: str, sent_at: float, unknown: Failure
    ) -> "Deferred[None]":
        """The swap's answer was lost: read the key to learn which value it holds."""
        d = self.client.read(self.key, quorum=True)

        def read(result: EtcdResult) -> Any:
            refresher.busy = False
            if refresher is not self._refresher:
                return _failure(self._loss or unknown.value)
            if result.value == value:
                self.value = refresher.prev_value = value
                refresher.confirm(sent_at, self.ttl, result.modified_index)
                return None
            if result.value == old:
                return unknown  # not applied: still leading with the old value
            refresher.lose(f"{self.key} holds another value now", maybe_alive=False)
            return _failure(self._loss or unknown.value)

        def failed(f: Failure) -> Failure:
            refresher.busy = False
            if isinstance(f.value, EtcdKeyNotFound) and refresher is self._refresher:
                refresher.lose(f"{self.key} is gone", maybe_alive=False)
                return _failure(self._loss or f.value)
            return unknown

        return d.addCallbacks(read, failed)

    def resign(self) -> "Deferred[None]":
        """Stop leading: stop refreshing and delete the key if it still holds our value.

        While campaigning, cancels the campaign (its Deferred fails with ``CancelledError``).
        Not leading: nothing to do. Fails with :class:`EtcdLeadershipLost` if the lead had been
        lost, or the key was found gone or changed.
        """
        if self._state == _CAMPAIGNING and self._campaign is not None:
            self._campaign.result.cancel()
            return succeed(None)
        if self._state != _LEADING:
            return self._resign_now()
        return self._serial.run(self._resign_now)

    def _resign_now(self) -> "Deferred[None]":
        if self._state == _LOST and self._loss is not None:
            loss = self._loss
            self._reset()
            return _fail(loss)
        if self._state != _LEADING or self.value is None:
            return succeed(None)
        value = self.value
        self._reset()
        self._lost = Signal()
        d = self.client.compare_and_delete(self.key, prev_value=value)

        def failed(f: Failure) -> Failure:
            if isinstance(f.value, (EtcdKeyNotFound, EtcdCompareFailed)):
                error = EtcdLeadershipLost(
                    f"election {self.key}: the key was gone or changed at resign: the lead had "
                    "been lost"
                )
                error.__cause__ = f.value
                return _failure(error)
            return f

        return d.addCallbacks(lambda _: None, failed)

    # -- anyone --------------------------------------------------------------------------------
    def leader(self) -> "Deferred[Optional[str]]":
        """The current leader's value (a quorum read), or ``None`` if nobody leads."""
        d = self.client.read(self.key, quorum=True)

        def missing(f: Failure) -> Any:
            return None if isinstance(f.value, EtcdKeyNotFound) else f

        return d.addCallbacks(lambda result: result.value, missing)

    def observe(
        self, callback: Optional[Callable[[Optional[str]], object]] = None
    ) -> "LeaderObserver":
        """Follow the leader: a :class:`LeaderObserver` yielding the current leader's value,
        then the value after each change (``None`` while nobody leads)."""
        return LeaderObserver(self.client, self.key, callback=callback)

    def __repr__(self) -> str:
        return f"<Election {self.key} {self._state} value={self.value!r}>"


class _Campaign:
    """One campaign: create the key or wait for it to go, until created."""

    def __init__(self, election: Election, value: str) -> None:
        self.election = election
        self.client = election.client
        self.clock: Any = election.client.clock
        self.key = election.key
        self.value = value
        self.result: Deferred[None] = Deferred(self._cancelled)
        self.over = False
        self._pending: Optional[Deferred[Any]] = None
        self._retry: Optional[IDelayedCall] = None
        self._failures = 0

    def start(self) -> None:
        self._try()

    def _try(self) -> None:
        self._retry = None
        if self.over:
            return
        sent_at = self.clock.seconds()
        d = self.client.write(self.key, self.value, self.election.ttl, prev_exist=False)
        d.addCallbacks(
            self._written, self._write_failed, callbackArgs=(sent_at,), errbackArgs=(sent_at,)
        )

    def _written(self, created: EtcdResult, sent_at: float) -> None:
        if self.over:  # cancelled meanwhile: give the key back
            self._give_back(created.modified_index)
            return
        self.over = True
        self.election._elected(self, created, sent_at)
        self.result.callback(None)

    def _give_back(self, modified_index: Optional[int]) -> None:
        delete_quietly(
            self.client,
            self.key,
            self.election.log,
            prev_value=self.value,
            prev_index=modified_index,
        )

    def _write_failed(self, failure: Failure, sent_at: float) -> None:
        err = failure.value
        if isinstance(err, OutcomeUnknown):
            self._check(sent_at)  # even when over: a key of ours must not linger
            return
        if self.over:
            return
        if isinstance(err, EtcdAlreadyExist):
            self._failures = 0
            self._wait(err.index + 1 if err.index else None)
        elif is_transient(err):
            self._retry_later(self._try)
        else:
            self._fail(failure)

    def _check(self, sent_at: float) -> None:
        """A create whose answer was lost: read the key to learn whether it is ours."""
        self._retry = None
        d = self.client.read(self.key, quorum=True)

        def read(result: EtcdResult) -> None:
            if result.value == self.value:
                self._written(result, sent_at)
            elif not self.over:
                index = result.etcd_index + 1 if result.etcd_index is not None else None
                self._wait(index)

        def failed(f: Failure) -> None:
            if isinstance(f.value, EtcdKeyNotFound):
                self._try()
            elif not self.over:
                self._retry_later(lambda: self._check(sent_at))

        d.addCallbacks(read, failed)

    def _wait(self, index: Optional[int]) -> None:
        if self.over:
            return
        d = self.client.watch(self.key, index=index, timeout=self.election.poll_timeout)
        self._pending = d
        d.addCallbacks(self._event, self._wait_failed)

    def _event(self, event: EtcdResult) -> None:
        self._pending = None
        if self.over:
            return
        if event.action in _GONE or event.modified_index is None:
            self._try()
        else:  # a new leader, or the leader proclaimed: wait on
            self._wait(event.modified_index + 1)

    def _wait_failed(self, failure: Failure) -> None:
        self._pending = None
        if self.over:
            return
        err = failure.value
        if isinstance(err, (EtcdWatchTimedOut, EtcdEventIndexCleared, EtcdWatcherCleared)):
            self._try()
        elif is_transient(err):
            self._retry_later(self._try)
        else:
            self._fail(failure)

    def _retry_later(self, again: Callable[[], None]) -> None:
        self._failures += 1
        self._retry = self.clock.callLater(backoff(self._failures), again)

    def _stop(self) -> None:
        self.over = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _fail(self, failure: Failure) -> None:
        self._stop()
        self.election._campaign_over(self)
        self.result.errback(failure)

    def _cancelled(self, result: "Deferred[None]") -> None:
        if self.over:
            return
        self._stop()
        self.election._campaign_over(self)


class LeaderObserver(ItemFeed):
    """The leader's value, now and after each change: ``async for value in observer`` (or a
    ``callback``). ``None`` means nobody leads.

    It reads the key, delivers its value, then follows it with the client's
    :class:`~txetcd.v2.EternalWatch` from the read's index on, so no change is missed (after an
    ``EventIndexCleared`` the watch re-reads, and the value read is delivered). A value equal
    to the last one delivered is not delivered again. ``cancel()`` stops it.

    :ivar current: the last value delivered.
    """

    def __init__(
        self,
        client: Client,
        key: str,
        *,
        callback: Optional[Callable[[Optional[str]], object]] = None,
    ) -> None:
        self.client = client
        self.key = key
        self._init_feed(callback, "observer")
        self.current: Optional[str] = None
        self.ended = False
        self._delivered = False
        self._watch: Optional[EternalWatch] = None
        self._done: Signal[None] = Signal()
        self._reading: Optional[Deferred[EtcdResult]] = client.read(key, quorum=True)
        self._reading.addCallbacks(self._read, self._read_failed)

    @property
    def done(self) -> "Deferred[None]":
        """Fires with ``None`` once cancelled, or fails with the error that ended the
        observation (an exception from ``callback``, or an error the watch cannot mend)."""
        return self._done.wait()

    def _read(self, result: EtcdResult) -> None:
        self._reading = None
        if self.ended:
            return
        self._deliver(result.value)
        self._follow(result.etcd_index)

    def _read_failed(self, failure: Failure) -> None:
        self._reading = None
        if self.ended:
            return
        if isinstance(failure.value, EtcdKeyNotFound):
            self._deliver(None)
            self._follow(failure.value.index or None)
        else:
            self._finish(failure)

    def _follow(self, index: Optional[int]) -> None:
        if self.ended:
            return
        watch = self.client.eternal_watch(
            self.key, index=index + 1 if index else None, callback=self._item
        )
        self._watch = watch
        watch.done.addErrback(self._finish)

    def _item(self, item: Any) -> None:
        if isinstance(item, Resynced):
            value = item.result.value if item.result is not None else None
        elif item.action in _GONE:
            value = None
        else:
            value = item.value
        self._deliver(value)

    def _deliver(self, value: Optional[str]) -> None:
        if self.ended or (self._delivered and value == self.current):
            return
        self._delivered, self.current = True, value
        self._feed(value)

    def _end_raised(self) -> None:
        self.done.addErrback(lambda _: None)  # raised to the consumer: handled

    def _finish(self, result: Optional[Failure]) -> None:
        if self.ended:
            return
        self.ended = True
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        self._feed_end(result)
        self._done.fire(None if result is None else result)

    def cancel(self) -> None:
        """Stop observing; ``done`` fires with ``None`` and ``async for`` ends."""
        self._finish(None)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "observing"
        return f"<LeaderObserver {self.key} {state} current={self.current!r}>"
