"""pytest tests of announce.py on an etcd in memory: no process, no socket, time on a Clock.

Run: python -m pytest docs/examples/testing
"""

import pytest_twisted
from announce import announce, wait_for
from twisted.internet.defer import Deferred, TimeoutError


@pytest_twisted.ensureDeferred
async def test_a_service_is_found(memory_client):
    session = await announce(memory_client, b"web", b"10.0.0.1:80")
    assert await wait_for(memory_client, b"web", timeout=5) == b"10.0.0.1:80"
    await session.close()  # revokes the lease: the announcement goes
    assert not await memory_client.get(b"services/web")


@pytest_twisted.ensureDeferred
async def test_the_session_keeps_it_alive(memory_etcd, memory_client):
    await announce(memory_client, b"web", b"10.0.0.1:80", ttl=10)
    memory_etcd.clock.pump([1] * 60)  # a minute, a second at a time: refreshes every ~3 s
    assert (await memory_client.get(b"services/web")).value == b"10.0.0.1:80"


@pytest_twisted.ensureDeferred
async def test_a_stalled_process_disappears(memory_etcd, memory_client):
    session = await announce(memory_client, b"web", b"10.0.0.1:80", ttl=10)
    session.keepalive.stop()  # the process stalls: nothing refreshes the lease
    memory_etcd.clock.advance(9)
    assert await memory_client.get(b"services/web")
    memory_etcd.clock.advance(1)  # its TTL is up: etcd deletes the key
    assert not await memory_client.get(b"services/web")


def test_waiting_sees_a_later_announcement(memory_etcd, memory_client):
    # A plain test function: MemoryEtcd answers every call at once, so no reactor is needed,
    # and a Deferred has fired by the time the call that made it returns.
    got = []
    wait_for(memory_client, b"db", timeout=30).addCallback(got.append)
    memory_etcd.clock.advance(20)
    assert got == []
    Deferred.fromCoroutine(announce(memory_client, b"db", b"10.0.0.2:5432"))
    assert got == [b"10.0.0.2:5432"]


def test_waiting_gives_up_on_the_clock(memory_etcd, memory_client):
    failures = []
    wait_for(memory_client, b"db", timeout=30).addErrback(failures.append)
    memory_etcd.clock.advance(29.9)
    assert failures == []
    memory_etcd.clock.advance(0.1)  # 30 s on the clock, in no time at all
    assert failures[0].check(TimeoutError)
