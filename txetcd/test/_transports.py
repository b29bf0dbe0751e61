"""An ``etcd_client`` fixture for both transports, for the suites that must pass on each.

Import it into a test module (``from txetcd.test._transports import etcd_client``) to run that
module's tests once over gRPC and once over the JSON gateway.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest_twisted

from txetcd import Client
from txetcd.testing import EtcdServer

TRANSPORTS = ["grpc", "gateway"]


@pytest_twisted.async_yield_fixture(params=TRANSPORTS)
async def etcd_client(request: Any, etcd_server: EtcdServer) -> AsyncIterator[Client]:
    """A client of ``etcd_server`` over each transport in turn; closed after the test."""
    from twisted.internet import reactor

    client = Client(etcd_server.endpoint, reactor=reactor, timeout=10.0, transport=request.param)
    try:
        yield client
    finally:
        await client.close()
