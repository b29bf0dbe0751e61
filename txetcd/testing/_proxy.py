"""A loopback TCP proxy for fault tests: reset, blackhole, refuse and cut connections.

:class:`TCPProxy` listens on ``127.0.0.1`` (a free port) and forwards every accepted connection
to one target (a real etcd, say) over a connection of its own. A test points its client at
:attr:`TCPProxy.endpoint` and then breaks the path in the ways a network breaks it:

- :meth:`~TCPProxy.reset`: every connection is aborted, the client sees a TCP RST;
- :meth:`~TCPProxy.blackhole` / :meth:`~TCPProxy.restore`: silence in both directions while
  the connections stay open (only a keepalive PING timeout can tell);
- :meth:`~TCPProxy.cut_after`: forward exactly N more bytes one way, then abort (a message cut
  in half);
- :meth:`~TCPProxy.refuse`: new connections are closed at once, reset, or not listened for.

Everything runs in the reactor (no threads; time is the reactor's); every method may be called
from a test running in it. Only IP-literal targets are accepted, so no name is ever resolved.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from typing import Any, Dict, List, Literal, Optional, Set, Tuple

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IPushProducer
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["TCPProxy"]

Direction = Literal["down", "up"]
Which = Literal["current", "next", "both"]
RefuseHow = Literal["close", "reset", "unlisten"]

_TIOCOUTQ: Optional[int] = None
if sys.platform.startswith("linux"):
    import termios

    _TIOCOUTQ = termios.TIOCOUTQ  # == SIOCOUTQ for a TCP socket: bytes not yet acknowledged


def _unflushed(transport: Any) -> Optional[int]:
    """Bytes written to ``transport`` that the peer has not acknowledged yet (None: unknown).

    Counts Twisted's own write buffer and, on Linux, the kernel's send queue (``SIOCOUTQ``).
    """
    if getattr(transport, "disconnected", False):
        return 0
    try:
        pending = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None
    if _TIOCOUTQ is not None:
        import fcntl

        try:
            raw = fcntl.ioctl(transport.getHandle().fileno(), _TIOCOUTQ, b"\0\0\0\0")
            pending += int(struct.unpack("i", raw)[0])
        except (OSError, ValueError, AttributeError):
            pass
    return int(pending)


@implementer(IPushProducer)
class _Valve:
    """Reading on one transport, paused while any reason holds.

    Registered as the (streaming) producer of the *other* side's transport, so a full write
    buffer there pauses reading here (back-pressure), independently of the proxy's own reasons
    (``"connecting"``, ``"hold"``, ``"ending"``).
    """

    def __init__(self) -> None:
        self.transport: Any = None
        self.reasons: Set[str] = set()

    def attach(self, transport: Any) -> None:
        self.transport = transport
        if self.reasons:
            transport.pauseProducing()

    def pause(self, reason: str) -> None:
        was_paused = bool(self.reasons)
        self.reasons.add(reason)
        if not was_paused and self.transport is not None:
            self.transport.pauseProducing()

    def resume(self, reason: str) -> None:
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        if not self.reasons and self.transport is not None:
            self.transport.resumeProducing()

    # IPushProducer, called by the peer's transport about its write buffer.
    def pauseProducing(self) -> None:
        self.pause("backpressure")

    def resumeProducing(self) -> None:
        self.resume("backpressure")

    def stopProducing(self) -> None:
        pass  # the peer's transport is gone: the pair decides what to do


class _Side(Protocol):
    """One end of a proxied connection: the accepted client side or the upstream side."""

    def __init__(self, pair: "_Pair", upstream: bool) -> None:
        self.pair = pair
        self.upstream = upstream
        self.valve = _Valve()
        self.tcp: Any = None
        self.lost = False

    def connectionMade(self) -> None:
        self.tcp = self.transport
        set_nodelay = getattr(self.tcp, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        self.valve.attach(self.tcp)
        self.pair.side_made(self)

    def dataReceived(self, data: bytes) -> None:
        self.pair.received(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.pair.side_lost(self, reason)

    def abort(self) -> None:
        if self.tcp is not None and not self.lost:
            self.tcp.abortConnection()


class _CutWatch:
    """The Deferred of one :meth:`TCPProxy.cut_after` call: fires once every armed pair ended."""

    def __init__(self) -> None:
        self.deferred: Deferred[int] = Deferred()
        self.pending = 0
        self.cut = 0
        self.armed = False

    def settle(self, cut: bool) -> None:
        self.pending -= 1
        self.cut += int(cut)
        self.check()

    def check(self) -> None:
        if self.armed and self.pending == 0 and not self.deferred.called:
            self.deferred.callback(self.cut)


class _UpstreamFactory(ClientFactory):
    noisy = False

    def __init__(self, pair: "_Pair") -> None:
        self.pair = pair

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        side = _Side(self.pair, upstream=True)
        side.factory = self
        return side

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.pair.connect_failed(reason)


class _ListenFactory(Factory):
    noisy = False

    def __init__(self, proxy: "TCPProxy") -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        return self.proxy._accept()


class _Pair:
    """One accepted connection and its upstream connection."""

    def __init__(self, proxy: "TCPProxy", refused: Optional[str]) -> None:
        self.proxy = proxy
        self.refused = refused
        self.client = _Side(self, upstream=False)
        self.server: Optional[_Side] = None
        self.connector: Optional[IConnector] = None
        self.black: Optional[str] = None if refused else proxy._blackhole
        self.budget: Dict[str, Optional[int]] = {"down": None, "up": None}
        self.watches: List[_CutWatch] = []
        self.ending: Optional[str] = None  # "cut", "reset", "stop", "refused", "upstream"
        self.flush_call: Optional[IDelayedCall] = None
        self.flush_deadline = 0.0
        self.flush_grace: Optional[float] = None
        self.done = False

    def sides(self) -> List[_Side]:
        return [s for s in (self.client, self.server) if s is not None]

    # -- life ----------------------------------------------------------------------------------
    def side_made(self, side: _Side) -> None:
        proxy = self.proxy
        if not side.upstream:
            proxy._client_connected(self)
            if self.refused == "close":
                self.ending = "refused"
                side.tcp.loseConnection()
                return
            if self.refused == "reset":
                self.ending = "refused"
                side.abort()
                return
            side.valve.pause("connecting")
            if self.black == "hold":
                side.valve.pause("hold")
            for direction, nbytes, watch in proxy._take_next_cuts():
                self.arm(direction, nbytes, watch)
            if self.ending is None:
                self._connect()
            return
        self.connector = None
        self.server = side
        if self.ending is not None or self.client.lost:
            side.abort()
            return
        # Back-pressure: a full write buffer on one side pauses reading on the other.
        side.tcp.registerProducer(self.client.valve, True)
        self.client.tcp.registerProducer(side.valve, True)
        if self.black == "hold":
            side.valve.pause("hold")
        self.client.valve.resume("connecting")

    def _connect(self) -> None:
        proxy = self.proxy
        self.connector = proxy.reactor.connectTCP(
            proxy.target_host,
            proxy.target_port,
            _UpstreamFactory(self),
            timeout=proxy.connect_timeout,
        )

    def connect_failed(self, reason: Failure) -> None:
        self.connector = None
        if self.ending is None and not self.client.lost:
            # The target is down: reset the accepted connection (it cannot be un-accepted).
            self.ending = "upstream"
            self.client.abort()
        self._maybe_done()

    def side_lost(self, side: _Side, reason: Failure) -> None:
        if not side.upstream:
            self.proxy.active_connections -= 1
        other = self.client if side.upstream else self.server
        if other is not None and not other.lost:
            if self.ending is not None:
                other.abort()
            elif side.upstream and self.black == "drop":
                pass  # across a partition the client is not told
            elif isinstance(reason.value, ConnectionDone):
                other.tcp.loseConnection()  # after what was already forwarded
            else:
                other.abort()
        if not side.upstream and self.connector is not None:
            self._stop_connecting()
        self._maybe_done()

    def _stop_connecting(self) -> None:
        connector, self.connector = self.connector, None
        if connector is not None:
            try:
                connector.stopConnecting()
            except Exception:  # not connecting any more: the connection is being made
                pass

    def abort(self, why: str) -> None:
        """Abort both sides now (RST toward the client)."""
        if self.ending is None:
            self.ending = why
        self._cancel_flush()
        self._stop_connecting()
        for side in self.sides():
            side.abort()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.done or not self.client.lost or self.connector is not None:
            return
        if self.server is not None and not self.server.lost:
            return
        self.done = True
        self._cancel_flush()
        watches, self.watches = self.watches, []
        for watch in watches:
            watch.settle(self.ending == "cut")
        self.proxy._pair_done(self)

    # -- forwarding ----------------------------------------------------------------------------
    def received(self, side: _Side, data: bytes) -> None:
        proxy = self.proxy
        direction = "up" if not side.upstream else "down"
        dest = self.client if side.upstream else self.server
        if self.ending is not None or self.black == "drop" or dest is None or dest.lost:
            proxy.bytes_dropped += len(data)
            return
        budget = self.budget[direction]
        if budget is not None:
            if len(data) >= budget:
                proxy.bytes_dropped += len(data) - budget
                self._forward(dest, direction, data[:budget])
                self.begin_cut(direction)
                return
            self.budget[direction] = budget - len(data)
        self._forward(dest, direction, data)

    def _forward(self, dest: _Side, direction: str, data: bytes) -> None:
        if not data:
            return
        if direction == "down":
            self.proxy.bytes_down += len(data)
        else:
            self.proxy.bytes_up += len(data)
        dest.tcp.write(data)

    # -- blackhole -----------------------------------------------------------------------------
    def set_black(self, mode: Optional[str]) -> None:
        if self.refused or self.black == "drop":
            return  # a pair that dropped data stays silent: its streams have holes
        if mode == "hold":
            self.black = "hold"
            for side in self.sides():
                side.valve.pause("hold")
        else:  # "drop", or None (restore a held pair)
            self.black = mode
            for side in self.sides():
                side.valve.resume("hold")

    # -- cuts ----------------------------------------------------------------------------------
    def arm(self, direction: str, nbytes: int, watch: _CutWatch) -> None:
        watch.pending += 1
        if self.done:
            watch.settle(False)
            return
        self.watches.append(watch)
        if self.ending is not None:
            return
        self.budget[direction] = nbytes
        if nbytes == 0:
            self.begin_cut(direction)

    def begin_cut(self, direction: str) -> None:
        """Stop forwarding; once what was forwarded toward ``direction`` left, abort the pair."""
        if self.ending is not None:
            return
        self.ending = "cut"
        self.proxy.cuts += 1
        self.budget = {"down": None, "up": None}
        for side in self.sides():
            side.valve.pause("ending")
        self.flush_deadline = self.proxy.reactor.seconds() + self.proxy.flush_timeout
        self._flush_dest = self.client if direction == "down" else self.server
        self.flush_call = self.proxy.reactor.callLater(0, self._poll_flush)

    def _poll_flush(self) -> None:
        self.flush_call = None
        if self.done:
            return
        reactor = self.proxy.reactor
        now = reactor.seconds()
        dest = self._flush_dest
        pending = 0 if dest is None or dest.lost else _unflushed(dest.tcp)
        if pending:
            flushed = False
            self.flush_grace = None
        elif pending == 0 and _TIOCOUTQ is not None:
            flushed = True
        else:
            # Twisted's buffer size unknown, or no kernel queue size: a short grace period.
            if self.flush_grace is None:
                self.flush_grace = now + 0.02
            flushed = now >= self.flush_grace
        if flushed or now >= self.flush_deadline:
            self.abort("cut")
            return
        self.flush_call = reactor.callLater(0.001, self._poll_flush)

    def _cancel_flush(self) -> None:
        call, self.flush_call = self.flush_call, None
        if call is not None and call.active():
            call.cancel()

    _flush_dest: Optional[_Side] = None


class TCPProxy:
    """A TCP proxy on ``127.0.0.1`` that a test can break on purpose.

    Each accepted connection gets its own connection to ``target_host:target_port``; the
    accepted side is not read until that upstream connection is made, and a side whose write
    buffer fills pauses reading on the other (back-pressure both ways). A clean close (FIN) on
    one side closes the other after what was already forwarded; a reset aborts the other side
    too. Half-closes are not relayed (an EOF closes the pair).

    :param target_host: an IP address (``"localhost"`` means ``127.0.0.1``); no name lookups.
    :param target_port: the target's port.
    :param reactor: the reactor (TCP and time); the global one by default.
    :param connect_timeout: seconds to wait for each upstream connection.
    :param flush_timeout: how long :meth:`cut_after` waits for the forwarded bytes to leave
        before aborting anyway (a peer that does not read).

    Counters (read them at will): ``connections_total`` (connections accepted, refused ones
    included), ``active_connections`` (accepted connections still open), ``bytes_down``
    (target -> client) and ``bytes_up`` (client -> target) forwarded, ``bytes_dropped`` (read
    and not forwarded: blackholed, or after a cut), ``cuts``, ``resets`` (connections aborted
    by :meth:`reset`) and ``refused``.

    Usable as ``async with TCPProxy(host, port) as proxy:`` (started, and stopped at the end).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        reactor: Any = None,
        connect_timeout: float = 5.0,
        flush_timeout: float = 2.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if target_host == "localhost":
            target_host = "127.0.0.1"
        host = target_host[1:-1] if target_host.startswith("[") else target_host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"target_host must be an IP address (no name lookups), not {target_host!r}"
            ) from None
        if isinstance(target_port, bool) or not isinstance(target_port, int):
            raise TypeError(f"target_port must be an int, not {type(target_port).__name__}")
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port out of range: {target_port}")
        self.target_host = host
        self.target_port = target_port
        self.reactor = reactor
        self.connect_timeout = connect_timeout
        self.flush_timeout = flush_timeout
        self.port = 0
        self.connections_total = 0
        self.active_connections = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.bytes_dropped = 0
        self.cuts = 0
        self.resets = 0
        self.refused = 0
        self._factory = _ListenFactory(self)
        self._listener: Any = None
        self._listener_closing: Optional[Deferred[Any]] = None
        self._pairs: Set[_Pair] = set()
        self._blackhole: Optional[str] = None
        self._refusing: Optional[str] = None
        self._next_cuts: List[Tuple[str, int, _CutWatch]] = []
        self._conn_waiters: List[Tuple[int, Deferred[int]]] = []
        self._started = False
        self._stopped = False
        self._stop_waiters: List[Deferred[None]] = []

    def __repr__(self) -> str:
        return (
            f"<TCPProxy 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port}"
            f" active={self.active_connections} total={self.connections_total}>"
        )

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The proxy's URL, ``http://127.0.0.1:PORT``, for :class:`txetcd.Client`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TCPProxy":
        """Listen on a free port of ``127.0.0.1`` (synchronous); returns the proxy."""
        if self._started:
            raise RuntimeError("the proxy was already started")
        self._started = True
        self._listener = self.reactor.listenTCP(0, self._factory, interface="127.0.0.1")
        self.port = int(self._listener.getHost().port)
        return self

    def stop(self) -> "Deferred[None]":
        """Stop listening and abort every connection (RST toward the clients).

        Fires once the listening socket is closed and every connection of the proxy (and every
        timer it set) is gone. Pending :meth:`wait_for_connections` Deferreds fail with
        :class:`~twisted.internet.defer.CancelledError`; pending :meth:`cut_after` Deferreds
        fire. Calling it again is harmless.
        """
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        if self._stopped:
            self._check_stopped()
            return d
        self._stopped = True
        for _direction, _nbytes, watch in self._take_next_cuts():
            watch.check()
        waiters, self._conn_waiters = self._conn_waiters, []
        for _n, w in waiters:
            w.errback(CancelledError("the proxy was stopped"))
        self._close_listener()
        for pair in list(self._pairs):
            pair.abort("stop")
        self._check_stopped()
        return d

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            closing: Deferred[Any] = Deferred()
            self._listener_closing = closing

            def closed(result: Any) -> None:
                if self._listener_closing is closing:
                    self._listener_closing = None
                closing.callback(None)
                self._check_stopped()

            d = listener.stopListening()
            if isinstance(d, Deferred):
                d.addBoth(closed)
            else:
                closed(None)

    def _check_stopped(self) -> None:
        if not self._stopped or self._pairs or self._listener_closing is not None:
            return
        if not self._stop_waiters:
            return
        waiters, self._stop_waiters = self._stop_waiters, []

        def fire() -> None:
            for d in waiters:
                d.callback(None)

        # One more turn, so that the transports' own zero-delay calls have run too.
        self.reactor.callLater(0, fire)

    async def __aenter__(self) -> "TCPProxy":
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- accepting -----------------------------------------------------------------------------
    def _accept(self) -> Optional[Protocol]:
        if self._stopped:
            return None
        pair = _Pair(self, self._refusing)
        self._pairs.add(pair)
        return pair.client

    def _client_connected(self, pair: _Pair) -> None:
        self.connections_total += 1
        self.active_connections += 1
        if pair.refused:
            self.refused += 1
        total = self.connections_total
        ready = [w for w in self._conn_waiters if w[0] <= total]
        if ready:
            self._conn_waiters = [w for w in self._conn_waiters if w[0] > total]
            for _n, d in ready:
                d.callback(total)

    def _pair_done(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        self._check_stopped()

    def _take_next_cuts(self) -> List[Tuple[str, int, _CutWatch]]:
        cuts, self._next_cuts = self._next_cuts, []
        for _direction, _nbytes, watch in cuts:
            watch.pending -= 1  # the placeholder; arm() counts the pair itself
        return cuts

    def wait_for_connections(self, n: int) -> "Deferred[int]":
        """Fire with ``connections_total`` once at least ``n`` connections were accepted.

        Refused connections count. Cancel the Deferred to stop waiting.
        """
        if self.connections_total >= n:
            return succeed(self.connections_total)

        def cancel(d: Deferred[int]) -> None:
            self._conn_waiters = [w for w in self._conn_waiters if w[1] is not d]

        d: Deferred[int] = Deferred(cancel)
        if self._stopped:
            d.errback(CancelledError("the proxy was stopped"))
            return d
        self._conn_waiters.append((n, d))
        return d

    # -- faults --------------------------------------------------------------------------------
    def reset(self) -> int:
        """Abort every current connection: an RST toward the client (and the target).

        Connections accepted afterwards are forwarded as usual. Returns how many connections
        were reset. Their ``connectionLost`` comes on the next reactor turn.
        """
        count = 0
        for pair in list(self._pairs):
            if pair.ending is None:
                count += 1
            pair.abort("reset")
        self.resets += count
        return count

    @property
    def blackholed(self) -> Optional[str]:
        """``"drop"``, ``"hold"`` or None: the :meth:`blackhole` mode in force."""
        return self._blackhole

    def blackhole(self, *, hold: bool = False) -> None:
        """Forward nothing either way, on current and new connections, until :meth:`restore`.

        Connections stay open (new ones are still accepted) and nothing is closed: the client
        sees silence, which only its keepalive PING timeout can detect.

        - ``hold=False`` (the default), a partition that loses data: bytes from either side are
          read and dropped (``bytes_dropped``), and a close from the target is not relayed to
          the client. A connection that was blackholed this way **stays silent for good**, even
          after :meth:`restore` (its byte streams have holes): its client has to give up on it.
        - ``hold=True``, a partition that heals: reading stops on both sides, so bytes (and
          closes) wait in the kernel's buffers and TCP flow control holds the senders back;
          :meth:`restore` delivers everything in order and the connections go on as if
          nothing happened (if the client did not give up in the meantime).

        A hold can be turned into a drop by calling ``blackhole()`` again.
        """
        mode = "hold" if hold else "drop"
        self._blackhole = mode
        for pair in list(self._pairs):
            pair.set_black(mode)

    def restore(self) -> None:
        """End :meth:`blackhole`: new connections are forwarded; held ones resume.

        Connections blackholed with dropping stay silent (see :meth:`blackhole`).
        """
        self._blackhole = None
        for pair in list(self._pairs):
            pair.set_black(None)

    def cut_after(
        self, nbytes: int, direction: Direction = "down", *, which: Which = "current"
    ) -> "Deferred[int]":
        """Forward exactly ``nbytes`` more bytes ``direction``-wards, then abort the connection.

        ``direction``: ``"down"`` (target -> client, e.g. cut a response in half) or ``"up"``
        (client -> target). Bytes dropped by a blackhole do not count. Once the budget is
        used, nothing more is forwarded either way; when those ``nbytes`` have left the proxy
        (and, on Linux, the peer's kernel acknowledged them, so the client does read them all
        before the RST), both sides are aborted: the client sees a reset. ``nbytes=0`` cuts at
        once. A later call replaces the budget of the same direction.

        ``which``: ``"current"`` arms every connection open now (each counts its own bytes);
        ``"next"`` arms the next connection forwarded (refused ones do not count), counting
        from its first byte; ``"both"`` does both.

        Fires with the number of the armed connections that ended by a cut, once every one of
        them ended (cut, closed or reset); with ``"next"``, not before that next connection came
        and ended (or the proxy was stopped).
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"nbytes must be an int >= 0, not {nbytes!r}")
        if direction not in ("down", "up"):
            raise ValueError(f"direction must be 'down' or 'up', not {direction!r}")
        if which not in ("current", "next", "both"):
            raise ValueError(f"which must be 'current', 'next' or 'both', not {which!r}")
        watch = _CutWatch()
        if which in ("current", "both"):
            for pair in list(self._pairs):
                if not pair.refused:
                    pair.arm(direction, nbytes, watch)
        if which in ("next", "both") and not self._stopped:
            watch.pending += 1
            self._next_cuts.append((direction, nbytes, watch))
        watch.armed = True
        watch.check()
        return watch.deferred

    @property
    def refusing(self) -> Optional[str]:
        """The :meth:`refuse` mode in force, or None."""
        return self._refusing

    def refuse(self, on: bool = True, *, how: RefuseHow = "close") -> "Deferred[None]":
        """While on, do not forward new connections (current ones are not touched).

        ``how``: ``"close"`` accepts and closes at once (FIN: a dead backend behind a load
        balancer; if the client already sent bytes, the kernel follows up with an RST),
        ``"reset"`` accepts and aborts (RST), ``"unlisten"`` closes the listening
        socket (the client's connect is refused; ``refuse(False)`` listens on the same port
        again). A client that got its request out before the close cannot know it was not
        forwarded (txetcd: reads are retried, writes fail with ``OutcomeUnknown``); with
        ``"unlisten"`` nothing is sent (``ConnectionFailed`` for both).

        Fires once the mode is in force (at once, except when the listener closes or opens).
        """
        if how not in ("close", "reset", "unlisten"):
            raise ValueError(f"how must be 'close', 'reset' or 'unlisten', not {how!r}")
        if not self._started or self._stopped:
            raise RuntimeError("the proxy is not running")
        self._refusing = how if on else None
        if on and how == "unlisten":
            self._close_listener()
            closing = self._listener_closing
            if closing is None:
                return succeed(None)
            done: Deferred[None] = Deferred()
            closing.addBoth(lambda _: done.callback(None))
            return done
        if self._listener is not None:
            return succeed(None)
        closing = self._listener_closing
        if closing is None:
            self._relisten()
            return succeed(None)
        relistened: Deferred[None] = Deferred()

        def relisten(_: object) -> None:
            try:
                if self._listener is None and not self._stopped and self._refusing != "unlisten":
                    self._relisten()
            except Exception as e:
                relistened.errback(e)
            else:
                relistened.callback(None)

        closing.addBoth(relisten)
        return relistened

    def _relisten(self) -> None:
        self._listener = self.reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")
