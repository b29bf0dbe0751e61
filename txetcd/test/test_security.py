"""The v3 client against a secured etcd: TLS refusals typed and named, ALPN h2, verification off
only when asked, client certificates and common-name auth, and logins that outlive token expiry
(``--auth-token-ttl=2``) with one Authenticate per expiry, whatever the number of calls."""

from __future__ import annotations

import datetime
from typing import Any, Iterator, List

import pytest
import pytest_twisted
from twisted.internet import defer, ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher

from txetcd import (
    AuthFailed,
    ConnectionFailed,
    CreateRevision,
    PermissionDenied,
    Put,
)
from txetcd.test.helpers import client_of, logins, reactor, sleep
from txetcd.testing import EtcdServer

trustme = pytest.importorskip("trustme")

PASSWORD = "Tr0ub4dor-secret"
TTL = 2


@pytest.fixture(scope="module")
def secured() -> Iterator[EtcdServer]:
    """TLS, and auth with short-lived tokens (they die 2-3 s after their last use)."""
    with EtcdServer(tls=True, auth=True, root_password=PASSWORD, auth_token_ttl=TTL) as server:
        yield server


@pytest.fixture(scope="module")
def mtls() -> Iterator[EtcdServer]:
    """TLS with client certificates required, and auth on: the certificate's CN is the user."""
    with EtcdServer(tls=True, client_cert_auth=True, auth=True, root_password=PASSWORD) as server:
        yield server


def login(server: EtcdServer, **options: Any) -> Any:
    options = {"ca_cert": server.ca_cert, "user": "root", "password": PASSWORD, **options}
    return client_of(server.endpoint, **options)


async def failure_of(d: "defer.Deferred[Any]") -> BaseException:
    try:
        await d
    except BaseException as e:
        return e
    raise AssertionError("it succeeded")


# -- TLS: what is refused, and how it says so ----------------------------------------------------


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_a_wrong_ca_is_refused_naming_the_endpoint_and_the_cause(
    etcd_tls_server: EtcdServer, transport: str
) -> None:
    other = trustme.CA()
    async with client_of(
        etcd_tls_server.endpoint, ca_cert=other.cert_pem.bytes(), transport=transport
    ) as client:
        err = await failure_of(client.get(b"k"))
    assert isinstance(err, ConnectionFailed), repr(err)
    assert etcd_tls_server.endpoint in str(err) and "certificate verify failed" in str(err)


@pytest_twisted.ensureDeferred
async def test_a_wrong_host_name_is_refused(etcd_tls_server: EtcdServer) -> None:
    async with client_of(
        etcd_tls_server.endpoint, ca_cert=etcd_tls_server.ca_cert, server_name="etcd.elsewhere"
    ) as client:
        err = await failure_of(client.get(b"k"))
    assert isinstance(err, ConnectionFailed), repr(err)
    assert "certificate" in str(err).lower() or "hostname" in str(err).lower(), str(err)


@pytest_twisted.ensureDeferred
async def test_a_server_that_wants_a_client_certificate_refuses_one_without(
    mtls: EtcdServer,
) -> None:
    async with client_of(mtls.endpoint, ca_cert=mtls.ca_cert) as client:
        err = await failure_of(client.get(b"k"))
    assert isinstance(err, ConnectionFailed), repr(err)
    assert "certificate" in str(err).lower(), str(err)


@pytest_twisted.ensureDeferred
async def test_common_name_auth_with_a_client_certificate_and_no_password(
    mtls: EtcdServer,
) -> None:
    """etcd's --client-cert-auth with auth on: the certificate's CN (root) is the user."""
    async with client_of(
        mtls.endpoint, ca_cert=mtls.ca_cert, cert=mtls.client_cert, key=mtls.client_key
    ) as client:
        await client.put(b"cn/k", b"v")
        assert (await client.get(b"cn/k")).value == b"v"


@pytest_twisted.ensureDeferred
async def test_skipping_verification_connects_and_warns_once(
    etcd_tls_server: EtcdServer,
) -> None:
    events: List[Any] = []
    observer: Any = events.append
    globalLogPublisher.addObserver(observer)
    try:
        async with client_of(etcd_tls_server.endpoint, insecure_skip_verify=True) as client:
            await client.put(b"skip/k", b"v")
            await client.get(b"skip/k")
    finally:
        globalLogPublisher.removeObserver(observer)
    warnings = [e for e in events if "insecure_skip_verify" in str(e.get("log_format", ""))]
    assert len(warnings) == 1 and warnings[0]["log_level"].name == "warn"


