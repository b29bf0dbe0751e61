"""An in-memory etcd for tests: :class:`MemoryEtcd` runs the real :class:`txetcd.Client` code
above the transport seam (:mod:`txetcd._transport`) against a store kept in memory.

No sockets, no processes: each client gets a :class:`_MemoryTransport` whose unary calls are
answered at once (the Deferred has fired when the call returns) and whose streams deliver their
messages synchronously, but never re-entrantly: a message produced while another is being
delivered waits until that delivery returns. Time (lease TTLs, progress notifications, and the
client's own timers) runs on one clock, a :class:`twisted.internet.task.Clock` by default, so a
test moves it with ``memory.clock.advance(seconds)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger

from txetcd import _methods as m
from txetcd._errors import ClientClosed, EtcdError
from txetcd._proto import rpc_pb2
from txetcd._transport import Capabilities, Metadata, Method
from txetcd.testing._memory_kv import (
    GRPC_MAX_BYTES,
    LEASE_NOT_FOUND,
    MAX_LEASE_TTL,
    MAX_REQUEST_BYTES,
    MIN_LEASE_TTL,
    Lease,
    Store,
    in_range,
)
from txetcd.testing._memory_kv import (
    fail as status_error,
)

__all__ = ["MemoryEtcd"]

_NOPUT = rpc_pb2.WatchCreateRequest.NOPUT
_NODELETE = rpc_pb2.WatchCreateRequest.NODELETE
_PUT = 0

#: the options of :class:`txetcd.Client` that mean nothing without a network
_NETWORK_OPTIONS = frozenset(
    {
        "endpoints",
        "transport",
        "http_client",
        "ca_cert",
        "cert",
        "key",
        "server_name",
        "insecure_skip_verify",
        "tls",
        "user",
        "password",
        "allow_insecure_credentials",
    }
)


class MemoryEtcd:
    """One etcd member, in memory, for tests: KV with revisions and history, transactions,
    compaction, watches and leases, answering as etcd 3.5 does (same messages, same gRPC
    status codes, so the client raises the same typed errors).

    :param clock: the ``IReactorTime`` lease TTLs and progress notifications run on, and the
        default clock of the clients from :meth:`client`; a new
        :class:`twisted.internet.task.Clock` by default (``memory.clock.advance(seconds)``
        moves time).
    :param progress_notify_interval: seconds between progress notifications to idle watches
        that asked for them (etcd's ``--experimental-watch-progress-notify-interval``, 10
        minutes by default).

    Not served (a call fails with :class:`~txetcd.Unimplemented`): auth, cluster membership,
    maintenance, and etcd's server-side lock and election services (the recipes in
    :mod:`txetcd.concurrency` use KV, watch and leases only, and work). See
    ``docs/testing.rst`` for every known difference from a real etcd.
    """

    log = Logger()

    def __init__(self, clock: Any = None, *, progress_notify_interval: float = 600.0) -> None:
        self.clock: Any = Clock() if clock is None else clock
        if not progress_notify_interval > 0:
            raise ValueError("progress_notify_interval must be > 0")
        self.progress_notify_interval = float(progress_notify_interval)
        self.store = Store()
        self.store.on_write = self._written
        self._transports: Set[_MemoryTransport] = set()
        self._watch_streams: Set[_MemoryStream] = set()
        self._queue: Deque[_MemoryStream] = deque()
        self._pumping = False
        self._progress_timer: Any = None

    def __repr__(self) -> str:
        return f"<txetcd.testing.MemoryEtcd revision={self.store.revision}>"

    @property
    def revision(self) -> int:
        """The store's current revision (1 when empty, as etcd starts)."""
        return self.store.revision

    def client(self, **options: Any) -> Any:
        """A real :class:`txetcd.Client` whose calls this in-memory etcd answers.

        Takes the client's options that apply without a network (``timeout``, ``clock``,
        ``reactor``...); ``clock`` and ``reactor`` default to this etcd's clock. Endpoints, TLS,
        transport and credentials options are refused with ``TypeError``.
        """
        from txetcd._client import Client

        refused = sorted(_NETWORK_OPTIONS & set(options))
        if refused:
            raise TypeError(f"MemoryEtcd.client() takes no network options: {', '.join(refused)}")
        options.setdefault("clock", self.clock)
        options.setdefault("reactor", self.clock)
        transport = _MemoryTransport(self, options["clock"])
        self._transports.add(transport)
        return Client(**options, _transport=transport)

    def close(self) -> None:
        """Stop every timer of this etcd (lease expiry, progress notifications), so a test can
        end with ``clock.getDelayedCalls() == []``; leases stop counting down. Clients' streams
        end with :class:`~txetcd.ConnectionFailed`."""
        for lease in self.store.leases.values():
            _cancel(lease.timer)
            lease.timer = None
        _cancel(self._progress_timer)
        self._progress_timer = None
        for transport in list(self._transports):
            transport._drop_streams()

    # -- delivery ------------------------------------------------------------------------------
    def _emit(self, stream: "_MemoryStream", item: Any, closing: bool = False) -> None:
        """Give a stream a message (or, ``closing``, its end) to deliver in order: now, unless a
        delivery is under way, then right after it (never re-entrantly)."""
        stream._inbox.append((item, closing))
        self._kick(stream)

    def _kick(self, stream: "_MemoryStream") -> None:
        self._queue.append(stream)
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue:
                self._queue.popleft()._drain()
        finally:
            self._pumping = False

    # -- unary calls ---------------------------------------------------------------------------
    def _answer(self, method: Method, request: Any) -> Any:
        """The response message to a unary request, or raise the typed error."""
        size = request.ByteSize()
        if size > GRPC_MAX_BYTES:
            raise status_error(
                8, f"grpc: received message larger than max ({size} vs. {GRPC_MAX_BYTES})"
            )
        if size > MAX_REQUEST_BYTES:
            raise status_error(3, "etcdserver: request is too large")
        store = self.store
        path = method.path
        if path == m.RANGE.path:
            return store.range(request)
        if path == m.PUT.path:
            store.check_put(request)
            return store.write(lambda rev, evs: store.put(request, rev, evs))
        if path == m.DELETE_RANGE.path:
            return store.write(lambda rev, evs: store.delete(request, rev, evs))
        if path == m.TXN.path:
            return store.txn(request)
        if path == m.COMPACT.path:
            return store.compact(request)
        if path == m.LEASE_GRANT.path:
            return self._grant(request)
        if path == m.LEASE_REVOKE.path:
            return self._revoke(request)
        if path == m.LEASE_TIME_TO_LIVE.path:
            return self._time_to_live(request)
        if path == m.LEASE_LEASES.path:
            resp = rpc_pb2.LeaseLeasesResponse(header=store.header())
            for lease_id in store.leases:
                resp.leases.add(ID=lease_id)
            return resp
        if path == m.LEASE_KEEPALIVE.path:
            return self._keepalive(request)
        raise status_error(12, f"txetcd.testing.MemoryEtcd does not serve {method.name}")

    # -- leases --------------------------------------------------------------------------------
    def _grant(self, r: Any) -> Any:
        store = self.store
        if r.TTL > MAX_LEASE_TTL:
            raise status_error(11, "etcdserver: too large lease TTL")
        if r.ID and r.ID in store.leases:
            raise status_error(9, "etcdserver: lease already exists")
        lease_id = r.ID or store.new_lease_id()
        ttl = max(r.TTL, MIN_LEASE_TTL)
        lease = store.leases[lease_id] = Lease(lease_id, ttl, 0.0)
        self._refresh(lease)
        return rpc_pb2.LeaseGrantResponse(header=store.header(), ID=lease_id, TTL=ttl)

    def _refresh(self, lease: Lease) -> None:
        _cancel(lease.timer)
        lease.deadline = self.clock.seconds() + lease.ttl
        lease.timer = self.clock.callLater(lease.ttl, self._expire, lease.id)

    def _expire(self, lease_id: int) -> None:
        lease = self.store.leases.pop(lease_id, None)
        if lease is not None:
            lease.timer = None
            self.store.revoke_keys(lease)

    def _revoke(self, r: Any) -> Any:
        lease = self.store.leases.pop(r.ID, None)
        if lease is None:
            raise status_error(5, LEASE_NOT_FOUND)
        _cancel(lease.timer)
        lease.timer = None
        revision = self.store.revoke_keys(lease)
        return rpc_pb2.LeaseRevokeResponse(header=self.store.header(revision))

    def _time_to_live(self, r: Any) -> Any:
        store = self.store
        resp = rpc_pb2.LeaseTimeToLiveResponse(header=store.header(), ID=r.ID, TTL=-1)
        lease = store.leases.get(r.ID)
        if lease is not None:
            resp.TTL = max(int(lease.deadline - self.clock.seconds()), 0)
            resp.grantedTTL = lease.ttl
            if r.keys:
                resp.keys.extend(sorted(lease.keys))
        return resp

    def _keepalive(self, r: Any) -> Any:
        resp = rpc_pb2.LeaseKeepAliveResponse(header=self.store.header(), ID=r.ID)
        lease = self.store.leases.get(r.ID)
        if lease is not None:
            self._refresh(lease)
            resp.TTL = lease.ttl
        return resp

    # -- watches -------------------------------------------------------------------------------
    def _written(self, revision: int, events: List[Any]) -> None:
        # Every watch is given this revision before any consumer runs: a consumer that writes
        # at once must not move a watch not yet served past it (the event would be lost).
        held, self._pumping = self._pumping, True
        try:
            for stream in list(self._watch_streams):
                for watch in list(stream.watches.values()):
                    watch.deliver(revision, events, self.store.header(revision))
        finally:
            self._pumping = held
        self._pump()

    def _arm_progress(self) -> None:
        if self._progress_timer is None or not self._progress_timer.active():
            self._progress_timer = self.clock.callLater(
                self.progress_notify_interval, self._progress_tick
            )

    def _progress_tick(self) -> None:
        self._progress_timer = None
        wanted = False
        for stream in list(self._watch_streams):
            for watch in list(stream.watches.values()):
                if watch.progress_notify:
                    wanted = True
                    if watch.idle:
                        stream._push(
                            rpc_pb2.WatchResponse(
                                header=self.store.header(), watch_id=watch.watch_id
                            )
                        )
                    watch.idle = True
        if wanted:
            self._arm_progress()


