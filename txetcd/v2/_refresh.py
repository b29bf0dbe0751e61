"""What the v2 :class:`~txetcd.v2.Lock` and :class:`~txetcd.v2.Election` share: the loop that
keeps a key's TTL refreshed on the client's clock and says when the key is lost, argument
checks, backoff, and a quiet compare-and-delete."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ConnectionFailed, Timeout
from txetcd._retry import backoff_policy
from txetcd.v2._client import Client
from txetcd.v2._errors import (
    EtcdCompareFailed,
    EtcdKeyNotFound,
)
from txetcd.v2._result import EtcdResult

__all__ = [
    "check_ttl",
    "check_value",
    "check_name",
    "backoff",
    "is_transient",
    "delete_quietly",
]

#: ``Failure(exc)``, or ``Failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

#: called by a refresher that gave up: (the refresher, why, whether the key may still exist)
LostCallback = Callable[["_Refresher", str, bool], None]


def check_ttl(ttl: object) -> int:
    """``ttl`` if it is a whole number of seconds >= 1, else ``TypeError``/``ValueError``."""
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise TypeError(f"ttl is a whole number of seconds, not {type(ttl).__name__}")
    if ttl < 1:
        raise ValueError(f"ttl must be >= 1 second, not {ttl}")
    return ttl


def check_value(value: object, what: str) -> str:
    """``value`` if it is a non-empty ``str`` (etcd cannot compare against ``""``)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} is a str, not {type(value).__name__}")
    if value == "":
        raise ValueError(f"{what} cannot be empty: etcd cannot compare against an empty value")
    return value


def check_name(name: object) -> str:
    """``name`` if it is a non-empty ``str``."""
    if not isinstance(name, str):
        raise TypeError(f"name is a str, not {type(name).__name__}")
    if not name.strip("/"):
        raise ValueError("name cannot be empty")
    return name


#: the retry waits of the refresh loops: 0.05 s doubling up to 1 s, with jitter
_BACKOFF = backoff_policy(initial=0.05, maximum=1.0)


def backoff(failures: int) -> float:
    """Seconds to wait before retrying after ``failures`` (1 for the first) transient failures
    in a row: :func:`txetcd._retry.backoff_policy`'s 0.05 s doubling up to 1 s, scaled by a
    random factor in ``[0.5, 1)`` so that clients that failed together do not retry together."""
    return _BACKOFF(failures - 1)


def is_transient(error: Optional[BaseException]) -> bool:
    """A failure worth retrying: no answer (yet) from etcd."""
    return isinstance(error, (ConnectionFailed, Timeout))


