"""txetcd.v2 Election against a real etcd with the v2 API: campaign, hand-over on resign, loss
behind the leader's back (on a fake clock), proclaim, leader() and observe()."""

from __future__ import annotations

from typing import Any, List, Optional

import pytest
import pytest_twisted
from twisted.internet import defer, task

from txetcd.test.helpers import MakeV2Client, sleep, until, within
from txetcd.v2 import Client, EtcdKeyNotFound
from txetcd.v2._election import Election, EtcdLeadershipLost, LeaderObserver

pytestmark = pytest.mark.usefixtures("no_logged_errors")


def election(client: Client, prefix: str, ttl: int = 10, name: str = "boss") -> Election:
    return Election(client, name, ttl, prefix=prefix + "/elections")


@pytest_twisted.ensureDeferred
async def test_one_leads_the_other_waits_and_resign_hands_over(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    a, b = election(make_v2_client(), prefix), election(make_v2_client(), prefix)
    assert await a.leader() is None
    await within(a.campaign("a"))
    assert a.is_leader and a.value == "a" and isinstance(a.token, int)
    waiting = b.campaign("b")
    await sleep(0.2)
    assert not waiting.called and not b.is_leader
    assert await b.leader() == "a"
    with pytest.raises(RuntimeError):
        a.campaign("again")  # already leading
    await a.resign()
    assert not a.is_leader
    await within(waiting)
    assert b.is_leader and await a.leader() == "b"
    assert b.token is not None and a.token is None and b.token > 0
    await b.resign()
    assert await a.leader() is None
    await a.resign()  # not leading: nothing to do


@pytest_twisted.ensureDeferred
async def test_cancelled_or_resigned_campaign_leaves_nothing(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    a, b = election(make_v2_client(), prefix), election(make_v2_client(), prefix)
    await a.campaign("a")
    waiting = b.campaign("b")
    await sleep(0.1)
    waiting.cancel()
    with pytest.raises(defer.CancelledError):
        await waiting
    waiting = b.campaign("b")
    await sleep(0.1)
    await b.resign()  # while campaigning: cancels the campaign
    with pytest.raises(defer.CancelledError):
        await waiting
    await a.resign()
    await sleep(0.2)
    assert await a.leader() is None  # nobody took over
    # cancelled while the create is in flight: the key is given back
    waiting = b.campaign("b")
    waiting.cancel()
    with pytest.raises(defer.CancelledError):
        await waiting

    async def nobody() -> bool:
        return await a.leader() is None

    await until(nobody)


@pytest_twisted.ensureDeferred
async def test_key_deleted_behind_the_leaders_back_fires_lost(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    clock = task.Clock()
    client, other = make_v2_client(clock=clock), make_v2_client()
    a = election(client, prefix, ttl=30)
    await a.campaign("a")
    lost = a.lost
    before = await other.read(a.key)
    clock.advance(10)  # a refresh, compared against our value

    async def refreshed() -> bool:
        return bool((await other.read(a.key)).modified_index != before.modified_index)

    await until(refreshed)
    assert a.is_leader and not lost.called
    await other.delete(a.key)
    clock.advance(10)
    reason = await within(lost)
    assert isinstance(reason, EtcdLeadershipLost) and not a.is_leader
    with pytest.raises(EtcdLeadershipLost):
        await a.proclaim("x")
    with pytest.raises(EtcdLeadershipLost):
        await a.resign()
    assert clock.getDelayedCalls() == []
    # another value in the key: the refresh (compared on our value) finds it taken over
    await a.campaign("a")
    lost = a.lost
    await other.set(a.key, "usurper", ttl=30)
    clock.advance(10)
    reason = await within(lost)
    assert "another value" in str(reason)
    assert (await other.read(a.key)).value == "usurper"  # not deleted by the loser
    with pytest.raises(EtcdLeadershipLost):
        await a.resign()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_proclaim_changes_the_value_and_keeps_leading(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    clock = task.Clock()
    client, other = make_v2_client(clock=clock), make_v2_client()
    a, b = election(client, prefix, ttl=30), election(other, prefix, ttl=30)
    await a.campaign("a1")
    waiting = b.campaign("b")
    created = (await other.read(a.key)).created_index
    await a.proclaim("a2")
    assert a.is_leader and a.value == "a2" and await b.leader() == "a2"
    node = await other.read(a.key)
    assert node.ttl is not None and node.ttl > 20  # the TTL kept
    assert node.created_index == created == a.token
    await sleep(0.1)
    assert not waiting.called  # a proclaim is no hand-over
    lost = a.lost
    clock.advance(10)  # refreshes compare against the new value

    async def refreshed() -> bool:
        return bool((await other.read(a.key)).modified_index != node.modified_index)

    await until(refreshed)
    assert a.is_leader and not lost.called
    with pytest.raises(RuntimeError):
        b.campaign("again")
    await a.resign()
    await within(waiting)
    assert await a.leader() == "b"
    with pytest.raises(EtcdLeadershipLost):
        await a.proclaim("not leading")
    await b.resign()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_observe_sees_the_sequence_of_leaders(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    a, b = election(make_v2_client(), prefix), election(make_v2_client(), prefix)
    watcher = election(make_v2_client(), prefix)
    seen: List[Optional[str]] = []
    by_callback: List[Optional[str]] = []
    observer = watcher.observe()
    assert isinstance(observer, LeaderObserver)
    called = watcher.observe(callback=by_callback.append)

    async def follow() -> None:
        async for value in observer:
            seen.append(value)

    following = defer.ensureDeferred(follow())

    async def seen_now(n: int) -> bool:
        return len(seen) >= n and len(by_callback) >= n

    await until(lambda: seen_now(1))
    await a.campaign("a")
    await until(lambda: seen_now(2))
    waiting = b.campaign("b")
    await a.proclaim("a2")
    await until(lambda: seen_now(3))
    await a.resign()
    await waiting
    await until(lambda: seen_now(5))
    await b.resign()
    await until(lambda: seen_now(6))
    expected = [None, "a", "a2", None, "b", None]
    assert seen == expected and by_callback == expected
    assert observer.current is None
    observer.cancel()
    called.cancel()
    await within(following)
    assert await within(observer.done) is None


@pytest_twisted.ensureDeferred
async def test_observe_starts_with_the_current_leader_and_ends_on_callback_errors(
    make_v2_client: MakeV2Client, prefix: str
) -> None:
    a = election(make_v2_client(), prefix)
    await a.campaign("first")

    def fails(value: Any) -> None:
        raise ValueError(value)

    observer = a.observe(callback=fails)
    with pytest.raises(ValueError):
        await within(observer.done)
    with pytest.raises(TypeError):
        observer.__aiter__()  # callback observers cannot be iterated
    iterated = a.observe()
    assert await within(defer.ensureDeferred(iterated.__anext__())) == "first"
    iterated.cancel()
    with pytest.raises(StopAsyncIteration):
        await iterated.__anext__()
    await a.resign()
    with pytest.raises(EtcdKeyNotFound):
        await a.client.read(a.key)