class _ServerWatch:
    """One watch as the server keeps it."""

    def __init__(self, stream: "_MemoryStream", watch_id: int, r: Any, next_revision: int):
        self.stream = stream
        self.watch_id = watch_id
        self.key = bytes(r.key)
        self.end = bytes(r.range_end)
        self.prev_kv = r.prev_kv
        self.noput = _NOPUT in r.filters
        self.nodelete = _NODELETE in r.filters
        self.progress_notify = r.progress_notify
        self.next_revision = next_revision
        self.idle = True  # no events since the last progress tick

    def select(self, events: Sequence[Any]) -> List[Any]:
        out = []
        for ev in events:
            if not in_range(ev.kv.key, self.key, self.end):
                continue
            if self.noput if ev.type == _PUT else self.nodelete:
                continue
            if not self.prev_kv and ev.HasField("prev_kv"):
                ev = type(ev)(type=ev.type, kv=ev.kv)
            out.append(ev)
        return out

    def deliver(self, revision: int, events: Sequence[Any], header: Any) -> None:
        if revision < self.next_revision:
            return
        self.next_revision = revision + 1
        chosen = self.select(events)
        if chosen:
            self.idle = False
            resp = rpc_pb2.WatchResponse(header=header, watch_id=self.watch_id)
            resp.events.extend(chosen)
            self.stream._push(resp)


