"""Test configuration: real etcd fixtures from txetcd.testing, pytest-twisted's reactor, and the
fixtures more than one test module uses (helpers that are not fixtures are in ``helpers.py``)."""

from __future__ import annotations

import gc
import re
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, cast

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher

from txetcd import Client
from txetcd.test.helpers import FakeClient, MakeV2Client, client_of, reactor
from txetcd.testing import EtcdServer

pytest_plugins = ["txetcd.testing.pytest_plugin"]


@pytest.fixture
def clock() -> task.Clock:
    """A fake clock for timing logic."""
    return task.Clock()


@pytest.fixture
def fake(clock: task.Clock) -> FakeClient:
    """The lease API on a fake channel and ``clock``: the test answers its calls."""
    return FakeClient(clock)


@pytest.fixture
def no_logged_errors() -> Iterator[List[Dict[str, Any]]]:
    """Fail the test if Twisted logs an error, e.g. an unhandled error in a Deferred."""
    events: List[Dict[str, Any]] = []

    def observe(event: Dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            events.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        yield events
        gc.collect()  # unhandled errors in Deferreds are logged when collected
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not events, [formatEvent(e) for e in events]


# -- v3 -----------------------------------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def lease_client(etcd_server: EtcdServer) -> AsyncIterator[Client]:
    """A client of ``etcd_server`` that must leave no stream, connection or timer behind."""
    async with client_of(etcd_server.endpoint, clean=True) as client:
        yield client


@pytest_twisted.async_yield_fixture
async def other_client(etcd_server: EtcdServer) -> AsyncIterator[Client]:
    """A second such client (e.g. to revoke a lease behind the first one's back)."""
    async with client_of(etcd_server.endpoint, clean=True) as client:
        yield client


# -- v2 -----------------------------------------------------------------------------------------


@pytest.fixture
def prefix(request: Any) -> str:
    """A v2 key prefix of this test's own: ``/t/<test name>-<8 hex digits>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    return f"/t/{name}-{uuid.uuid4().hex[:8]}"


@pytest_twisted.async_yield_fixture
async def make_v2_client(etcd_v2_server: EtcdServer, prefix: str) -> AsyncIterator[MakeV2Client]:
    """Makes ``txetcd.v2.Client`` s of ``etcd_v2_server``, closed after the test.

    ``make_v2_client(port=None, http_kind="pool", **options)``: ``port`` instead of the server's
    (a proxy's, say); ``http_kind="treq"`` for treq on a pool that does not retry by itself;
    ``read_timeout`` is 10 s and ``lock_prefix`` is under ``prefix`` unless given.
    """
    from txetcd import v2

    made: List[v2.Client] = []

    def make(port: Optional[int] = None, http_kind: str = "pool", **options: Any) -> v2.Client:
        options.setdefault("reactor", reactor())
        options.setdefault("read_timeout", 10.0)
        options.setdefault("lock_prefix", prefix + "/locks")
        if http_kind == "treq":
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(options["reactor"])
            pool.retryAutomatically = False
            options["http_client"] = HTTPClient(Agent(options["reactor"], pool=pool))
        client = v2.Client("127.0.0.1", port or etcd_v2_server.client_port, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
