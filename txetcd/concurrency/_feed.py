"""One watch per client and queue prefix, shared by the client's waiters and holders there.

A :class:`Feed` watches a lock's or election's prefix for deletes (``noput``: new waiters'
keys do not matter to anyone already queued). Each waiter or holder of the client on that prefix
has a :class:`View` of it: the keys ahead of its own that are still there, and whether its own
key was deleted. A waiter's turn comes when the last key ahead of it is deleted, which the view
sees in the delete's event itself: no read is needed after a release, and no watch is created
per wait (so none starts behind the store's revision, which etcd only catches up every 100 ms).

Why a view is exact. A view is given the keys ahead of ours as a read at revision ``R`` saw them
(:meth:`View.expect`); the feed must have been *created* before that read was sent, and the view
*subscribed* before it was sent too. Then

- every event after ``R`` reaches the view: the watch delivers each revision after its creation
  revision ``C`` in order, ``C <= R`` (a linearizable read sent after the creation answer sees at
  least ``C``), and anything delivered before the view subscribed had a revision ``<= R`` for
  the same reason;
- no key can join the keys ahead later: create revisions only grow, so keys created after ours
  are behind it;
- a key name seen in a delete after ``R`` was the key the read saw or a later one of the same
  name, which needs the one the read saw gone first: either way that key is gone;
- events reach the view one revision at a time and in order, so once the last key ahead is
  gone at revision ``D`` with no delete of our key at or before ``D``, our key is the oldest at
  ``D``: what a read at ``D`` would say (the re-check of our own key after the wait, etcd
  #11456, without the read).

Deletes that arrive before the read's answer are recorded and applied once ``R`` is known.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Set, Union
from weakref import WeakKeyDictionary

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from txetcd._types import EventType, WatchBatch

__all__ = ["Feed", "View", "established", "feed_for"]

Lost = Callable[[Optional[Failure]], None]

_feeds: "WeakKeyDictionary[Any, Dict[bytes, Feed]]" = WeakKeyDictionary()


def established(client: Any, prefix: bytes) -> Optional["Feed"]:
    """The client's feed on ``prefix`` if it is created and running, else ``None``."""
    feed = _feeds.get(client, {}).get(prefix)
    if feed is None or not feed.ready:
        return None
    return feed


def feed_for(client: Any, prefix: bytes) -> "Feed":
    """The client's feed on ``prefix``, started if there is none."""
    feeds = _feeds.setdefault(client, {})
    feed = feeds.get(prefix)
    if feed is None:
        feed = Feed(client, prefix)
        if not feed.ended:  # a closed client ends its watch at once
            feeds[prefix] = feed
    return feed


class Feed:
    """A watch of the deletes under ``prefix``, running while any :class:`View` of it is
    open (use :func:`feed_for`)."""

    def __init__(self, client: Any, prefix: bytes) -> None:
        self.client = client
        self.prefix = prefix
        self.ready = False
        self.ended = False
        self._why: Optional[Failure] = None  # why the watch ended, once it has
        self._views: Dict[View, None] = {}
        self._watch = client.watch(prefix, prefix=True, filters=["noput"], callback=self._batch)
        self._watch.created.addCallbacks(self._created, lambda _: None)
        self._watch.done.addBoth(self._done)

    def __repr__(self) -> str:
        return f"<Feed {self.prefix!r} views={len(self._views)} ready={self.ready}>"

    @property
    def created(self) -> "Deferred[int]":
        """Fires once the watch is created (with its creation revision)."""
        d: Deferred[int] = self._watch.created
        return d

    def view(self, key: bytes) -> "View":
        """A new view for the owner key ``key``, recording deletes from now."""
        view = View(self, key)
        if self._why is not None:
            view._broke(self._why)
        else:
            self._views[view] = None
        return view

    def _forget(self, view: "View") -> None:
        self._views.pop(view, None)
        if not self._views and not self.ended:
            self._end()
            self._watch.cancel()

    def _end(self) -> None:
        self.ended = True
        self.ready = False
        feeds = _feeds.get(self.client)
        if feeds is not None and feeds.get(self.prefix) is self:
            del feeds[self.prefix]
            if not feeds:
                del _feeds[self.client]

    def _created(self, _: int) -> None:
        self.ready = not self.ended

    def _batch(self, batch: WatchBatch) -> None:
        deleted = [e.kv.key for e in batch.events if e.type == EventType.DELETE]
        if deleted:
            for view in list(self._views):
                view._deleted(deleted, batch.revision)

    def _done(self, result: Union[None, Failure]) -> None:
        if not self.ended:
            self._end()
        why = result if isinstance(result, Failure) else None
        if why is None:
            why = Failure(CancelledError(f"the watch of {self.prefix!r} ended"))  # type: ignore[no-untyped-call]
        self._why = why
        for view in list(self._views):
            view._broke(why)
        self._views.clear()


