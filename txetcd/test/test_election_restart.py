"""Election across an etcd restart (issue 21): a leader, a second campaigner waiting behind it and
an observer on clients of their own, against one etcd killed and started again.

- The outage is shorter than the leader's lease: etcd keeps the lease (and the leader's key), the
  leader's keepalive is answered again, it still leads and may proclaim; the campaigner behind it
  takes over only when it resigns.
- The outage outlasts the leader's lease on the client's side (no refresh answered before its
  deadline): the leader is deposed (``lost`` fires, proclaim refused) and the campaigner behind it
  leads once etcd lets the lease go.

Either way the observer's last value is the leader's key and value exactly as etcd holds them
(same mod revision), each change once. Waits are bounded only so that a failure cannot hang.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, List, Tuple

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from txetcd import Client, KeyValue, LockLost, NotElectionLeader, Session
from txetcd.concurrency import Election
from txetcd.test.helpers import client_of, reactor, until, within
from txetcd.testing import EtcdServer


async def _candidates(client: Client, name: bytes) -> int:
    return len(await client.get_prefix(name + b"/"))


async def _candidates_are(client: Client, name: bytes, n: int) -> bool:
    return await _candidates(client, name) == n


async def _as_etcd_holds(client: Client, seen: List[KeyValue], election: Election) -> None:
    """The observer's last value is the leader's key, value and mod revision in etcd now."""
    leader = await election.leader()
    stored = (await client.get(leader.key)).kvs[0]
    last = seen[-1]
    assert (last.key, last.value, last.mod_revision) == (
        stored.key,
        stored.value,
        stored.mod_revision,
    )


def _values(seen: List[KeyValue]) -> List[bytes]:
    return [kv.value for kv in seen]


@dataclass
class Race:
    """A leader (its session's TTL given), a campaigner waiting behind it and an observer, each
    on a client of its own, all on one election."""

    clients: Tuple[Client, Client, Client]
    sessions: Tuple[Session, Session, Session]
    leader: Election
    behind: Election
    waiting: "Deferred[Election]"
    seen: List[KeyValue]


@asynccontextmanager
async def race(endpoint: str, name: bytes, leader_ttl: int) -> AsyncIterator[Race]:
    async with (
        client_of(endpoint) as c1,
        client_of(endpoint) as c2,
        client_of(endpoint) as c3,
    ):
        s1, s2, s3 = Session(c1, ttl=leader_ttl), Session(c2, ttl=30), Session(c3, ttl=30)
        leader, behind = Election(s1, name), Election(s2, name)
        seen: List[KeyValue] = []
        observer = Election(s3, name).observe(seen.append)
        try:
            await within(leader.campaign(b"a"), 10)
            waiting = behind.campaign(b"b")
            await until(lambda: _candidates_are(c3, name, 2), what="both candidates' keys")
            await until(lambda: _values(seen) == [b"a"], what=f"the leader observed: {seen}")
            yield Race((c1, c2, c3), (s1, s2, s3), leader, behind, waiting, seen)
        finally:
            observer.cancel()
            for s in (s1, s2, s3):
                await s.close()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_leader_keeps_leading_across_a_restart(
    etcd_server_private: EtcdServer, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"e"
    async with race(etcd_server_private.endpoint, name, leader_ttl=10) as r:
        (c1, _, c3), (s1, _, _) = r.clients, r.sessions
        leader, behind, waiting, seen = r.leader, r.behind, r.waiting, r.seen
        lost = leader.lost
        handle = s1.keepalive
        assert handle is not None

        await within(etcd_server_private.restart(reactor()), 30)
        back = reactor().seconds()
        await until(
            lambda: (handle.last_refresh or 0.0) > back,
            timeout=15,
            what="a keepalive answered after the restart",
        )
        assert handle.active and not lost.called and not waiting.called
        assert leader.leading and not behind.leading
        assert s1.lease_id is not None
        assert (await c1.time_to_live(s1.lease_id)).ttl > 0
        assert (await c1.txn(compare=[leader.is_leader()])).succeeded
        assert (await behind.leader()).key == leader.key

        await leader.proclaim(b"a2")
        await until(lambda: _values(seen) == [b"a", b"a2"], what=f"the proclaim: {seen}")
        await _as_etcd_holds(c3, seen, behind)

        await leader.resign()
        await within(waiting, 10)
        assert behind.leading and not lost.called
        await until(lambda: _values(seen) == [b"a", b"a2", b"b"], what=f"the new: {seen}")
        assert seen[-1].key == behind.key
        await _as_etcd_holds(c3, seen, behind)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_leader_whose_lease_runs_out_in_the_outage_is_deposed(
    etcd_server_private: EtcdServer, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"e"
    async with race(etcd_server_private.endpoint, name, leader_ttl=2) as r:
        (_, _, c3), (s1, _, _) = r.clients, r.sessions
        leader, behind, waiting, seen = r.leader, r.behind, r.waiting, r.seen
        lost = leader.lost
        session_lost = s1.lost

        etcd_server_private.kill()  # down until the leader's lease is past its deadline
        reason = await within(lost, 15)
        assert isinstance(reason, LockLost)
        assert not leader.leading and not waiting.called
        await within(etcd_server_private.start_async(reactor()), 30)

        await within(waiting, 20)  # etcd lets the lease go: the campaigner behind leads
        assert behind.leading and not leader.leading
        assert session_lost.called
        with pytest.raises(NotElectionLeader):
            await leader.proclaim(b"a2")
        assert (await behind.leader()).value == b"b"
        await until(lambda: _values(seen) == [b"a", b"b"], what=f"the new leader: {seen}")
        assert seen[-1].key == behind.key
        await _as_etcd_holds(c3, seen, behind)
        assert await _candidates(c3, name) == 1  # the deposed leader's key is gone
