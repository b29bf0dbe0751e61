"""Mirror: a local, always-current dict of a prefix, built only on the public client API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ConnectionFailed, RevisionCompacted, Timeout, Unavailable
from txetcd._types import EventType, KeyValue, WatchBatch

if TYPE_CHECKING:
    from txetcd._client import Client
    from txetcd._watch import Watch

__all__ = ["Mirror", "MirrorChange"]


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
    :attr:`kvs` has the full :class:`~txetcd.KeyValue` of each key. ``ready`` fires with the
    mirror once the first listing is in. ``on_change`` is called with a :class:`MirrorChange`
    for every change after that. After a compaction it re-lists and carries on, reporting the
    changes it could not see one by one with ``resync=True``. ``close()`` stops it.

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
    ) -> None:
        if on_change is not None and not callable(on_change):
            raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
        self.client = client
        self.prefix = prefix.encode() if isinstance(prefix, str) else prefix
        if not isinstance(self.prefix, bytes):
            raise TypeError(f"prefix must be bytes or str, not {type(prefix).__name__}")
        self.on_change = on_change
        self.kvs: Dict[bytes, KeyValue] = {}
        self.revision = 0
        self.resyncs = 0
        self.ready: Deferred[Mirror] = Deferred()
        self.done: Deferred[None] = Deferred()
        self.closed = False
        self._watch: Optional[Watch] = None
        self._retry: Optional[IDelayedCall] = None
        self._failures = 0
        self._list(resync=False)

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
        self.closed = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._watch is not None:
            self._watch.cancel()
        if not self.done.called:
            self.done.callback(None)

    def _list(self, resync: bool) -> None:
        self._retry = None
        d = self.client.get_prefix(self.prefix)
        d.addCallbacks(
            self._listed, self._list_failed, callbackArgs=(resync,), errbackArgs=(resync,)
        )

    def _list_failed(self, failure: Failure, resync: bool) -> None:
        """etcd out of reach: list again later (backoff on the client's clock)."""
        if self.closed:
            return
        if not isinstance(failure.value, (ConnectionFailed, Timeout, Unavailable)):
            self._failed(failure)
            return
        self._failures += 1
        delay = min(5.0, 0.1 * 2 ** min(self._failures, 10))
        self._retry = self.client.reactor.callLater(delay, self._list, resync)

    def _listed(self, result: Any, resync: bool) -> None:
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
        watch = self.client.watch(
            self.prefix, prefix=True, start_revision=revision + 1, callback=self._apply
        )
        self._watch = watch
        watch.done.addErrback(self._watch_failed, watch)
        if not self.ready.called:
            self.ready.callback(self)

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
        self.closed = True
        if not self.ready.called:
            self.ready.errback(failure)
        if not self.done.called:
            self.done.errback(failure)
