"""Cluster membership and the calls aimed at one member, on a real 3-member etcd 3.5 cluster;
the EtcdCluster helpers (kill, restart, leader, learners) along the way."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator, Type

import pytest
import pytest_twisted

from txetcd import (
    Client,
    ConnectionFailed,
    LearnerNotReady,
    Member,
    MemberAddResult,
    MemberListResult,
    MemberNotFound,
    MemberNotLearner,
    PeerURLExists,
    TooManyLearners,
    UnhealthyCluster,
    Unimplemented,
)
from txetcd.test.helpers import client_of, reactor, sleep
from txetcd.testing import EtcdCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    """One 3-member cluster for the module; each test leaves it with its 3 voting members
    running (a test that adds, kills or removes a member undoes it)."""
    with EtcdCluster(3) as c:
        yield c


@pytest_twisted.async_yield_fixture
async def client(cluster: EtcdCluster) -> AsyncIterator[Client]:
    async with client_of(cluster.endpoints[:3]) as c:
        yield c


async def eventually(call: Callable[[], Any], error: Type[BaseException], seconds: float) -> Any:
    """``call()``'s result, calling again while it fails with ``error`` (etcd's "not yet"
    answers: a cluster younger than 5 s is "unhealthy" for changes, a learner catching up is
    not ready), for at most ``seconds``."""
    deadline = reactor().seconds() + seconds
    while True:
        try:
            return await call()
        except error:
            if reactor().seconds() >= deadline:
                raise
        await sleep(0.1)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_member_list_and_status(cluster: EtcdCluster, transport: str) -> None:
    async with client_of(cluster.endpoints[:3], transport=transport) as c:
        members = await c.member_list()
        assert isinstance(members, MemberListResult) and len(members) == 3
        assert sorted(m.name for m in members) == ["m0", "m1", "m2"]
        assert sorted(u for m in members for u in m.client_urls) == sorted(cluster.endpoints[:3])
        assert not any(m.is_learner for m in members) and all(m.started for m in members)
        assert members.header.revision == 0  # cluster answers carry no revision
        assert (await c.member_list(linearizable=True)).members == members.members

        statuses = await c.status()
        assert [s.endpoint for s in statuses] == cluster.endpoints[:3]
        assert {s.member_id for s in statuses} == {m.id for m in members}
        leader = cluster.leader()
        assert {s.leader for s in statuses} == {cluster.member_id(leader)}
        assert [s.is_leader for s in statuses] == [i == leader for i in range(3)]
        for s in statuses:
            assert s.error is None and s.errors == () and s.version == "3.5.1"
            assert s.db_size >= s.db_size_in_use > 0 and s.raft_term >= 2 and not s.is_learner
            assert s.raft_applied_index > 0

        one = await c.status(cluster.endpoints[1])
        assert one.endpoint == cluster.endpoints[1]
        assert one.member_id == cluster.member_id(1) == members.by_id(one.member_id).id


@pytest_twisted.ensureDeferred
async def test_learner_added_started_promoted_updated_removed(
    cluster: EtcdCluster, client: Client
) -> None:
    index = cluster.new_member()
    peer = cluster.peer_url(index)
    added = await eventually(
        lambda: client.member_add([peer], is_learner=True), UnhealthyCluster, 15
    )
    assert isinstance(added, MemberAddResult) and len(added) == 4
    new = added.member
    assert new.is_learner and new.peer_urls == (peer,) and not new.started
    assert new in added.members
    # not started yet: it cannot be in sync with the leader
    with pytest.raises(LearnerNotReady) as err:
        await client.member_promote(new)
    assert err.value.code == 9

    await cluster.start_member_async(index, reactor())
    status = await client.status(cluster.endpoints[index])
    assert status.is_learner and status.member_id == new.id
    assert (await client.member_list()).by_id(new.id).name == f"m{index}"

    promoted = await eventually(lambda: client.member_promote(new.id), LearnerNotReady, 20)
    assert not promoted.by_id(new.id).is_learner
    with pytest.raises(MemberNotLearner):
        await client.member_promote(new.id)

    urls = [peer, peer.replace("127.0.0.1", "localhost")]
    updated = await client.member_update(new, urls)
    assert updated.by_id(new.id).peer_urls == tuple(urls)
    assert (await client.member_list()).by_id(new.id).peer_urls == tuple(urls)

    left = await client.member_remove(new.id)
    assert new.id not in {m.id for m in left} and len(left) == 3
    with pytest.raises(MemberNotFound):
        await client.member_remove(new.id)
    with pytest.raises(MemberNotFound):
        await client.member_update(new.id, [peer])
    cluster.kill(index)  # a removed member stops by itself; make sure


@pytest_twisted.ensureDeferred
async def test_membership_errors(cluster: EtcdCluster, client: Client) -> None:
    # to the leader: a follower forwards a promote to the leader, and etcd 3.5.1 sometimes
    # answers "request timed out" then, when configuration changes come back to back
    async with client_of(cluster.endpoints[cluster.leader()]) as leader:
        with pytest.raises(MemberNotFound):
            await leader.member_promote(42)
        with pytest.raises(MemberNotLearner):
            await leader.member_promote(cluster.member_id(0))
    with pytest.raises(PeerURLExists):
        await client.member_add([cluster.peer_url(0)], is_learner=True)

    index = await cluster.add_learner_async(reactor())
    try:
        with pytest.raises(TooManyLearners):  # etcd 3.5 allows one learner
            await client.member_add(["http://127.0.0.1:1"], is_learner=True)
    finally:
        await client.member_remove(cluster.member_id(index))
        cluster.kill(index)


@pytest_twisted.ensureDeferred
async def test_move_leader_to_a_follower(cluster: EtcdCluster, client: Client) -> None:
    before = cluster.leader()
    follower = (before + 1) % 3
    target = cluster.member_id(follower)
    result = await client.move_leader(target)
    assert (result.previous, result.target) == (cluster.member_id(before), target)
    assert await cluster.leader_async(reactor()) == follower
    assert (await client.status(cluster.endpoints[follower])).is_leader


@pytest_twisted.ensureDeferred
async def test_move_leader_through_a_client_of_a_follower(cluster: EtcdCluster) -> None:
    """The client's only endpoint is a follower: the leader's URL comes from member_list."""
    before = cluster.leader()
    follower = (before + 1) % 3
    async with client_of(cluster.endpoints[follower]) as c:
        result = await c.move_leader(cluster.member_id(follower))
    assert result.previous == cluster.member_id(before)
    assert await cluster.leader_async(reactor()) == follower


@pytest_twisted.ensureDeferred
async def test_hash_kv_equal_across_members(cluster: EtcdCluster, client: Client) -> None:
    for i in range(5):
        put = await client.put(f"hash/{i}", f"v{i}")
    revision = put.header.revision
    hashes = [await client.hash_kv(url, revision) for url in cluster.endpoints[:3]]
    assert len({h.hash for h in hashes}) == 1
    assert {h.header.member_id for h in hashes} == {cluster.member_id(i) for i in range(3)}
    assert hashes[0].compact_revision == -1  # never compacted

    async with client_of(cluster.endpoints[:3], transport="gateway") as gateway:
        with pytest.raises(Unimplemented, match="HashKV is not available over the JSON gateway"):
            await gateway.hash_kv(cluster.endpoints[0])
        with pytest.raises(Unimplemented):
            await gateway.hash_kv()


@pytest_twisted.ensureDeferred
async def test_status_of_a_member_down_is_data(cluster: EtcdCluster, client: Client) -> None:
    victim = (cluster.leader() + 1) % 3
    cluster.kill(victim)
    try:
        statuses = await client.status(timeout=3)
        down = statuses[victim]
        assert isinstance(down.error, ConnectionFailed) and down.header is None
        assert down.errors == (str(down.error),) and down.member_id == 0
        assert all(s.error is None for i, s in enumerate(statuses) if i != victim)
        with pytest.raises(ConnectionFailed):
            await client.status(cluster.endpoints[victim], timeout=3)
    finally:
        await cluster.restart_member_async(victim, reactor())
    assert (await client.status(cluster.endpoints[victim])).error is None


def test_member_arguments_checked_before_sending() -> None:
    client: Any = Client("http://127.0.0.1:1", reactor=reactor())
    bad: list[tuple[Callable[[], Any], Type[BaseException]]] = [
        (lambda: client.member_add("not a url"), ValueError),
        (lambda: client.member_add([]), ValueError),
        (lambda: client.member_add("http://10.0.0.1"), ValueError),  # no port
        (lambda: client.member_add("ftp://10.0.0.1:2380"), ValueError),
        (lambda: client.member_add(b"http://10.0.0.1:2380"), TypeError),
        (lambda: client.member_add(["http://10.0.0.1:2380", 7]), TypeError),
        (lambda: client.member_add("http://10.0.0.1:2380", is_learner=1), TypeError),
        (lambda: client.member_remove(0), ValueError),
        (lambda: client.member_remove(2**64), ValueError),
        (lambda: client.member_remove("1"), TypeError),
        (lambda: client.member_remove(True), TypeError),
        (lambda: client.member_update(1, "x"), ValueError),
        (lambda: client.member_promote(-1), ValueError),
        (lambda: client.member_list(linearizable="yes"), TypeError),
        (lambda: client.move_leader(0), ValueError),
        (lambda: client.status(2379), TypeError),
        (lambda: client.status("127.0.0.1:2379"), ValueError),
        (lambda: client.defragment(b"http://x:1"), TypeError),
        (lambda: client.hash_kv(None, -1), ValueError),
        (lambda: client.alarm_activate(1, "none"), ValueError),
        (lambda: client.alarm_activate(1, "loud"), ValueError),
        (lambda: client.alarm_disarm("1"), TypeError),
        (lambda: client.snapshot(42), TypeError),
        (lambda: client.snapshot("/tmp/x.db", progress=3), TypeError),
    ]
    for call, error in bad:
        with pytest.raises(error):
            call()
    assert client._channel.endpoint_urls == ["http://127.0.0.1:1"]


def test_member_records() -> None:
    m = Member(2**64 - 1, "", ("http://a:1",), (), True)
    assert not m.started and m.id == 2**64 - 1
    with pytest.raises(TypeError, match=r"\.peer_urls"):
        list(m)
    result = MemberListResult(None, (m,))  # type: ignore[arg-type]
    assert list(result) == [m] and result[0] is m and result.by_id(m.id) is m
    with pytest.raises(KeyError):
        result.by_id(1)