class _MemoryStream:
    """A streaming call to :class:`MemoryEtcd` (see :class:`txetcd._transport.Stream`)."""

    def __init__(
        self,
        transport: "_MemoryTransport",
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
    ) -> None:
        self.transport = transport
        self.etcd = transport.etcd
        self.method = method
        self.on_message = on_message
        self.on_close = on_close
        self._ended = False
        self._closing = False  # the end is queued: nothing more is sent or delivered
        self._send_closed = False
        self._paused = False
        #: what the server sent and the client has not been given yet (held while paused)
        self._inbox: Deque[Tuple[Any, bool]] = deque()
        self.watches: Dict[int, _ServerWatch] = {}
        self._next_watch_id = 0

    @property
    def ended(self) -> bool:
        """True once ``on_close`` was called."""
        return self._ended

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    # -- to the client -------------------------------------------------------------------------
    def _push(self, message: Any) -> None:
        if not self._closing:
            self.etcd._emit(self, message)

    def _finish(self, error: Optional[BaseException]) -> None:
        if self._closing:
            return
        self._closing = True
        self.etcd._watch_streams.discard(self)
        self.watches.clear()
        self.transport._streams.discard(self)
        self.etcd._emit(self, error, closing=True)

    def _drain(self) -> None:
        while self._inbox and not self._paused and not self._ended:
            item, closing = self._inbox.popleft()
            self._hand_over(item, closing)

    def _hand_over(self, item: Any, closing: bool) -> None:
        if closing:
            self._ended = True
            self._inbox.clear()
            _guarded(self.on_close, item)
        else:
            _guarded(self.on_message, item)

    # -- from the client -----------------------------------------------------------------------
    def send(self, message: Any, end: bool = False) -> bool:
        """Send one request message (``end``: and half-close)."""
        if self._send_closed or self._closing or self._ended:
            raise RuntimeError("the stream is closed for sending")
        self._request(message)
        if end:
            self.close_send()
        return True

    def close_send(self) -> None:
        """Half-close: etcd ends the stream, as it does when a client stops sending."""
        if self._send_closed:
            return
        self._send_closed = True
        self._finish(None)

    def pause(self) -> None:
        """Hold messages back."""
        self._paused = True

    def resume(self) -> None:
        """Deliver what was held, from the next turn of the clock (``clock.advance(0)`` on a
        ``task.Clock``): never from inside the consumer's own call."""
        if self._paused:
            self._paused = False
            self.transport._clock.callLater(0, self.etcd._kick, self)

    def cancel(self) -> None:
        """End the call; ``on_close`` gets ``CancelledError`` (what was not yet delivered is
        dropped)."""
        if self._ended:
            return
        self._inbox.clear()
        self._paused = False
        if self._closing:
            return
        self._closing = True
        self.etcd._watch_streams.discard(self)
        self.watches.clear()
        self.transport._streams.discard(self)
        self._ended = True
        _guarded(self.on_close, CancelledError())

    # -- the server side -----------------------------------------------------------------------
    def _request(self, message: Any) -> None:
        path = self.method.path
        try:
            if path == m.WATCH.path:
                self._watch_request(message)
            elif path == m.LEASE_KEEPALIVE.path:
                self._push(self.etcd._keepalive(message))
            else:
                self.etcd._answer(self.method, message)  # raises Unimplemented
        except EtcdError as error:
            self._finish(error)

    def _watch_request(self, r: Any) -> None:
        etcd, store = self.etcd, self.etcd.store
        which = r.WhichOneof("request_union")
        if which == "create_request":
            self._create(r.create_request)
        elif which == "cancel_request":
            wid = r.cancel_request.watch_id
            if self.watches.pop(wid, None) is not None:
                self._push(
                    rpc_pb2.WatchResponse(header=store.header(), watch_id=wid, canceled=True)
                )
        elif which == "progress_request":
            self._push(rpc_pb2.WatchResponse(header=store.header(), watch_id=-1))
        if not self._closing:
            etcd._watch_streams.add(self)

    def _create(self, c: Any) -> None:
        store = self.etcd.store
        wid = c.watch_id
        if wid == 0:
            while self._next_watch_id in self.watches:
                self._next_watch_id += 1
            wid = self._next_watch_id
            self._next_watch_id += 1
        elif wid in self.watches:
            self._push(
                rpc_pb2.WatchResponse(
                    header=store.header(),
                    watch_id=-1,
                    created=True,
                    canceled=True,
                    cancel_reason="mvcc: duplicate watch ID provided on the WatchStream",
                )
            )
            return
        self._push(rpc_pb2.WatchResponse(header=store.header(), watch_id=wid, created=True))
        start = c.start_revision
        if 0 < start < store.compacted:
            header = store.header()
            header.ClearField("revision")
            self._push(
                rpc_pb2.WatchResponse(
                    header=header, watch_id=wid, canceled=True, compact_revision=store.compacted
                )
            )
            return
        watch = _ServerWatch(self, wid, c, max(start, store.revision + 1))
        self.watches[wid] = watch
        if 0 < start <= store.revision:
            replay: List[Any] = []
            for _rev, events in store.history_events(start):
                replay.extend(watch.select(events))
            if replay:
                watch.idle = False
                resp = rpc_pb2.WatchResponse(header=store.header(), watch_id=wid)
                resp.events.extend(replay)
                self._push(resp)
        if watch.progress_notify:
            self.etcd._arm_progress()


