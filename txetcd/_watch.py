"""Watches that never lose an event.

All watches of a client share one gRPC Watch stream (one per ``require_leader`` setting): creates
and cancels are sent on the open stream, each watch has a client-chosen id. When the stream or
its connection breaks, every watch on it is re-created on a new stream at its next revision
(the last revision it received + 1), after a jittered backoff on the injected clock, so each
revision is delivered exactly once and in order. A watch whose next revision was compacted ends
with :class:`~txetcd.RevisionCompacted` carrying ``compact_revision``, and nothing after it.

Back-pressure: a watch whose consumer falls behind (a callback's Deferred still pending, or an
``async for`` that does not pull) holds its batches; past ``max_backlog`` batches the shared
stream stops returning HTTP/2 window, so the server stops sending instead of memory growing,
while unary calls on the connection keep flowing.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Optional,
    Union,
)

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import check_bool, check_int, key_range
from txetcd._errors import ClientClosed, RevisionCompacted, WatchCancelled
from txetcd._kv import header_of, kv_of
from txetcd._methods import WATCH
from txetcd._proto import rpc_pb2
from txetcd._types import Event, EventType, WatchBatch

if TYPE_CHECKING:
    from txetcd._transport import Stream, Transport

__all__ = ["Watch", "WatchFilter", "WatchHub"]

_WatchRequest: Any = rpc_pb2.WatchRequest
_CreateRequest: Any = rpc_pb2.WatchCreateRequest
_CancelRequest: Any = rpc_pb2.WatchCancelRequest
_PROGRESS = _WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())

Callback = Callable[[WatchBatch], Any]


class WatchFilter(enum.IntEnum):
    """Events a watch leaves out (etcd's ``WatchCreateRequest.FilterType``)."""

    NOPUT = 0
    NODELETE = 1


def _filters(filters: Iterable[Union[WatchFilter, str, int]]) -> List[int]:
    if isinstance(filters, (str, bytes, int)):
        raise TypeError("filters must be a list, e.g. ['noput']")
    out = []
    for f in filters:
        if isinstance(f, WatchFilter):
            out.append(int(f))
        elif isinstance(f, str) and f.upper() in WatchFilter.__members__:
            out.append(int(WatchFilter[f.upper()]))
        elif isinstance(f, int) and not isinstance(f, bool) and f in (0, 1):
            out.append(f)
        else:
            raise ValueError(f"unknown watch filter {f!r}: use 'noput' or 'nodelete'")
    return out


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]


def _event(ev: Any) -> Event:
    return Event(
        EventType(ev.type), kv_of(ev.kv), kv_of(ev.prev_kv) if ev.HasField("prev_kv") else None
    )


class Watch:
    """One watch: consume it with a callback, or with ``async for batch in watch``.

    Each :class:`~txetcd.WatchBatch` holds every event of one revision, in order.

    :ivar created: fires with the store revision at which the watch was first created
        (events come after it unless ``start_revision`` said otherwise).
    :ivar done: fires with ``None`` once the watch ends by :meth:`cancel` (or the client
        closing), or fails with the reason: :class:`~txetcd.RevisionCompacted` (with
        ``compact_revision``), :class:`~txetcd.WatchCancelled`, or the exception a callback
        raised.
    """

    log = Logger()

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
        #: the next revision this watch needs (0: "from now", before it was first created)
        self.next_revision = start_revision
        self.created: Deferred[int] = Deferred()
        self.done: Deferred[None] = Deferred()
        self.ended = False
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
    def revision(self) -> int:
        """The revision up to which every event of this watch was received (0: not yet known)."""
        return max(self.next_revision - 1, 0)

    def cancel(self) -> None:
        """Stop watching; ``done`` fires with ``None``. Batches not yet consumed are dropped."""
        if self.ended:
            return
        self._backlog.clear()
        self._finish(None)

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
                self._final.raiseException()
            raise StopAsyncIteration
        d: Deferred[WatchBatch] = Deferred()
        self._waiter = d
        return await d

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
            self._drained()
            self._call(batch)
        if not self._backlog and self._ending is not None and not self._busy:
            self._end_now()

    def _drained(self) -> None:
        if self._voting and len(self._backlog) <= self._max_backlog // 2:
            self._voting = False
            if self._stream is not None:
                self._stream.vote_pause(-1)

    def _fail(self, failure: Failure) -> None:
        """A callback failed: the watch ends with that error (never swallowed)."""
        self._busy = False
        self._backlog.clear()
        self._finish(failure)

    def _server_ended(self, failure: Failure) -> None:
        """Compacted or cancelled by the server: deliver what is held, then end with it."""
        self._hub._detach(self)
        self._ending = failure
        if not self._backlog and not self._busy:
            self._end_now()

    def _end_now(self) -> None:
        failure = self._ending
        self._finish(failure if isinstance(failure, Failure) else None)

    def _finish(self, failure: Optional[Failure]) -> None:
        if self.ended:
            return
        self.ended = True
        self._final = failure
        if self._voting and self._stream is not None:
            self._stream.vote_pause(-1)  # before leaving the stream, or it stays paused
        self._voting = False
        self._hub._detach(self)
        if not self.created.called:
            self.created.errback(failure or _failure(ClientClosed("the watch ended")))
            self.created.addErrback(lambda _: None)  # `done` carries the failure
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(failure or _failure(StopAsyncIteration()))
        if failure is None:
            self.done.callback(None)
        else:
            self.done.errback(failure)

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


