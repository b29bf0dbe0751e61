"""Mirror: a local, always-current dict of a prefix, built only on the public client API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN
from txetcd._errors import ConnectionFailed, RevisionCompacted, Timeout, Unavailable
from txetcd._retry import backoff_policy
from txetcd._signal import Signal
from txetcd._types import EventType, KeyValue, WatchBatch

if TYPE_CHECKING:
    from txetcd._client import Client
    from txetcd._watch import Watch

__all__ = ["Mirror", "MirrorChange"]

#: the wait before listing again after etcd could not be reached (failures in a row, from 1)
RELIST_BACKOFF = backoff_policy(initial=0.1, maximum=5.0)


def _ignore(_: object) -> None:
    return None


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]


class MirrorChange(NamedTuple):
    """One key changed in a :class:`Mirror`.

    ``old``/``new`` are the key's state before and after (``None``: absent). ``resync`` is True
    for changes found by re-listing after a compaction, when the individual events could no
    longer be seen (several writes to a key then show as one change).
    """

    key: bytes
    old: Optional[KeyValue]
    new: Optional[KeyValue]
    revision: int
    resync: bool


class Mirror(Mapping[bytes, bytes]):
    """Keep a local copy of every key under ``prefix``: read at a revision R, then watch R + 1.

    It reads like a dict of key -> value (``mirror[b"config/a"]``, ``in``, ``len``, iteration);
    :attr:`kvs` has the full :class:`~txetcd.KeyValue` of each key. :attr:`ready` fires with
    the mirror once the first listing is in and its watch is created. ``on_change`` is called
    with a :class:`MirrorChange` for every change after that. After a compaction it re-lists
    and carries on, reporting the changes it could not see one by one with ``resync=True``.
    ``close()`` stops it.

    Getting ready has a deadline: ``timeout`` seconds (by default the client's ``timeout``;
    ``None``: none). If etcd cannot be reached by then, ``ready`` and ``done`` fail with
    :class:`~txetcd.ConnectionFailed` naming the endpoint and the cause. Once ready, the mirror
    follows the prefix through any outage (its watch resumes, or it lists again).

    :ivar revision: the store revision the mirror is current to.
    :ivar resyncs: how many times it had to re-list.
    """

    log = Logger()

    def __init__(
        self,
        client: "Client",
        prefix: Any,
        *,
        on_change: Optional[Callable[[MirrorChange], Any]] = None,
        timeout: Any = NOT_GIVEN,
    ) -> None:
        if on_change is not None and not callable(on_change):
            raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
        self.client = client
        self.prefix = prefix.encode() if isinstance(prefix, str) else prefix
        if not isinstance(self.prefix, bytes):
            raise TypeError(f"prefix must be bytes or str, not {type(prefix).__name__}")
        if timeout is NOT_GIVEN:
            timeout = client.timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise TypeError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
        self.on_change = on_change
        self.kvs: Dict[bytes, KeyValue] = {}
        self.revision = 0
        self.resyncs = 0
        self.closed = False
        self._ready: Signal[Mirror] = Signal()
        self._done: Signal[None] = Signal()
        self._looked = False  # someone asked for ready or done
        self._unseen: Optional[Deferred[None]] = None  # an ending failure nobody has seen yet
        self._watch: Optional[Watch] = None
        self._listing: Optional[Deferred[Any]] = None
        self._retry: Optional[IDelayedCall] = None
        self._failures = 0
        self._last_error: Optional[BaseException] = None
        self._timeout: Optional[float] = None if timeout is None else float(timeout)
        self._deadline: Optional[IDelayedCall] = None
        self._ready_by = 0.0
        if self._timeout is not None:
            clock = client.reactor
            self._ready_by = clock.seconds() + self._timeout
            self._deadline = clock.callLater(self._timeout, self._timed_out)
        self._list(resync=False)

    @property
    def ready(self) -> "Deferred[Mirror]":
        """Fires with the mirror once it holds the prefix and follows it; fails with
        :class:`~txetcd.ConnectionFailed` if etcd could not be reached within its ``timeout``,
        with ``CancelledError`` if it was closed first, or with what ended it.
        """
        self._observe()
        return self._ready.wait()

    @property
    def done(self) -> "Deferred[None]":
        """Fires with ``None`` on :meth:`close` or when its client is closed (the mirror stops
        following: :attr:`closed` is true); fails with what ended the mirror otherwise
        (an ``on_change`` that raised, a watch refused by etcd, etcd out of reach at start).
        """
        self._observe()
        return self._done.wait()

    # -- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, key: bytes) -> bytes:
        return self.kvs[key].value

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.kvs)

    def __len__(self) -> int:
        return len(self.kvs)

    def __repr__(self) -> str:
        return f"<Mirror {self.prefix!r}: {len(self.kvs)} keys at revision {self.revision}>"

    # -- running ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop following the prefix (the copy keeps its last state); ``done`` fires."""
        if self.closed:
            return
        self._stop()
        if not self._ready.fired:
            self._ready.fire(_failure(CancelledError("the mirror was closed")))
            self._ready.wait().addErrback(_ignore)
        self._done.fire(None)

    def _observe(self) -> None:
        self._looked = True
        unseen, self._unseen = self._unseen, None
        if unseen is not None:
            unseen.addErrback(_ignore)

    def _stop(self) -> None:
        """Closed (by close() or a failure): no timer, listing or watch is left."""
        self.closed = True
        for timer in (self._retry, self._deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._deadline = None
        listing, self._listing = self._listing, None
        if listing is not None:
            listing.addErrback(_ignore)
            listing.cancel()
        if self._watch is not None:
            self._watch.cancel()

    def _timed_out(self) -> None:
        """Not ready in time: etcd could not be reached (a watch being created fails itself)."""
        self._deadline = None
        if self.closed or self._ready.fired or self._watch is not None:
            return
        cause = self._last_error
        why = str(cause) if cause is not None else "no answer from etcd"
        err = ConnectionFailed(
            f"the mirror of {self.prefix!r} was not ready within {self._timeout:g} s: {why}"
        )
        err.__cause__ = cause
        self._failed(_failure(err))

    def _list(self, resync: bool) -> None:
        self._retry = None
        d = self._listing = self.client.get_prefix(self.prefix)
        d.addCallbacks(
            self._listed, self._list_failed, callbackArgs=(resync,), errbackArgs=(resync,)
        )

    def _list_failed(self, failure: Failure, resync: bool) -> None:
        """etcd out of reach: list again later (backoff on the client's clock)."""
        self._listing = None
        if self.closed:
            return
        if not isinstance(failure.value, (ConnectionFailed, Timeout, Unavailable)):
            self._failed(failure)
            return
        self._last_error = failure.value
        self._failures += 1
        delay = RELIST_BACKOFF(self._failures)
        self._retry = self.client.reactor.callLater(delay, self._list, resync)

    def _listed(self, result: Any, resync: bool) -> None:
        self._listing = None
        if self.closed:
            return
        self._failures = 0
        revision = result.header.revision
        fresh = {kv.key: kv for kv in result.kvs}
        if resync:
            self.resyncs += 1
            old = self.kvs
            self.kvs = fresh
            self.revision = revision
            for key in sorted(set(old) | set(fresh)):
                before, after = old.get(key), fresh.get(key)
                if before != after:
                    self._report(MirrorChange(key, before, after, revision, True))
        else:
            self.kvs = fresh
            self.revision = revision
        timeout: Optional[float] = None  # once ready, it follows the prefix come what may
        if not self._ready.fired and self._timeout is not None:
            timeout = max(self._ready_by - self.client.reactor.seconds(), 0.001)
        watch = self.client.watch(
            self.prefix,
            prefix=True,
            start_revision=revision + 1,
            callback=self._apply,
            timeout=timeout,
        )
        self._watch = watch
        watch.created.addCallbacks(self._watching, _ignore)  # its failure comes through done
        watch.done.addCallbacks(
            self._watch_ended, self._watch_failed, callbackArgs=(watch,), errbackArgs=(watch,)
        )

    def _watching(self, _: int) -> None:
        if self.closed or self._ready.fired:
            return
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._ready.fire(self)

    def _apply(self, batch: WatchBatch) -> None:
        for event in batch.events:
            key = event.kv.key
            before = self.kvs.get(key)
            if event.type == EventType.DELETE:
                if before is None:
                    continue
                del self.kvs[key]
                after = None
            else:
                after = self.kvs[key] = event.kv
            self._report(MirrorChange(key, before, after, batch.revision, False))
        self.revision = batch.revision

    def _report(self, change: MirrorChange) -> None:
        if self.on_change is not None:
            self.on_change(change)  # an exception here ends the watch, and so the mirror

    def _watch_ended(self, _: None, watch: "Watch") -> None:
        """The watch ended cleanly without the mirror cancelling it: its client was closed.
        The mirror ends too (as by :meth:`close`), rather than sit stale."""
        if self.closed or watch is not self._watch:
            return
        self.log.info("mirror of {prefix!r}: its client was closed", prefix=self.prefix)
        self.close()

    def _watch_failed(self, failure: Failure, watch: "Watch") -> None:
        if self.closed or watch is not self._watch:
            return
        if isinstance(failure.value, RevisionCompacted):
            self.log.info(
                "mirror of {prefix!r}: history compacted past revision {rev}; re-listing",
                prefix=self.prefix,
                rev=self.revision,
            )
            self._list(resync=True)
            return
        self._failed(failure)

    def _failed(self, failure: Failure) -> None:
        if self.closed:
            return
        self._stop()
        if self._ready.fired:
            self._done.fire(failure)  # a failure nobody waits for is reported by the Signal
            return
        # Never ready: ready and done both fail; reported (as unhandled) only if nobody asked.
        for signal in (self._ready, self._done):
            signal.fire(failure)
            signal.wait().addErrback(_ignore)
        if not self._looked:
            self._unseen = Deferred()
            self._unseen.errback(failure)
