"""The one call path: endpoints, connections, and dispatching every call.

:class:`Channel` picks the endpoint (in order, failing over when one cannot be reached), owns
the HTTP/2 connections, builds each call's request header block, starts calls on the current
connection or queues them while one is made, and applies the retry rule when a connection
breaks (see :mod:`txetcd._grpc.calls`). Nothing else is retried.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ClientClosed, ConnectionFailed
from txetcd._grpc.calls import GrpcStream, _UnaryCall
from txetcd._h2.connection import H2Connection
from txetcd._h2.frames import ConnectionClosed, encode_literal, encode_literal_indexed_name
from txetcd._methods import STATUS
from txetcd._retry import backoff_policy
from txetcd._terms import PROBE_REQUEST, TermWatch
from txetcd._tls import BatchingTLSEndpoint, TLSOptions
from txetcd._transport import Capabilities, Metadata, Method

__all__ = ["Channel", "Endpoint", "parse_endpoint"]

_USER_AGENT = b"txetcd/0.1"


class Endpoint:
    """Where to connect: a parsed ``http://host:port`` client URL, and its health.

    An endpoint that failed (could not be connected to, or answered that it cannot serve: no
    leader, a learner) is left alone until ``retry_at`` on the channel's clock, a jittered
    backoff that grows with each failure in a row; ``last_error`` says what went wrong.
    """

    __slots__ = ("url", "scheme", "host", "port", "authority", "failures", "retry_at", "last_error")

    def __init__(self, url: str, scheme: str, host: str, port: int) -> None:
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r})"


def parse_endpoint(url: str) -> Endpoint:
    """Parse one client URL; ``host:port`` alone means ``http://host:port``."""
    if not isinstance(url, str):
        raise TypeError(f"endpoint must be a str URL, not {type(url).__name__}")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"unsupported endpoint scheme {parts.scheme!r} in {url!r}: use http:// or https://"
        )
    if not parts.hostname:
        raise ValueError(f"endpoint {url!r} has no host")
    try:
        port = parts.port or 2379
    except ValueError as e:
        raise ValueError(f"endpoint {url!r}: {e}") from None
    return Endpoint(url, parts.scheme, parts.hostname, port)


def _ignore(_: object) -> None:
    return None


def _when_ready(conn: H2Connection) -> "Deferred[H2Connection]":
    return conn.ready.addCallback(lambda _: conn)


def _request_prefix(endpoint: Endpoint, path: bytes) -> bytes:
    """The constant part of a call's request header block (HPACK literals, no table state)."""
    return b"".join(
        (
            b"\x83",  # :method POST (static 3)
            b"\x86" if endpoint.scheme == "http" else b"\x87",  # :scheme
            encode_literal_indexed_name(4, path),  # :path
            encode_literal_indexed_name(1, endpoint.authority.encode("ascii")),  # :authority
            encode_literal_indexed_name(31, b"application/grpc"),  # content-type
            encode_literal(b"te", b"trailers"),
            encode_literal_indexed_name(58, _USER_AGENT),  # user-agent
        )
    )


