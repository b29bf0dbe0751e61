"""One watch: what it delivers to its consumer, and its signals (the streams are in _watch.py).

A :class:`Watch` holds the batches its consumer has not taken yet, decides what is new after a
resume (exactly once: events below its next revision are dropped), and tells its state through
one-shot :class:`~txetcd._signal.Signal` objects: ``created``, ``done``, and the connection's
ups and downs (:meth:`Watch.reconnected`, :meth:`Watch.disconnected`).

Progress notifications reach the consumer in order with the batches: each is held as a mark
behind the batches received before it, and ``on_progress`` runs once the consumer is done with
those. Only a notification of the watch's own (``progress_notify``) moves where a resume starts;
an answer to ``request_progress`` (watch id -1) does not, because etcd before 3.5.8 may send it
ahead of events still on their way (etcd issue #15220).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from txetcd._args import prefix_range_end
from txetcd._errors import ConnectionFailed, WatchCancelled
from txetcd._kv import header_of, kv_of
from txetcd._proto import rpc_pb2
from txetcd._signal import Signal
from txetcd._types import Event, EventType, ResponseHeader, WatchBatch

if TYPE_CHECKING:
    from txetcd._watch import WatchHub, _WatchStream

__all__ = ["Watch"]

_WatchRequest: Any = rpc_pb2.WatchRequest
_CreateRequest: Any = rpc_pb2.WatchCreateRequest

Callback = Callable[[WatchBatch], Any]
ProgressCallback = Callable[[int], Any]
#: a progress notification held for the consumer: (batches it comes after, revision, header)
_Mark = Tuple[int, int, ResponseHeader]


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

    Each :class:`~txetcd.WatchBatch` holds every event of one revision, in order. Progress
    notifications go to ``on_progress`` (if given), in order with the batches; :attr:`progress`
    is how far the consumer is known to be.

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
        on_progress: Optional[ProgressCallback] = None,
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
        self._on_progress = on_progress
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
        self._marks: Deque[_Mark] = deque()  # progress notifications not handed over yet
        self._received = 0  # batches received (delivered or held)
        self._handed = 0  # batches handed to the consumer
        self._last_handed = 0  # the revision of the last batch an async for was handed
        self._told = 0  # the highest revision of an answer to request_progress
        self._progress = 0  # see the progress property
        self._progress_header: Optional[ResponseHeader] = None
        self._busy = False  # a callback's (or on_progress's) Deferred is pending
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
        """The revision up to which etcd has sent every event of this watch (0: not yet known):
        batches received (delivered or still held for the consumer) and progress
        notifications, those answering :meth:`~txetcd.Client.request_progress` included.

        A resume after a break starts after the last batch received or the last progress
        notification of the watch's own (``progress_notify``), not after an answer to
        ``request_progress``: etcd before 3.5.8 may send one of those ahead of events still on
        their way, which are then still delivered.
        """
        return max(self.next_revision - 1, self._told, 0)

    @property
    def progress(self) -> int:
        """The revision up to which the consumer has been handed every event of this watch
        (0: not created yet).

        It is the revision the watch was created at (or ``start_revision - 1``) at first; then
        each batch the consumer is done with, and each progress notification handed to
        ``on_progress``, moves it up. A consumer is done with a batch when its callback
        returned (and the Deferred it returned fired), or, with ``async for``, when it asks for
        the next one. It never goes down.
        """
        return self._progress

    @property
    def progress_header(self) -> Optional[ResponseHeader]:
        """The header of the last progress notification handed over (which member answered,
        its raft term); ``None`` before the first."""
        return self._progress_header

    def cancel(self) -> None:
        """Stop watching; ``done`` fires with ``None``. Batches not yet consumed are dropped."""
        if self.ended:
            return
        self._backlog.clear()
        self._marks.clear()
        self._finish(None)

    def __repr__(self) -> str:
        return f"<Watch {self._what()} revision={self.revision} {self._state_name()}>"

    def __aiter__(self) -> "Watch":
        if self._callback is not None:
            raise TypeError("this watch delivers to a callback; it cannot also be iterated")
        return self

    async def __anext__(self) -> WatchBatch:
        # Asking for the next batch: the consumer is done with the last one, so progress
        # notifications held behind it are handed over first (in _pump).
        self._consumed(self._last_handed)
        if self._backlog and not self._busy and not self._mark_due():
            batch = self._backlog.popleft()
            self._handed += 1
            self._last_handed = batch.revision
            self._drained()
            return batch
        if self.ended:
            if self._final is not None:
                self._observe()  # the consumer has it: not unhandled
                self._done.wait().addErrback(_ignore)
                self._final.raiseException()
            raise StopAsyncIteration
        d: Deferred[WatchBatch] = Deferred(self._step_cancelled)
        self._waiter = d
        if not self._busy:
            self._pump()
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
        if not self._created.fired:  # nothing of the watch comes before its start
            self._progress = max(self._progress, self.next_revision - 1)
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

    def _progressed(self, revision: int, header: ResponseHeader, own: bool) -> None:
        """A progress notification: every event up to ``revision`` was sent. ``own``: one of
        this watch's (it moves where a resume starts); else an answer to request_progress."""
        if self.ended or self._ending is not None:
            return
        if own:
            if revision + 1 > self.next_revision:
                self.next_revision = revision + 1
        elif revision > self._told:
            self._told = revision
        marks = self._marks
        if marks and marks[-1][0] == self._received:  # nothing came between: keep the newest
            if revision >= marks[-1][1]:
                marks[-1] = (self._received, revision, header)
        else:
            marks.append((self._received, revision, header))
        if not self._busy:
            self._pump()

    def _deliver(self, batch: WatchBatch) -> None:
        if self.ended or self._ending is not None:
            return
        self.next_revision = batch.revision + 1
        self._received += 1
        if self._callback is not None and not self._busy and not self._backlog:
            self._handed += 1
            self._call(batch)
            return
        if self._waiter is not None and not self._busy and not self._backlog:
            d, self._waiter = self._waiter, None
            self._handed += 1
            self._last_handed = batch.revision
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
            result.addCallbacks(self._done_with, self._fail, callbackArgs=(batch.revision,))
        else:
            self._consumed(batch.revision)

    def _consumed(self, revision: int) -> None:
        """The consumer is done with everything up to ``revision``."""
        if revision > self._progress:
            self._progress = revision

    def _done_with(self, _: object, revision: int) -> None:
        """A callback's (or on_progress's) Deferred fired: the consumer is free again."""
        self._busy = False
        self._consumed(revision)
        self._pump()

    def _mark_due(self) -> bool:
        """A progress notification is due: every batch received before it was handed over."""
        return bool(self._marks) and self._marks[0][0] <= self._handed

    def _pump(self) -> None:
        """Hand over what the consumer may have now, in order: progress notifications whose
        batches it is done with, then batches (a callback's one by one; an ``async for``'s
        one per step); then end the watch if the server ended it and nothing is left."""
        while not self._busy and not self.ended:
            if self._mark_due():
                if self._callback is None and self._waiter is None:
                    break  # an async for busy with its last batch: it is not done with it yet
                self._fire(self._marks.popleft())
                continue
            if not self._backlog:
                break
            if self._callback is not None:
                batch = self._backlog.popleft()
                self._handed += 1
                self._call(batch)
                self._drained()  # after: a resume delivers newer batches at once
                continue
            if self._waiter is None:
                break
            d, self._waiter = self._waiter, None
            batch = self._backlog.popleft()
            self._handed += 1
            self._last_handed = batch.revision
            self._drained()
            d.callback(batch)
            return
        if self._ending is None or self.ended or self._busy or self._backlog:
            return
        if self._on_progress is not None and self._mark_due():
            return  # an async for busy with its last batch gets its progress first
        self._end_now()

    def _fire(self, mark: _Mark) -> None:
        """Hand one progress notification over: to ``on_progress``, and to :attr:`progress`."""
        _, revision, header = mark
        self._progress_header = header
        callback = self._on_progress
        if callback is None:
            self._consumed(revision)
            return
        try:
            result = callback(revision)
        except BaseException:
            self._fail(Failure())  # type: ignore[no-untyped-call]
            return
        if isinstance(result, Deferred):
            self._busy = True
            result.addCallbacks(self._done_with, self._fail, callbackArgs=(revision,))
        else:
            self._consumed(revision)

    def _drained(self) -> None:
        if self._voting and len(self._backlog) <= self._max_backlog // 2:
            self._voting = False  # first: the resume may deliver (and vote) at once
            if self._stream is not None:
                self._stream.vote_pause(-1)

    def _fail(self, failure: Failure) -> None:
        """A callback failed: the watch ends with that error (never swallowed)."""
        self._busy = False
        self._backlog.clear()
        self._marks.clear()
        self._finish(failure)

    def _server_ended(self, failure: Failure) -> None:
        """Compacted or cancelled by the server: deliver what is held, then end with it."""
        self._leave()
        self._disconnect(None)
        self._ending = failure
        self._state = f"failed ({type(failure.value).__name__})"
        if not self._busy:
            self._pump()

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
