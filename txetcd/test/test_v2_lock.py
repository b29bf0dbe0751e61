"""txetcd.v2 Lock against a real etcd with the v2 API: FIFO mutual exclusion, non-blocking and
timed-out acquires, cancellation, loss, the TTL refresh loop (on a fake clock too), and a fenced
counter under contention."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import defer, task

from txetcd.test.helpers import MakeV2Client, sleep, until, within
from txetcd.v2 import (
    Client,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdKeyNotFound,
    EtcdLockExpired,
)
from txetcd.v2._lock import Lock

pytestmark = pytest.mark.usefixtures("no_logged_errors")


async def queue(client: Client, lock: Lock) -> List[str]:
    """The keys of ``lock``'s queue, in order."""
    try:
        listing = await client.read(lock.path, sorted=True)
    except EtcdKeyNotFound:
        return []
    return [node.key for node in listing.nodes]


async def queue_is(client: Client, lock: Lock, keys: List[Any]) -> bool:
    return await queue(client, lock) == keys


async def has_key(lock: Lock) -> bool:
    """Whether ``lock``'s acquisition has made its key."""
    return lock.key is not None


async def exists(client: Client, key: str) -> bool:
    return bool(await client.exists(key))


# -- real time -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mutual_exclusion_in_fifo_order(make_v2_client: MakeV2Client) -> None:
    locks = [Lock(make_v2_client(), "fifo", ttl=10) for _ in range(4)]
    assert await locks[0].acquire() is True
    assert locks[0].is_acquired and locks[0].key is not None
    order: List[int] = []
    waiting = []

    def record(acquired: bool, i: int) -> None:
        order.append(i)

    for i, lock in enumerate(locks[1:], 1):
        waiting.append(lock.acquire().addCallback(record, i))
        await until(partial(has_key, lock))
    tokens = [lock.token for lock in locks if lock.token is not None]
    assert len(tokens) == 4 and tokens == sorted(tokens)
    assert await queue(locks[0].client, locks[0]) == [lock.key for lock in locks]
    await sleep(0.2)
    assert order == [] and not any(lock.is_acquired for lock in locks[1:])
    for i in range(1, 4):
        await locks[i - 1].release()
        assert not locks[i - 1].is_acquired
        await within(waiting[i - 1])
        assert order == list(range(1, i + 1))  # one at a time, first come first served
        assert [lock.is_acquired for lock in locks] == [j == i for j in range(4)]
    await locks[3].release()
    assert await queue(locks[0].client, locks[0]) == []


@pytest_twisted.ensureDeferred
async def test_non_blocking_acquire_gives_false_and_deletes_its_key(
    make_v2_client: MakeV2Client,
) -> None:
    holder, other = Lock(make_v2_client(), "nb", ttl=10), Lock(make_v2_client(), "nb", ttl=10)
    assert await holder.acquire(blocking=False) is True  # free: taken at once
    assert await other.acquire(blocking=False) is False
    assert not other.is_acquired and other.key is None
    assert await queue(holder.client, holder) == [holder.key]
    assert await other.acquire(timeout=0) is False  # timeout=0 is non-blocking
    await holder.release()
    assert await other.acquire(blocking=False) is True
    await other.release()
    with pytest.raises(ValueError):
        other.acquire(blocking=False, timeout=1)


@pytest_twisted.ensureDeferred
async def test_timed_out_acquire_gives_false_and_deletes_its_key(
    make_v2_client: MakeV2Client,
) -> None:
    holder, other = Lock(make_v2_client(), "to", ttl=10), Lock(make_v2_client(), "to", ttl=10)
    await holder.acquire()
    started = time.monotonic()
    assert await within(other.acquire(timeout=0.3)) is False
    assert time.monotonic() - started >= 0.3
    assert not other.is_acquired and other.key is None
    assert await queue(holder.client, holder) == [holder.key]
    # one that runs out while the key is being created: deleted once made
    assert await within(other.acquire(timeout=0.0001)) is False
    assert await queue(holder.client, holder) == [holder.key]
    # a timeout that does not run out
    d = other.acquire(timeout=5)
    await until(partial(has_key, other))
    await holder.release()
    assert await within(d) is True
    await other.release()


