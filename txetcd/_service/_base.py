"""What the services share: one *run* per ``startService`` .. ``stopService`` whose waits a stop
interrupts, the backoff between attempts (on the injected clock), and calling user code.

A service's work is a coroutine, :meth:`LoopService._loop`, run once per start. It waits only
through :meth:`Run.wait`, so ``stopService`` can cancel whatever it waits for; it cleans up in
``finally`` blocks, and ``stopService``'s Deferred fires once that cleanup is done. A new start
makes a new :class:`Run`: a run still cleaning up touches only its own state.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Coroutine, Generic, List, Optional, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._retry import backoff_policy
from txetcd.concurrency._common import sleep

__all__ = [
    "DEFAULT_RETRY",
    "LoopService",
    "Run",
    "Stopped",
    "call_user",
    "check_callable",
    "check_retry_policy",
    "failure_of",
    "observe",
]

T = TypeVar("T")

#: the default wait between attempts of a service (failures in a row, from 0 -> seconds)
DEFAULT_RETRY: Callable[[int], float] = backoff_policy(initial=0.5, maximum=30.0)

#: how long a stop lets an interrupted wait clean up (a campaign withdrawing its key) before it
#: cancels it again, when the client has no call timeout
STOP_GRACE = 10.0


class Stopped(Exception):
    """The run was asked to stop (raised out of :meth:`Run.wait`; never seen by users)."""


def failure_of(error: BaseException) -> Failure:
    """A Failure of ``error`` (typed for mypy)."""
    return Failure(error)  # type: ignore[no-untyped-call]


def check_callable(value: Any, name: str, optional: bool = True) -> None:
    """``TypeError`` naming ``name`` unless ``value`` is callable (or None, if ``optional``)."""
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


def check_retry_policy(policy: Any) -> Callable[[int], float]:
    """The policy, or :data:`DEFAULT_RETRY` for ``None``."""
    if policy is None:
        return DEFAULT_RETRY
    check_callable(policy, "retry_policy", optional=False)
    checked: Callable[[int], float] = policy
    return checked


def call_user(f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
    """Call user code: its outcome as a Deferred (a coroutine is run, a raised exception is a
    failure, a Deferred is given back as it is, anything else is the result)."""
    try:
        result = f(*args)
    except Exception:
        return fail()
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if isinstance(result, Deferred):
        return result
    return succeed(result)


def observe(d: "Deferred[T]") -> "Deferred[T]":
    """A new Deferred with ``d``'s outcome, leaving ``d``'s own chain as it was."""
    out: Deferred[T] = Deferred()

    def passon(result: Any) -> Any:
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
        return result

    d.addBoth(passon)
    return out


class Run:
    """One start .. stop of a service: its client, and the wait a stop interrupts."""

    def __init__(self, clock_of: Callable[["Run"], Any]) -> None:
        self.stopping = False
        self.client: Any = None
        self.done: Optional[Deferred[None]] = None
        self._clock_of = clock_of
        self._waiting: Optional[Deferred[Any]] = None
        self._grace: Optional[IDelayedCall] = None

    @property
    def clock(self) -> Any:
        """The ``IReactorTime`` for this run's timers: the service's ``clock``, or its client's."""
        return self._clock_of(self)

    async def wait(self, d: "Deferred[T]") -> T:
        """``d``'s result; :class:`Stopped` once the run is asked to stop (``d`` is then
        cancelled, and what it does on cancellation is waited for)."""
        self._waiting = d
        if self.stopping:
            self._interrupt(d)
        try:
            result = await d
        except Exception as error:
            if self.stopping:
                raise Stopped() from error
            raise
        finally:
            self._waiting = None
            grace, self._grace = self._grace, None
            if grace is not None and grace.active():
                grace.cancel()
        if self.stopping:
            raise Stopped()
        return result

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` on the run's clock (interrupted by a stop)."""
        await self.wait(sleep(self.clock, seconds))

    async def park(self) -> None:
        """Wait for the stop: the service has nothing more it can do."""
        await self.wait(Deferred())

    def stop(self) -> None:
        """Ask the run to stop: the wait under way is cancelled."""
        self.stopping = True
        if self._waiting is not None:
            self._interrupt(self._waiting)

    def _interrupt(self, d: "Deferred[Any]") -> None:
        d.cancel()
        clock = self.clock
        if self._waiting is d and self._grace is None and clock is not None:
            # still cleaning up after the cancel: give it a while, then cancel it again
            timeout = getattr(self.client, "timeout", None) or STOP_GRACE
            self._grace = clock.callLater(timeout, d.cancel)


class LoopService(Service, Generic[T]):
    """A service whose work is :meth:`_loop`, run from each start to its stop, with a
    :meth:`whenReady` of type ``T`` (what the loop has made ready: a mirror, a session)."""

    log = Logger()

    def __init__(self, source: Any, retry_policy: Any, clock: Any) -> None:
        self._source = source
        self.retry_policy = check_retry_policy(retry_policy)
        self._clock = clock
        self._run: Optional[Run] = None
        self._ready: Optional[T] = None
        self._waiters: List[Deferred[T]] = []

    # -- IService ------------------------------------------------------------------------------
    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the work (a new run; one still stopping goes on cleaning up by itself);
        nothing if the service runs already."""
        if self._run is not None:
            return
        Service.startService(self)  # type: ignore[no-untyped-call]
        run = self._run = Run(self._clock_for)
        self._source.started(self)
        run.done = Deferred.fromCoroutine(self._main(run))

    def stopService(self) -> "Deferred[None]":  # noqa: N802
        """Stop the work; fires once everything the run made is closed (never fails: what
        could not be cleaned up is logged)."""
        Service.stopService(self)  # type: ignore[no-untyped-call]
        run, self._run = self._run, None
        self._ready = None
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure_of(CancelledError(f"{self!r} was stopped")))
        if run is None or run.done is None:
            return succeed(None)
        run.stop()
        stopped = observe(run.done)
        self._source.stopping(self, observe(run.done))
        return stopped

    # -- readiness -----------------------------------------------------------------------------
    def whenReady(self) -> "Deferred[T]":  # noqa: N802 (Twisted's spelling: whenConnected)
        """Fires with what the service keeps ready, at once if it is ready; fails with
        ``CancelledError`` if the service is stopped first."""
        if self._ready is not None:
            return succeed(self._ready)
        d: Deferred[T] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        return d

    def _set_ready(self, run: Run, value: T) -> None:
        if run is not self._run:
            return
        self._ready = value
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(value)

    def _unready(self, run: Run) -> None:
        if run is self._run:
            self._ready = None

    # -- the run -------------------------------------------------------------------------------
    def _clock_for(self, run: Run) -> Any:
        if self._clock is not None:
            return self._clock
        return None if run.client is None else run.client.clock

    async def _main(self, run: Run) -> None:
        try:
            await self._loop(run)
        except Stopped:
            pass
        except Exception:
            self.log.failure("{service} stopped working (a bug in txetcd)", service=self)

    def _loop(self, run: Run) -> Coroutine[Any, Any, None]:
        raise NotImplementedError
