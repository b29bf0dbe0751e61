"""Session: one lease kept alive while the session lasts; on a fake clock and against real etcd."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import defer, task

from txetcd import Client, ClientClosed, LeaseNotFound, OutcomeUnknown
from txetcd._errors import LeaseAbandoned, LeaseExpired, LeaseKeepAliveTimeout
from txetcd._proto import rpc_pb2
from txetcd.concurrency._session import Session
from txetcd.test.helpers import (
    HEADER,
    FakeClient,
    closed_cleanly,
    keepalive_streams,
    lease_timers,
    outcome,
    reactor,
    until,
    within,
)
from txetcd.testing import EtcdServer

GRANT = b"/etcdserverpb.Lease/LeaseGrant"
REVOKE = b"/etcdserverpb.Lease/LeaseRevoke"


@pytest.fixture
def fake(clock: task.Clock) -> FakeClient:
    """As conftest's, with a 10 s call timeout."""
    return FakeClient(clock, timeout=10.0)


def granted(fake: FakeClient, lease_id: int = 42, ttl: int = 12) -> None:
    call = fake.calls[-1]
    assert call.path == GRANT
    call.answer(rpc_pb2.LeaseGrantResponse(header=HEADER, ID=lease_id, TTL=ttl))


def revoked(fake: FakeClient, lease_id: int = 42) -> Any:
    call = fake.calls[-1]
    assert call.path == REVOKE and call.request.ID == lease_id
    call.answer(rpc_pb2.LeaseRevokeResponse(header=HEADER))
    return call


# -- on a fake clock ---------------------------------------------------------------------------


def test_session_grants_keeps_alive_and_closes(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=10)
    ready, lost = session.ready, session.lost
    assert fake.calls[-1].request.TTL == 10 and not ready.called
    lease_before = session.lease_id
    assert lease_before is None and session.keepalive is None
    granted(fake, 42, 12)  # the server may grant more than asked
    assert outcome(ready) is session and outcome(session.ready) is session
    assert (session.lease_id, session.ttl) == (42, 12)
    (stream,) = fake.fake_channel.streams
    assert stream.sent == [42]
    stream.reply(42, 12)
    clock.advance(4)
    assert stream.sent == [42, 42]  # refreshed at TTL/3
    closing = session.close()
    assert stream.cancelled and clock.getDelayedCalls() == []
    call = revoked(fake)
    assert call.timeout == 10.0  # min(TTL, the client's timeout)
    assert outcome(closing) is None and session.closed
    assert not lost.called  # a clean close is not a loss
    assert outcome(session.close()) is None  # again: the same outcome, nothing sent
    assert [c.path for c in fake.calls] == [GRANT, REVOKE]


def test_lost_is_passed_on(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=12)
    granted(fake)
    lost = session.lost
    fake.fake_channel.streams[0].reply(42, 0)  # revoked elsewhere
    reason = outcome(lost)
    assert isinstance(reason, LeaseExpired) and reason.lease_id == 42
    assert outcome(session.lost) is reason
    assert clock.getDelayedCalls() == []
    closing = session.close()  # still revokes; "not found" is fine
    fake.calls[-1].deferred.errback(LeaseNotFound("etcdserver: requested lease not found"))
    assert outcome(closing) is None


def test_lost_when_refreshes_go_unanswered(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=6)
    granted(fake, ttl=6)
    lost = session.lost
    clock.pump([0.25] * 23)
    assert not lost.called
    clock.advance(0.25)  # 6 s after the grant was answered: nothing answered since
    assert isinstance(outcome(lost), LeaseKeepAliveTimeout)
    assert clock.getDelayedCalls() == []


def test_grant_failure_fails_ready(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=5)
    fake.calls[-1].deferred.errback(ClientClosed("the client is closed"))
    assert isinstance(outcome(session.ready), ClientClosed)
    assert fake.fake_channel.streams == [] and clock.getDelayedCalls() == []
    assert outcome(session.close()) is None  # nothing to revoke
    assert len(fake.calls) == 1


def test_close_before_the_grant_is_answered(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=5)
    ready = session.ready
    closing = session.close()
    assert not closing.called and len(fake.calls) == 1  # waits for the grant's outcome
    granted(fake, 7, 5)
    assert isinstance(outcome(ready), defer.CancelledError)
    revoked(fake, 7)  # the lease granted meanwhile is revoked at once
    assert outcome(closing) is None
    assert fake.fake_channel.streams == [] and clock.getDelayedCalls() == []


def test_revoke_failure_is_passed_on(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=5)
    granted(fake, ttl=5)
    first, second = session.close(), session.close()
    assert fake.calls[-1].timeout == 5.0
    fake.calls[-1].deferred.errback(OutcomeUnknown("the write's outcome is unknown"))
    assert isinstance(outcome(first), OutcomeUnknown)
    assert isinstance(outcome(second), OutcomeUnknown)
    assert isinstance(outcome(session.close()), OutcomeUnknown)
    assert clock.getDelayedCalls() == []


