"""The fault-injection proxy (txetcd.testing.TCPProxy): raw TCP exactness, then real etcd.

The first half uses a tiny in-process TCP server (echo, or a greeting of N bytes) and plain
Twisted client protocols: forwarding, back-pressure, byte accounting, exact cuts, reset, the two
blackholes, refusal, a dead target and a clean stop. The second half puts a txetcd.Client behind
the proxy in front of a real etcd and checks what the client sees for each fault.
"""

from __future__ import annotations

import random
import socket
from typing import Any, AsyncIterator, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from txetcd import Client, ConnectionFailed, OutcomeUnknown
from txetcd.test.helpers import (
    client_of,
    grpc_channel,
    module_timers,
    reactor,
    settle,
    sleep,
    until_advancing,
    within,
)
from txetcd.testing import EtcdServer, free_port
from txetcd.testing._proxy import TCPProxy, _ListenFactory, _Side


def data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def proxy_timers() -> List[Any]:
    """Delayed calls set by the proxy module."""
    return module_timers(reactor(), "txetcd.testing._proxy")


def proxy_selectables() -> List[Any]:
    """Sockets of any proxy still known to the reactor (listeners and connections)."""
    r = reactor()
    out = []
    for s in list(r.getReaders()) + list(r.getWriters()):
        if isinstance(getattr(s, "protocol", None), _Side):
            out.append(s)
        elif isinstance(getattr(s, "factory", None), _ListenFactory):
            out.append(s)
    return out


# -- a tiny TCP peer -------------------------------------------------------------------------
class Peer(Protocol):
    """One end of a test connection: records what it got and how it ended."""

    def __init__(self, echo: bool = False, greeting: bytes = b"") -> None:
        self.echo = echo
        self.greeting = greeting
        self.received = bytearray()
        self.made: defer.Deferred[Peer] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Optional[Failure] = None
        self._waiters: List[Tuple[int, defer.Deferred[None]]] = []

    def connectionMade(self) -> None:
        self.made.callback(self)
        if self.greeting:
            assert self.transport is not None
            self.transport.write(self.greeting)

    def dataReceived(self, chunk: bytes) -> None:
        self.received += chunk
        if self.echo:
            assert self.transport is not None
            self.transport.write(chunk)
        ready = [w for w in self._waiters if len(self.received) >= w[0]]
        self._waiters = [w for w in self._waiters if len(self.received) < w[0]]
        for _n, d in ready:
            d.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)

    def wait_for(self, n: int) -> "defer.Deferred[None]":
        """Fires once ``n`` bytes in all were received."""
        if len(self.received) >= n:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((n, d))
        return within(d)

    def write(self, chunk: bytes) -> None:
        assert self.transport is not None
        self.transport.write(chunk)

    async def ended(self) -> Failure:
        """Wait for the end of the connection; its reason."""
        await within(self.lost)
        assert self.reason is not None
        return self.reason

    @property
    def reset(self) -> bool:
        """The connection ended with a reset (not a clean close)."""
        return self.reason is not None and self.reason.check(ConnectionLost) is not None


class PeerServer(Factory):
    noisy = False

    def __init__(self, echo: bool = False, greeting: bytes = b"") -> None:
        self.echo = echo
        self.greeting = greeting
        self.peers: List[Peer] = []

    def buildProtocol(self, addr: Any) -> Peer:
        peer = Peer(self.echo, self.greeting)
        self.peers.append(peer)
        return peer


async def serve(factory: PeerServer) -> Any:
    return reactor().listenTCP(0, factory, interface="127.0.0.1")


async def close_server(port: Any, factory: PeerServer) -> None:
    for peer in factory.peers:
        if peer.transport is not None and peer.reason is None:
            peer.transport.abortConnection()  # type: ignore[attr-defined]
    for peer in factory.peers:
        await within(peer.lost)
    await port.stopListening()


async def connect(proxy: TCPProxy) -> Peer:
    endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", proxy.port)
    peer: Peer = await within(connectProtocol(endpoint, Peer()))
    return peer


