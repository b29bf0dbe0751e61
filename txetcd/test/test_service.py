"""txetcd.service: the Twisted services own what they make from start to stop.

On MemoryEtcd and a task.Clock (every timer seen: each test ends with
``clock.getDelayedCalls() == []``), and against real etcd (no connection, timer or lease left),
plus the twistd .tac example of docs/services.rst run by twistd itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional, cast

import pytest
import pytest_twisted
from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher

from txetcd import Client, ClientClosed, LeaseExpired
from txetcd._service._base import Run, Stopped
from txetcd.concurrency import Election, Mirror, MirrorChange, Session
from txetcd.service import EtcdClientService, LeaderService, MirrorService, SessionService
from txetcd.test.helpers import (
    _client_timers,
    client_of,
    fixed_backoff,
    grpc_channel,
    keepalive_streams,
    outcome,
    reactor,
    read_line,
    until,
    until_advancing,
    within,
)
from txetcd.testing import EtcdServer, MemoryEtcd, TCPProxy

ROOT = Path(__file__).resolve().parents[2]
TAC = ROOT / "docs" / "examples" / "services.tac"


class Logged:
    """Log events of the test, by level."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        self.events.append(event)

    def at(self, level: LogLevel) -> List[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]

    def failures(self) -> List[Dict[str, Any]]:
        return [e for e in self.events if "log_failure" in e]


@pytest.fixture
def logged() -> Iterator[Logged]:
    observer = Logged()
    globalLogPublisher.addObserver(cast(ILogObserver, observer))
    try:
        yield observer
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observer))


@pytest.fixture
def memory() -> Iterator[MemoryEtcd]:
    etcd = MemoryEtcd(task.Clock())
    try:
        yield etcd
    finally:
        etcd.close()


def clients_of(memory: MemoryEtcd) -> EtcdClientService:
    """A client service making MemoryEtcd clients (on its clock)."""
    return EtcdClientService(factory=lambda: memory.client(timeout=5.0))


def nothing_left(memory: MemoryEtcd) -> None:
    """No timer on the clock (client, services, leases), no lease, no stream."""
    assert memory.clock.getDelayedCalls() == []
    assert memory.store.leases == {}
    assert memory._transports == set() or all(not t._streams for t in memory._transports)


# -- EtcdClientService -----------------------------------------------------------------------


def test_client_service_makes_and_closes_a_client_per_start(memory: MemoryEtcd) -> None:
    service = clients_of(memory)
    early = service.whenReady()
    assert not early.called and service.client is None
    made: List[Client] = []
    for _ in range(2):  # start/stop cycles: a new client each time
        service.startService()
        client = service.client
        assert client is not None and service.running
        made.append(client)
        assert outcome(service.whenReady()) is client
        outcome(client.put(b"k", b"v"))
        assert outcome(service.stopService()) is None
        assert client._channel.closed and service.client is None and not service.running
        assert isinstance(outcome(client.get(b"k")), ClientClosed)
    assert outcome(early) is made[0] and made[0] is not made[1]
    pending = service.whenReady()
    service.stopService()  # stopped (again) before it was ready: the waiter is told
    assert isinstance(outcome(pending), defer.CancelledError)
    nothing_left(memory)


def test_client_service_arguments() -> None:
    with pytest.raises(TypeError, match="timout"):
        EtcdClientService("http://127.0.0.1:2379", timout=3)  # a typo, refused at once
    with pytest.raises(TypeError, match="either factory"):
        EtcdClientService("http://127.0.0.1:2379", factory=Client)
    with pytest.raises(TypeError, match="factory must be callable"):
        EtcdClientService(factory=cast(Any, "Client"))
    service = EtcdClientService("http://127.0.0.1:2379", timeout=-1)
    with pytest.raises(ValueError):
        service.startService()  # the values are checked when the client is made
    assert not service.running and service.client is None
    with pytest.raises(TypeError, match="not str"):
        MirrorService("http://127.0.0.1:2379", b"x")
    with pytest.raises(TypeError, match="not str"):
        SessionService("http://127.0.0.1:2379")
    with pytest.raises(TypeError, match="timeout must be"):
        MirrorService(Client(reactor=task.Clock()), b"p/", timeout=0)
    with pytest.raises(TypeError, match="on_change must be callable"):
        MirrorService(Client(reactor=task.Clock()), b"p/", cast(Any, 1))
    with pytest.raises(TypeError, match="on_elected must be callable"):
        LeaderService(Client(reactor=task.Clock()), b"e", cast(Any, None))
    with pytest.raises(ValueError, match="name must not be empty"):
        LeaderService(Client(reactor=task.Clock()), b"", print)