class _MemoryTransport:
    """One client's connection to a :class:`MemoryEtcd` (a :class:`txetcd._transport.Transport`)."""

    capabilities = Capabilities(duplex_streams=True, stream_window=True)

    def __init__(self, etcd: MemoryEtcd, clock: Any) -> None:
        self.etcd = etcd
        self._clock = clock
        self._closed = False
        self._streams: Set[_MemoryStream] = set()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def clock(self) -> Any:
        """The client's clock."""
        return self._clock

    @property
    def endpoint_urls(self) -> Sequence[str]:
        """A name for the in-memory etcd (no network)."""
        return ("memory://txetcd",)

    def update_endpoints(self, urls: Sequence[str]) -> None:
        """Nothing to change: there is one in-memory etcd (an empty list is still refused)."""
        if not list(urls):
            raise ValueError("at least one endpoint is needed")

    def unary(
        self,
        method: Method,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        metadata: Metadata = (),
    ) -> "Deferred[Any]":
        """Answer a unary call at once."""
        if self._closed:
            return fail(ClientClosed("the client is closed"))
        try:
            resp = self.etcd._answer(method, request)
        except EtcdError as error:
            return fail(error)
        return succeed(decode(resp))

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> _MemoryStream:
        """Open a streaming call."""
        stream = _MemoryStream(self, method, on_message, on_close)
        if self._closed:
            stream._closing = True  # ends as soon as it is used; never inside stream()
            self._clock.callLater(0, stream._hand_over, ClientClosed("the client is closed"), True)
            return stream
        self._streams.add(stream)
        return stream

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        """Nothing to refresh: MemoryEtcd has no auth."""
        return succeed(False)

    def close(self) -> "Deferred[None]":
        """End every stream of this client (``ClientClosed``); later calls fail with it."""
        if not self._closed:
            self._closed = True
            self.etcd._transports.discard(self)
            for stream in list(self._streams):
                stream._finish(ClientClosed("the client is closed"))
        return succeed(None)

    def _drop_streams(self) -> None:
        from txetcd._errors import ConnectionFailed

        for stream in list(self._streams):
            stream._finish(ConnectionFailed("the in-memory etcd was closed"))


def _cancel(call: Any) -> None:
    if call is not None and call.active():
        call.cancel()


def _guarded(fn: Callable[[Any], None], arg: Any) -> None:
    try:
        fn(arg)
    except Exception:
        MemoryEtcd.log.failure("a stream callback raised")