@pytest_twisted.async_yield_fixture
async def echo() -> AsyncIterator[Tuple[TCPProxy, PeerServer]]:
    """A proxy in front of an echo server."""
    factory = PeerServer(echo=True)
    port = await serve(factory)
    proxy = TCPProxy("127.0.0.1", port.getHost().port, reactor=reactor()).start()
    try:
        yield proxy, factory
    finally:
        await proxy.stop()
        await close_server(port, factory)


# -- raw TCP -----------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_forwards_both_ways_with_back_pressure(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    assert proxy.endpoint == f"http://127.0.0.1:{proxy.port}" and proxy.port > 0
    payload = data(3 * 1024 * 1024)
    client = await connect(proxy)
    client.write(payload)  # far more than any buffer: back-pressure both ways
    await within(client.wait_for(len(payload)), 20)
    assert bytes(client.received) == payload
    assert proxy.bytes_up == proxy.bytes_down == len(payload)
    assert proxy.connections_total == proxy.active_connections == 1
    assert proxy.bytes_dropped == 0
    # a clean close is relayed as a clean close
    client.transport.loseConnection()  # type: ignore[union-attr]
    reason = await server.peers[0].ended()
    assert reason.check(ConnectionDone)
    await sleep(0.01)
    assert proxy.active_connections == 0
    # and from the other side too
    client = await connect(proxy)
    client.write(b"x")
    await client.wait_for(1)
    server.peers[1].transport.loseConnection()  # type: ignore[union-attr]
    assert (await client.ended()).check(ConnectionDone)