class Channel:
    """Connections to a set of etcd endpoints, and the one path every call goes through.

    :param endpoints: client URLs; connections go to the first that answers, in order.
    :param reactor: the reactor (TCP, and time unless ``clock`` is given).
    :param clock: the ``IReactorTime`` for deadlines, backoff, connect timeouts and PINGs.
    :param max_attempts: how many times one call may be started (retries of reads, and of
        writes that certainly never reached the server).
    """

    log = Logger()

    capabilities = Capabilities(duplex_streams=True, stream_window=True)

    def __init__(
        self,
        endpoints: Sequence[str],
        reactor: Any,
        *,
        tls: Optional[TLSOptions] = None,
        connect_timeout: float = 5.0,
        keepalive_interval: Optional[float] = 10.0,
        keepalive_timeout: float = 10.0,
        max_attempts: int = 3,
        endpoint_factory: Optional[Callable[[Any, Endpoint], IStreamClientEndpoint]] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self.endpoints = [parse_endpoint(u) for u in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        if tls is None and any(e.scheme == "https" for e in self.endpoints):
            tls = TLSOptions()  # verified against the system's trust store
        self.tls = tls
        self.reactor = reactor
        self.clock: IReactorTime = reactor if clock is None else clock
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.max_attempts = max_attempts
        #: resends of one call after "not now" answers (no leader, leader changed): with the
        #: resend backoff (up to 1 s apart) about 8 s, bounded by the call's deadline too
        self.max_waits = 12
        self.endpoint_factory = endpoint_factory or self._default_endpoint
        self.closed = False
        self.connection: Optional[H2Connection] = None
        self.connections: List[H2Connection] = []  # every live connection, for close()
        self._endpoint_index = 0
        self._connecting: Optional[Deferred[Any]] = None
        self._waiters: List[Any] = []
        self._prefixes: dict[Tuple[int, bytes], bytes] = {}
        self._lost_waiters: List[Deferred[None]] = []
        self._resending: set[_UnaryCall] = set()  # calls waiting out a backoff before a resend
        #: the highest raft term seen, and the writes in flight (see :mod:`txetcd._terms`)
        self.terms = TermWatch(self.clock, self._probe_term)
        #: how long an endpoint that failed is left alone (failures in a row -> seconds)
        self.endpoint_backoff: Callable[[int], float] = backoff_policy(0.05, 2.0)

    def _default_endpoint(self, reactor: Any, endpoint: Endpoint) -> IStreamClientEndpoint:
        tcp = HostnameEndpoint(reactor, endpoint.host, endpoint.port)
        if endpoint.scheme == "https":
            assert self.tls is not None
            # http/1.1 is offered too, only so that a server that does not speak HTTP/2 can say
            # so in the handshake (and be told apart clearly) instead of refusing it
            # (records of one TCP read reach the HTTP/2 connection as one read)
            return BatchingTLSEndpoint(self.tls.creator(endpoint.host, (b"h2", b"http/1.1")), tcp)
        return tcp

    @property
    def endpoint_urls(self) -> List[str]:
        """The client URLs this channel connects to."""
        return [e.url for e in self.endpoints]

    def update_endpoints(self, urls: Sequence[str]) -> None:
        """Replace the endpoints (auto-sync, discovery).

        Endpoints that stay keep their health (failures, backoff) and the pinned one stays
        pinned; if the current connection's endpoint is gone, new calls go to a connection to
        one that stays, while the calls and streams open on it finish there (drained, as when
        the endpoint fails).
        """
        fresh = [parse_endpoint(u) for u in urls]
        if not fresh:
            raise ValueError("at least one endpoint is needed")
        if self.tls is None and any(e.scheme == "https" for e in fresh):
            self.tls = TLSOptions()  # verified against the system's trust store
        known = {e.url: e for e in self.endpoints}
        pinned = self.endpoints[self._endpoint_index % len(self.endpoints)]
        self.endpoints = [known.get(e.url, e) for e in fresh]
        self._endpoint_index = self.endpoints.index(pinned) if pinned in self.endpoints else 0
        conn = self.connection
        if conn is not None and conn.endpoint not in self.endpoints:
            self.connection = None
            conn._drain()  # its open streams finish there; nothing new starts on it

    # -- calls ---------------------------------------------------------------------------------
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
        """Call a unary method with a request message.

        Fires with ``decode(response message)``; a ``decode`` that raises fails the call with
        :class:`~txetcd.ProtocolViolation`.
        """
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        payload = request.SerializeToString()
        if metadata:
            metadata = self.terms.metadata(metadata)
        call = _UnaryCall(self, method, payload, timeout, idempotent, metadata, decode)
        self.dispatch(call)
        return call.deferred

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> GrpcStream:
        """Open a streaming call; send with :meth:`GrpcStream.send`. ``on_close`` always fires."""
        stream = GrpcStream(self, method, on_message, on_close, metadata)
        stream._early = []
        if self.closed:
            self.clock.callLater(0, stream._end, ClientClosed("the client is closed"))
        else:
            self.dispatch(stream)
        return stream

    def dispatch(self, call: Any) -> bool:
        """Start ``call`` on the current connection, or queue it until one is made."""
        if self.closed:
            call.fail_to_connect(ClientClosed("the client is closed"))
            return False
        conn = self.connection
        if conn is not None and conn.accepting:
            self._start(conn, call)
            return True
        if conn is not None and conn.lost is not None:
            # Dying (its streams are told before we are): leave its endpoint now, so a call
            # made meanwhile (a writer putting again on OutcomeUnknown) connects elsewhere.
            self._connection_gone(conn, conn.lost.reason)
        self._waiters.append(call)
        self._connect()
        return True

    def _start(self, conn: H2Connection, call: Any) -> None:
        key = (id(conn), call.path)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = _request_prefix(conn.endpoint, call.path)
        if isinstance(call, _UnaryCall):
            if call.attempts:
                call._restart()
            call.attempts += 1
            if not call.idempotent:
                self.terms.sent(call)
            data = b"\x00" + len(call.payload).to_bytes(4, "big") + call.payload
            conn.start_stream(call, call.header_block(prefix), data, True)
        else:
            early, call._early = call._early, []
            local_closed = call.local_closed
            call.local_closed = False
            first = early[0] if early else (b"", False)
            conn.start_stream(call, call.header_block(prefix), first[0], first[1])
            for frame, end in early[1:]:
                if not call.closed:
                    conn._send_data(call, frame, end)
            if local_closed and not call.local_closed and not call.closed:
                conn._send_data(call, b"", True)

    def _probe_term(self) -> None:
        """Ask the member for its raft term (see :mod:`txetcd._terms`)."""
        d = self.unary(
            STATUS, PROBE_REQUEST, timeout=self.terms.interval, idempotent=True, decode=_ignore
        )
        d.addErrback(_ignore)

    def _forget_waiter(self, call: Any) -> None:
        try:
            self._waiters.remove(call)
        except ValueError:
            pass

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._connecting is not None or self.closed:
            return
        self._try_endpoints(self._candidates(), 0, [])

    def _candidates(self) -> List[Endpoint]:
        """The endpoints to try, in order: the pinned one and those after it that are not
        backing off, then (so a call is not failed while one might answer) those backing off,
        soonest first."""
        n = len(self.endpoints)
        start = self._endpoint_index % n
        ordered = [self.endpoints[(start + i) % n] for i in range(n)]
        now = self.clock.seconds()
        ready = [e for e in ordered if e.retry_at <= now]
        waiting = sorted((e for e in ordered if e.retry_at > now), key=lambda e: e.retry_at)
        return ready + waiting

    def endpoint_failed(self, connection: Optional[H2Connection], why: str) -> None:
        """The member behind ``connection`` cannot serve (no leader, a learner): back off from
        it, and start new calls on a connection to another endpoint."""
        if connection is None or connection.endpoint is None:
            return
        self._mark_failed(connection.endpoint, why)
        if self.connection is connection and len(self.endpoints) > 1:
            self.connection = None
            connection._drain()  # its open streams finish there; nothing new starts on it

    def _mark_failed(self, endpoint: Endpoint, why: str) -> None:
        self.terms.suspect()
        endpoint.failures += 1
        endpoint.last_error = why
        endpoint.retry_at = self.clock.seconds() + self.endpoint_backoff(endpoint.failures - 1)
        if self.endpoints[self._endpoint_index % len(self.endpoints)] is endpoint:
            self._endpoint_index += 1

    def _try_endpoints(self, candidates: List[Endpoint], tried: int, errors: List[str]) -> None:
        if tried >= len(candidates):
            self._connecting = None
            waiters, self._waiters = self._waiters, []
            err = ConnectionFailed("could not connect to etcd: " + "; ".join(errors))
            for call in waiters:
                call.fail_to_connect(err)
            return
        endpoint = candidates[tried]
        if endpoint not in self.endpoints:  # update_endpoints changed the list meanwhile
            done = candidates[:tried]
            candidates = done + [e for e in self._candidates() if e not in done]
            self._try_endpoints(candidates, tried, errors)
            return
        self._endpoint_index = self.endpoints.index(endpoint)
        factory = Factory.forProtocol(lambda: self._make_protocol(endpoint))
        factory.noisy = False  # no "Starting factory" log line per connection
        connecting: Deferred[Any] = self.endpoint_factory(self.reactor, endpoint).connect(factory)
        # Connected means ready for streams: over TLS, after the handshake and ALPN h2.
        d = connecting.addCallback(_when_ready)
        d.addTimeout(self.connect_timeout, self.clock)
        self._connecting = d

        def connected(conn: H2Connection) -> None:
            self._connecting = None
            if self.closed:
                conn.close("the client is closed")
                return
            self.connection = conn
            endpoint.failures = 0
            endpoint.retry_at = 0.0
            waiters, self._waiters = self._waiters, []
            for call in waiters:
                self.dispatch(call)

        def failed(f: Failure) -> None:
            self._connecting = None
            if self.closed:
                return
            timed_out = isinstance(f.value, (CancelledError, TimeoutError))
            why = (
                f"connect timed out after {self.connect_timeout:g} s"
                if timed_out
                else f.getErrorMessage()
            )
            self._mark_failed(endpoint, why)
            errors.append(f"{endpoint.url}: {why}")
            self._try_endpoints(candidates, tried + 1, errors)

        d.addCallbacks(connected, failed)

    def _make_protocol(self, endpoint: Endpoint) -> H2Connection:
        conn = H2Connection(
            self.clock,
            keepalive_interval=self.keepalive_interval,
            keepalive_timeout=self.keepalive_timeout,
            on_lost=self._connection_lost,
            on_goaway=self._connection_going_away,
            tls=endpoint.scheme == "https",
        )
        conn.endpoint = endpoint
        self.connections.append(conn)
        return conn

    def _connection_going_away(self, conn: H2Connection) -> None:
        if self.connection is conn:
            self.connection = None

    def _connection_gone(self, conn: H2Connection, why: str) -> None:
        """The current connection broke: no new calls on it, and its endpoint backs off (the
        next connection goes elsewhere first)."""
        self.connection = None
        if not self.closed and conn.endpoint is not None:
            self._mark_failed(conn.endpoint, why)

    def _connection_lost(self, conn: H2Connection, reason: ConnectionClosed) -> None:
        if self.connection is conn:
            self._connection_gone(conn, reason.reason)
        if conn in self.connections:
            self.connections.remove(conn)
        for key in [k for k in self._prefixes if k[0] == id(conn)]:
            del self._prefixes[key]
        if not self.connections and self._lost_waiters:
            waiters, self._lost_waiters = self._lost_waiters, []
            for d in waiters:
                d.callback(None)

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        """No login here (see :class:`txetcd._auth.AuthTransport`): nothing to refresh."""
        return succeed(False)

    def close(self) -> "Deferred[None]":
        """Close every connection; pending calls fail with :class:`ClientClosed`.

        The Deferred fires once every connection is gone (no transport, no timer left).
        """
        self.closed = True
        self.terms.close()
        if self._connecting is not None:
            self._connecting.cancel()
        waiters, self._waiters = self._waiters, []
        waiters.extend(self._resending)
        for call in waiters:
            call.fail_to_connect(ClientClosed("the client is closed"))
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        for conn in list(self.connections):
            conn.close("the client is closed")
        return d


# Re-exported for callers that map exceptions.
