"""Endpoint discovery: the auto-sync loop (on a task.Clock, and finding a member added to a real
cluster), ``update_endpoints`` on both transports, and clients built from DNS SRV records
served by a DNS server on loopback."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher
from twisted.names import client as dns_client
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase

from txetcd import Client, ConnectionFailed
from txetcd._args import NOT_GIVEN
from txetcd._auth import AuthTransport, Credentials
from txetcd._cluster import Member, MemberListResult
from txetcd._discovery import member_urls
from txetcd._grpc.channel import Channel
from txetcd._srv import srv_name
from txetcd._types import ResponseHeader
from txetcd.test.helpers import reactor, until, within
from txetcd.testing import EtcdCluster, EtcdServer

HEADER = ResponseHeader(1, 1, 0, 1)


def members(*specs: Tuple[str, Tuple[str, ...], bool]) -> MemberListResult:
    return MemberListResult(
        HEADER,
        tuple(
            Member(i + 1, name, (), urls, learner) for i, (name, urls, learner) in enumerate(specs)
        ),
    )


def test_member_urls_takes_started_voters_only() -> None:
    result = members(
        ("a", ("http://10.0.0.1:2379", "unix://sock"), False),
        ("", (), False),  # added, not started: no name, no URL
        ("l", ("http://10.0.0.3:2379",), True),  # a learner
        ("b", ("https://10.0.0.2:2379", "http://10.0.0.1:2379"), False),
    )
    assert member_urls(result) == ["http://10.0.0.1:2379", "https://10.0.0.2:2379"]


def test_bad_options_refused_at_once() -> None:
    with pytest.raises(TypeError):
        Client("http://127.0.0.1:1", auto_sync_interval="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", auto_sync_interval=0)
    with pytest.raises(TypeError):
        Client("http://127.0.0.1:1", ordering=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Client.from_srv(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Client.from_srv("example.test", "a.b")
    with pytest.raises(TypeError):
        Client.from_srv("example.test", endpoints=["http://x:1"])


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_auto_sync_loop_on_a_clock(transport: Any) -> None:
    clock = task.Clock()
    client = Client(
        "http://127.0.0.1:1",
        reactor=reactor(),
        clock=clock,
        timeout=30,
        auto_sync_interval=10,
        transport=transport,
    )
    asked: List[Tuple["defer.Deferred[Any]", Any]] = []

    def member_list(*, linearizable: bool = False, timeout: Any = NOT_GIVEN) -> Any:
        d: defer.Deferred[Any] = defer.Deferred()
        asked.append((d, timeout))
        return d

    client.member_list = member_list  # type: ignore[method-assign]
    logged: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)  # type: ignore[arg-type]
    try:
        clock.advance(9.5)
        assert asked == []
        clock.advance(0.5)
        assert len(asked) == 1 and asked[0][1] == 10  # a sync never outlasts its interval
        asked[0][0].callback(members(("a", ("http://127.0.0.1:2",), False)))
        assert client.endpoints == ["http://127.0.0.1:2"]
        clock.advance(10)
        asked[1][0].errback(ConnectionFailed("no route"))  # logged, not fatal
        warnings = [e for e in logged if "auto-sync" in e.get("log_format", "")]
        assert len(warnings) == 1 and "no route" in warnings[0]["error"]
        assert client.endpoints == ["http://127.0.0.1:2"]
        clock.advance(10)
        assert len(asked) == 3  # tried again at the next interval
        asked[2][0].callback(members(("", (), False)))  # nothing usable: nothing changes
        assert client.endpoints == ["http://127.0.0.1:2"]
        clock.advance(10)
        assert len(asked) == 4  # a sync in flight at close() is cancelled
        closed = client.close()
        assert closed.called
        assert clock.getDelayedCalls() == []
        assert len([e for e in logged if "auto-sync" in e.get("log_format", "")]) == 2
    finally:
        globalLogPublisher.removeObserver(logged.append)  # type: ignore[arg-type]


def test_without_auto_sync_no_timer() -> None:
    clock = task.Clock()
    client = Client("http://127.0.0.1:1", reactor=reactor(), clock=clock)
    assert clock.getDelayedCalls() == []
    assert client._sibling("http://127.0.0.1:3")._options["auto_sync_interval"] is None
    client.close()


def test_channel_update_keeps_health_and_drains_a_removed_connection() -> None:
    clock = task.Clock()
    channel = Channel(["http://a:1", "http://b:2"], reactor(), clock=clock)
    a, b = channel.endpoints
    channel._mark_failed(b, "refused")
    channel._endpoint_index = 1  # pinned on b

    class Conn:
        endpoint = b
        accepting = True
        drained = False

        def _drain(self) -> None:
            self.drained = True

    conn = Conn()
    channel.connection = conn  # type: ignore[assignment]
    channel.update_endpoints(["http://c:3", "http://b:2"])
    assert channel.endpoint_urls == ["http://c:3", "http://b:2"]
    assert channel.endpoints[1] is b and b.failures == 1  # health kept
    assert channel._endpoint_index == 1 and not conn.drained  # still pinned, still in use
    channel.update_endpoints(["http://c:3"])
    assert conn.drained and channel.connection is None  # gone: no new call starts there
    assert channel._endpoint_index == 0
    with pytest.raises(ValueError):
        channel.update_endpoints([])
    with pytest.raises(ValueError):
        channel.update_endpoints(["ftp://x:1"])
    assert channel.endpoint_urls == ["http://c:3"]  # a refused update changes nothing


def test_auth_transport_delegates_update_endpoints() -> None:
    channel = Channel(["http://a:1"], reactor(), clock=task.Clock())
    auth = AuthTransport(channel, Credentials("u", "p"), 5.0)
    auth.update_endpoints(["http://b:2"])
    assert auth.endpoint_urls == ["http://b:2"]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_auto_sync_finds_a_member_added_later(transport: Any) -> None:
    r = reactor()
    cluster = EtcdCluster(1)
    cluster.start()
    client = Client(
        cluster.endpoints, reactor=r, timeout=10.0, auto_sync_interval=0.5, transport=transport
    )
    try:
        await client.put(b"sync/k", b"v")
        index = await cluster.add_learner_async(r)
        new_url = f"http://127.0.0.1:{cluster.members[index].client_port}"
        await within(client.member_promote(cluster.member_id(index)), 30)
        await until(lambda: new_url in client.endpoints, 10, "auto-sync found the new member")
        assert sorted(client.endpoints) == sorted(
            f"http://127.0.0.1:{m.client_port}" for m in cluster.members
        )
        cluster.stop_member(0)  # only the new member is left to answer (serializably)
        got = await client.get(b"sync/k", serializable=True)
        assert got.value == b"v"
    finally:
        await client.close()
        cluster.stop()


# -- DNS SRV ---------------------------------------------------------------------------------------


class Records(ResolverBase):
    """SRV records from a table, served by a DNS server on loopback."""

    def __init__(self, table: Dict[str, List[Tuple[int, int, int, str]]]) -> None:
        super().__init__()
        self.table = table
        self.asked: List[str] = []

    def _lookup(self, name: Any, cls: Any, type: Any, timeout: Any) -> Any:  # noqa: A002
        key = name.decode() if isinstance(name, bytes) else str(name)
        self.asked.append(key)
        if type != dns.SRV or key not in self.table:
            return defer.fail(error.DomainError(key))
        answers = [
            dns.RRHeader(name=key, type=dns.SRV, ttl=60, payload=dns.Record_SRV(p, w, port, t))
            for p, w, port, t in self.table[key]
        ]
        return defer.succeed((answers, [], []))


async def dns_server(records: Records) -> Tuple[Any, Any]:
    """A DNS server on a free UDP port of 127.0.0.1, and a resolver that asks it."""
    factory = server.DNSServerFactory(clients=[records])
    port = reactor().listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    resolver = dns_client.Resolver(servers=[("127.0.0.1", port.getHost().port)], reactor=reactor())
    return port, resolver


def test_srv_names_follow_etcd() -> None:
    assert srv_name("ex.test.", "http") == "_etcd-client._tcp.ex.test"
    assert srv_name("ex.test", "https") == "_etcd-client-ssl._tcp.ex.test"
    assert srv_name("ex.test", "http", "east") == "_etcd-client-east._tcp.ex.test"
    assert srv_name("ex.test", "https", "east") == "_etcd-client-ssl-east._tcp.ex.test"


@pytest_twisted.ensureDeferred
async def test_client_from_srv_records(etcd_server: EtcdServer) -> None:
    live = etcd_server.client_port
    records = Records(
        {
            "_etcd-client-east._tcp.example.test": [
                (20, 0, live, "127.0.0.1."),
                (10, 0, 1, "127.0.0.1."),  # tried first: nothing listens there
            ],
        }
    )
    port, resolver = await dns_server(records)
    try:
        client = await within(
            Client.from_srv("example.test", "east", resolver=resolver, reactor=reactor()), 10
        )
        try:
            assert client.endpoints == ["http://127.0.0.1:1", f"http://127.0.0.1:{live}"]
            await client.put(b"srv/k", b"found")
            assert (await client.get(b"srv/k")).value == b"found"
        finally:
            await client.close()
        assert "_etcd-client-ssl-east._tcp.example.test" in records.asked
        with pytest.raises(ConnectionFailed) as e:
            await within(Client.from_srv("nowhere.test", resolver=resolver), 10)
        assert "_etcd-client-ssl._tcp.nowhere.test" in str(e.value)
        assert "_etcd-client._tcp.nowhere.test" in str(e.value)
        with pytest.raises(ConnectionFailed):  # only http records, and insecure ones refused
            await within(
                Client.from_srv(
                    "example.test", "east", resolver=resolver, insecure_discovery=False
                ),
                10,
            )
    finally:
        await port.stopListening()
