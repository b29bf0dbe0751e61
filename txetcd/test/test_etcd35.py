"""etcd as production runs it: gRPC alone on the client port, HTTP on a port of its own.

A newer etcd 3.5 (``--listen-client-http-urls``; Debian 13's 3.5.16, which ``.ci/fetch-etcd35``
unpacks at CI setup) under ``EtcdServer(separate_http=True)``: its client URL is served by
grpc-go's own HTTP/2 transport, also over TLS (etcd 3.5.1 serves gRPC on TLS through Go's
net/http instead), and the JSON gateway, ``/health`` and ``/version`` answer on
``http_endpoint``. Without such a binary (:func:`~txetcd.testing.etcd35_binary` is ``None``) the
tests that need one skip; the checks of the options themselves run anyway.
"""

from __future__ import annotations

import http.client
import json
import ssl
import stat
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import (
    Client,
    CreateRevision,
    EtcdError,
    Get,
    LeaseExpired,
    Put,
)
from txetcd._h2.connection import H2Connection
from txetcd.test.helpers import (
    Batches,
    client_of,
    failure_of,
    grpc_channel,
    logins,
    reactor,
    sleep,
)
from txetcd.testing import EtcdCluster, EtcdNotFound, EtcdServer, etcd35_binary, etcd_binary
from txetcd.testing._binaries import _ETCD35_MISSING, _etcd_version, has_client_http_urls

BINARY = etcd35_binary()
needs_etcd35 = pytest.mark.skipif(BINARY is None, reason=_ETCD35_MISSING)

TTL = 2  # --auth-token-ttl of the secured server: a token dies 2-3 s after its last use


@pytest.fixture(scope="module")
def secured() -> Iterator[EtcdServer]:
    """TLS, gRPC alone on the client port, auth on with short-lived tokens (started blocking:
    auth is switched on through the separate HTTPS gateway)."""
    assert BINARY is not None
    with EtcdServer(
        tls=True, separate_http=True, auth=True, auth_token_ttl=TTL, binary=BINARY
    ) as server:
        yield server