class _WatchStream:
    """One Watch gRPC stream and the watches on it."""

    def __init__(self, hub: "WatchHub", require_leader: bool) -> None:
        self.hub = hub
        self.require_leader = require_leader
        self.watches: Dict[int, Watch] = {}
        self.creating: Deque[Any] = deque()  # creates sent, answers pending (in order)
        self.next_id = 1
        self.paused_by = 0
        self.dead = False
        self.established = False
        metadata = ((b"hasleader", b"true"),) if require_leader else ()
        self.grpc: Stream = hub.channel.stream(
            WATCH, self._on_message, self._on_close, metadata=metadata
        )

    def add(self, watch: Watch) -> None:
        watch_id = self.next_id
        self.next_id += 1
        watch._stream = self
        watch._watch_id = watch_id
        self.watches[watch_id] = watch
        self.creating.append(watch)
        if watch._voting:
            self.vote_pause(+1)
        self.grpc.send(watch._create_request(watch_id))

    def remove(self, watch: Watch) -> None:
        if self.watches.get(watch._watch_id) is watch:
            del self.watches[watch._watch_id]
            if not self.dead and self.hub.channel.capabilities.duplex_streams:
                cancel = _WatchRequest(cancel_request=_CancelRequest(watch_id=watch._watch_id))
                self.grpc.send(cancel)
        watch._stream = None
        if not self.watches and not self.dead:
            self.close()

    def close(self) -> None:
        self.dead = True
        self.grpc.cancel()

    def vote_pause(self, delta: int) -> None:
        self.paused_by += delta
        if self.paused_by > 0:
            self.grpc.pause()
        else:
            self.grpc.resume()

    def _on_message(self, resp: Any) -> None:
        if resp.created:
            if not self.creating:
                return
            first = self.creating.popleft()
            watch = self.watches.get(first._watch_id)
            if watch is None or watch is not first:
                return  # a placeholder: that watch was cancelled before its create was answered
            if resp.canceled or resp.watch_id == -1:
                self.hub._creation_refused(watch, resp)
                return
            self.established = True
            self.hub._backoff_reset()
            if watch.next_revision == 0:
                watch.next_revision = resp.header.revision + 1
            if not watch.created.called:
                watch.created.callback(resp.header.revision)
            if resp.events:  # not sent by etcd together with created, but harmless
                watch._events(resp.header, resp.events, resp.fragment)
            return
        watch_id = resp.watch_id
        if resp.canceled:
            watch = self.watches.pop(watch_id, None)
            if watch is None:
                return  # one we cancelled
            if resp.compact_revision:
                err = RevisionCompacted(
                    f"watch start revision {watch.next_revision} was compacted "
                    f"(compacted at {resp.compact_revision})",
                    code=11,
                    payload=resp.compact_revision,
                )
                watch._server_ended(_failure(err))
            else:
                watch._server_ended(
                    _failure(WatchCancelled(resp.cancel_reason or "cancelled by the server"))
                )
            return
        if resp.events:
            watch = self.watches.get(watch_id)
            if watch is not None:
                watch._events(resp.header, resp.events, resp.fragment)
            return
        # A progress notification: everything up to header.revision has been sent.
        revision = resp.header.revision
        if watch_id == -1:
            for watch in self.watches.values():
                if watch not in self.creating:
                    watch._progress(revision)
        else:
            watch = self.watches.get(watch_id)
            if watch is not None:
                watch._progress(revision)

    def _on_close(self, error: Optional[BaseException]) -> None:
        was_dead = self.dead
        self.dead = True
        self.hub._stream_closed(self, error, expected=was_dead)


