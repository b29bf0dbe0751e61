"""The JSON gateway transport: treq as a way in, error translation, the retry rule.

The KV, txn and round-trip suites run on this transport too (see ``helpers.etcd_client``).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import (
    Client,
    FailedPrecondition,
    LeaseExists,
    RevisionCompacted,
    TooManyOperations,
    Unimplemented,
)
from txetcd._gateway.wire import gateway_error
from txetcd._http1.interface import HTTPResponse
from txetcd._methods import LEASE_GRANT, RANGE, TXN
from txetcd.test.helpers import client_of, reactor, sleep, until
from txetcd.testing import EtcdServer, TCPProxy


@pytest_twisted.ensureDeferred
async def test_any_treq_client_or_agent(etcd_server: EtcdServer) -> None:
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor(), persistent=True)
    pool.retryAutomatically = False  # no hidden retries
    for given in (HTTPClient(Agent(reactor(), pool=pool)), Agent(reactor(), pool=pool)):
        async with client_of(etcd_server.endpoint, transport="gateway", http_client=given) as c:
            await c.put(b"gw/treq", b"via treq")
            assert (await c.get(b"gw/treq")).value == b"via treq"
    await pool.closeCachedConnections()


@pytest_twisted.ensureDeferred
async def test_a_pool_that_retries_by_itself_is_refused(etcd_server: EtcdServer) -> None:
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor(), persistent=True)  # retryAutomatically is on
    with pytest.raises(ValueError, match="retr"):
        Client(
            etcd_server.endpoint,
            reactor=reactor(),
            transport="gateway",
            http_client=HTTPClient(Agent(reactor(), pool=pool)),
        )


@pytest_twisted.ensureDeferred
async def test_stub_treq_agent_in_memory() -> None:
    """No sockets: treq's testing agent in front of an in-memory gateway stand-in."""
    import json

    from treq.client import HTTPClient
    from treq.testing import RequestTraversalAgent, _SynchronousProducer
    from twisted.web.resource import Resource

    class Range(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            body = json.loads(request.content.read())
            assert body == {"key": "c3R1Yg=="}  # base64 of b"stub", snake_case, defaults left out
            return json.dumps(
                {
                    "header": {"revision": "7", "cluster_id": "1", "member_id": "2"},
                    "kvs": [
                        {
                            "key": "c3R1Yg==",
                            "value": "aW4gbWVtb3J5",
                            "mod_revision": "7",
                            "create_revision": "7",
                            "version": "1",
                        }
                    ],
                    "count": "1",
                }
            ).encode()

    agent = RequestTraversalAgent(Range())  # what StubTreq runs on
    http = HTTPClient(agent, data_to_body_producer=_SynchronousProducer)
    client = Client(
        "http://etcd.invalid:2379", reactor=reactor(), transport="gateway", http_client=http
    )
    d = client.get(b"stub")
    for _ in range(5):
        agent.flush()
    result = await d
    assert result.value == b"in memory" and result.header.revision == 7 and result.count == 1
    await client.close()


@pytest_twisted.ensureDeferred
async def test_typed_errors_from_the_gateway(etcd_server: EtcdServer) -> None:
    client = Client(etcd_server.endpoint, reactor=reactor(), transport="gateway")
    try:
        lease = await client.grant(30, id=424242)
        with pytest.raises(LeaseExists):
            await client.grant(30, id=lease.id)
        from txetcd import Put

        with pytest.raises(TooManyOperations):
            await client.txn([], [Put(b"gw/%d" % i, b"x") for i in range(129)])
        await client.revoke(lease.id)
    finally:
        await client.close()


def test_errors_go_by_grpc_code_not_http_status() -> None:
    compacted = (
        b'{"error":"etcdserver: mvcc: required revision has been compacted","code":11,'
        b'"message":"etcdserver: mvcc: required revision has been compacted"}'
    )
    assert isinstance(
        gateway_error(HTTPResponse(400, {}, compacted), mutation=False), RevisionCompacted
    )
    # code 9 is HTTP 412 on etcd 3.4 and 400 on 3.5: the same error either way
    body = (
        b'{"error":"etcdserver: lease already exists",'
        b'"message":"etcdserver: lease already exists","code":9}'
    )
    for status in (400, 412):
        err = gateway_error(HTTPResponse(status, {}, body), mutation=True)
        assert isinstance(err, LeaseExists) and isinstance(err, FailedPrecondition)
    assert isinstance(
        gateway_error(HTTPResponse(404, {}, b"Not Found\n"), mutation=False), Unimplemented
    )
    assert (RANGE.gateway, TXN.gateway, LEASE_GRANT.gateway) == (
        "/v3/kv/range",
        "/v3/kv/txn",
        "/v3/lease/grant",
    )


@pytest_twisted.ensureDeferred
async def test_reads_retried_after_a_reset(etcd_server: EtcdServer) -> None:
    proxy = TCPProxy("127.0.0.1", etcd_server.client_port, reactor=reactor()).start()
    client = Client(proxy.endpoint, reactor=reactor(), transport="gateway")
    try:
        await client.put(b"gw/reset", b"v")
        gets = [client.get(b"gw/reset") for _ in range(8)]
        proxy.reset()
        for d in gets:
            assert (await d).value == b"v"
        assert proxy.connections_total > 1
    finally:
        await client.close()
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_lease_kept_alive_over_the_gateway(etcd_server: EtcdServer) -> None:
    """The keepalive loop, unchanged, on gateway POSTs: alive for > 3x its TTL, lost on revoke."""

    from txetcd import LeaseExpired

    client = Client(etcd_server.endpoint, reactor=reactor(), transport="gateway")
    other = Client(etcd_server.endpoint, reactor=reactor())
    try:
        lease = await client.grant(2)
        assert (await client.keepalive_once(lease.id)).ttl == 2
        ka = client.keepalive(lease.id)
        await client.put(b"gwk/k", b"v", lease=lease.id)
        await sleep(6.5)
        assert (await client.get(b"gwk/k")).value == b"v"
        assert ka.active
        lost = ka.lost
        await other.revoke(lease.id)
        lost.addTimeout(5, reactor())
        assert isinstance(await lost, LeaseExpired)
    finally:
        await client.close()
        await other.close()


@pytest_twisted.ensureDeferred
async def test_cancelling_a_call_closes_its_request(etcd_server: EtcdServer) -> None:
    """A cancelled gateway call fails with CancelledError and its connection is closed (the
    answer is no longer wanted); the next call goes out on a new connection."""
    proxy = TCPProxy("127.0.0.1", etcd_server.client_port, reactor=reactor()).start()
    client = Client(proxy.endpoint, reactor=reactor(), transport="gateway")
    try:
        await client.put(b"gw/cancel", b"v")
        assert proxy.active_connections == 1
        proxy.blackhole()  # the next answer never comes
        d = client.get(b"gw/cancel")
        await sleep(0.05)
        assert not d.called
        d.cancel()
        with pytest.raises(defer.CancelledError):
            await d
        await until(lambda: proxy.active_connections == 0, what="the client's side to close")
        proxy.restore()
        assert (await client.get(b"gw/cancel")).value == b"v"
        assert proxy.connections_total == 2
    finally:
        await client.close()
        await proxy.stop()