def get_http(url: str, path: str, ca_cert: Optional[str] = None) -> Tuple[int, bytes]:
    """A blocking HTTP/1.1 GET of ``path`` on ``url`` (https with ``ca_cert``)."""
    host, port = url.split("://")[1].split(":")
    conn: http.client.HTTPConnection
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=ca_cert)
        conn = http.client.HTTPSConnection(host, int(port), timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_json(url: str, path: str, ca_cert: Optional[str] = None) -> Dict[str, Any]:
    status, body = get_http(url, path, ca_cert)
    assert status == 200, (status, body)
    answer: Dict[str, Any] = json.loads(body)
    return answer


def only_connection(client: Client) -> H2Connection:
    connections = grpc_channel(client).connections
    assert len(connections) == 1, connections
    return connections[0]


# -- the binary and the options ----------------------------------------------------------------


@needs_etcd35
def test_the_binary_is_an_etcd_35_with_the_flag() -> None:
    assert BINARY is not None
    version = _etcd_version(BINARY)
    assert version is not None and version[:2] == (3, 5) and version > (3, 5, 1), version
    assert has_client_http_urls(BINARY)


def test_the_default_etcd_without_the_flag_is_refused_before_launch() -> None:
    default = etcd_binary()
    if has_client_http_urls(default):
        pytest.skip(f"{default} has --listen-client-http-urls")
    with pytest.raises(ValueError, match="etcd35_binary") as caught:
        EtcdServer(separate_http=True)
    assert repr(default) in str(caught.value)
    with pytest.raises(ValueError, match="--listen-client-http-urls"):
        EtcdCluster(1, separate_http=True, binary=default)


def _script(path: Path, help_text: str) -> str:
    path.write_text(f"#!/bin/sh\necho '{help_text}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_binary_without_the_flag_is_named_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake = tmp_path / "etcd"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\necho 'Usage: etcd --listen-client-urls'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(ValueError, match=str(fake)):
        EtcdServer(separate_http=True, binary=str(fake))
    marker.unlink()  # --help ran, and only that
    with pytest.raises(TypeError, match="separate_http must be a bool"):
        EtcdServer(separate_http="yes", binary=str(fake))  # type: ignore[arg-type]
    assert not marker.exists()


def test_env_var_wins_and_must_have_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TXETCD_ETCD35_BIN", str(plain))
    with pytest.raises(EtcdNotFound, match="TXETCD_ETCD35_BIN.*not an executable"):
        etcd35_binary()
    old = _script(tmp_path / "etcd-351", "  --listen-client-urls")
    monkeypatch.setenv("TXETCD_ETCD35_BIN", old)
    with pytest.raises(EtcdNotFound, match="no --listen-client-http-urls"):
        etcd35_binary()
    new = _script(tmp_path / "etcd-3516", "  --listen-client-http-urls ''")
    monkeypatch.setenv("TXETCD_ETCD35_BIN", new)
    assert etcd35_binary() == new


def test_http_endpoint_is_the_client_url_unless_separate() -> None:
    server = EtcdServer()
    server.client_port = 2379
    assert server.http_endpoint == server.endpoint == "http://127.0.0.1:2379"
    assert server.http_port == 0


# -- the TLS server: gRPC alone on the client port -----------------------------------------------


@needs_etcd35
def test_http_moves_off_the_client_port(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    assert server.endpoint.startswith("https://") and server.http_endpoint.startswith("https://")
    assert server.http_port not in (0, server.client_port)
    health = get_json(server.http_endpoint, "/health", server.ca_cert)
    assert health["health"] == "true"
    version = get_json(server.http_endpoint, "/version", server.ca_cert)["etcdserver"]
    assert version.startswith("3.5.") and version != "3.5.1", version
    # the client port is grpc-go's HTTP/2 server now: no HTTP/1.1 there
    with pytest.raises((http.client.HTTPException, OSError)):
        get_http(server.endpoint, "/health", server.ca_cert)


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_kv_and_txn_over_grpc_with_tls(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    async with client_of(server.endpoint, clean=True, **server.client_options()) as client:
        put = await client.put(b"e35/kv/a", b"1")
        assert (await client.get(b"e35/kv/a")).value == b"1"
        txn = await client.txn(
            compare=[CreateRevision(b"e35/kv/a") == put.header.revision],
            success=[Put(b"e35/kv/b", b"2"), Get(b"e35/kv/a")],
            failure=[],
        )
        assert txn.succeeded and txn.header.revision == put.header.revision + 1
        assert (await client.get(b"e35/kv/", prefix=True)).count == 2
        assert (await client.delete(b"e35/kv/", prefix=True)).deleted == 2
        assert (await client.get(b"e35/kv/a")).kvs == ()


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_a_kept_lease_and_its_revoke(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    async with client_of(server.endpoint, **server.client_options()) as client:
        lease = await client.grant(30)
        kept = client.keepalive(lease)
        for _ in range(100):  # the first refresh is sent at once
            if kept.last_refresh is not None:
                break
            await sleep(0.02)
        assert kept.last_reply is not None and kept.last_reply.ttl == 30
        await client.put(b"e35/lease", b"v", lease=lease)
        assert (await client.time_to_live(lease, keys=True)).keys == (b"e35/lease",)
        kept.stop()
        await client.revoke(lease)
        assert (await client.get(b"e35/lease")).kvs == ()
        assert isinstance(await failure_of(client.keepalive_once(lease)), LeaseExpired)


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_a_watch_sees_every_revision_once(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    async with (
        client_of(server.endpoint, **server.client_options()) as writer,
        client_of(server.endpoint, **server.client_options()) as watcher,
    ):
        got = Batches()
        watch = watcher.watch(b"e35/watch/", prefix=True, callback=got)
        await watch.created
        written = [(await writer.put(b"e35/watch/%d" % (i % 7), b"%d" % i)) for i in range(60)]
        await got.wait(60)
        await sleep(0.1)  # nothing more comes
        assert [e.revision for e in got.events] == [p.header.revision for p in written]
        assert [e.value for e in got.events] == [b"%d" % i for i in range(60)]
        watch.cancel()
        await watch.done


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_sequential_calls_on_one_connection_answer_the_servers_pings(
    etcd35_tls_server: EtcdServer,
) -> None:
    """grpc-go's transport PINGs (its bandwidth estimator) where Go's net/http did not; our
    ACKs are held 10 ms: 200 calls in a row keep one healthy connection."""
    server = etcd35_tls_server
    async with client_of(server.endpoint, **server.client_options()) as client:
        await client.put(b"e35/seq", b"0")
        conn = only_connection(client)
        pings: List[bytes] = []
        ack = conn._ack_ping

        def counted(payload: bytes) -> None:
            pings.append(payload)
            ack(payload)

        conn._ack_ping = counted  # type: ignore[method-assign]
        for i in range(100):
            await client.put(b"e35/seq", b"%d" % i)
            assert (await client.get(b"e35/seq")).value == b"%d" % i
        assert only_connection(client) is conn and conn.connected
        assert pings, "no PING from the server: not grpc-go's transport?"
        await sleep(0.05)
        assert conn._ping_acks == [] and conn._ping_ack_timer is None  # every ACK went out


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_thirty_two_calls_at_once(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    async with client_of(server.endpoint, **server.client_options()) as client:
        puts = await defer.gatherResults([client.put(b"e35/c/%d" % i, b"v") for i in range(32)])
        assert len({p.header.revision for p in puts}) == 32
        gets = await defer.gatherResults([client.get(b"e35/c/%d" % i) for i in range(32)])
        assert [g.value for g in gets] == [b"v"] * 32
        assert len(grpc_channel(client).connections) == 1


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_the_gateway_transport_on_the_http_endpoint(etcd35_tls_server: EtcdServer) -> None:
    server = etcd35_tls_server
    options = server.client_options()
    async with (
        client_of(server.http_endpoint, transport="gateway", **options) as gateway,
        client_of(server.endpoint, **options) as grpc,
    ):
        got = Batches()
        watch = gateway.watch(b"e35/gw/", prefix=True, callback=got)
        await watch.created
        put = await gateway.put(b"e35/gw/k", b"over the gateway")
        assert (await grpc.get(b"e35/gw/k")).value == b"over the gateway"
        await grpc.put(b"e35/gw/k", b"over gRPC")
        assert (await gateway.get(b"e35/gw/k")).value == b"over gRPC"
        await got.wait(2)
        assert [e.revision for e in got.events] == [put.header.revision, put.header.revision + 1]
        watch.cancel()
        await watch.done


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_the_gateway_transport_on_the_grpc_only_port_fails_typed(
    etcd35_tls_server: EtcdServer,
) -> None:
    """HTTP/1.1 to grpc-go's server gets HTTP/2 frames back: a typed error at once, no hang."""
    server = etcd35_tls_server
    async with client_of(server.endpoint, transport="gateway", **server.client_options()) as c:
        err = await failure_of(c.get(b"e35/wrong-port"))
        assert isinstance(err, EtcdError), repr(err)


# -- auth with short-lived tokens --------------------------------------------------------------


@needs_etcd35
@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_calls_across_an_idle_gap_longer_than_the_token_ttl(secured: EtcdServer) -> None:
    options = secured.client_options()
    async with (
        client_of(secured.endpoint, **options) as grpc,
        client_of(secured.http_endpoint, transport="gateway", **options) as gateway,
    ):
        for client, key in ((grpc, b"e35/auth/grpc"), (gateway, b"e35/auth/gateway")):
            await client.put(key, b"before")
        await sleep(TTL + 1.5)  # both tokens are dead by now
        for client, key in ((grpc, b"e35/auth/grpc"), (gateway, b"e35/auth/gateway")):
            got = await defer.gatherResults([client.get(key) for _ in range(10)])
            assert [r.value for r in got] == [b"before"] * 10
            await client.put(key, b"after")
            assert logins(client) == 2  # the first login, one after the expiry


# -- plain text, started on the reactor --------------------------------------------------------


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_plain_server_started_async_with_auth_and_restarted() -> None:
    """Health is polled on the HTTP port (no TLS, no metrics port); auth is switched on over
    gRPC; a restart keeps all three ports."""
    assert BINARY is not None
    server = EtcdServer(separate_http=True, auth=True, binary=BINARY)
    await server.start_async(reactor())
    try:
        assert server.endpoint.startswith("http://") and server.metrics_port == 0
        assert get_json(server.http_endpoint, "/health")["health"] == "true"
        with pytest.raises((http.client.HTTPException, OSError)):
            get_http(server.endpoint, "/health")
        ports = (server.client_port, server.http_port, server.peer_port)
        async with client_of(server.endpoint, **server.client_options()) as client:
            await client.put(b"e35/plain", b"v")
            await server.restart(reactor())
            assert (server.client_port, server.http_port, server.peer_port) == ports
            assert (await client.get(b"e35/plain")).value == b"v"
    finally:
        server.stop()


@needs_etcd35
@pytest_twisted.ensureDeferred
async def test_a_cluster_of_one_with_auth_switched_on_through_the_http_port() -> None:
    with EtcdCluster(1, separate_http=True, auth=True, binary=BINARY) as cluster:
        member = cluster.members[0]
        assert member.http_port not in (0, member.client_port)
        async with client_of(cluster.endpoints, **cluster.client_options()) as client:
            await client.put(b"e35/cluster", b"v")
            assert (await client.get(b"e35/cluster")).value == b"v"
            assert [m.name for m in await client.member_list()] == ["m0"]


@needs_etcd35
def test_a_clusters_status_and_leader_come_from_the_http_port() -> None:
    """The cluster's blocking status calls use the members' gateway port, not the gRPC-only
    client port (where a JSON request gets HTTP/2 frames back)."""
    with EtcdCluster(1, separate_http=True, binary=BINARY) as cluster:
        assert cluster.leader() == 0
        status = cluster.status(0)
        assert int(status["header"]["member_id"]) == cluster.member_id(0) != 0