@pytest_twisted.ensureDeferred
async def test_cancelling_acquire_deletes_its_key(make_v2_client: MakeV2Client) -> None:
    client = make_v2_client()
    holder, other = Lock(client, "cancel", ttl=10), Lock(make_v2_client(), "cancel", ttl=10)
    await holder.acquire()
    d = other.acquire()
    await until(partial(has_key, other))
    key = other.key
    assert key is not None and await exists(client, key)
    d.cancel()
    with pytest.raises(defer.CancelledError):
        await d
    assert other.key is None and not other.is_acquired
    await until(lambda: queue_is(client, holder, [holder.key]))
    # cancelled while its key is being created: the key is deleted once made
    d = other.acquire()
    d.cancel()
    with pytest.raises(defer.CancelledError):
        await d
    await sleep(0.1)
    await until(lambda: queue_is(client, holder, [holder.key]))
    await holder.release()
    assert await other.acquire(blocking=False) is True  # the lock object is usable again
    await other.release()


@pytest_twisted.ensureDeferred
async def test_release_of_a_lost_lock_raises(make_v2_client: MakeV2Client) -> None:
    client = make_v2_client()
    lock = Lock(client, "gone", ttl=10)
    await lock.acquire()
    assert lock.key is not None
    await client.delete(lock.key)  # behind the holder's back
    with pytest.raises(EtcdLockExpired):
        await lock.release()
    assert not lock.is_acquired
    with pytest.raises(RuntimeError):
        lock.release()  # not held
    assert await lock.acquire() is True
    await lock.release()


@pytest_twisted.ensureDeferred
async def test_async_with_run_renew_and_reacquire(make_v2_client: MakeV2Client) -> None:
    client = make_v2_client()
    lock = Lock(client, "with", ttl=10, value="me-1")
    async with lock:
        assert lock.is_acquired and lock.uuid == "me-1" and lock.lock_key == lock.key
        assert lock.key is not None
        key, first_token = lock.key, lock.token
        node = await client.read(key)
        assert node.value == "me-1" and node.ttl is not None and node.ttl <= 10
        await lock.renew(30)
        node = await client.read(key)
        assert node.ttl is not None and 20 < node.ttl <= 30 and node.created_index == first_token
        with pytest.raises(RuntimeError):
            lock.acquire()  # already held
    assert not lock.is_acquired and lock.key is None
    assert not await exists(client, key)

    def inside(x: int) -> int:
        assert lock.is_acquired
        return x + 1

    assert await lock.run(inside, 41) == 42
    assert not lock.is_acquired
    async with lock:
        assert lock.token is not None and first_token is not None
        assert lock.token > first_token  # every acquisition gets a newer token


@pytest_twisted.inlineCallbacks
def test_usable_from_inline_callbacks(make_v2_client: MakeV2Client) -> Any:
    lock = Lock(make_v2_client(), "ic", ttl=10)
    acquired = yield lock.acquire()
    assert acquired is True and lock.is_acquired
    yield lock.renew()
    yield lock.release()
    assert not lock.is_acquired


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("etcd_v2_server", ["3.5"], indirect=True)
async def test_held_key_outlives_three_ttls(make_v2_client: MakeV2Client) -> None:
    client = make_v2_client()
    holder, other = Lock(client, "long", ttl=2), Lock(make_v2_client(), "long", ttl=2)
    await holder.acquire()
    assert holder.key is not None
    waiting = other.acquire()
    lost = holder.lost
    await sleep(6.5)  # > 3 TTLs
    node = await client.read(holder.key)
    assert node.created_index == holder.token and node.value == holder.value
    assert holder.is_acquired and not waiting.called and not lost.called
    assert other.key is not None and await exists(client, other.key)  # queued keys live too
    await holder.release()
    assert await within(waiting) is True
    await other.release()


@pytest_twisted.ensureDeferred
async def test_contention_fenced_counter(make_v2_client: MakeV2Client, prefix: str) -> None:
    counter = prefix + "/counter"
    setup = make_v2_client()
    await setup.set(counter, json.dumps({"count": 0, "token": 0}))
    inside = [0]
    problems: List[str] = []

    async def worker(n: int) -> None:
        client = make_v2_client()
        lock = Lock(client, "counter", ttl=5)
        for _ in range(20):
            async with lock:
                inside[0] += 1
                if inside[0] != 1:
                    problems.append(f"{inside[0]} holders at once")
                token = lock.token
                assert token is not None
                current = await client.read(counter)
                assert current.value is not None
                state = json.loads(current.value)
                if token < state["token"]:
                    problems.append(f"token {token} older than stored {state['token']}")
                new = json.dumps({"count": state["count"] + 1, "token": token})
                try:
                    await client.compare_and_swap(counter, new, prev_index=current.modified_index)
                except EtcdCompareFailed as e:
                    problems.append(f"CAS failed: {e}")
                inside[0] -= 1

    await within(  # a bound against hanging, not a measurement
        defer.gatherResults(
            [defer.ensureDeferred(worker(n)) for n in range(5)], consumeErrors=True
        ),
        25.0,
    )
    final = await setup.read(counter)
    assert final.value is not None
    assert json.loads(final.value)["count"] == 100
    assert problems == []