class _Refresher:
    """Keeps one key alive: a TTL refresh every ``ttl / 3`` seconds on the client's clock.

    The key may be gone ``ttl`` seconds after the last successful refresh was *sent*; if no
    refresh succeeds before then, or a refresh finds the key gone (or, with ``prev_value``,
    holding another value), it stops and calls ``on_lost``. Transient failures are retried
    sooner than the next regular refresh.

    :ivar prev_value: refresh only while the key holds this value (``None``: any value).
    :ivar busy: compare failures are inconclusive while true (the owner is changing the value).
    :ivar modified_index: the key's modified index after the last refresh that worked.
    """

    log = Logger()

    def __init__(
        self,
        client: Client,
        key: str,
        ttl: int,
        *,
        alive_since: float,
        modified_index: Optional[int],
        on_lost: LostCallback,
        prev_value: Optional[str] = None,
    ) -> None:
        self.client = client
        self.clock: Any = client.clock
        self.key = key
        self.ttl = ttl
        self.prev_value = prev_value
        self.modified_index = modified_index
        self.on_lost = on_lost
        self.busy = False
        self.stopped = False
        self.refreshes = 0
        self.last_error: Optional[BaseException] = None
        self._confirmed_at = alive_since
        self._expires_at = alive_since + ttl
        self._inflight: List[Deferred[EtcdResult]] = []
        self._tick: Optional[IDelayedCall] = None
        self._expiry: Optional[IDelayedCall] = None
        self._schedule(self.interval)
        self._arm_expiry()

    @property
    def interval(self) -> float:
        """Seconds between refreshes: a third of the TTL."""
        return self.ttl / 3.0

    # -- timers --------------------------------------------------------------------------------
    def _schedule(self, delay: float, *, sooner_only: bool = False) -> None:
        if self.stopped:
            return
        tick = self._tick
        if tick is not None and tick.active():
            if sooner_only and tick.getTime() <= self.clock.seconds() + delay:
                return
            tick.cancel()
        self._tick = self.clock.callLater(delay, self._refresh_on_time)

    def _arm_expiry(self) -> None:
        delay = max(0.0, self._expires_at - self.clock.seconds())
        if self._expiry is not None and self._expiry.active():
            self._expiry.reset(delay)
        else:
            self._expiry = self.clock.callLater(delay, self._expired)

    def _refresh_on_time(self) -> None:
        self._tick = None
        self.refresh().addErrback(lambda _: None)  # handled in _answered

    def _expired(self) -> None:
        self._expiry = None
        last = f" (last error: {self.last_error})" if self.last_error is not None else ""
        self.lose(
            f"{self.key} was not refreshed within its TTL of {self.ttl} s{last}: it may have "
            "expired",
            maybe_alive=True,
        )

    # -- refreshing ----------------------------------------------------------------------------
    def refresh(self, ttl: Optional[int] = None) -> "Deferred[EtcdResult]":
        """Refresh now (with a new TTL if given); fires with the answer, or fails."""
        ttl_used = self.ttl if ttl is None else ttl
        value_used = self.prev_value
        sent_at = self.clock.seconds()
        timeout = max(1.0, ttl_used / 3.0)
        if value_used is None:
            d = self.client.refresh(self.key, ttl_used, timeout=timeout)
        else:
            d = self.client.refresh(self.key, ttl_used, timeout=timeout, prev_value=value_used)
        self._inflight.append(d)
        d.addBoth(self._answered, d, sent_at, ttl_used, value_used)
        return d

    def _answered(
        self,
        result: Any,
        d: "Deferred[EtcdResult]",
        sent_at: float,
        ttl: int,
        value_used: Optional[str],
    ) -> Any:
        if d in self._inflight:
            self._inflight.remove(d)
        if self.stopped:
            return result
        if isinstance(result, Failure):
            err = result.value
            if isinstance(err, CancelledError):
                return result
            self.last_error = err
            if isinstance(err, EtcdKeyNotFound):
                self.lose(f"{self.key} is gone (deleted or expired)", maybe_alive=False)
            elif (
                isinstance(err, EtcdCompareFailed)
                and not self.busy
                and value_used == self.prev_value
            ):
                self.lose(f"{self.key} holds another value now", maybe_alive=False)
            else:
                self.log.info("refresh of {key} failed, retrying: {error}", key=self.key, error=err)
                self._schedule(min(self.interval / 2.0, 1.0), sooner_only=True)
            return result
        self.refreshes += 1
        self.confirm(sent_at, ttl, result.modified_index)
        return result

    def confirm(self, sent_at: float, ttl: int, modified_index: Optional[int]) -> None:
        """A write sent at ``sent_at`` (clock time) gave the key ``ttl`` seconds again."""
        if self.stopped or sent_at < self._confirmed_at:
            return
        self.ttl = ttl
        self._confirmed_at = sent_at
        self._expires_at = sent_at + ttl
        if modified_index is not None:
            self.modified_index = modified_index
        self.last_error = None
        self._arm_expiry()
        self._schedule(self.interval)

    # -- ending --------------------------------------------------------------------------------
    def lose(self, reason: str, *, maybe_alive: bool) -> None:
        """Give the key up as lost: stop, and tell the owner."""
        if self.stopped:
            return
        self.stop()
        self.on_lost(self, reason, maybe_alive)

    def stop(self) -> None:
        """Stop refreshing (refreshes in flight are cancelled)."""
        if self.stopped:
            return
        self.stopped = True
        for call in (self._tick, self._expiry):
            if call is not None and call.active():
                call.cancel()
        self._tick = self._expiry = None
        inflight, self._inflight = self._inflight, []
        for d in inflight:
            d.cancel()


def delete_quietly(
    client: Client,
    key: str,
    log: Logger,
    *,
    prev_value: Optional[str] = None,
    prev_index: Optional[int] = None,
) -> "Deferred[None]":
    """Compare-and-delete ``key``; a key already gone or changed is fine, other errors are
    logged. Always succeeds."""
    d = client.compare_and_delete(key, prev_value=prev_value, prev_index=prev_index)

    def failed(f: Failure) -> None:
        if not isinstance(f.value, (EtcdKeyNotFound, EtcdCompareFailed)):
            log.warn("could not delete {key}: {error}", key=key, error=f.value)

    return d.addCallbacks(lambda _: None, failed)


def _fail(error: BaseException) -> "Deferred[Any]":
    d: Deferred[Any] = Deferred()
    d.errback(_failure(error))
    return d