def test_adopt_an_existing_lease(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake, ttl=60, lease_id=99)
    call = fake.calls[-1]
    assert call.path == b"/etcdserverpb.Lease/LeaseKeepAlive" and call.request.ID == 99
    call.answer(rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=99, TTL=30))
    assert outcome(session.ready) is session and (session.lease_id, session.ttl) == (99, 30)
    assert session.keepalive is not None and session.keepalive.ttl == 30
    closing = session.close()
    revoked(fake, 99)
    assert outcome(closing) is None and clock.getDelayedCalls() == []


def test_adopting_an_unknown_lease_fails_ready(fake: FakeClient) -> None:
    session = Session(fake, lease_id=99)
    fake.calls[-1].answer(rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=99))
    assert isinstance(outcome(session.ready), LeaseExpired)


def test_client_closed_under_the_session(fake: FakeClient, clock: task.Clock) -> None:
    session = Session(fake)
    granted(fake)
    lost = session.lost
    fake._lease_hub_close()
    assert isinstance(outcome(lost), LeaseAbandoned)
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "kw,exc",
    [
        ({"ttl": 0}, ValueError),
        ({"ttl": "5"}, TypeError),
        ({"lease_id": 0}, ValueError),
        ({"lease_id": 1.0}, TypeError),
    ],
)
def test_bad_arguments(fake: FakeClient, kw: Any, exc: type) -> None:
    with pytest.raises(exc):
        Session(fake, **kw)
    assert fake.calls == []


def test_async_with_on_a_fake_clock(fake: FakeClient, clock: task.Clock) -> None:
    async def use() -> List[Any]:
        async with Session(fake, ttl=12) as s:
            return [s.lease_id, s.closed]

    d = defer.ensureDeferred(use())
    granted(fake)
    assert not d.called
    revoked(fake)
    assert outcome(d) == [42, False]
    assert clock.getDelayedCalls() == []


# -- against real etcd ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_session_close_revokes_its_lease(lease_client: Client, etcd_prefix: bytes) -> None:
    c = lease_client
    async with Session(c, ttl=5) as session:
        assert session.lease_id is not None and session.ttl == 5
        await c.put(etcd_prefix + b"k", b"v", lease=session.lease_id)
        assert (await c.time_to_live(session.lease_id)).ttl > 0
        assert len(keepalive_streams(c)) == 1
    assert session.closed
    assert (await c.get(etcd_prefix + b"k")).kvs == ()  # went with the lease
    assert (await c.time_to_live(session.lease_id)).ttl == -1
    assert keepalive_streams(c) == [] and lease_timers() == []
    assert not session.lost.called


@pytest_twisted.ensureDeferred
async def test_session_lost_at_the_first_refresh_after_a_revoke_elsewhere(
    etcd_server: EtcdServer, other_client: Client
) -> None:
    clock = task.Clock()  # the session's time; the network is real
    client = Client(etcd_server.endpoint, reactor=reactor(), clock=clock, timeout=10.0)
    try:
        session = await Session(client, ttl=3).ready
        assert session.lease_id is not None
        await until(lambda: session.keepalive is not None and session.keepalive.last_refresh == 0)
        lost = session.lost
        await other_client.revoke(session.lease_id)
        assert not lost.called  # nothing tells the session before its next refresh
        clock.advance(3 / 3)
        reason = await within(lost)
        assert isinstance(reason, LeaseExpired)
        assert keepalive_streams(client) == [] and lease_timers(clock) == []
        await session.close()  # the lease is gone already: fine
        assert session.closed
    finally:
        await closed_cleanly(client)


@pytest_twisted.ensureDeferred
async def test_sessions_share_the_stream_and_adopt(lease_client: Client) -> None:
    c = lease_client
    g = await c.grant(10)
    adopted = await Session(c, lease_id=g.id).ready
    fresh = await Session(c, ttl=10).ready
    assert adopted.ttl == 10 and adopted.lease_id == g.id
    assert len(keepalive_streams(c)) == 1
    await adopted.close()
    assert len(keepalive_streams(c)) == 1
    await fresh.close()
    assert keepalive_streams(c) == [] and lease_timers() == []
    assert (await c.time_to_live(g.id)).ttl == -1
    with pytest.raises(LeaseExpired):
        await Session(c, lease_id=g.id).ready


@pytest_twisted.ensureDeferred
async def test_client_close_under_a_session_leaves_nothing(
    lease_client: Client, other_client: Client
) -> None:
    client = Client(lease_client.endpoints, reactor=reactor(), timeout=10.0)
    session = await Session(client, ttl=5).ready
    lost = session.lost
    await closed_cleanly(client)
    assert isinstance(await lost, LeaseAbandoned)
    with pytest.raises(ClientClosed):
        await session.close()  # the revoke cannot be sent: the lease runs out its TTL
    assert session.lease_id is not None
    await other_client.revoke(session.lease_id)
