"""The httptools keep-alive pool: :class:`PoolClient`, an
:class:`~txetcd._http1.interface.HTTP1Client`.

A lean HTTP/1.1 pool on Twisted, responses parsed by ``httptools``: bounded per endpoint, one
request per connection at a time, idle connections closed on the injected clock, streams and
exclusive requests on connections of their own (each connection and its requests:
:mod:`txetcd._http1.connection`). It follows the rules in :mod:`txetcd._http1.interface`
(no hidden retries, deadlines, never a half-close), as
:class:`~txetcd._http1.treq.TreqClient` does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ClientClosed, OutcomeUnknown
from txetcd._http1.connection import _Connection, _Exchange, _StreamExchange
from txetcd._http1.interface import (
    HeadersArg,
    HTTPResponse,
    StreamHandle,
    _check_args,
    _connection_failed,
    _header_pairs,
    _Key,
    _split_url,
)

__all__ = ["PoolClient"]

_USER_AGENT = b"txetcd/0.1"


# -- request building --------------------------------------------------------------------------


def _build_request(
    method: bytes, host: bytes, target: bytes, headers: HeadersArg, body: bytes, close: bool
) -> bytes:
    block = _header_block(headers) if type(headers) is tuple else _make_block(headers)
    parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n", block]
    if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def _make_block(headers: HeadersArg) -> bytes:
    """The request's own header lines (checked), ``User-Agent`` added unless given."""
    lines = []
    given = set()
    for name, value in _header_pairs(headers):
        given.add(name.lower())
        lines.append(name + b": " + value + b"\r\n")
    if b"user-agent" not in given:
        lines.append(b"User-Agent: " + _USER_AGENT + b"\r\n")
    return b"".join(lines)


_BLOCKS: Dict[Any, bytes] = {}


def _header_block(headers: Any) -> bytes:
    """:func:`_make_block` of a tuple of pairs, remembered: callers send the same few sets."""
    try:
        block = _BLOCKS.get(headers)
    except TypeError:  # pairs given as lists
        return _make_block(headers)
    if block is None:
        block = _make_block(headers)
        if len(_BLOCKS) < 256:
            _BLOCKS[headers] = block
    return block


