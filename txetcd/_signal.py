"""The one one-shot event type: ``created``, ``done``, ``ready`` and ``lost`` are each a Signal."""

from __future__ import annotations

from typing import Any, Generic, List, Optional, TypeVar, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

__all__ = ["Signal"]

T = TypeVar("T")


class Signal(Generic[T]):
    """Something that happens once, which any number of observers can wait for.

    :meth:`wait` returns a new Deferred each time (so no observer can change what another
    gets), fired at once if the signal has fired. A failure fired while nobody waits is
    reported as an unhandled error unless someone waits for it before it is garbage collected.
    """

    def __init__(self) -> None:
        self._fired = False
        self._result: Any = None
        self._waiters: List[Deferred[T]] = []
        self._unobserved: Optional[Deferred[T]] = None

    @property
    def fired(self) -> bool:
        """True once the signal has fired."""
        return self._fired

    def wait(self) -> "Deferred[T]":
        """A new Deferred that fires with the signal's outcome (cancelling it drops it)."""
        if self._fired:
            if self._unobserved is not None:
                self._unobserved.addErrback(lambda _: None)  # observed now
                self._unobserved = None
            result = self._result
            return fail(result) if isinstance(result, Failure) else succeed(result)
        d: Deferred[T] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        return d

    def fire(self, result: Union[T, Failure]) -> None:
        """Fire the signal (only the first call counts)."""
        if self._fired:
            return
        self._fired, self._result = True, result
        waiters, self._waiters = self._waiters, []
        if isinstance(result, Failure):
            if not waiters:
                self._unobserved = Deferred()
                self._unobserved.errback(result)
            for d in waiters:
                d.errback(result)
        else:
            for d in waiters:
                d.callback(result)