@pytest_twisted.ensureDeferred
async def test_cut_after_down_is_exact(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    payload = data(21_000)
    client = await connect(proxy)
    client.write(payload[:1000])
    await client.wait_for(1000)
    down_before = proxy.bytes_down
    cut = proxy.cut_after(12_345)
    client.write(payload[1000:])
    assert await within(cut) == 1
    await within(client.lost)
    assert client.reset, client.reason  # an RST, not a clean close
    assert len(client.received) == 1000 + 12_345  # exactly
    assert bytes(client.received) == payload[: 1000 + 12_345]
    assert proxy.bytes_down - down_before == 12_345
    assert proxy.cuts == 1 and proxy.active_connections == 0
    await within(server.peers[0].lost)
    assert server.peers[0].reset


@pytest_twisted.ensureDeferred
async def test_cut_after_up_is_exact(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    payload = data(6000)
    client = await connect(proxy)
    client.write(payload[:1000])
    await client.wait_for(1000)
    cut = proxy.cut_after(777, "up")
    client.write(payload[1000:])
    assert await within(cut) == 1
    await within(client.lost)
    await within(server.peers[0].lost)
    assert client.reset
    assert bytes(server.peers[0].received) == payload[:1777]  # exactly
    assert len(client.received) <= 1777
    assert proxy.bytes_up == 1777


@pytest_twisted.ensureDeferred
async def test_cut_after_next_connection_and_zero() -> None:
    greeting = data(200_000, seed=2)
    factory = PeerServer(greeting=greeting)
    port = await serve(factory)
    proxy = TCPProxy("127.0.0.1", port.getHost().port, reactor=reactor()).start()
    try:
        idle = await connect(proxy)  # a current connection, not armed by which="next"
        cut = proxy.cut_after(5000, which="next")
        assert not cut.called
        client = await connect(proxy)
        assert await within(cut) == 1
        await within(client.lost)
        assert client.reset and bytes(client.received) == greeting[:5000]
        assert idle.reason is None
        # the one after that is not cut
        whole = await connect(proxy)
        await whole.wait_for(len(greeting))
        assert bytes(whole.received) == greeting
        # nbytes=0 cuts the current connections at once; "both" also arms the next one
        cut = proxy.cut_after(0, which="both")
        await within(idle.lost)
        await within(whole.lost)
        assert idle.reset and whole.reset
        last = await connect(proxy)
        assert await within(cut) == 3
        await within(last.lost)
        assert last.reset and len(last.received) == 0
        assert proxy.cuts == 4
        # with nothing open, a "current" cut fires at once
        assert await within(proxy.cut_after(10)) == 0
    finally:
        await proxy.stop()
        await close_server(port, factory)


@pytest_twisted.ensureDeferred
async def test_reset_aborts_every_connection(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    clients = [await connect(proxy) for _ in range(3)]
    for c in clients:
        c.write(b"hello")
        await c.wait_for(5)
    assert proxy.reset() == 3
    for c in clients:
        await within(c.lost)
        assert c.reset, c.reason
    for p in server.peers:
        await within(p.lost)
    assert proxy.resets == 3 and proxy.active_connections == 0
    again = await connect(proxy)  # new connections are forwarded as usual
    again.write(b"back")
    await again.wait_for(4)
    assert proxy.connections_total == 4


@pytest_twisted.ensureDeferred
async def test_blackhole_drop_is_silent_for_good(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    old = await connect(proxy)
    old.write(b"a" * 10)
    await old.wait_for(10)
    proxy.blackhole()
    assert proxy.blackholed == "drop"
    old.write(b"b" * 1000)
    during = await connect(proxy)  # accepted, but silent too
    during.write(b"c" * 100)
    await sleep(0.2)
    assert len(old.received) == 10 and len(during.received) == 0
    assert proxy.bytes_dropped == 1100
    assert old.reason is None and during.reason is None  # nothing was closed
    # a close from the target is not relayed across the partition
    server.peers[0].transport.loseConnection()  # type: ignore[union-attr]
    await within(server.peers[0].lost)
    await sleep(0.05)
    assert old.reason is None
    proxy.restore()
    assert proxy.blackholed is None
    # connections that lost data stay silent; new ones work
    during.write(b"d" * 10)
    await sleep(0.1)
    assert len(during.received) == 0
    fresh = await connect(proxy)
    fresh.write(b"e" * 10)
    await fresh.wait_for(10)
    assert bytes(fresh.received) == b"e" * 10
    assert proxy.active_connections == 3


@pytest_twisted.ensureDeferred
async def test_blackhole_hold_heals(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    client = await connect(proxy)
    client.write(b"1" * 10)
    await client.wait_for(10)
    proxy.blackhole(hold=True)
    assert proxy.blackholed == "hold"
    client.write(b"2" * 5000)
    late = await connect(proxy)
    late.write(b"3" * 10)
    await sleep(0.2)
    assert len(client.received) == 10 and len(late.received) == 0
    assert proxy.bytes_dropped == 0 and proxy.bytes_up == 10
    proxy.restore()
    await client.wait_for(5010)
    await late.wait_for(10)
    assert bytes(client.received) == b"1" * 10 + b"2" * 5000
    assert proxy.connections_total == 2 and client.reason is None


@pytest_twisted.ensureDeferred
async def test_refuse_modes(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    kept = await connect(proxy)
    await proxy.refuse()  # accept and close
    assert proxy.refusing == "close"
    c = await connect(proxy)
    assert (await c.ended()).check(ConnectionDone)
    await proxy.refuse(how="reset")
    c = await connect(proxy)
    await within(c.lost)
    assert c.reset
    await proxy.refuse(how="unlisten")
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    assert proxy.connections_total == 3 and proxy.refused == 2
    await proxy.refuse(False)
    c = await connect(proxy)  # the same port again
    c.write(b"ok")
    await c.wait_for(2)
    kept.write(b"still")  # refusing never touched the open connection
    await kept.wait_for(5)
    assert len(server.peers) == 2


@pytest_twisted.ensureDeferred
async def test_dead_target_resets_the_client() -> None:
    async with TCPProxy("127.0.0.1", free_port(), reactor=reactor()) as proxy:
        client = await connect(proxy)
        await within(client.lost)
        assert client.reset
        assert proxy.connections_total == 1 and proxy.active_connections == 0
    assert proxy_timers() == [] and proxy_selectables() == []


@pytest_twisted.ensureDeferred
async def test_stop_leaves_nothing_behind(echo: Tuple[TCPProxy, PeerServer]) -> None:
    proxy, server = echo
    a = await connect(proxy)
    a.write(b"x" * 10)
    await a.wait_for(10)
    proxy.blackhole(hold=True)
    b = await connect(proxy)
    waiting = proxy.wait_for_connections(10)
    next_cut = proxy.cut_after(100, which="next")
    await proxy.stop()
    assert a.reason is not None and b.reason is not None
    assert a.reset and b.reset
    assert proxy.active_connections == 0
    with pytest.raises(defer.CancelledError):
        await waiting
    assert await next_cut == 0
    assert proxy_timers() == []
    assert proxy_selectables() == []
    with socket.socket() as s, pytest.raises(OSError):  # refused
        s.connect(("127.0.0.1", proxy.port))
    await proxy.stop()  # again: harmless
    with pytest.raises(defer.CancelledError):
        await proxy.wait_for_connections(100)


def test_arguments() -> None:
    with pytest.raises(ValueError):
        TCPProxy("etcd.example", 2379)
    with pytest.raises(ValueError):
        TCPProxy("127.0.0.1", 0)
    p = TCPProxy("localhost", 2379)
    assert p.target_host == "127.0.0.1"
    with pytest.raises(ValueError):
        p.cut_after(-1)
    with pytest.raises(ValueError):
        p.cut_after(1, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.cut_after(1, which="all")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        p.refuse()
    assert TCPProxy("[::1]", 2379).target_host == "::1"


# -- real etcd ---------------------------------------------------------------------------------
@pytest_twisted.async_yield_fixture
async def proxy(etcd_server: EtcdServer) -> AsyncIterator[TCPProxy]:
    async with TCPProxy("127.0.0.1", etcd_server.client_port, reactor=reactor()) as p:
        yield p
    assert proxy_timers() == [] and proxy_selectables() == []


@pytest_twisted.async_yield_fixture
async def client(proxy: TCPProxy) -> AsyncIterator[Client]:
    async with client_of(proxy.endpoint) as c:
        yield c


@pytest_twisted.ensureDeferred
async def test_etcd_through_the_proxy(proxy: TCPProxy, client: Client, etcd_prefix: bytes) -> None:
    put = await client.put(etcd_prefix + b"k", b"v")
    got = await client.get(etcd_prefix + b"k")
    assert got.value == b"v" and got.kvs[0].mod_revision == put.header.revision
    assert proxy.connections_total == proxy.active_connections == 1
    assert proxy.bytes_up > 0 and proxy.bytes_down > 0 and proxy.bytes_dropped == 0


@pytest_twisted.ensureDeferred
async def test_etcd_reset_retries_reads_and_reports_writes(
    proxy: TCPProxy, client: Client, etcd_client: Client, etcd_prefix: bytes
) -> None:
    keys = [etcd_prefix + b"%02d" % i for i in range(16)]
    for k in keys:
        await etcd_client.put(k, b"before")
    await client.get(keys[0])  # the connection is up
    gets = [client.get(k) for k in keys]
    puts = [client.put(k, b"after") for k in keys]
    assert proxy.reset() == 1  # before the proxy read a byte of those requests
    got = await settle(*gets)
    assert all(not isinstance(r, Exception) for r in got), got
    assert {r.value for r in got} == {b"before"}
    outcomes = await settle(*puts)
    assert all(isinstance(r, OutcomeUnknown) for r in outcomes), outcomes
    assert proxy.connections_total == 2  # the reads went again on a new connection
    # "unknown" was the honest answer: here they never reached etcd
    for k in keys:
        assert (await etcd_client.get(k)).value == b"before"
    assert (await client.put(keys[0], b"later")).header.revision > 0


@pytest_twisted.ensureDeferred
async def test_etcd_cut_mid_response_is_retried(
    proxy: TCPProxy, client: Client, etcd_prefix: bytes
) -> None:
    value = data(200 * 1024, seed=3)
    await client.put(etcd_prefix + b"big", value)
    cut = proxy.cut_after(100_000)
    got = await within(client.get(etcd_prefix + b"big"), 10)
    assert got.value == value
    assert await within(cut) == 1
    assert proxy.cuts == 1 and proxy.connections_total == 2


@pytest_twisted.ensureDeferred
async def test_etcd_blackhole_detected_by_keepalive(
    proxy: TCPProxy, etcd_client: Client, etcd_prefix: bytes
) -> None:
    await etcd_client.put(etcd_prefix + b"k", b"v")
    clock = task.Clock()  # the client's timers; the network is real
    client = Client(
        proxy.endpoint,
        reactor=reactor(),
        clock=clock,
        timeout=None,
        keepalive_interval=5,
        keepalive_timeout=1,
    )
    try:
        # a healthy connection first (a connection is used only once the server's SETTINGS
        # came: one that is silent from the start is given up at the connect timeout instead)
        assert (await within(client.get(etcd_prefix + b"k"))).value == b"v"
        conn = grpc_channel(client).connection
        assert conn is not None
        proxy.blackhole()
        get = client.get(etcd_prefix + b"k")
        put = client.put(etcd_prefix + b"w", b"lost")
        await sleep(0.2)
        assert not get.called and not put.called  # silence; no deadline of the calls' own
        proxy.restore()  # the next connection is forwarded; this one stays silent
        clock.advance(5)  # the first interval: the server was heard in it, no PING
        clock.advance(5)  # a keepalive interval of silence: a PING goes out
        clock.advance(0.999)
        assert conn.lost is None and not get.called
        clock.advance(0.001)  # the PING timeout: the connection is given up
        assert conn.lost is not None and "PING not answered within 1" in str(conn.lost)
        # the read goes again (after its resend backoff, on the clock) on a new connection
        await until_advancing(clock, lambda: get.called)
        got = await get
        assert got.value == b"v"
        with pytest.raises(OutcomeUnknown):
            await put
        assert proxy.connections_total == 2
        assert (await client.put(etcd_prefix + b"w", b"now")).header.revision > 0
        assert proxy.bytes_dropped > 0
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_etcd_blackhole_hold_heals_in_place(
    proxy: TCPProxy, client: Client, etcd_prefix: bytes
) -> None:
    await client.put(etcd_prefix + b"k", b"v")
    proxy.blackhole(hold=True)
    get = client.get(etcd_prefix + b"k")
    await sleep(0.3)
    assert not get.called
    proxy.restore()
    assert (await within(get)).value == b"v"
    assert proxy.connections_total == 1  # the same connection carried on


@pytest_twisted.ensureDeferred
async def test_etcd_refused(proxy: TCPProxy, client: Client, etcd_prefix: bytes) -> None:
    await client.put(etcd_prefix + b"k", b"v")
    proxy.reset()
    await proxy.refuse()  # accept and close before etcd's SETTINGS: nothing was sent
    with pytest.raises(ConnectionFailed):
        await within(client.get(etcd_prefix + b"k"))
    with pytest.raises(ConnectionFailed) as failed:
        await within(client.put(etcd_prefix + b"k", b"w"))
    assert not isinstance(failed.value, OutcomeUnknown)  # a connection is used only once ready
    await proxy.refuse(how="unlisten")  # connection refused: nothing was sent
    with pytest.raises(ConnectionFailed):
        await within(client.get(etcd_prefix + b"k"))
    with pytest.raises(ConnectionFailed):
        await within(client.put(etcd_prefix + b"k", b"w"))
    await proxy.refuse(False)
    assert (await client.get(etcd_prefix + b"k")).value == b"v"


@pytest_twisted.ensureDeferred
async def test_etcd_restarted_behind_the_proxy(etcd_server_private: EtcdServer) -> None:
    server = etcd_server_private
    async with TCPProxy("127.0.0.1", server.client_port, reactor=reactor()) as proxy:
        client = Client(proxy.endpoint, reactor=reactor(), timeout=10)
        try:
            await client.put(b"k", b"v")
            server.kill()
            # each attempt is accepted, then reset (the target refuses): typed failure, no hang
            with pytest.raises(ConnectionFailed):
                await within(client.get(b"k"))
            await server.start_async(reactor())
            assert (await within(client.get(b"k"))).value == b"v"
            assert proxy.connections_total >= 3
        finally:
            await client.close()