class _Host:
    """One endpoint's connections and the requests waiting for one."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.idle: List[_Connection] = []
        self.connections: Set[_Connection] = set()  # pooled ones, busy or idle
        self.connecting = 0
        self.waiters: Deque[_Exchange] = deque()


class PoolClient:
    """A lean HTTP/1.1 keep-alive pool on Twisted, responses parsed by ``httptools``.

    :param reactor: for TCP and time (timeouts, idle timers).
    :param max_connections_per_endpoint: open connections (busy or idle) per endpoint, not
        counting those of streams and exclusive requests.
    :param max_pending_per_endpoint: requests that may wait for a connection; one more fails
        at once with ``ConnectionFailed`` (not sent).
    :param connect_timeout: seconds to make a connection.
    :param idle_timeout: an idle connection is closed after this many seconds.
    :param endpoint_factory: ``(reactor, scheme, host, port) -> IStreamClientEndpoint``; by
        default ``HostnameEndpoint``, wrapped in TLS (default trust) for ``https``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        max_connections_per_endpoint: int = 32,
        max_pending_per_endpoint: int = 10_000,
        connect_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        endpoint_factory: Optional[Callable[[Any, str, str, int], IStreamClientEndpoint]] = None,
    ) -> None:
        if not isinstance(max_connections_per_endpoint, int) or max_connections_per_endpoint < 1:
            raise ValueError("max_connections_per_endpoint must be a positive int")
        import httptools  # noqa: F401  (fail here, not at the first connection, if it is missing)

        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.max_connections = max_connections_per_endpoint
        self.max_pending = max_pending_per_endpoint
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.endpoint_factory = endpoint_factory or self._default_endpoint
        self.closed = False
        self._hosts: Dict[_Key, _Host] = {}
        self._all: Set[_Connection] = set()
        self._connects: Set[Deferred[Any]] = set()
        self._close_waiters: List[Deferred[None]] = []
        self._deadlines: Dict[float, Deque[_Exchange]] = {}
        self._deadline_timers: Dict[float, IDelayedCall] = {}

    @staticmethod
    def _default_endpoint(reactor: Any, scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
        if scheme == "https":
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    def connection_count(self, url: Optional[str] = None) -> int:
        """Open connections (of one endpoint's pool, or all including streams')."""
        if url is None:
            return len(self._all)
        host = self._hosts.get(_split_url(url)[0])
        return len(host.connections) if host is not None else 0

    # -- calls ---------------------------------------------------------------------------------
    def request(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        timeout: Optional[float] = None,
        idempotent: bool = False,
        exclusive: bool = False,
    ) -> "Deferred[HTTPResponse]":
        """See :meth:`HTTP1Client.request`."""
        _check_args(method, url, headers, body)
        key, host, target = _split_url(url)
        data = _build_request(method, host, target, headers, body, close=exclusive)
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        ex = _Exchange(self, key, method, target, data, timeout, idempotent, exclusive)
        self._submit(ex)
        return ex.deferred

    def stream(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        on_line: Callable[[bytes], None],
    ) -> StreamHandle:
        """See :meth:`HTTP1Client.stream`."""
        _check_args(method, url, headers, body)
        if not callable(on_line):
            raise TypeError(f"on_line must be callable, not {type(on_line).__name__}")
        key, host, target = _split_url(url)
        data = _build_request(method, host, target, headers, body, close=True)
        ex = _StreamExchange(self, key, method, target, data, on_line)
        if self.closed:
            ex.fail(ClientClosed("the client is closed"))
        else:
            self._submit(ex)
        return ex.handle

    # -- deadlines -----------------------------------------------------------------------------
    def _track_deadline(self, ex: _Exchange, timeout: float) -> None:
        """Queue ``ex`` for its deadline. Requests of one timeout expire in the order they were
        made, so one timer per timeout value serves them all (a timer made and cancelled per
        request costs more than the rest of a request's bookkeeping)."""
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        while queue and queue[0].finished:
            queue.popleft()
        if len(queue) >= 4096:  # an old request still waits: drop the finished ones behind it
            queue = self._deadlines[timeout] = deque(e for e in queue if not e.finished)
        ex.deadline = self.clock.seconds() + timeout
        queue.append(ex)
        if timeout not in self._deadline_timers:
            self._deadline_timers[timeout] = self.clock.callLater(timeout, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        self._deadline_timers.pop(timeout, None)
        now = self.clock.seconds()
        while True:  # (a failed request's callbacks may make new ones: look again each time)
            queue = self._deadlines.get(timeout)
            if not queue or not (queue[0].finished or queue[0].deadline <= now):
                break
            ex = queue.popleft()
            if not ex.finished:
                ex._timed_out()
        if timeout in self._deadline_timers or self.closed:
            return
        if queue:
            self._deadline_timers[timeout] = self.clock.callLater(
                max(0.0, queue[0].deadline - now), self._expire, timeout
            )
        else:
            self._deadlines.pop(timeout, None)

    # -- scheduling ----------------------------------------------------------------------------
    def _host(self, key: _Key) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        return host

    def _submit(self, ex: _Exchange) -> None:
        if ex.exclusive:
            self._connect(self._host(ex.key), ex)
            return
        host = self._host(ex.key)
        while host.idle and not host.waiters:
            conn = host.idle.pop()
            if conn.reusable and not conn.gone:
                conn.start(ex)
                return
        if len(host.waiters) >= self.max_pending:
            ex.fail(_connection_failed("too many requests waiting for a connection", sent=False))
            return
        host.waiters.append(ex)
        self._pump(host)

    def _pump(self, host: _Host) -> None:
        while host.waiters and host.idle:
            conn = host.idle.pop()
            if conn.reusable and not conn.gone:
                conn.start(host.waiters.popleft())
        while (
            len(host.waiters) > host.connecting
            and len(host.connections) + host.connecting < self.max_connections
            and not self.closed
        ):
            self._connect(host, None)

    def _connect(self, host: _Host, exclusive: Optional[_Exchange]) -> None:
        key = host.key
        factory = Factory.forProtocol(lambda: _Connection(self, key, exclusive is not None))
        factory.noisy = False  # no "Starting factory" log line per connection
        d = self.endpoint_factory(self.reactor, *key).connect(factory)
        d.addTimeout(self.connect_timeout, self.clock)
        self._connects.add(d)
        if exclusive is None:
            host.connecting += 1

        def connected(conn: _Connection) -> None:
            self._connects.discard(d)
            if exclusive is None:
                host.connecting -= 1
            self._all.add(conn)
            if self.closed:
                conn.close()
                return
            if exclusive is None:
                host.connections.add(conn)
                self._released(conn)
            elif exclusive.finished:
                conn.close()
            else:
                conn.start(exclusive)

        def failed(f: Failure) -> None:
            self._connects.discard(d)
            if exclusive is None:
                host.connecting -= 1
            if self.closed:
                if exclusive is not None:
                    exclusive.fail(ClientClosed("the client is closed"))
                return
            timed_out = isinstance(f.value, (DeferTimeoutError, CancelledError))
            why = "connect timed out" if timed_out else f.getErrorMessage()
            url = f"{key[0]}://{key[1]}:{key[2]}"
            err = _connection_failed(f"could not connect to {url}: {why}", sent=False)
            if exclusive is not None:
                exclusive.fail(err)
            elif not host.connections:
                # Nothing can serve the waiters: the endpoint is down (no hidden retry).
                waiters, host.waiters = host.waiters, deque()
                for ex in waiters:
                    ex.fail(err)

        d.addCallbacks(connected, failed)

    def _released(self, conn: _Connection) -> None:
        """A connection finished its exchange (or was just made)."""
        if conn.exclusive or not conn.reusable or self.closed:
            conn.close()
            return
        host = self._hosts[conn.key]
        if host.waiters:
            conn.start(host.waiters.popleft())
            return
        host.idle.append(conn)
        conn.idle_since = self.clock.seconds()
        if conn.idle_timer is None:
            conn.idle_timer = self.clock.callLater(self.idle_timeout, self._idle_check, conn)

    def _idle_check(self, conn: _Connection) -> None:
        """Close ``conn`` if it has been idle for ``idle_timeout``; else look again later."""
        conn.idle_timer = None
        if conn.gone:
            return
        if conn.exchange is None:
            left = conn.idle_since + self.idle_timeout - self.clock.seconds()
            if left <= 0:
                conn.close()
                return
        else:
            left = self.idle_timeout  # busy: idle again at the earliest after its exchange
        conn.idle_timer = self.clock.callLater(left, self._idle_check, conn)

    def _forget(self, ex: _Exchange) -> None:
        host = self._hosts.get(ex.key)
        if host is not None:
            try:
                host.waiters.remove(ex)
            except ValueError:
                pass

    def _lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        host = self._hosts.get(conn.key)
        if host is not None:
            host.connections.discard(conn)
            if conn in host.idle:
                host.idle.remove(conn)
            if not self.closed:
                self._pump(host)
        if self.closed and not self._all and self._close_waiters:
            waiters, self._close_waiters = self._close_waiters, []
            for d in waiters:
                d.callback(None)

    def close(self) -> "Deferred[None]":
        """Close every connection and fail every pending call.

        Requests not yet sent fail with :class:`~txetcd.ClientClosed`; a non-idempotent one
        already written fails with :class:`~txetcd.OutcomeUnknown` (its ``cause`` is
        ``ClientClosed``). Fires once no connection, connection attempt or timer is left.
        """
        self.closed = True
        timers, self._deadline_timers = self._deadline_timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()
        self._deadlines.clear()
        for connecting in list(self._connects):
            connecting.cancel()
        self._connects.clear()
        for host in self._hosts.values():
            waiters, host.waiters = host.waiters, deque()
            for ex in waiters:
                ex.fail(ClientClosed("the client is closed"))
        for conn in list(self._all):
            busy, conn.exchange = conn.exchange, None
            if busy is not None and not busy.finished:
                closed = ClientClosed("the client is closed")
                if busy.written and not busy.idempotent:
                    busy.fail(OutcomeUnknown("the client was closed during a write", cause=closed))
                else:
                    busy.fail(closed)
                conn.abort()
            else:
                conn.close()
            if conn.idle_timer is not None and conn.idle_timer.active():
                conn.idle_timer.cancel()
            conn.idle_timer = None
        if not self._all:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        return d
