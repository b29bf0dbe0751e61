"""Lock (txetcd.concurrency) against real etcd, on both transports where it matters."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import (
    Client,
    Get,
    LockHeld,
    LockLost,
    LockNotHeld,
    Put,
    Session,
    SessionExpired,
    Timeout,
)
from txetcd.concurrency import Lock
from txetcd.test.helpers import (  # noqa: F401
    client_of,
    etcd_client,
    outcome,
    reactor,
    sleep,
    until,
    within,
)
from txetcd.testing import EtcdServer

LOCKERS = 10  # the 10 lockers x 30 acquisitions each
ROUNDS = 30


async def keys_under(client: Any, prefix: bytes) -> List[bytes]:
    return [kv.key for kv in await client.get_prefix(prefix)]


@pytest_twisted.ensureDeferred
async def test_fenced_counter_fair_and_exact(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    name, counter = etcd_prefix + b"lock", etcd_prefix + b"counter"
    clients = [
        Client(etcd_server.endpoint, reactor=reactor(), timeout=10.0) for _ in range(LOCKERS)
    ]
    sessions = [Session(c, ttl=10) for c in clients]
    holders: List[int] = []
    order: List[int] = []  # create revisions in the order the lock was granted
    try:
        await clients[0].put(counter, b"0")

        async def worker(i: int) -> None:
            client, lock = clients[i], Lock(sessions[i], name)
            for _ in range(ROUNDS):
                async with lock:
                    holders.append(i)
                    assert len(holders) == 1, holders
                    assert lock.revision is not None
                    order.append(lock.revision)
                    got = await client.get(counter)
                    n = int(got.value or b"0")
                    ok = await client.txn(
                        compare=[lock.is_owner()], success=[Put(counter, str(n + 1))]
                    )
                    assert ok.succeeded  # the fenced write never fails for the holder
                    holders.remove(i)

        await within(
            defer.gatherResults([defer.ensureDeferred(worker(i)) for i in range(LOCKERS)]), 60
        )
        assert (await clients[0].get(counter)).value == str(LOCKERS * ROUNDS).encode()
        assert order == sorted(order)  # served in the order of key creation
        assert await keys_under(clients[0], name + b"/") == []
    finally:
        for s in sessions:
            await s.close()
        for c in clients:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_lock_api_on_both_transports(etcd_client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"l"
    async with Session(etcd_client, ttl=10) as s1, Session(etcd_client, ttl=10) as s2:
        a, b = Lock(s1, name), Lock(s2, name)
        assert await a.try_acquire() is True and a.locked
        assert await b.try_acquire() is False and not b.locked
        assert [k for k in await keys_under(etcd_client, name + b"/")] == [a.key]
        with pytest.raises(LockHeld):
            await a.acquire()
        waiting = b.acquire()
        await sleep(0.3)
        assert not waiting.called
        await a.release()
        assert await within(waiting, 10) is b and b.locked
        with pytest.raises(LockNotHeld):
            await a.release()
        assert a.revision is None and b.revision is not None
        await b.release()
        got = await b.run(lambda: b.revision)
        assert got is not None and not b.locked
        assert await keys_under(etcd_client, name + b"/") == []


@pytest_twisted.ensureDeferred
async def test_cancel_and_timeout_leave_no_keys(etcd_client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"l"
    async with Session(etcd_client, ttl=10) as s1, Session(etcd_client, ttl=10) as s2:
        holder = Lock(s1, name)
        await holder.acquire()
        waiter = Lock(s2, name)
        d = waiter.acquire()
        await until(lambda: _count(etcd_client, name, 2), what="the waiter's key")
        d.cancel()
        with pytest.raises(defer.CancelledError):
            await d
        assert await keys_under(etcd_client, name + b"/") == [holder.key]
        with pytest.raises(Timeout):
            await waiter.acquire(timeout=0.5)
        assert await keys_under(etcd_client, name + b"/") == [holder.key]
        await holder.release()
        assert await keys_under(etcd_client, name + b"/") == []
    leases = await etcd_client.leases()
    assert s1.lease_id not in leases and s2.lease_id not in leases


async def _count(client: Client, name: bytes, n: int) -> bool:
    return len(await keys_under(client, name + b"/")) == n


@pytest_twisted.ensureDeferred
async def test_a_deleted_owner_key_is_noticed(etcd_client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"l"
    async with Session(etcd_client, ttl=10) as s1, Session(etcd_client, ttl=10) as s2:
        first, second = Lock(s1, name), Lock(s2, name)
        await first.acquire()  # taken at once: its key is watched after watch_after
        waiting = second.acquire()
        await until(lambda: _count(etcd_client, name, 2), what="the waiter's key")
        lost = first.lost
        assert first.key is not None
        await etcd_client.delete(first.key)  # someone else deletes the holder's key
        assert isinstance(await within(lost, 5), LockLost) and not first.locked
        await within(waiting, 5)  # and the waiter's turn came with that delete
        lost = second.lost
        assert second.key is not None
        await etcd_client.delete(second.key)  # seen at once by the watch it waited with
        assert isinstance(await within(lost, 5), LockLost) and not second.locked
        for lock in (first, second):
            with pytest.raises(LockLost):
                await lock.release()
        assert await keys_under(etcd_client, name + b"/") == []


@pytest_twisted.ensureDeferred
async def test_paused_holder_loses_the_lock(etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    name, data = etcd_prefix + b"l", etcd_prefix + b"data"
    async with client_of(etcd_server.endpoint) as c1, client_of(etcd_server.endpoint) as c2:
        s1, s2 = Session(c1, ttl=2), Session(c2, ttl=10)
        old, new = Lock(s1, name), Lock(s2, name)
        await old.acquire()
        lost = old.lost
        waiting = new.acquire()
        await s1.ready
        assert s1.keepalive is not None
        s1.keepalive.stop()  # a paused process: no refresh, nothing reported by the loop
        reason = await within(lost, 10)
        assert isinstance(reason, LockLost) and not old.locked
        await within(waiting, 10)
        assert new.locked
        fenced = await c1.txn(compare=[old.is_owner()], success=[Put(data, b"old")])
        assert not fenced.succeeded
        with pytest.raises(LockLost):
            await old.release()  # fenced: the new holder's key stays
        assert await keys_under(c2, name + b"/") == [new.key]
        await new.release()
        await s2.close()
        await s1.close()


@pytest_twisted.ensureDeferred
async def test_waiter_whose_lease_expires_fails_typed(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"l"
    async with client_of(etcd_server.endpoint) as c1, client_of(etcd_server.endpoint) as c2:
        s1, s2 = Session(c1, ttl=10), Session(c2, ttl=2)
        holder, waiter = Lock(s1, name), Lock(s2, name)
        await holder.acquire()
        d = waiter.acquire()
        await s2.ready
        assert s2.keepalive is not None
        s2.keepalive.stop()
        with pytest.raises(SessionExpired):
            await within(d, 10)
        assert await keys_under(c1, name + b"/") == [holder.key]
        await holder.release()
        await s1.close()
        await s2.close()


@pytest_twisted.ensureDeferred
async def test_lock_survives_cuts_and_a_restart(
    etcd_server_private: EtcdServer, etcd_proxy_private: Any, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"l"
    async with (
        client_of(etcd_proxy_private.endpoint) as c1,
        client_of(etcd_server_private.endpoint) as c2,
    ):
        s1, s2 = Session(c1, ttl=10), Session(c2, ttl=10)
        holder, waiter = Lock(s2, name), Lock(s1, name)
        await holder.acquire()
        d = waiter.acquire()  # waits through the proxy
        await until(lambda: _count(c2, name, 2), what="the waiter's key")
        etcd_proxy_private.reset()  # cut the waiter's connection
        await sleep(0.3)
        await within(etcd_server_private.restart(reactor()), 30)
        await holder.release()
        await within(d, 20)
        assert waiter.locked
        etcd_proxy_private.reset()
        result = await c1.txn(compare=[waiter.is_owner()], success=[Get(name)])
        assert result.succeeded
        await waiter.release()
        await s1.close()
        await s2.close()


def test_loss_by_deadline_on_a_clock() -> None:
    # A holder whose keepalive stopped answering (a paused process) loses the lock when its
    # lease's deadline passes on the clock, even while etcd still has the key (here another
    # client keeps that lease alive on the server): no delete and no session report needed.
    from txetcd.testing import MemoryEtcd

    etcd = MemoryEtcd()
    holder_client, other = etcd.client(), etcd.client()
    session = Session(holder_client, ttl=10)
    lock = Lock(session, "job")
    acquired = lock.acquire()
    assert acquired.called and lock.locked
    lost: List[Any] = []
    lock.lost.addCallback(lost.append)
    handle = session.keepalive
    assert handle is not None
    etcd.clock.advance(1)
    handle.stop()  # from now on no refresh is sent or answered
    deadline = handle.deadline
    assert deadline > etcd.clock.seconds() + 5
    assert session.lease_id is not None
    etcd.clock.advance(deadline - etcd.clock.seconds() - 1)
    other.keepalive_once(session.lease_id)  # etcd itself keeps the lease (and the key) alive
    etcd.clock.advance(deadline - etcd.clock.seconds() - 0.01)
    assert lost == [] and lock.locked
    etcd.clock.advance(0.01)
    assert len(lost) == 1 and isinstance(lost[0], LockLost)
    assert "deadline" in str(lost[0]) and not lock.locked
    assert lock.key is not None
    still = other.get(lock.key)
    assert still.result.count == 1  # the key was still there: the deadline alone told
    assert isinstance(outcome(lock.release()), LockLost)
    assert other.get_prefix(b"job/").result.count == 0  # the fenced release removed our key
    holder_client.close()
    other.close()
    etcd.close()
    assert etcd.clock.getDelayedCalls() == []


def test_a_broken_wait_ends_the_race_instead_of_hanging() -> None:
    """The wait for the key ahead failing (its watch broke) fails the acquisition at once;
    Twisted's race() would swallow it while the other branch (the session's loss) waits."""
    from twisted.internet.defer import Deferred

    from txetcd.concurrency._queue import first_to_fire

    waiting: Deferred[object] = Deferred()
    lost: Deferred[object] = Deferred()
    got: list[object] = []
    first_to_fire([waiting, lost]).addBoth(got.append)
    waiting.errback(RuntimeError("the watch on the key ahead broke"))
    assert len(got) == 1 and "broke" in str(got[0].value)  # type: ignore[attr-defined]
    assert lost.called  # cancelled: nothing left waiting
    won: list[object] = []
    a: Deferred[object] = Deferred()
    b: Deferred[object] = Deferred()
    first_to_fire([a, b]).addBoth(won.append)
    b.callback("lost")
    assert won == [(1, "lost")] and a.called
