"""Watches that never lose an event.

All watches of a client share one gRPC Watch stream (one per ``require_leader`` setting): creates
and cancels are sent on the open stream, each watch has a client-chosen id. When the stream or
its connection breaks, every watch on it is re-created on a new stream at its next revision
(the last revision it received + 1), after a jittered backoff on the injected clock, so each
revision is delivered exactly once and in order. A watch whose next revision was compacted ends
with :class:`~txetcd.RevisionCompacted` carrying ``compact_revision``, and nothing after it.

The first creation of a watch has a deadline (the client's ``timeout``, or the watch's own): if
etcd cannot be reached by then, ``created`` fails with :class:`~txetcd.ConnectionFailed` naming
the endpoint and the cause. Once created, a watch resumes for as long as it takes; each outage is
logged once, as a warning with its cause, and shows on the watch (``connected``).

Back-pressure: a watch whose consumer falls behind (a callback's Deferred still pending, or an
``async for`` that does not pull) holds its batches; past ``max_backlog`` batches the shared
stream stops returning HTTP/2 window, so the server stops sending instead of memory growing,
while unary calls on the connection keep flowing.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN, check_bool, check_int, key_range
from txetcd._errors import (
    ClientClosed,
    RevisionCompacted,
    WatchCancelled,
    WatchPermissionDenied,
)
from txetcd._kv import header_of
from txetcd._methods import WATCH
from txetcd._proto import rpc_pb2
from txetcd._retry import backoff_policy
from txetcd._types import WatchBatch
from txetcd._watcher import Watch

if TYPE_CHECKING:
    from txetcd._transport import Stream, Transport

__all__ = ["Watch", "WatchFilter", "WatchHub", "WatchMethods"]

_WatchRequest: Any = rpc_pb2.WatchRequest
_CancelRequest: Any = rpc_pb2.WatchCancelRequest
_PROGRESS = _WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())

Callback = Callable[[WatchBatch], Any]
ProgressCallback = Callable[[int], Any]


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


def _timeout(value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"timeout must be > 0, not {value}")
    return float(value)


class _WatchStream:
    """One Watch gRPC stream and the watches on it."""

    def __init__(self, hub: "WatchHub", require_leader: bool) -> None:
        self.hub = hub
        self.require_leader = require_leader
        self.watches: Dict[int, Watch] = {}
        #: creates sent, answers pending, in order (None: that watch was cancelled since)
        self.creating: Deque[Optional[Watch]] = deque()
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
            if first is None or self.watches.get(first._watch_id) is not first:
                return  # that watch was cancelled before its create was answered
            if resp.canceled or resp.watch_id == -1:
                self.hub._creation_refused(first, resp)
                return
            self.established = True
            self.hub._auth_refusals.pop(first, None)
            self.hub._stream_up()
            first._now_created(resp.header.revision)
            if resp.events:  # not sent by etcd together with created, but harmless
                first._events(resp.header, resp.events, resp.fragment)
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
        # A progress notification: everything up to header.revision has been sent. Watch id
        # -1 answers request_progress for the whole stream (as Go's clientv3 does, it goes to
        # every watch etcd has created on it); any other is a watch's own (progress_notify).
        revision = resp.header.revision
        if not revision:
            return  # not a progress notification (Go's IsProgressNotify needs a revision)
        header = header_of(resp.header)
        if watch_id == -1:
            for watch in list(self.watches.values()):
                if watch not in self.creating:
                    watch._progressed(revision, header, own=False)
        else:
            watch = self.watches.get(watch_id)
            if watch is not None:
                watch._progressed(revision, header, own=True)

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
        timeout: Optional[float] = None,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self._rand = random.Random()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        #: failures in a row -> seconds before the next resume
        self.backoff = backoff_policy(backoff_initial, backoff_max, jitter=self._rand.random)
        #: the deadline of a watch's first creation, unless the watch has its own (None: none)
        self.timeout = _timeout(timeout)
        self.streams: Dict[bool, _WatchStream] = {}
        #: on a half-duplex channel (the JSON gateway) every watch has a stream of its own
        self.solo: List[_WatchStream] = []
        self.waiting: List[Watch] = []  # to be re-created once the backoff timer fires
        #: every watch not ended yet (also one delivering its backlog after the server ended it)
        self.live: Dict[Watch, None] = {}
        self.timer: Optional[IDelayedCall] = None
        self.failures = 0
        #: watches refused for their token once (a second refusal ends them)
        self._auth_refusals: Dict[Watch, int] = {}
        self.closed = False
        self.restarts = 0  # streams re-opened after a break (for tests and metrics)
        self.last_error: Optional[BaseException] = None  # why the last stream broke
        self.outage_since: Optional[float] = None  # when created watches lost their stream

    @property
    def backoff_initial(self) -> float:
        """The first wait before a resume, in seconds (setting it rebuilds :attr:`backoff`)."""
        return self._backoff_initial

    @backoff_initial.setter
    def backoff_initial(self, value: float) -> None:
        self._backoff_initial = value
        self.backoff = backoff_policy(value, self._backoff_max, jitter=self._rand.random)

    @property
    def backoff_max(self) -> float:
        """The longest wait before a resume, in seconds (setting it rebuilds :attr:`backoff`)."""
        return self._backoff_max

    @backoff_max.setter
    def backoff_max(self, value: float) -> None:
        self._backoff_max = value
        self.backoff = backoff_policy(self._backoff_initial, value, jitter=self._rand.random)

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
        on_progress: Optional[ProgressCallback] = None,
        max_backlog: int = 64,
        timeout: Any = NOT_GIVEN,
    ) -> Watch:
        """Start a watch (see :meth:`txetcd.Client.watch`); ``timeout`` bounds its creation."""
        k, end = key_range(key, range_end, prefix)
        start = 0 if start_revision is None else check_int(start_revision, "start_revision")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, not {type(on_progress).__name__}")
        check_int(max_backlog, "max_backlog", minimum=1)
        deadline = self.timeout if timeout is NOT_GIVEN else _timeout(timeout)
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
            on_progress=on_progress,
            max_backlog=max_backlog,
            timeout=deadline,
        )
        if self.closed:
            watch._finish(None, ClientClosed("the client is closed"))
            return watch
        watch._start_deadline(self.clock)
        self.live[watch] = None
        if self.timer is not None:
            self.waiting.append(watch)  # a break is being waited out: join the resume
        else:
            self._attach(watch)
        return watch

    def request_progress(self) -> None:
        """Ask every open watch stream for a progress notification (not the JSON gateway's:
        its streams take no request once open)."""
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
        self._auth_refusals.pop(watch, None)
        if watch in self.waiting:
            self.waiting.remove(watch)
            if not self.waiting and self.timer is not None and self.timer.active():
                self.timer.cancel()
                self.timer = None
        stream = watch._stream
        if stream is not None:
            creating = stream.creating
            for i, pending in enumerate(creating):
                if pending is watch:
                    creating[i] = None  # its answer still comes, in its place (Go: nil)
                    break
            stream.remove(watch)

    def _creation_refused(self, watch: Watch, resp: Any) -> None:
        stream = watch._stream
        if stream is not None:
            stream.watches.pop(watch._watch_id, None)
        reason = resp.cancel_reason or "the server refused to create the watch"
        if "permission denied" not in reason:
            watch._server_ended(_failure(WatchCancelled(reason)))
            return
        if self._auth_refusals.get(watch, 0) >= 1:
            # refused again with a fresh token: the user may not read this key
            watch._server_ended(_failure(WatchPermissionDenied(reason, code=7)))
            return
        # etcd refuses a watch created with an expired token as "permission denied" (open ones
        # go on): log in again and create it once more, on a stream opened with the new token.
        self._auth_refusals[watch] = 1
        if stream is not None and self.streams.get(stream.require_leader) is stream:
            del self.streams[stream.require_leader]  # its watches stay; new ones go elsewhere
        watch._stream = None

        def again(fresh: bool) -> None:
            if watch.ended or self.closed:
                return
            if not fresh:  # nothing to refresh: the refusal stands
                watch._server_ended(_failure(WatchPermissionDenied(reason, code=7)))
                return
            self._attach(watch)

        self.channel.reauthenticate().addCallbacks(
            again, lambda failure: None if watch.ended else watch._server_ended(failure)
        )

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
            watch._disconnect(error)
        if not orphans:
            return
        if self.closed:
            for watch in orphans:
                watch._finish(None, ClientClosed("the client is closed"))
            return
        if not stream.established:
            self.failures += 1
        self._log_break(error, orphans)
        self.waiting.extend(orphans)
        if self.timer is None:
            self.timer = self.clock.callLater(self._delay(), self._resume)

    def _log_break(self, error: Optional[BaseException], orphans: List[Watch]) -> None:
        """One warning per outage (not per retry) of watches that were created, or that keep
        trying with no deadline; the rest is debug (a deadline will tell)."""
        if self.outage_since is None and any(
            w._created.fired or w._timeout is None for w in orphans
        ):
            self.outage_since = self.clock.seconds()
            self.log.warn(
                "watch stream to etcd ({endpoints}) lost: {error}; {n} watches will resume "
                "when it is back",
                endpoints=", ".join(self.channel.endpoint_urls),
                error=error,
                n=len(orphans),
            )
        else:
            self.log.debug(
                "watch stream broke ({error}); resuming {n} watches", error=error, n=len(orphans)
            )

    def _delay(self) -> float:
        return self.backoff(self.failures)

    def _stream_up(self) -> None:
        """etcd answered a create: the backoff starts over, and an outage is over."""
        self.failures = 0
        if self.outage_since is not None:
            self.log.info(
                "watch stream to etcd back after {seconds:.1f} s",
                seconds=self.clock.seconds() - self.outage_since,
            )
            self.outage_since = None

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
        streams = list(self.streams.values()) + list(self.solo)
        watches, self.live = list(self.live), {}
        for watch in watches:
            watch._finish(None, ClientClosed("the client is closed"))
        for stream in streams:
            if not stream.dead:
                stream.close()
        self.streams.clear()
        self.solo.clear()
        return succeed(None)


class WatchMethods:
    """The watch calls of :class:`txetcd.Client`."""

    if TYPE_CHECKING:
        _channel: Any
        clock: Any
        timeout: Optional[float]

    _watch_hub: Optional[WatchHub] = None

    def watch(
        self,
        key: Union[bytes, str],
        *,
        prefix: bool = False,
        range_end: Union[bytes, str, None] = None,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        filters: Iterable[Union[WatchFilter, str, int]] = (),
        progress_notify: bool = False,
        fragment: bool = False,
        require_leader: bool = False,
        callback: Optional[Callable[[WatchBatch], Any]] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        max_backlog: int = 64,
        timeout: Any = NOT_GIVEN,
    ) -> Watch:
        """Watch a key, a prefix or a range; returns a :class:`~txetcd.Watch` at once.

        Consume it either with ``callback`` (called with each :class:`~txetcd.WatchBatch`,
        all events of one revision, in order; a callback that returns a Deferred gets the next
        batch once it fires) or with ``async for batch in watch``. ``watch.created`` fires when
        etcd has set it up; ``watch.done`` when it ends; ``watch.cancel()`` stops it.

        - ``start_revision``: replay history from that revision (default: from now)
        - ``prev_kv``: events carry the key's previous state
        - ``filters``: leave out ``"noput"`` and/or ``"nodelete"`` events
        - ``progress_notify``: let etcd send progress notifications on an idle watch (every
          ``--experimental-watch-progress-notify-interval``, 10 minutes by default)
        - ``on_progress``: called with the revision of each progress notification for this
          watch (``progress_notify``'s, answers to :meth:`request_progress`), once the
          consumer is done with every batch received before it; those that come while it is
          behind are merged into the newest. Its errors end the watch, as a callback's do.
          Batches are never empty. :attr:`Watch.progress <txetcd.Watch.progress>` says as much
        - ``fragment``: let etcd split very large event batches (they are joined again here)
        - ``require_leader``: a member cut off from its cluster ends the stream (the watch then
          resumes elsewhere) instead of going silent
        - ``max_backlog``: batches held for a slow consumer before the stream is paused
        - ``timeout``: seconds etcd has to create the watch (``None``: no limit), instead of the
          client's ``timeout``; past it ``created`` fails with :class:`~txetcd.ConnectionFailed`
          naming the endpoint and the cause, and the watch ends

        If the stream or connection breaks after the watch was created, it resumes by itself,
        for as long as it takes, right after the last revision it received; no event is lost or
        repeated. Each outage is logged once as a warning; ``watch.connected``,
        ``watch.disconnected()`` and ``watch.reconnected()`` tell where it stands. If that
        revision has been compacted meanwhile, ``done`` fails with
        :class:`~txetcd.RevisionCompacted`.
        """
        hub = self._watch_hub
        if hub is None:
            hub = self._watch_hub = WatchHub(self._channel, self.clock, timeout=self.timeout)
        return hub.watch(
            key,
            prefix=prefix,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
            progress_notify=progress_notify,
            fragment=fragment,
            require_leader=require_leader,
            callback=callback,
            on_progress=on_progress,
            max_backlog=max_backlog,
            timeout=timeout,
        )

    def watch_prefix(
        self,
        prefix: Union[bytes, str],
        *,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        filters: Iterable[Union[WatchFilter, str, int]] = (),
        progress_notify: bool = False,
        fragment: bool = False,
        require_leader: bool = False,
        callback: Optional[Callable[[WatchBatch], Any]] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        max_backlog: int = 64,
        timeout: Any = NOT_GIVEN,
    ) -> Watch:
        """Watch every key starting with ``prefix`` (``b""``: every key); see :meth:`watch`."""
        return self.watch(
            prefix,
            prefix=True,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
            progress_notify=progress_notify,
            fragment=fragment,
            require_leader=require_leader,
            callback=callback,
            on_progress=on_progress,
            max_backlog=max_backlog,
            timeout=timeout,
        )

    def request_progress(self) -> None:
        """Ask etcd for a progress notification on every open watch stream.

        etcd answers with its current revision, for every watch it has created on the stream:
        each gets it in its ``on_progress``, and its :attr:`~txetcd.Watch.revision` moves
        there. A resume still starts after the last event received: etcd before 3.5.8 may
        send this answer ahead of events on their way (etcd issue #15220; they are still
        delivered, after it); later versions send none while a watch of the stream is still
        catching up with history. JSON gateway streams take no request: use ``progress_notify``.
        """
        if self._watch_hub is not None:
            self._watch_hub.request_progress()
