"""Items handed to a callback or to ``async for``: the delivery shared by the v2 watchers."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["ItemFeed"]

#: ``Failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

_END = object()


class ItemFeed:
    """Delivery for a watcher: each item goes to ``callback`` (an exception from it ends the
    watcher with that error) or, without one, waits in a queue for ``async for``.

    Subclasses call :meth:`_init_feed`, :meth:`_feed` for each item and :meth:`_feed_end` when
    they end, and provide ``ended`` and ``_finish(failure_or_None)``.
    """

    ended: bool
    callback: Optional[Callable[[Any], object]]

    def _init_feed(self, callback: Optional[Callable[[Any], object]], what: str) -> None:
        self.callback = callback
        self._what = what
        self._queue: Deque[Any] = deque()
        self._waiter: Optional[Deferred[Any]] = None
        self._end_result: Optional[Failure] = None

    def _finish(self, result: Optional[Failure]) -> None:
        raise NotImplementedError

    def _feed(self, item: Any) -> None:
        if self.callback is not None:
            try:
                self.callback(item)
            except Exception:
                self._finish(_failure())
            return
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(item)
        else:
            self._queue.append(item)

    def _feed_end(self, result: Optional[Failure]) -> None:
        """No more items: ``async for`` ends (raising ``result``'s error, if any)."""
        self._end_result = result
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(_END)
        else:
            self._queue.append(_END)

    def _consumed(self) -> None:
        """An item left the queue (a subclass may resume reading)."""

    def _end_raised(self) -> None:
        """The ending error was raised to ``async for`` (a subclass may mark it handled)."""

    def __aiter__(self) -> "ItemFeed":
        if self.callback is not None:
            raise TypeError(f"this {self._what} delivers to its callback; it cannot be iterated")
        return self

    async def __anext__(self) -> Any:
        if self._queue:
            item = self._queue.popleft()
            self._consumed()
        elif self.ended:
            item = _END
        else:
            self._waiter = Deferred()
            item = await self._waiter
        if item is _END:
            if self._end_result is not None:
                self._end_raised()
                self._end_result.raiseException()
            raise StopAsyncIteration
        return item
