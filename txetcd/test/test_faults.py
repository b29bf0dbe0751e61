"""Load and faults against real etcd: many calls in flight, connections reset, etcd killed.

The retry rule under test: reads are sent again on a new connection; a write whose request may
have reached the server fails with OutcomeUnknown (never re-sent); every call ends, typed.
"""

from __future__ import annotations

from typing import Dict, List

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client, ConnectionFailed, OutcomeUnknown, Timeout
from txetcd.test.helpers import grpc_channel, reactor, settle, sleep, txetcd_timers
from txetcd.testing import EtcdServer


@pytest_twisted.ensureDeferred
async def test_ten_thousand_calls_128_in_flight(etcd_client: Client, etcd_prefix: bytes) -> None:
    workers, rounds = 128, 10_000 // 128 // 2 + 1  # a put and a get per round
    seen_in_flight = []

    async def worker(w: int) -> int:
        key = etcd_prefix + b"%03d" % w
        done = 0
        for i in range(rounds):
            value = b"%d:%d" % (w, i)
            put = await etcd_client.put(key, value)
            got = await etcd_client.get(key)
            assert got.value == value, (key, got.value, value)
            assert got.kvs[0].mod_revision == put.header.revision
            done += 2
        return done

    ds = [defer.ensureDeferred(worker(w)) for w in range(workers)]
    conn = grpc_channel(etcd_client).connection
    seen_in_flight.append(len(conn.streams) if conn is not None else 0)
    total = sum(await defer.gatherResults(ds, consumeErrors=True))
    assert total >= 10_000
    assert max(seen_in_flight) == workers or conn is None  # all 128 were on the wire at once
    final = await etcd_client.get_prefix(etcd_prefix, count_only=True)
    assert final.count == workers


@pytest_twisted.ensureDeferred
async def test_connection_reset_retries_reads_and_reports_writes(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    keys = [etcd_prefix + b"%02d" % i for i in range(64)]
    for k in keys:
        await etcd_client.put(k, b"before")
    conn = grpc_channel(etcd_client).connection
    assert conn is not None
    gets = [etcd_client.get(k) for k in keys]
    puts = [etcd_client.put(k, b"after") for k in keys]
    conn.transport.abortConnection()  # type: ignore[union-attr]  # a reset with all 128 calls written
    got = await settle(*gets)
    put_outcomes = await settle(*puts)
    # every read was sent again on a new connection and answered
    assert all(not isinstance(r, Exception) for r in got), got
    assert {r.value for r in got} <= {b"before", b"after"}
    # every write succeeded or says its outcome is unknown: no other error, never re-sent
    unknown = [r for r in put_outcomes if isinstance(r, Exception)]
    assert all(isinstance(r, OutcomeUnknown) for r in unknown), unknown
    assert unknown, "the reset came after the writes were sent: their outcome is unknown"
    assert grpc_channel(etcd_client).connection is not conn
    # nothing was applied twice: each key has at most one write after "before"
    for k in keys:
        kv = (await etcd_client.get(k)).kvs[0]
        assert kv.version in (1, 2)
    assert (await etcd_client.put(etcd_prefix + b"x", b"works")).header.revision > 0


@pytest_twisted.ensureDeferred
async def test_etcd_killed_mid_flight_then_back(etcd_server_private: EtcdServer) -> None:
    server = etcd_server_private
    client = Client(server.endpoint, reactor=reactor(), timeout=5)
    acked: Dict[bytes, bytes] = {}
    errors: List[BaseException] = []

    async def worker(w: int) -> None:
        key = b"kill/%03d" % w
        i = 0
        while True:
            value = b"%d" % i
            try:
                await client.put(key, value)
                acked[key] = value
                got = await client.get(key)
                assert got.value == value
            except (OutcomeUnknown, ConnectionFailed, Timeout) as e:
                errors.append(e)
                return
            i += 1

    try:
        await client.put(b"kill/warm", b"up")
        ds = [defer.ensureDeferred(worker(w)) for w in range(64)]
        await sleep(0.3)
        server.kill()  # SIGKILL with calls in flight
        done = defer.gatherResults(ds, consumeErrors=True)
        done.addTimeout(15, reactor())  # nothing may hang
        await done
        assert len(errors) == 64  # every worker's pending call failed, typed
        kinds = {type(e) for e in errors}
        assert kinds <= {OutcomeUnknown, ConnectionFailed}, kinds
        assert OutcomeUnknown in kinds  # writes in flight: unknown, not re-sent
        # a read while etcd is down is retried, then fails typed (no hang)
        with pytest.raises(ConnectionFailed):
            await client.get(b"kill/000")
        await server.start_async(reactor())  # the reactor runs on meanwhile
        # the same client works again; acknowledged writes survived
        for key, value in acked.items():
            current = (await client.get(key)).value
            assert current is not None and int(current) >= int(value)
        assert (await client.put(b"kill/after", b"ok")).header.revision > 0
    finally:
        await client.close()
    assert txetcd_timers(reactor()) == []
    assert grpc_channel(client).connections == []


@pytest_twisted.ensureDeferred
async def test_connect_refused_fails_fast_and_typed() -> None:
    from txetcd.testing import free_port

    client = Client(f"http://127.0.0.1:{free_port()}", reactor=reactor(), timeout=5)
    try:
        with pytest.raises(ConnectionFailed) as e:
            await client.get(b"k")
        assert "refused" in str(e.value).lower() or "could not connect" in str(e.value)
        with pytest.raises(ConnectionFailed):
            await client.put(b"k", b"v")  # never sent, so not "unknown"
    finally:
        await client.close()
    assert txetcd_timers(reactor()) == []


@pytest_twisted.ensureDeferred
async def test_close_fails_pending_calls_and_leaves_nothing(etcd_server: EtcdServer) -> None:
    from txetcd import ClientClosed

    client = Client(etcd_server.endpoint, reactor=reactor())
    await client.put(b"close/k", b"v")
    pending = client.get(b"close/k")
    await client.close()
    outcome = (await settle(pending))[0]
    assert isinstance(outcome, (ClientClosed, ConnectionFailed)) or outcome.value == b"v"
    with pytest.raises(ClientClosed):
        await client.get(b"close/k")
    assert grpc_channel(client).connections == []
    assert txetcd_timers(reactor()) == []


@pytest_twisted.ensureDeferred
async def test_cancel_a_call(etcd_client: Client, etcd_prefix: bytes) -> None:
    d = etcd_client.get(etcd_prefix + b"k")
    d.cancel()
    with pytest.raises(defer.CancelledError):
        await d
    assert (await etcd_client.put(etcd_prefix + b"k", b"v")).header.revision > 0
    assert txetcd_timers(reactor()) == [] or all(
        c.func.__name__ != "_timed_out" for c in txetcd_timers(reactor())
    )