# -- the refresh loop on a fake clock (real etcd for the requests) -----------------------------


def node_of(client: Client, key: str) -> "defer.Deferred[Any]":
    return client.read(key)


@pytest_twisted.ensureDeferred
async def test_refresh_loop_on_a_fake_clock(make_v2_client: MakeV2Client) -> None:
    clock = task.Clock()
    client = make_v2_client(clock=clock)
    other_client = make_v2_client()
    holder, queued = Lock(client, "clock", ttl=30), Lock(client, "clock", ttl=30)
    await holder.acquire()
    waiting = queued.acquire()
    await until(partial(has_key, queued))
    assert holder.key is not None and queued.key is not None
    lost = holder.lost
    before = {key: await node_of(other_client, key) for key in (holder.key, queued.key)}
    clock.advance(10)
    assert holder.key is not None
    for key in (holder.key, queued.key):

        async def refreshed(key: str = key) -> bool:
            node = await node_of(other_client, key)
            return bool(node.modified_index > before[key].modified_index)

        await until(refreshed)
        node = await node_of(other_client, key)
        assert node.created_index == before[key].created_index  # the same key
        assert node.ttl is not None and node.ttl >= 29  # reset to the full TTL
    assert not lost.called and holder.is_acquired
    # the key deleted behind the holder's back: the next refresh finds it gone
    await other_client.delete(holder.key)
    clock.advance(10)
    reason = await within(lost)
    assert isinstance(reason, EtcdLockExpired) and "gone" in str(reason)
    assert not holder.is_acquired
    with pytest.raises(EtcdLockExpired):
        await holder.release()
    # the queued lock is first now
    assert await within(waiting) is True
    await queued.release()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_lost_when_refreshes_fail_until_the_ttl_runs_out(
    make_v2_client: MakeV2Client,
) -> None:
    clock = task.Clock()
    client = make_v2_client(clock=clock)
    lock = Lock(client, "fails", ttl=9)
    await lock.acquire()
    key = lock.key
    assert key is not None
    lost = lock.lost
    await client.close()  # every refresh fails from now on
    for _ in range(8):
        clock.advance(1)
    assert not lost.called and lock.is_acquired  # failing, but the TTL may not have run out
    clock.advance(1)
    reason = await within(lost)
    assert isinstance(reason, EtcdLockExpired) and "may have expired" in str(reason)
    assert not lock.is_acquired
    with pytest.raises(EtcdLockExpired):
        await lock.release()
    assert clock.getDelayedCalls() == []
    other = make_v2_client()
    await other.delete(key)


@pytest_twisted.ensureDeferred
async def test_queued_key_lost_fails_acquire(make_v2_client: MakeV2Client) -> None:
    clock = task.Clock()
    client = make_v2_client(clock=clock)
    other_client = make_v2_client()
    holder, queued = Lock(other_client, "qlost", ttl=30), Lock(client, "qlost", ttl=30)
    await holder.acquire()
    waiting = queued.acquire()
    await until(partial(has_key, queued))
    assert queued.key is not None
    await other_client.delete(queued.key)
    clock.advance(10)
    with pytest.raises(EtcdLockExpired):
        await within(waiting)
    assert not queued.is_acquired and queued.key is None
    await holder.release()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_listing_that_gets_no_answer_is_retried(make_v2_client: MakeV2Client) -> None:
    clock = task.Clock()
    client = make_v2_client(clock=clock)
    real_read = client.read
    failed: List[str] = []

    def read_failing_once(key: str, **kwargs: Any) -> "defer.Deferred[Any]":
        if not failed:  # the first listing of the queue gets no answer
            failed.append(key)
            return defer.fail(EtcdConnectionFailed("no answer"))
        return real_read(key, **kwargs)

    client.read = read_failing_once  # type: ignore[method-assign,assignment]
    lock = Lock(client, "relist", ttl=30)
    acquiring = lock.acquire()
    await until(lambda: succeed_with(bool(failed)))
    assert failed == [lock.path] and not acquiring.called
    clock.advance(0.05)  # the first retry's backoff
    assert await within(acquiring) is True and lock.is_acquired
    await lock.release()
    assert clock.getDelayedCalls() == []


async def succeed_with(value: bool) -> bool:
    return value