class View:
    """One waiter's or holder's view of a :class:`Feed`: the keys still ahead of its owner key
    ``key``, and that key's delete."""

    def __init__(self, feed: Feed, key: bytes) -> None:
        self.feed = feed
        self.key = key
        self.closed = False
        self._after: Optional[int] = None  # None: recording until a read's revision is known
        self._recent: Dict[bytes, int] = {}  # key -> its last delete's revision, while recording
        self._ahead: Set[bytes] = set()
        self._more = False
        self._turn: Optional[Deferred[bool]] = None
        self._on_lost: Optional[Lost] = None
        self._lost: Optional[Failure] = None
        self._gone = False  # our key was deleted, or the feed ended

    def __repr__(self) -> str:
        return f"<View {self.key!r} ahead={len(self._ahead)} after={self._after}>"

    def on_lost(self, callback: Lost) -> None:
        """Call ``callback(None)`` when our key is deleted, ``callback(failure)`` if the feed
        ends first (at once if either happened already)."""
        self._on_lost = callback
        if self._gone:
            self._tell()

    def record(self) -> None:
        """Start recording deletes again: call it before sending the read for :meth:`expect`."""
        self._after = None
        self._recent = {}

    def expect(self, revision: int, ahead: Iterable[bytes], more: bool) -> "Deferred[bool]":
        """Fires once none of ``ahead`` (the keys older than ours that a read at ``revision``
        found) is left, with ``more``: True if that read was cut by its limit, so older keys
        may remain (read again). Never fires if our key is deleted first (``on_lost`` says so);
        fails if the feed ends."""
        recent, self._recent = self._recent, {}
        self._after = revision
        self._more = more
        turn: Deferred[bool] = Deferred(self._cancel_turn)
        if self._gone:  # our key went (on_lost told), or the feed ended
            if self._lost is not None:
                turn.errback(self._lost)
            return turn
        self._turn = turn
        self._ahead = {key for key in ahead if recent.get(key, 0) <= revision}
        if recent.get(self.key, 0) > revision:
            self._lose()
        else:
            self._check()
        return turn

    def close(self) -> None:
        """Stop following the feed (it stops once nobody follows it). A pending
        :meth:`expect` never fires then."""
        if self.closed:
            return
        self.closed = True
        self._on_lost = None
        self._turn = None  # dropped, not failed: whoever waits on it also waits on the loss
        self.feed._forget(self)

    def _cancel_turn(self, d: "Deferred[bool]") -> None:
        if self._turn is d:
            self._turn = None

    def _deleted(self, keys: "list[bytes]", revision: int) -> None:
        if self._gone:
            return
        after = self._after
        if after is None:
            for key in keys:
                self._recent[key] = revision
            return
        if revision <= after:
            return
        mine = False
        for key in keys:
            if key == self.key:
                mine = True
            self._ahead.discard(key)
        if mine:  # one revision's events count together: a delete of ours in it wins
            self._lose()
        else:
            self._check()

    def _check(self) -> None:
        turn = self._turn
        if turn is not None and not self._ahead:
            self._turn = None
            turn.callback(self._more)

    def _lose(self) -> None:
        self._gone = True
        self._turn = None  # never fires: the loss is told through on_lost
        self._tell()

    def _broke(self, why: Failure) -> None:
        if self.closed or self._gone:
            return
        self._gone = True
        self._lost = why
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.errback(why)
        self._tell()

    def _tell(self) -> None:
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback(self._lost)
