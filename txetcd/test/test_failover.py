"""A 3-member cluster whose leader is SIGKILLed under load, three times.

16 writers and 16 readers run throughout on one client given all three endpoints, and a watch
of the writers' prefix stays open. Each put writes a key of its own, so a put sent twice would
show as version 2. Afterwards: every acknowledged write is there, none was written twice, every
failed put failed typed (OutcomeUnknown for those that may have been applied), the watch saw
every revision exactly once, and operations came back soon after each kill.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any, Dict, List, Set

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client, EtcdError, OutcomeUnknown
from txetcd.test.helpers import reactor, sleep, within
from txetcd.testing import EtcdCluster

WRITERS = 16
READERS = 16
KILLS = 3


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
@pytest_twisted.ensureDeferred
async def test_leader_killed_under_load_loses_and_duplicates_nothing(transport: Any) -> None:
    r = reactor()
    cluster = EtcdCluster(3)
    cluster.start()
    client = Client(cluster.endpoints, reactor=r, timeout=10.0, transport=transport)
    watcher = Client(cluster.endpoints, reactor=r, timeout=10.0)
    acked: Dict[bytes, int] = {}  # key -> revision of its acknowledged put
    unknown: Set[bytes] = set()
    failures: List[BaseException] = []
    completions: List[float] = []  # when each read completed
    writes_done: List[float] = []  # when each acknowledged write completed
    counter = itertools.count()
    running = True
    try:
        start = (await client.put(b"fo/start", b"")).header.revision
        seen: List[int] = []
        watch = watcher.watch(
            b"fo/w/",
            prefix=True,
            start_revision=start + 1,
            callback=lambda b: seen.append(b.revision),
        )
        await watch.created

        async def writer() -> None:
            while running:
                key = b"fo/w/%08d" % next(counter)
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
                    await client.get(b"fo/start")
                except EtcdError as e:
                    failures.append(e)
                    await sleep(0.05)
                else:
                    completions.append(r.seconds())

        workers = [defer.ensureDeferred(writer()) for _ in range(WRITERS)]
        workers += [defer.ensureDeferred(reader()) for _ in range(READERS)]
        recoveries: List[float] = []
        for _ in range(KILLS):
            await sleep(1.0)
            leader = await cluster.leader_async(r)
            killed_at = r.seconds()
            cluster.kill(leader)
            await sleep(0.1)
            # recovery: the first write acknowledged after the kill (not an in-flight leftover),
            # while the old leader stays down; reads must come back too
            for _ in range(300):
                later = [t for t in writes_done if t > killed_at + 0.05]
                if later and any(t > killed_at + 0.05 for t in completions):
                    recoveries.append(min(later) - killed_at)
                    break
                await sleep(0.05)
            else:
                raise AssertionError("no write completed within 15 s of a leader kill")
            await sleep(1.0)
            await cluster.restart_member_async(leader, r)
        await sleep(1.0)
        running = False
        await within(defer.gatherResults(workers), 30)

        # every acknowledged write is there, once
        got = await client.get_prefix(b"fo/w/", timeout=30)
        versions = {kv.key: kv.version for kv in got}
        assert set(acked) <= set(versions), "an acknowledged write is missing"
        assert all(v == 1 for v in versions.values()), "a put was applied twice"
        strays = set(versions) - set(acked) - unknown
        assert not strays, f"keys nobody wrote: {sorted(strays)[:5]}; failures: {failures[:5]}"
        assert all(not isinstance(e, OutcomeUnknown) for e in failures)
        assert len(acked) > 100
        # the watch saw every revision of the prefix exactly once, in order
        last = max(kv.mod_revision for kv in got)
        await within(defer.ensureDeferred(_until(lambda: bool(seen) and seen[-1] >= last)), 30)
        revisions = sorted(kv.mod_revision for kv in got)
        delivered = [rev for rev in seen if rev <= last]
        assert delivered == revisions, (
            f"watch: {len(delivered)} delivered, {len(revisions)} written; missing "
            f"{sorted(set(revisions) - set(delivered))[:5]}, repeated "
            f"{[r for r in set(delivered) if delivered.count(r) > 1][:5]}"
        )
        print(
            f"\n{transport}: {len(acked)} acked, {len(unknown)} unknown, {len(failures)} typed "
            f"failures; recovery after each kill: {[round(x, 2) for x in recoveries]} s "
            f"(median {statistics.median(recoveries):.2f} s)"
        )
        # etcd's own election takes 1-2 s here (typically 1.5 s)
        assert max(recoveries) < 5.0, f"recoveries {recoveries}"
    finally:
        running = False
        await client.close()
        await watcher.close()
        cluster.stop()


async def _until(condition: Any) -> None:
    while not condition():
        await sleep(0.05)
