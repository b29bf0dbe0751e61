"""Election (txetcd.concurrency) against real etcd."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted

from txetcd import Client, KeyValue, NoElectionLeader, NotElectionLeader, Session
from txetcd.concurrency import Election
from txetcd.test.helpers import client_of, etcd_client, reactor, until, within  # noqa: F401
from txetcd.testing import EtcdServer


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_five_candidates_one_leader_at_a_time(
    etcd_server: EtcdServer, etcd_prefix: bytes, transport: Any
) -> None:
    name = etcd_prefix + b"e"
    clients = [
        Client(etcd_server.endpoint, reactor=reactor(), timeout=10.0, transport=transport)
        for _ in range(5)
    ]
    sessions = [Session(c, ttl=2) for c in clients]
    elections = [Election(s, name) for s in sessions]
    seen: List[KeyValue] = []
    observer = Election(sessions[0], name).observe(seen.append)
    try:
        with pytest.raises(NoElectionLeader):
            await elections[0].leader()
        campaigns = [e.campaign(f"node-{i}") for i, e in enumerate(elections)]
        with pytest.raises(NotElectionLeader):
            await elections[4].proclaim(b"x")
        order: List[int] = []
        revisions: List[Any] = []
        for step in range(5):
            n = step + 1
            await until(lambda n=n: sum(d.called for d in campaigns) == n, what="a leader")  # type: ignore[misc]
            leaders = [i for i, e in enumerate(elections) if e.leading]
            assert len(leaders) == 1, leaders
            (i,) = leaders
            order.append(i)
            revisions.append(elections[i].revision)
            assert (await elections[i].leader()).value == f"node-{i}".encode()
            if step == 1:
                await elections[i].proclaim(f"node-{i}-v2")
            if step == 2:  # session lost: the next leads within TTL + 1 s
                lost = elections[i].lost
                handle = sessions[i].keepalive
                assert handle is not None
                handle.stop()
                await within(lost, 4)
                assert not elections[i].leading
            else:
                await elections[i].resign()
        assert sorted(order) == [0, 1, 2, 3, 4] and revisions == sorted(revisions)
        await until(lambda: len(seen) == 6, what="every change observed")
        values = [kv.value for kv in seen]
        expected = [f"node-{i}".encode() for i in order]
        expected.insert(2, f"node-{order[1]}-v2".encode())
        assert values == expected
    finally:
        observer.cancel()
        for s in sessions:
            await s.close()
        for c in clients:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_observe_across_cuts_and_fencing(
    etcd_server: EtcdServer, etcd_proxy: Any, etcd_prefix: bytes, etcd_client: Client
) -> None:
    name = etcd_prefix + b"e"
    async with client_of(etcd_proxy.endpoint) as watcher_client:
        async with Session(etcd_client, ttl=10) as session:
            seen: List[bytes] = []
            observer = Election(Session(watcher_client, ttl=10), name).observe(
                lambda kv: seen.append(kv.value)
            )
            election = Election(session, name)
            await election.campaign(b"v0")
            await until(lambda: seen == [b"v0"])
            for n in range(1, 4):
                etcd_proxy.reset()
                await election.proclaim(f"v{n}")
            await until(lambda: seen == [b"v0", b"v1", b"v2", b"v3"], what=str(seen))
            fence = election.is_leader()
            assert (await etcd_client.txn(compare=[fence])).succeeded
            await election.resign()
            assert not (await etcd_client.txn(compare=[fence])).succeeded
            observer.cancel()


@pytest_twisted.ensureDeferred
async def test_election_service_calls(etcd_client: Client, etcd_prefix: bytes) -> None:
    name = etcd_prefix + b"svc"
    async with Session(etcd_client, ttl=10) as session:
        got = await etcd_client.campaign(name, session, b"a")
        assert got.leader.rev > 0 and got.leader.key.startswith(name + b"/")
        assert (await etcd_client.leader(name)).kv.value == b"a"
        await etcd_client.proclaim(got.leader, b"b")
        assert (await etcd_client.leader(name)).kv.value == b"b"
        await etcd_client.resign(got.leader)
        with pytest.raises(NotElectionLeader):
            await etcd_client.proclaim(got.leader, b"c")
        with pytest.raises(NoElectionLeader):
            await etcd_client.leader(name)
        locked = await etcd_client.lock(etcd_prefix + b"lk", session)
        await etcd_client.unlock(locked.key)
