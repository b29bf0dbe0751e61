"""One watch: what it delivers to its consumer, and its signals (the streams are in _watch.py).

A :class:`Watch` holds the batches its consumer has not taken yet, decides what is new after a
resume (exactly once: events below its next revision are dropped), and tells its state through
one-shot :class:`~txetcd._signal.Signal` objects: ``created``, ``done``, and the connection's
ups and downs (:meth:`Watch.reconnected`, :meth:`Watch.disconnected`).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from txetcd._args import prefix_range_end
from txetcd._errors import ConnectionFailed, WatchCancelled
from txetcd._kv import header_of, kv_of
from txetcd._proto import rpc_pb2
from txetcd._signal import Signal
from txetcd._types import Event, EventType, WatchBatch

if TYPE_CHECKING:
    from txetcd._watch import WatchHub, _WatchStream

__all__ = ["Watch"]

_WatchRequest: Any = rpc_pb2.WatchRequest
_CreateRequest: Any = rpc_pb2.WatchCreateRequest

Callback = Callable[[WatchBatch], Any]


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]


def _ignore(_: object) -> None:
    return None


def _event(ev: Any) -> Event:
    return Event(
        EventType(ev.type), kv_of(ev.kv), kv_of(ev.prev_kv) if ev.HasField("prev_kv") else None
    )


class Watch:
    """One watch: consume it with a callback, or with ``async for batch in watch``.

    Each :class:`~txetcd.WatchBatch` holds every event of one revision, in order.

    :attr:`created`, :attr:`done`, :meth:`reconnected` and :meth:`disconnected` give a new
    Deferred on each access, so any number of observers can wait for them.

    :ivar ended: True once the watch has ended (``done`` has fired or is about to).
    :ivar key: the watched key (the first key of a range or prefix).
    :ivar range_end: the end of the watched range (``b""``: the key alone).
    """

    def __init__(
        self,
        hub: "WatchHub",
        key: bytes,
        range_end: bytes,
        *,
        start_revision: int,
        prev_kv: bool,
        filters: List[int],
        progress_notify: bool,
        fragment: bool,
        require_leader: bool,
        callback: Optional[Callback],
        max_backlog: int,
        timeout: Optional[float],
    ) -> None:
        self._hub = hub
        self.key = key
        self.range_end = range_end
        self._prev_kv = prev_kv
        self._filters = filters
        self._progress_notify = progress_notify
        self._fragment = fragment
        self.require_leader = require_leader
        self._callback = callback
        self._max_backlog = max_backlog
        self._timeout = timeout
        #: the next revision this watch needs (0: "from now", before it was first created)
        self.next_revision = start_revision
        self.ended = False
        self._created: Signal[int] = Signal()
        self._done: Signal[None] = Signal()
        self._up: Signal[None] = Signal()  # fires once connected
        self._down: Signal[Optional[BaseException]] = Signal()  # fires once not connected
        self._down.fire(None)  # not connected yet
        self._connected = False
        self._looked = False  # someone asked for created or done
        self._unseen: Optional[Deferred[None]] = None  # an ending failure nobody has seen yet
        self._state = "creating"
        self._deadline: Optional[IDelayedCall] = None  # for the first creation
        self._last_error: Optional[BaseException] = None  # why its last stream ended
        self._stream: Optional[_WatchStream] = None
        self._watch_id = 0
        self._fragments: List[Any] = []
        self._backlog: Deque[WatchBatch] = deque()
        self._busy = False  # a callback's Deferred is pending
        self._voting = False  # holding the stream paused
        self._ending: Optional[Failure] = None  # end once the backlog is delivered
        self._waiter: Optional[Deferred[WatchBatch]] = None  # async for, waiting
        self._final: Optional[Failure] = None  # how it ended, if it failed

    # -- public ------------------------------------------------------------------------------
    @property
    def created(self) -> "Deferred[int]":
        """Fires with the store revision at which etcd first created the watch (events come
        after it unless ``start_revision`` said otherwise).

        Fails if the watch ended before that: with :class:`~txetcd.ConnectionFailed` when etcd
        could not be reached within the watch's ``timeout`` (naming the endpoint and the cause),
        with :class:`~txetcd.WatchCancelled` when etcd refused it or it was cancelled, with
        :class:`~txetcd.ClientClosed` when the client was closed.
        """
        self._observe()
        return self._created.wait()

    @property
    def done(self) -> "Deferred[None]":
        """Fires with ``None`` once the watch ends by :meth:`cancel` (or the client closing),
        or fails with the reason: :class:`~txetcd.RevisionCompacted` (with
        ``compact_revision``), :class:`~txetcd.WatchCancelled`,
        :class:`~txetcd.ConnectionFailed` (never created), or the exception a callback raised.

        A failure that ended the watch before it was created is reported as unhandled only if
        nobody asked for ``created`` or ``done``.
        """
        self._observe()
        return self._done.wait()

    @property
    def connected(self) -> bool:
        """True while the watch is on a stream that etcd has answered (it gets events live)."""
        return self._connected

    def reconnected(self) -> "Deferred[None]":
        """A Deferred that fires once the watch is connected: at once if it is now.

        It fails, as :attr:`created` would, if the watch ends first.
        """
        return self._up.wait()

    def disconnected(self) -> "Deferred[Optional[BaseException]]":
        """A Deferred that fires once the watch is not connected: at once if it is not now.

        It fires with the error that broke the watch's stream (a
        :class:`~txetcd.ConnectionFailed` naming the endpoint, for example), or with ``None``
        when the watch ended or was not connected yet. After a break the watch resumes by
        itself; wait for :meth:`reconnected` to know when.
        """
        return self._down.wait()

    @property
    def revision(self) -> int:
        """The revision up to which every event of this watch was received (0: not yet known)."""
        return max(self.next_revision - 1, 0)

    def cancel(self) -> None:
        """Stop watching; ``done`` fires with ``None``. Batches not yet consumed are dropped."""
        if self.ended:
            return
        self._backlog.clear()
        self._finish(None)

    def __repr__(self) -> str:
        return f"<Watch {self._what()} revision={self.revision} {self._state_name()}>"

    def __aiter__(self) -> "Watch":
        if self._callback is not None:
            raise TypeError("this watch delivers to a callback; it cannot also be iterated")
        return self

    async def __anext__(self) -> WatchBatch:
        if self._backlog:
            batch = self._backlog.popleft()
            self._drained()
            return batch
        if self._ending is not None and not self.ended:
            self._end_now()
        if self.ended:
            if self._final is not None:
                self._observe()  # the consumer has it: not unhandled
                self._done.wait().addErrback(_ignore)
                self._final.raiseException()
            raise StopAsyncIteration
        d: Deferred[WatchBatch] = Deferred(self._step_cancelled)
        self._waiter = d
        return await d

    # -- state -------------------------------------------------------------------------------
    def _what(self) -> str:
        key, end = self.key, self.range_end
        if not end:
            return f"key={key!r}"
        if key == b"\0" and end == b"\0":
            return "prefix=b''"
        if end == prefix_range_end(key):
            return f"prefix={key!r}"
        return f"range=[{key!r}, {end!r})"

    def _state_name(self) -> str:
        if self.ended or self._ending is not None:
            return self._state
        if self._connected:
            return "active"
        return "disconnected" if self._created.fired else "creating"

    def _observe(self) -> None:
        self._looked = True
        unseen, self._unseen = self._unseen, None
        if unseen is not None:
            unseen.addErrback(_ignore)

    def _step_cancelled(self, d: "Deferred[WatchBatch]") -> None:
        """An ``async for`` step was given up on: the next batch waits for the next step."""
        if self._waiter is d:
            self._waiter = None

    def _start_deadline(self, clock: Any) -> None:
        if self._timeout is not None:
            self._deadline = clock.callLater(self._timeout, self._timed_out)

    def _stop_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _timed_out(self) -> None:
        self._deadline = None
        if self.ended or self._created.fired:
            return
        cause = self._last_error or self._hub.last_error  # its own stream's, or the outage's
        if cause is None:
            urls = ", ".join(self._hub.channel.endpoint_urls)
            why = f"no answer from etcd ({urls})"
        else:
            why = str(cause) or type(cause).__name__
        err = ConnectionFailed(
            f"the watch of {self._what()} was not created within {self._timeout:g} s: {why}"
        )
        err.__cause__ = cause
        self._finish(_failure(err))

    def _now_created(self, revision: int) -> None:
        """etcd answered this watch's create on its current stream."""
        self._stop_deadline()
        if self.next_revision == 0:
            self.next_revision = revision + 1
        self._connected = True
        if self._down.fired:
            self._down = Signal()
        self._up.fire(None)
        self._created.fire(revision)

    def _disconnect(self, error: Optional[BaseException]) -> None:
        """The watch lost its stream (``error``: why; ``None``: it is ending)."""
        if error is not None:
            self._last_error = error
        self._connected = False
        if self._up.fired:
            self._up = Signal()
        if self._down.fired and error is not None:
            self._down = Signal()  # not connected before either: now with a cause
        self._down.fire(error)

    # -- from the stream -------------------------------------------------------------------
    def _events(self, header: Any, events: Any, fragment: bool) -> None:
        if self._fragment and (fragment or self._fragments):
            self._fragments.extend(events)
            if fragment:
                return
            events, self._fragments = self._fragments, []
        hdr = header_of(header)
        batch: List[Event] = []
        rev = 0
        for ev in events:
            mod = ev.kv.mod_revision
            if mod < self.next_revision:
                continue  # seen before the stream broke: exactly once
            if mod != rev and batch:
                self._deliver(WatchBatch(rev, tuple(batch), hdr))
                batch = []
            rev = mod
            batch.append(_event(ev))
        if batch:
            self._deliver(WatchBatch(rev, tuple(batch), hdr))

    def _progress(self, revision: int) -> None:
        if revision + 1 > self.next_revision:
            self.next_revision = revision + 1

    def _deliver(self, batch: WatchBatch) -> None:
        if self.ended or self._ending is not None:
            return
        self.next_revision = batch.revision + 1
        if self._callback is not None and not self._busy and not self._backlog:
            self._call(batch)
            return
        if self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(batch)
            return
        self._backlog.append(batch)
        if len(self._backlog) > self._max_backlog and not self._voting and self._stream:
            self._voting = True
            self._stream.vote_pause(+1)

    def _call(self, batch: WatchBatch) -> None:
        assert self._callback is not None
        try:
            result = self._callback(batch)
        except BaseException:
            self._fail(Failure())  # type: ignore[no-untyped-call]
            return
        if isinstance(result, Deferred):
            self._busy = True
            result.addCallbacks(self._callback_done, self._fail)

    def _callback_done(self, _: object) -> None:
        self._busy = False
        while self._backlog and not self._busy and not self.ended:
            batch = self._backlog.popleft()
            self._call(batch)
            self._drained()  # after: a resume delivers newer batches at once
        if not self._backlog and self._ending is not None and not self._busy:
            self._end_now()

    def _drained(self) -> None:
        if self._voting and len(self._backlog) <= self._max_backlog // 2:
            self._voting = False  # first: the resume may deliver (and vote) at once
            if self._stream is not None:
                self._stream.vote_pause(-1)

    def _fail(self, failure: Failure) -> None:
        """A callback failed: the watch ends with that error (never swallowed)."""
        self._busy = False
        self._backlog.clear()
        self._finish(failure)

    def _server_ended(self, failure: Failure) -> None:
        """Compacted or cancelled by the server: deliver what is held, then end with it."""
        self._leave()
        self._disconnect(None)
        self._ending = failure
        self._state = f"failed ({type(failure.value).__name__})"
        if not self._backlog and not self._busy:
            self._end_now()

    def _end_now(self) -> None:
        failure = self._ending
        self._finish(failure if isinstance(failure, Failure) else None)

    def _leave(self) -> None:
        """Off its stream, then its pause vote goes (or the stream stays paused for the others).

        In that order: resuming delivers held messages at once, which must not find it there.
        """
        stream, voting = self._stream, self._voting
        self._voting = False
        self._hub._detach(self)
        if voting and stream is not None and not stream.dead:
            stream.vote_pause(-1)

    def _finish(self, failure: Optional[Failure], unmade: Optional[Exception] = None) -> None:
        """End the watch: ``failure`` is why (``None``: cancelled, or ``unmade`` says why)."""
        if self.ended:
            return
        self.ended = True
        self._final = failure
        if failure is not None:
            self._state = f"failed ({type(failure.value).__name__})"
        else:
            self._state = "cancelled" if unmade is None else "closed"
        self._stop_deadline()
        self._hub.live.pop(self, None)
        self._leave()
        self._connected = False
        if self._up.fired:
            self._up = Signal()
        if self._down.fired:
            self._down = Signal()  # ended: disconnected() gives None from now on
        self._down.fire(None)
        end = failure or _failure(unmade or WatchCancelled("the watch was cancelled"))
        self._up.fire(end)  # reconnected() fails from now on
        self._up.wait().addErrback(_ignore)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._looked = True  # an async for gets the failure: it is not unhandled
            waiter.errback(failure or _failure(StopAsyncIteration()))
        if self._created.fired:
            self._done.fire(failure)  # a failure nobody waits for is reported by the Signal
            if waiter is not None:
                self._done.wait().addErrback(_ignore)  # the async for got it: not unhandled
            return
        # Ended before etcd created it: created fails too, and the failure is reported (as
        # unhandled) only if nobody asked for created or done.
        self._created.fire(end)
        self._created.wait().addErrback(_ignore)
        self._done.fire(failure)
        if failure is not None:
            self._done.wait().addErrback(_ignore)
            if not self._looked:
                self._unseen = Deferred()
                self._unseen.errback(failure)

    def _create_request(self, watch_id: int) -> Any:
        req = _CreateRequest(
            key=self.key,
            range_end=self.range_end,
            start_revision=self.next_revision,
            prev_kv=self._prev_kv,
            progress_notify=self._progress_notify,
            fragment=self._fragment,
            watch_id=watch_id,
        )
        if self._filters:
            req.filters.extend(self._filters)
        return _WatchRequest(create_request=req)
