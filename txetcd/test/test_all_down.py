"""Every member down (issue 20): calls fail typed, at once or within their deadline, naming
each endpoint and what went wrong with it; and the client comes back by itself as members
return.

Silent endpoints (connections that never complete) are covered on a task.Clock in
test_partition_clock.py; here the members' processes are really gone (connections refused).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client, ConnectionFailed
from txetcd.test.helpers import reactor, settle
from txetcd.testing import EtcdCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    c = EtcdCluster(3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_every_member_down_then_back(cluster: EtcdCluster, transport: Any) -> None:
    r = reactor()
    client = Client(cluster.endpoints, reactor=r, transport=transport, timeout=10.0)
    key = b"down/%s" % transport.encode()
    try:
        await client.put(key, b"before")
        for index in range(3):
            cluster.kill(index)
        started = r.seconds()
        # (the read first: once it failed, the client knows the connection is gone, so the
        # write is not sent on it, where its outcome would be unknown)
        got = (await settle(client.get(key)))[0]
        put = (await settle(client.put(key, b"during")))[0]
        for err in (got, put):
            assert isinstance(err, ConnectionFailed), err
            for url in cluster.endpoints:
                assert url in str(err), (url, str(err))
            assert "refused" in str(err).lower()
        assert not put.maybe_sent  # nothing could be sent: the write is known not applied
        # refused connections are no reason to wait for the deadline
        assert r.seconds() - started < client.timeout

        # members back (a quorum: etcd serves nothing before it has one): the same client
        # goes on, although every endpoint failed and backs off
        await defer.gatherResults([cluster.start_member_async(i, r) for i in (0, 1)])
        await client.put(key, b"after")
        value = await client.get(key)
        assert value is not None and value.value == b"after"
    finally:
        await client.close()
        down = [i for i in range(3) if not cluster.members[i].running]
        await defer.gatherResults([cluster.start_member_async(i, r) for i in down])
