"""A member partitioned away from the client (issue 20): a 3-member cluster, the client's
endpoints each a :class:`~txetcd.testing.TCPProxy` in front of one member, and the proxy of the
member the client is pinned to black-holed (silence both ways; the member itself stays healthy
in its cluster).

Writers put keys of their own (a put applied twice would show as version 2), readers read, and
a watch of the writers' prefix runs on the same client. Afterwards: every acknowledged write is
there once, failed puts failed typed (OutcomeUnknown: they may have been applied), the watch saw
every revision exactly once, and calls moved to the other members.

How each transport notices the silence:

- gRPC: the connection's keepalive PING (``keepalive_interval=5, keepalive_timeout=1``: after
  5 to 10 s of silence a PING, unanswered 1 s later); the connection is dropped, the endpoint
  backs off, reads in flight are sent again elsewhere, writes in flight end OutcomeUnknown, the
  watch resumes from its next revision on the new connection.
- The JSON gateway (HTTP/1.1 has no PING): only by a call's deadline. The calls in flight end
  with Timeout (a read) or WriteTimeout (a write: OutcomeUnknown); the endpoint is then left, so
  later calls go to another member, and streams open to it (the watch) are ended, so they resume
  elsewhere too.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator, List, Set

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client, EtcdError, OutcomeUnknown, Timeout
from txetcd.test.helpers import reactor, sleep, until, within
from txetcd.testing import EtcdCluster, TCPProxy

WRITERS = 4
READERS = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    c = EtcdCluster(3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def pinned(client: Client) -> str:
    """The URL of the endpoint the client sends to now."""
    channel: Any = client._channel
    if hasattr(channel, "connection"):  # gRPC: the current connection's endpoint
        assert channel.connection is not None
        return str(channel.connection.endpoint.url)
    return str(channel._endpoint().url)  # the gateway: the endpoint in use


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_pinned_member_blackholed(cluster: EtcdCluster, transport: Any) -> None:
    r = reactor()
    proxies = [TCPProxy("127.0.0.1", m.client_port, reactor=r).start() for m in cluster.members]
    # gRPC: calls have time to outlast the PING's detection (<= 2 * 5 + 1 s); the gateway
    # notices only by a call's deadline, so a short one
    timeout = 20.0 if transport == "grpc" else 3.0
    client = Client(
        [p.endpoint for p in proxies],
        reactor=r,
        transport=transport,
        timeout=timeout,
        keepalive_interval=5,
        keepalive_timeout=1,
    )
    prefix = b"part/%s/" % transport.encode()
    acked: Dict[bytes, int] = {}
    unknown: Set[bytes] = set()
    failures: List[BaseException] = []
    reads_done: List[float] = []
    writes_done: List[float] = []
    counter = itertools.count()
    running = True
    try:
        start = (await client.put(prefix + b"start", b"")).header.revision
        seen: List[int] = []
        watch = client.watch(
            prefix + b"w/",
            prefix=True,
            start_revision=start + 1,
            callback=lambda b: seen.extend(e.kv.mod_revision for e in b.events),
        )
        await within(watch.created, 10)
        await client.get(prefix + b"start")
        url = pinned(client)
        victim = next(p for p in proxies if p.endpoint == url)

        async def writer() -> None:
            while running:
                key = prefix + b"w/%08d" % next(counter)
                try:
                    put = await client.put(key, b"v")
                except OutcomeUnknown:
                    unknown.add(key)
                except EtcdError as e:
                    failures.append(e)
                    await sleep(0.05)
                else:
                    acked[key] = put.header.revision
                    writes_done.append(r.seconds())

        async def reader() -> None:
            while running:
                try:
                    await client.get(prefix + b"start")
                except EtcdError as e:
                    failures.append(e)
                    await sleep(0.05)
                else:
                    reads_done.append(r.seconds())

        workers = [defer.ensureDeferred(writer()) for _ in range(WRITERS)]
        workers += [defer.ensureDeferred(reader()) for _ in range(READERS)]
        await sleep(0.5)
        assert writes_done and reads_done
        cut_at = r.seconds()
        victim.blackhole()
        # nothing comes back from the black-holed member: an answer after the cut (and after
        # what was already on its way through the proxy) came from another one
        await sleep(0.2)
        cut_at += 0.2
        await until(
            lambda: any(t > cut_at for t in writes_done) and any(t > cut_at for t in reads_done),
            timeout=3 * timeout,
            what="calls on another member after the partition",
        )
        moved = min(t for t in writes_done if t > cut_at) - cut_at
        assert pinned(client) != victim.endpoint
        await sleep(1.0)  # calls keep working there
        running = False
        await within(defer.gatherResults(workers), 2 * timeout)

        got = await client.get_prefix(prefix + b"w/")
        versions = {kv.key: kv.version for kv in got}
        assert set(acked) <= set(versions), "an acknowledged write is missing"
        assert all(v == 1 for v in versions.values()), "a put was applied twice"
        assert set(versions) <= set(acked) | unknown, "a key nobody wrote"
        # the watch delivered every revision of the prefix once, in order (across the move)
        last = max(kv.mod_revision for kv in got)
        await until(lambda: bool(seen) and seen[-1] >= last, timeout=15, what="the watch")
        assert [rev for rev in seen if rev <= last] == sorted(kv.mod_revision for kv in got)
        if transport == "grpc":
            # the PING noticed it: no call ran into its deadline, reads were sent again
            assert failures == [], failures
            assert moved < 2 * 5 + 1 + 2
        else:
            # only deadlines tell: the reads then in flight timed out (typed), nothing else
            assert all(isinstance(e, Timeout) for e in failures), failures
            assert moved < 2 * timeout + 1
        print(
            f"\n{transport}: calls moved {moved:.2f} s after the cut; {len(acked)} acked, "
            f"{len(unknown)} unknown, {len(failures)} typed failures"
        )
    finally:
        running = False
        await client.close()
        for p in proxies:
            await p.stop()