@pytest.mark.parametrize("client_first", [True, False])
def test_client_closed_after_the_services_using_it_have_stopped(
    memory: MemoryEtcd, logged: Logged, client_first: bool
) -> None:
    """In a MultiService, children stop at once (in reverse order): the client service waits
    for the stops of the services using it (a session's revoke) before it closes the client,
    whether they were told to stop before it or are told after."""
    top = MultiService()
    clients = clients_of(memory)
    sessions = SessionService(clients, ttl=10)
    first, second = (clients, sessions) if client_first else (sessions, clients)
    first.setServiceParent(top)
    second.setServiceParent(top)
    top.startService()
    session = outcome(sessions.whenReady())
    assert list(memory.store.leases) == [session.lease_id]
    other = memory.client()
    revoke = other.revoke  # the revoke is answered only when the test says
    answers: List[defer.Deferred[Any]] = []

    def held_revoke(*args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        answers.append(d)
        return d

    assert clients.client is not None
    clients.client.revoke = held_revoke  # type: ignore[method-assign]
    stopped = top.stopService()
    assert not stopped.called
    assert len(answers) == 1
    client = cast(Client, session.client)
    assert not client._channel.closed  # the revoke is still under way
    answers[0].callback(revoke(session.lease_id))
    assert outcome(stopped) is not None and client._channel.closed
    assert logged.at(LogLevel.warn) == []
    other.close()
    nothing_left(memory)


# -- MirrorService ---------------------------------------------------------------------------


def test_mirror_service_reports_each_change_and_logs_callback_errors(
    memory: MemoryEtcd, logged: Logged
) -> None:
    writer = memory.client()
    outcome(writer.put(b"cfg/a", b"1"))
    changes: List[MirrorChange] = []

    def on_change(change: MirrorChange) -> Any:
        changes.append(change)
        if change.key == b"cfg/bad":
            raise ValueError("a bug in the callback")
        if change.key == b"cfg/later":
            return defer.fail(KeyError("a failed Deferred"))
        return None

    service = MirrorService(writer, "cfg/", on_change)
    ready = service.whenReady()
    service.startService()
    mirror = outcome(ready)
    assert isinstance(mirror, Mirror) and service.mirror is mirror
    assert dict(mirror) == {b"cfg/a": b"1"} and changes == []
    outcome(writer.put(b"cfg/bad", b"x"))
    outcome(writer.put(b"cfg/later", b"y"))
    outcome(writer.delete(b"cfg/a"))
    outcome(writer.put(b"other", b"z"))
    assert [(c.key, c.new and c.new.value) for c in changes] == [
        (b"cfg/bad", b"x"),
        (b"cfg/later", b"y"),
        (b"cfg/a", None),
    ]
    assert [type(e["log_failure"].value) for e in logged.failures()] == [ValueError, KeyError]
    assert "cfg/bad" in formatEvent(logged.failures()[0])  # the change is named
    assert not mirror.closed  # the mirror went on after the callback's error
    outcome(service.stopService())
    assert mirror.closed and service.mirror is None
    writer.close()
    nothing_left(memory)


def test_mirror_service_makes_a_new_mirror_and_reports_the_difference(
    memory: MemoryEtcd, logged: Logged
) -> None:
    writer = memory.client()
    for key in (b"cfg/a", b"cfg/b"):
        outcome(writer.put(key, b"1"))
    changes: List[MirrorChange] = []
    service = MirrorService(writer, b"cfg/", changes.append, retry_policy=fixed_backoff(2.0))
    for _cycle in range(2):  # restartable: each start follows again
        service.startService()
        first = outcome(service.whenReady())
        first.close()  # the mirror ended (as a refused watch would end it)
        assert "a new one in 2.00 s" in " ".join(logged.at(LogLevel.warn))
        outcome(writer.put(b"cfg/a", b"2"))  # changes the service could not see
        outcome(writer.delete(b"cfg/b"))
        outcome(writer.put(b"cfg/c", b"3"))
        memory.clock.advance(1.9)
        assert service.mirror is first  # the old copy is kept readable meanwhile
        memory.clock.advance(0.1)
        second = service.mirror
        assert second is not first and second is not None
        assert dict(second) == {b"cfg/a": b"2", b"cfg/c": b"3"}
        assert [(c.key, c.new and c.new.value, c.resync) for c in changes] == [
            (b"cfg/a", b"2", True),
            (b"cfg/b", None, True),
            (b"cfg/c", b"3", True),
        ]
        outcome(writer.put(b"cfg/c", b"4"))
        assert changes[-1].resync is False and changes[-1].new.value == b"4"  # type: ignore[union-attr]
        outcome(service.stopService())
        assert second.closed and memory.clock.getDelayedCalls() == []
        del changes[:]
        outcome(writer.put(b"cfg/b", b"1"))  # back as it was for the next cycle
        outcome(writer.delete(b"cfg/c"))
        outcome(writer.put(b"cfg/a", b"1"))
    writer.close()
    nothing_left(memory)


def test_mirror_service_on_a_client_service_waits_for_it(memory: MemoryEtcd) -> None:
    clients = clients_of(memory)
    changes: List[MirrorChange] = []
    service = MirrorService(clients, b"cfg/", changes.append)
    service.startService()  # before the client service: it waits for its client
    ready = service.whenReady()
    assert not ready.called
    clients.startService()
    mirror = outcome(ready)
    outcome(memory.client().put(b"cfg/x", b"1"))
    assert [c.key for c in changes] == [b"cfg/x"]
    outcome(service.stopService())
    assert mirror.closed
    client = clients.client
    assert client is not None and not client._channel.closed  # not the mirror's to close
    outcome(clients.stopService())
    nothing_left(memory)


def test_mirror_service_follows_the_client_service_across_its_restarts(
    memory: MemoryEtcd,
) -> None:
    clients = clients_of(memory)
    writer = memory.client()
    outcome(writer.put(b"cfg/a", b"1"))
    changes: List[MirrorChange] = []
    service = MirrorService(clients, b"cfg/", changes.append)
    clients.startService()
    clients.startService()  # started already: nothing happens
    service.startService()
    first = outcome(service.whenReady())
    outcome(clients.stopService())  # the client goes (the mirror service keeps running)
    assert first.closed and service.mirror is first
    outcome(writer.put(b"cfg/a", b"2"))
    outcome(writer.put(b"cfg/b", b"3"))
    assert changes == []
    clients.startService()  # the next client: a new mirror, and what changed meanwhile
    second = service.mirror
    assert second is not first and second is not None and not second.closed
    assert [(c.key, c.new and c.new.value, c.resync) for c in changes] == [
        (b"cfg/a", b"2", True),
        (b"cfg/b", b"3", True),
    ]
    outcome(service.stopService())
    outcome(clients.stopService())
    outcome(writer.close())
    nothing_left(memory)


def test_mirror_service_stopped_before_ready() -> None:
    never = EtcdClientService(factory=lambda: MemoryEtcd().client())
    service = MirrorService(never, b"p/")
    ready = service.whenReady()
    service.startService()
    assert outcome(service.stopService()) is None  # stops while waiting for a client
    assert isinstance(outcome(ready), defer.CancelledError)
    assert never._next == []  # the wait for a client is withdrawn


# -- SessionService --------------------------------------------------------------------------


def test_session_service_makes_a_new_session_when_one_is_lost(
    memory: MemoryEtcd, logged: Logged
) -> None:
    client = memory.client(timeout=5.0)
    sessions: List[Session] = []
    losses: List[Any] = []
    service = SessionService(
        client,
        ttl=9,
        on_session=sessions.append,
        on_lost=losses.append,
        retry_policy=fixed_backoff(1.0, 2.0),
    )
    service.startService()
    first: Session = outcome(service.whenReady())
    assert sessions == [first] and service.session is first
    assert list(memory.store.leases) == [first.lease_id]
    outcome(client.revoke(first.lease_id))  # behind the session's back
    memory.clock.advance(3)  # the next refresh (TTL/3) finds it gone
    assert len(losses) == 1 and isinstance(losses[0], LeaseExpired)
    assert service.session is None and not service.whenReady().called
    memory.clock.advance(0.9)
    assert len(sessions) == 1  # the backoff: 1 s after a session lost within its TTL
    memory.clock.advance(0.1)
    second = outcome(service.whenReady())
    assert sessions == [first, second] and second.lease_id != first.lease_id
    assert "session lost" in " ".join(logged.at(LogLevel.warn))
    outcome(service.stopService())
    assert second.closed and service.session is None
    outcome(client.close())
    nothing_left(memory)


def test_session_service_retries_grants_with_backoff(memory: MemoryEtcd, logged: Logged) -> None:
    client = memory.client(timeout=5.0)
    grant = client.grant
    refusals = [ConnectionError("etcd out of reach")] * 2

    def flaky_grant(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            return defer.fail(refusals.pop())
        return grant(*args, **kwargs)

    client.grant = flaky_grant
    service = SessionService(client, ttl=5, retry_policy=fixed_backoff(1.0, 4.0))
    service.startService()
    assert service.session is None
    memory.clock.advance(1)  # after the first failure: 1 s
    assert service.session is None
    memory.clock.advance(3.9)  # after the second: 4 s
    assert service.session is None
    memory.clock.advance(0.1)
    assert service.session is not None
    assert len([m for m in logged.at(LogLevel.warn) if "not granted" in m]) == 2
    outcome(service.stopService())
    outcome(client.close())
    nothing_left(memory)


def test_session_service_callback_errors_are_logged(memory: MemoryEtcd, logged: Logged) -> None:
    async def on_session(session: Session) -> None:
        raise RuntimeError("registration failed")

    client = memory.client()
    service = SessionService(client, ttl=5, on_session=on_session)
    service.startService()
    assert service.session is not None
    (failure,) = logged.failures()
    assert isinstance(failure["log_failure"].value, RuntimeError)
    assert "on_session" in formatEvent(failure)
    outcome(service.stopService())
    outcome(client.close())
    nothing_left(memory)


def test_session_service_on_a_closed_client_gives_up_and_says_so(
    memory: MemoryEtcd, logged: Logged
) -> None:
    client = memory.client()
    service = SessionService(client, ttl=5)
    service.startService()
    session = outcome(service.whenReady())
    outcome(client.close())  # closed under the service: nothing more it can do
    assert service.session is None
    assert any("client was closed" in m for m in logged.at(LogLevel.error))
    outcome(service.stopService())
    assert session.closed
    for lease in list(memory.store.leases.values()):  # the lease runs out its TTL
        memory.clock.advance(lease.ttl)
    nothing_left(memory)


# -- LeaderService ---------------------------------------------------------------------------


class Candidate:
    """A LeaderService and what happened to it."""

    def __init__(self, client: Any, name: bytes, work: Any = None, **options: Any) -> None:
        self.events: List[Any] = []
        self.work = work
        options.setdefault("retry_policy", fixed_backoff(1.0))
        self.service = LeaderService(
            client, name, self.elected, self.deposed, ttl=options.pop("ttl", 10), **options
        )

    def elected(self, election: Election) -> Any:
        self.events.append(("elected", election.revision))
        return self.work() if self.work is not None else None

    def deposed(self, reason: Optional[BaseException]) -> None:
        self.events.append(("deposed", type(reason).__name__ if reason else None))


def test_leader_hand_over_loss_and_campaign_again(memory: MemoryEtcd) -> None:
    client = memory.client(timeout=5.0)
    a = Candidate(client, b"jobs/leader", value="a")
    b = Candidate(client, b"jobs/leader", value="b")
    a.service.startService()
    b.service.startService()
    assert a.service.leading and not b.service.leading
    assert a.events == [("elected", 2)] and b.events == []
    assert outcome(a.service.whenReady()) is a.service.election
    outcome(a.service.stopService())  # resigns: b leads
    assert a.events == [("elected", 2), ("deposed", None)]
    assert b.service.leading and b.events[0][0] == "elected"
    assert not a.service.whenReady().called  # stopped: not leading
    a.service.startService()  # a campaigns again, behind b
    assert not a.service.leading
    election = b.service.election
    assert election is not None and election.session.lease_id is not None
    outcome(client.revoke(election.session.lease_id))  # b's session is killed
    assert b.events[1:] == [("deposed", "LockLost")]
    assert a.service.leading and not b.service.leading
    memory.clock.advance(1)  # b campaigns again after its backoff, behind a
    assert not b.service.leading and len(memory.store.leases) == 2
    outcome(a.service.stopService())
    assert b.service.leading and b.events[2][0] == "elected"
    outcome(b.service.stopService())
    assert outcome(client.get_prefix(b"jobs/leader")).kvs == ()
    outcome(client.close())
    nothing_left(memory)


def test_leader_work_deferred_cancelled_and_service_stopped(memory: MemoryEtcd) -> None:
    client = memory.client(timeout=5.0)
    works: List[defer.Deferred[None]] = []
    outcomes: List[Any] = []

    def deferred_work() -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        works.append(d)

        def record(failure: Any) -> Any:
            outcomes.append(failure.value)
            return failure

        d.addErrback(record)
        return d

    a = Candidate(client, b"e", deferred_work)
    a.service.startService()
    (work,) = works
    assert not work.called
    election = a.service.election
    assert election is not None
    outcome(client.delete(election.key))  # the leader key deleted: leadership lost
    assert work.called and [type(e) for e in outcomes] == [defer.CancelledError]
    assert a.events == [("elected", 2), ("deposed", "LockLost")]
    outcome(a.service.stopService())

    class Job(Service):
        starts = 0

        def startService(self) -> None:  # noqa: N802
            Job.starts += 1
            Service.startService(self)

    job = Job()
    b = Candidate(client, b"e", lambda: job)
    b.service.startService()
    assert job.running and Job.starts == 1
    outcome(b.service.stopService())
    assert not job.running and b.events[-1] == ("deposed", None)
    outcome(client.close())
    nothing_left(memory)


def test_leader_work_failure_is_logged_then_it_resigns_and_campaigns_again(
    memory: MemoryEtcd, logged: Logged
) -> None:
    client = memory.client(timeout=5.0)
    attempts: List[int] = []

    async def failing_work() -> None:
        attempts.append(1)
        raise ValueError("the leader's job broke")

    a = Candidate(client, b"e", failing_work, retry_policy=fixed_backoff(2.0))
    a.service.startService()
    assert len(attempts) == 1 and not a.service.leading
    assert a.events == [("elected", 2), ("deposed", "ValueError")]
    assert outcome(client.get_prefix(b"e/")).kvs == ()  # resigned
    assert [type(e["log_failure"].value) for e in logged.failures()] == [ValueError]
    assert "failing_work" in logged.failures()[0]["log_failure"].getTraceback()  # where
    memory.clock.advance(2)
    assert len(attempts) == 2
    outcome(a.service.stopService())

    def raising(election: Election) -> None:
        raise KeyError("on_elected itself raised")

    b = LeaderService(client, b"e", raising, retry_policy=fixed_backoff(2.0))
    b.startService()
    assert not b.leading and isinstance(logged.failures()[-1]["log_failure"].value, KeyError)
    outcome(b.stopService())
    outcome(client.close())
    nothing_left(memory)


def test_leader_stopped_while_campaigning_withdraws(memory: MemoryEtcd) -> None:
    client = memory.client(timeout=5.0)
    a = Candidate(client, b"e")
    b = Candidate(client, b"e")
    a.service.startService()
    b.service.startService()
    assert len(outcome(client.get_prefix(b"e/")).kvs) == 2
    outcome(b.service.stopService())  # b was waiting: its key goes, nothing is called
    assert b.events == [] and len(outcome(client.get_prefix(b"e/")).kvs) == 1
    outcome(a.service.stopService())
    outcome(client.close())
    nothing_left(memory)


# -- stopping: an interrupted wait gets a grace period ---------------------------------------


@pytest.mark.parametrize("in_time", [True, False])
def test_a_stop_lets_an_interrupted_wait_clean_up_for_a_while(in_time: bool) -> None:
    """A stop cancels the wait under way; if it goes on cleaning up (a campaign withdrawing its
    key while etcd is out of reach), it is cancelled again after the client's timeout."""
    clock = task.Clock()
    run = Run(lambda _: clock)
    run.client = SimpleNamespace(timeout=3.0, clock=clock)
    cleanup: defer.Deferred[None] = defer.Deferred()
    steps: List[str] = []

    async def campaign() -> None:
        try:
            await defer.Deferred()
        except defer.CancelledError:
            steps.append("withdrawing")
            await cleanup
            steps.append("withdrawn")

    async def loop() -> None:
        await run.wait(defer.Deferred.fromCoroutine(campaign()))

    done = defer.Deferred.fromCoroutine(loop())
    run.stop()
    assert steps == ["withdrawing"] and not done.called
    clock.advance(2.9)
    assert not done.called
    if in_time:
        cleanup.callback(None)
        assert steps == ["withdrawing", "withdrawn"]
    else:
        clock.advance(0.1)
        assert cleanup.called and steps == ["withdrawing"]  # cancelled: cut short
    assert isinstance(outcome(done), Stopped)
    assert clock.getDelayedCalls() == []


# -- against real etcd -----------------------------------------------------------------------


async def our_leases(client: Client, ids: List[Optional[int]]) -> List[int]:
    """Which of ``ids`` etcd still has."""
    alive = set((await client.leases()).leases)
    return [i for i in ids if i in alive]


@pytest_twisted.ensureDeferred
async def test_real_client_service_cycles_leave_no_connection(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    service = EtcdClientService(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    for _ in range(2):
        service.startService()
        client = await service.whenReady()
        await client.put(etcd_prefix + b"k", b"v")
        lease = await client.grant(30)
        client.keepalive(lease.id)
        connections = list(grpc_channel(client).connections)
        assert connections
        await within(service.stopService())
        assert grpc_channel(client).connections == []
        assert keepalive_streams(client) == []
        assert _client_timers(client, connections) == []


@pytest_twisted.ensureDeferred
async def test_real_services_in_a_multiservice(
    etcd_server: EtcdServer, etcd_client: Client, etcd_prefix: bytes
) -> None:
    """One client service, a mirror, a session and two leaders; stopping them all leaves no
    lease, key, connection or timer."""
    top = MultiService()
    clients = EtcdClientService(etcd_server.endpoint, reactor=reactor(), timeout=10.0)
    clients.setServiceParent(top)
    changes: List[MirrorChange] = []
    MirrorService(clients, etcd_prefix + b"cfg/", changes.append).setServiceParent(top)
    sessions = SessionService(clients, ttl=5)
    sessions.setServiceParent(top)
    leader = Candidate(clients, etcd_prefix + b"leader", ttl=5)
    leader.service.setServiceParent(top)
    top.startService()
    session = await within(sessions.whenReady())
    await within(leader.service.whenReady())
    await etcd_client.put(etcd_prefix + b"cfg/a", b"1", lease=session.lease_id)
    await until(lambda: [c.key for c in changes] == [etcd_prefix + b"cfg/a"], 5, "the change")
    client = clients.client
    assert client is not None
    election = leader.service.election
    assert election is not None
    leases = [session.lease_id, election.session.lease_id]
    assert await our_leases(etcd_client, leases) == leases
    connections = list(grpc_channel(client).connections)
    await within(top.stopService())
    assert await our_leases(etcd_client, leases) == []
    assert (await etcd_client.get_prefix(etcd_prefix)).kvs == ()  # the key went with its lease
    assert grpc_channel(client).connections == [] and keepalive_streams(client) == []
    assert _client_timers(client, connections) == []


@pytest_twisted.ensureDeferred
async def test_real_mirror_service_out_of_reach_at_start_tries_again(
    etcd_proxy: TCPProxy, etcd_client: Client, etcd_prefix: bytes, logged: Logged
) -> None:
    await etcd_proxy.refuse()
    changes: List[MirrorChange] = []
    async with client_of(etcd_proxy.endpoint, timeout=0.5) as client:
        service = MirrorService(
            client, etcd_prefix, changes.append, retry_policy=fixed_backoff(0.1)
        )
        service.startService()
        ready = service.whenReady()
        await until(lambda: any("could not start" in m for m in logged.at(LogLevel.warn)))
        assert not ready.called
        await etcd_proxy.refuse(False)
        mirror = await within(ready)
        await etcd_client.put(etcd_prefix + b"k", b"v")
        await until(lambda: [c.key for c in changes] == [etcd_prefix + b"k"], what="the change")
        await within(service.stopService())
        assert mirror.closed and not client._channel.closed  # not the service's client
    (first, *_) = [m for m in logged.at(LogLevel.warn) if "could not start" in m]
    assert "not ready within 0.5 s" in first and etcd_proxy.endpoint in first  # says why


@pytest_twisted.ensureDeferred
async def test_real_leader_hand_over_and_revoked_session(
    etcd_server: EtcdServer, etcd_client: Client, etcd_prefix: bytes
) -> None:
    name = etcd_prefix + b"leader"
    clock = task.Clock()  # the services' backoff, advanced by the test
    a = Candidate(etcd_client, name, ttl=5, clock=clock, value="a")
    b = Candidate(etcd_client, name, ttl=5, clock=clock, value="b")
    a.service.startService()
    await within(a.service.whenReady())
    b.service.startService()
    await until(
        lambda: etcd_client.get_prefix(name).addCallback(lambda r: len(r.kvs) == 2),
        what="b campaigning",
    )
    await within(a.service.stopService())  # a resigns: b is elected
    await within(b.service.whenReady())
    assert a.events == [("elected", a.events[0][1]), ("deposed", None)]
    election = b.service.election
    assert election is not None and election.session.lease_id is not None
    lease = election.session.lease_id
    await etcd_client.revoke(lease)  # b's session killed behind its back
    await until(lambda: ("deposed", "LockLost") in b.events, what="b deposed")
    await until_advancing(clock, lambda: b.service.leading)  # it campaigns again, alone
    assert [e[0] for e in b.events] == ["elected", "deposed", "elected"]
    new_lease = b.service.election.session.lease_id  # type: ignore[union-attr]
    assert new_lease != lease
    await within(b.service.stopService())
    assert await our_leases(etcd_client, [lease, new_lease]) == []
    assert (await etcd_client.get_prefix(name)).kvs == ()
    assert clock.getDelayedCalls() == []


# -- the .tac example of docs/services.rst ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_tac_example_runs_under_twistd(
    etcd_server: EtcdServer, etcd_client: Client, tmp_path: Path
) -> None:
    env = dict(os.environ, ETCD_ENDPOINT=etcd_server.endpoint)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    twistd = "from twisted.scripts.twistd import run; run()"
    process = subprocess.Popen(
        [sys.executable, "-c", twistd, "-n", "--pidfile=", "--logfile=-", "-y", str(TAC)],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines: List[str] = []
        while not any("leading examples/leader" in line for line in lines):
            lines.append(read_line(process, 15))
        await etcd_client.put(b"examples/config/colour", b"blue")
        while not any("config changed: examples/config/colour = blue" in x for x in lines):
            lines.append(read_line(process, 10))
        members = await etcd_client.get_prefix(b"examples/members/")
        assert [kv.key for kv in members.kvs] == [f"examples/members/{process.pid}".encode()]
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=15)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # twistd ends with the signal it was stopped by, once it has shut down
    assert process.returncode in (0, -signal.SIGTERM), "".join(lines) + rest
    assert "Server Shut Down." in rest
    assert "Traceback" not in "".join(lines) + rest
    assert (await etcd_client.get_prefix(b"examples/members/")).kvs == ()  # revoked on stop
    assert (await etcd_client.get_prefix(b"examples/leader")).kvs == ()
    await etcd_client.delete_prefix(b"examples/config/")
