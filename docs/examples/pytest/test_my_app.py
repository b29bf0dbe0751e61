"""Tests of your own code against a real etcd, with txetcd's pytest fixtures.

Run: python -m pytest docs/examples/pytest
"""

import pytest_twisted

from txetcd import Client, CreateRevision, Put


async def claim(client, key, owner):
    """The code under test: take key for owner unless someone has it already."""
    result = await client.txn([CreateRevision(key) == 0], [Put(key, owner)])
    return result.succeeded


@pytest_twisted.ensureDeferred
async def test_first_claim_wins(etcd_client, etcd_prefix):
    key = etcd_prefix + b"leader"  # b"test/test_first_claim_wins/leader"
    assert await claim(etcd_client, key, b"me")
    assert not await claim(etcd_client, key, b"you")
    assert (await etcd_client.get(key)).value == b"me"


@pytest_twisted.inlineCallbacks
def test_inline_callbacks_style(etcd_client, etcd_prefix):
    yield etcd_client.put(etcd_prefix + b"k", b"v")
    result = yield etcd_client.get(etcd_prefix + b"k")
    assert result.value == b"v"


@pytest_twisted.ensureDeferred
async def test_survives_an_etcd_restart(etcd_server_private):
    from twisted.internet import reactor

    server = etcd_server_private  # this test's own etcd: kill it at will
    client = Client(server.endpoint, reactor=reactor, timeout=5)
    try:
        await client.put(b"k", b"v")
        server.kill()  # SIGKILL; the data directory stays
        await server.start_async(reactor)  # same ports, same data; the reactor runs on
        assert (await client.get(b"k")).value == b"v"
    finally:
        await client.close()


def test_plain_sync_test_can_use_the_endpoint(etcd_server):
    assert etcd_server.endpoint.startswith("http://127.0.0.1:")
    assert etcd_server.running