class WatchHub:
    """The watches of one client: their streams, and resuming them after a break."""

    log = Logger()

    def __init__(
        self,
        channel: "Transport",
        clock: Any,
        *,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.streams: Dict[bool, _WatchStream] = {}
        #: on a half-duplex channel (the JSON gateway) every watch has a stream of its own
        self.solo: List[_WatchStream] = []
        self.waiting: List[Watch] = []  # to be re-created once the backoff timer fires
        self.timer: Optional[IDelayedCall] = None
        self.failures = 0
        self.closed = False
        self.restarts = 0  # streams re-opened after a break (for tests and metrics)
        self.last_error: Optional[BaseException] = None  # why the last stream broke
        self._rand = random.Random()

    def watch(
        self,
        key: object,
        *,
        prefix: bool = False,
        range_end: object = None,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        filters: Iterable[Union[WatchFilter, str, int]] = (),
        progress_notify: bool = False,
        fragment: bool = False,
        require_leader: bool = False,
        callback: Optional[Callback] = None,
        max_backlog: int = 64,
    ) -> Watch:
        """Start a watch (see :meth:`txetcd.Client.watch`)."""
        k, end = key_range(key, range_end, prefix)
        start = 0 if start_revision is None else check_int(start_revision, "start_revision")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        check_int(max_backlog, "max_backlog", minimum=1)
        watch = Watch(
            self,
            k,
            end,
            start_revision=start,
            prev_kv=check_bool(prev_kv, "prev_kv"),
            filters=_filters(filters),
            progress_notify=check_bool(progress_notify, "progress_notify"),
            fragment=check_bool(fragment, "fragment"),
            require_leader=check_bool(require_leader, "require_leader"),
            callback=callback,
            max_backlog=max_backlog,
        )
        if self.closed:
            watch._finish(None)
            return watch
        if self.timer is not None:
            self.waiting.append(watch)  # a break is being waited out: join the resume
        else:
            self._attach(watch)
        return watch

    def request_progress(self) -> None:
        """Ask every open watch stream for a progress notification."""
        for stream in self.streams.values():
            if not stream.dead:
                stream.grpc.send(_PROGRESS)

    def _attach(self, watch: Watch) -> None:
        if not self.channel.capabilities.duplex_streams:
            solo = _WatchStream(self, watch.require_leader)
            self.solo.append(solo)
            solo.add(watch)
            return
        stream = self.streams.get(watch.require_leader)
        if stream is None or stream.dead:
            stream = self.streams[watch.require_leader] = _WatchStream(self, watch.require_leader)
        stream.add(watch)

    def _detach(self, watch: Watch) -> None:
        if watch in self.waiting:
            self.waiting.remove(watch)
            if not self.waiting and self.timer is not None and self.timer.active():
                self.timer.cancel()
                self.timer = None
        stream = watch._stream
        if stream is not None:
            if watch in stream.creating:
                stream.creating.remove(watch)
                stream.creating.appendleft(_Placeholder())  # keep answers matched in order
            stream.remove(watch)

    def _creation_refused(self, watch: Watch, resp: Any) -> None:
        stream = watch._stream
        if stream is not None:
            stream.watches.pop(watch._watch_id, None)
            watch._stream = None
        reason = resp.cancel_reason or "the server refused to create the watch"
        watch._server_ended(_failure(WatchCancelled(reason)))

    def _stream_closed(
        self, stream: _WatchStream, error: Optional[BaseException], expected: bool
    ) -> None:
        if self.streams.get(stream.require_leader) is stream:
            del self.streams[stream.require_leader]
        if stream in self.solo:
            self.solo.remove(stream)
        if not expected:
            self.last_error = error
        orphans = [w for w in stream.watches.values() if not w.ended]
        stream.watches.clear()
        stream.creating.clear()
        for watch in orphans:
            watch._stream = None
            watch._voting = False
            if len(watch._backlog) > watch._max_backlog:
                watch._voting = True  # still over: the new stream starts paused for it
            watch._fragments = []  # a partial fragmented message is sent again whole
        if not orphans:
            return
        if self.closed:
            for watch in orphans:
                watch._finish(None)
            return
        if not stream.established:
            self.failures += 1
        self.log.info(
            "watch stream broke ({error}); resuming {n} watches", error=error, n=len(orphans)
        )
        self.waiting.extend(orphans)
        if self.timer is None:
            self.timer = self.clock.callLater(self._delay(), self._resume)

    def _delay(self) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2.0 ** min(self.failures, 16)))
        return float(base * (0.5 + self._rand.random()))

    def _backoff_reset(self) -> None:
        self.failures = 0

    def _resume(self) -> None:
        self.timer = None
        waiting, self.waiting = self.waiting, []
        self.restarts += 1
        for watch in waiting:
            if not watch.ended:
                self._attach(watch)

    def close(self) -> "Deferred[None]":
        """End every watch (``done`` fires with ``None``) and drop their streams and timers."""
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        watches = list(self.waiting)
        streams = list(self.streams.values()) + list(self.solo)
        for stream in streams:
            watches.extend(stream.watches.values())
        for watch in watches:
            watch._finish(None)
        for stream in streams:
            if not stream.dead:
                stream.close()
        self.streams.clear()
        self.solo.clear()
        return succeed(None)


class _Placeholder:
    """Stands in the create queue for a watch cancelled before its create was answered."""

    _watch_id = -2