def _tls_listener(cert: Any, protocols: Any = None) -> Any:
    pair = ssl.PrivateCertificate.loadPEM(
        cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
    )
    options = ssl.CertificateOptions(
        privateKey=pair.privateKey.original,
        certificate=pair.original,
        acceptableProtocols=protocols,
    )
    return reactor().listenSSL(0, Factory.forProtocol(Protocol), options, interface="127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_an_expired_certificate_is_refused() -> None:
    ca = trustme.CA()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    cert = ca.issue_cert("127.0.0.1", not_before=past, not_after=past + datetime.timedelta(1))
    port = _tls_listener(cert, [b"h2"])
    try:
        url = f"https://127.0.0.1:{port.getHost().port}"
        async with client_of(url, ca_cert=ca.cert_pem.bytes()) as client:
            err = await failure_of(client.get(b"k"))
        assert isinstance(err, ConnectionFailed) and "certificate" in str(err), str(err)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_tls_server_without_alpn_h2_gets_a_clear_error() -> None:
    ca = trustme.CA()
    port = _tls_listener(ca.issue_cert("127.0.0.1"), [b"http/1.1"])  # HTTP/1.1 only
    try:
        url = f"https://127.0.0.1:{port.getHost().port}"
        async with client_of(url, ca_cert=ca.cert_pem.bytes()) as client:
            err = await failure_of(client.put(b"k", b"v"))
        assert isinstance(err, ConnectionFailed), repr(err)
        assert "did not agree to HTTP/2" in str(err) and url in str(err)
        assert not err.maybe_sent  # nothing was sent: a write is not OutcomeUnknown
    finally:
        await port.stopListening()


# -- auth: logins that outlive token expiry -------------------------------------------------------


@pytest.mark.slow
@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_calls_across_token_expiry_log_in_once_per_expiry(
    secured: EtcdServer, transport: str
) -> None:
    """100 calls (gets, puts, txns, lease grants) in 4 rounds with idle gaps longer than the
    token's life: all succeed, one login per expiry (each round's 25 calls go at once)."""
    async with login(secured, transport=transport) as client:
        rounds = 4
        for r in range(rounds):
            if r:
                await sleep(TTL + 1.5)  # the token dies 2-3 s after its last use
            key = b"ttl/%s/%d" % (transport.encode(), r)
            calls = [client.put(key + b"/%d" % i, b"v") for i in range(7)]
            calls += [client.get(key + b"/0") for _ in range(6)]
            calls += [
                client.txn(compare=[CreateRevision(key + b"/x") == 0], success=[Put(key, b"t")])
                for _ in range(6)
            ]
            calls += [client.grant(30) for _ in range(6)]
            results = await defer.gatherResults(calls, consumeErrors=True)
            assert len(results) == 25
        assert logins(client) == rounds  # the first login, then one per expiry


@pytest_twisted.ensureDeferred
async def test_twenty_calls_that_meet_an_expired_token_cause_one_login(
    secured: EtcdServer,
) -> None:
    async with login(secured) as client:
        await client.put(b"burst/k", b"v")
        assert logins(client) == 1
        await sleep(TTL + 1.5)
        got = await defer.gatherResults([client.get(b"burst/k") for _ in range(20)])
        assert [r.value for r in got] == [b"v"] * 20
        assert logins(client) == 2


@pytest_twisted.ensureDeferred
async def test_a_lease_kept_alive_across_token_expiries_is_not_lost(
    secured: EtcdServer,
) -> None:
    async with login(secured) as client:
        lease = await client.grant(3)
        kept = client.keepalive(lease)
        await sleep(2 * (TTL + 1) + 1)  # two token lifetimes, more than the lease's TTL
        assert not kept.lost.called
        ttl = await client.time_to_live(lease)
        assert ttl.ttl > 0
        kept.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_a_wrong_password_fails_at_once(secured: EtcdServer, transport: str) -> None:
    async with client_of(
        secured.endpoint,
        ca_cert=secured.ca_cert,
        user="root",
        password="not-" + PASSWORD,
        transport=transport,
    ) as client:
        err = await failure_of(client.get(b"k"))
        assert isinstance(err, AuthFailed), repr(err)
        assert logins(client) == 1  # no loop
        assert PASSWORD not in str(err) and PASSWORD not in repr(client)


@pytest_twisted.ensureDeferred
async def test_a_user_without_write_permission_gets_permission_denied(
    secured: EtcdServer,
) -> None:
    async with login(secured) as admin:
        await admin.role_add("sec-reader")
        await admin.role_grant_permission("sec-reader", b"sec/", prefix=True, permission="read")
        await admin.user_add("sec-alice", password="alice-pw")
        await admin.user_grant_role("sec-alice", "sec-reader")
        await admin.put(b"sec/k", b"v")
    async with client_of(
        secured.endpoint, ca_cert=secured.ca_cert, user="sec-alice", password="alice-pw"
    ) as alice:
        assert (await alice.get(b"sec/k")).value == b"v"
        err = await failure_of(alice.put(b"sec/k", b"w"))
        assert isinstance(err, PermissionDenied), repr(err)
        assert logins(alice) == 1  # refused for its rights, not its token: no second login


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_a_watch_across_five_token_expiries_delivers_every_revision_once(
    secured: EtcdServer,
) -> None:
    """After each expiry the watch's connection is cut, so etcd sees it created again with an
    expired token (answered "permission denied"): the client logs in again and re-creates it,
    right after the last revision it had; a writer keeps writing throughout."""
    from txetcd.testing import TCPProxy

    proxy = TCPProxy("127.0.0.1", secured.client_port, reactor=reactor()).start()
    url = proxy.endpoint.replace("http://", "https://")
    seen: List[int] = []
    written: List[int] = []
    running = True
    async with (
        login(secured) as writer,
        client_of(url, ca_cert=secured.ca_cert, user="root", password=PASSWORD) as watcher,
    ):

        async def write() -> None:
            i = 0
            while running:
                written.append((await writer.put(b"wx/k", b"%d" % i)).header.revision)
                i += 1
                await sleep(0.2)

        watch = watcher.watch(b"wx/", prefix=True, callback=lambda b: seen.append(b.revision))
        await watch.created
        writing = defer.ensureDeferred(write())
        try:
            for _ in range(5):
                await sleep(TTL + 1.5)  # the watcher's token is dead by now
                proxy.reset()  # the watch must be created again, with a fresh login
            await sleep(1.0)
        finally:
            running = False
            await writing
        last = written[-1]
        for _ in range(100):
            if seen and seen[-1] >= last:
                break
            await sleep(0.05)
        assert seen == [r for r in written if r >= seen[0]] and seen[-1] == last
        assert seen[0] <= written[1]  # nothing missed at the start either
        assert logins(watcher) >= 2 and not watch.done.called
    proxy.stop()
