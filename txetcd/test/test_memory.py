"""MemoryEtcd on its own: time on a task.Clock (lease expiry, keepalive, progress), delivery
rules of its streams, its typed errors, closing, and the recipes of txetcd.concurrency on it.

What it shares with a real etcd is proven in test_contract.py; these are the parts only a fake
clock can show, in milliseconds.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import Deferred

from txetcd import (
    ClientClosed,
    LeaseExpired,
    Put,
    RevisionCompacted,
    Unimplemented,
    WatchBatch,
)
from txetcd.testing import MemoryEtcd


def result(d: "Deferred[Any]") -> Any:
    """The outcome of a Deferred that has fired (MemoryEtcd answers at once)."""
    out: List[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_lease_expires_on_the_clock_in_one_revision(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    clock = memory_etcd.clock
    lease = result(client.grant(5))
    result(client.put("a", "1", lease_id=lease.id))
    result(client.put("b", "2", lease_id=lease.id))
    seen: List[WatchBatch] = []
    client.watch_prefix("", callback=seen.append)
    before = memory_etcd.revision
    clock.advance(4.999)
    assert result(client.get_prefix("")).count == 2
    assert result(client.time_to_live(lease.id)).ttl == 0
    clock.advance(0.001)
    assert result(client.get_prefix("")).count == 0
    assert memory_etcd.revision == before + 1
    assert [(b.revision, [e.type.name for e in b.events]) for b in seen] == [
        (before + 1, ["DELETE", "DELETE"])
    ]
    assert result(client.time_to_live(lease.id)).ttl == -1
    result(client.close())
    assert clock.getDelayedCalls() == []


def test_keepalive_once_restarts_the_countdown(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    clock = memory_etcd.clock
    lease = result(client.grant(10))
    result(client.put("k", "v", lease_id=lease.id))
    clock.advance(8)
    assert result(client.keepalive_once(lease.id)).ttl == 10
    clock.advance(9)
    assert result(client.get("k")).value == b"v"
    assert result(client.time_to_live(lease.id)).ttl == 1
    clock.advance(1)
    assert result(client.get("k")).kvs == ()
    with pytest.raises(LeaseExpired):
        result(client.keepalive_once(lease.id))


def test_client_keepalive_loop_keeps_a_lease_on_the_same_clock(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    clock = memory_etcd.clock
    lease = result(client.grant(6))
    result(client.put("k", "v", lease_id=lease.id))
    kept = client.keepalive(lease.id, ttl=6)
    for _ in range(100):  # ten minutes, a second at a time
        clock.advance(1)
    assert result(client.get("k")).value == b"v"
    kept.stop()
    clock.advance(6)
    assert result(client.get("k")).kvs == ()
    result(client.close())
    memory_etcd.close()
    assert clock.getDelayedCalls() == []


def test_progress_notifications_on_idle_watches() -> None:
    memory = MemoryEtcd(progress_notify_interval=5)
    client = memory.client()
    watch = client.watch("quiet", progress_notify=True)
    plain = client.watch("quiet")
    created = result(watch.created)
    result(client.put("elsewhere", "x"))
    assert watch.revision == created
    memory.clock.advance(5)
    assert watch.revision == memory.revision  # told that nothing was missed
    assert plain.revision == created
    client.request_progress()
    assert plain.revision == memory.revision
    watch.cancel()
    plain.cancel()
    memory.clock.advance(5)  # no watch asks any more: the timer stops
    assert memory.clock.getDelayedCalls() == []


def test_errors_are_translated_from_etcd_status(memory_client: Any) -> None:
    rev = result(memory_client.put("k", "1")).header.revision
    result(memory_client.put("k", "2"))
    result(memory_client.compact(rev + 1))
    with pytest.raises(RevisionCompacted) as caught:
        result(memory_client.get("k", revision=rev))
    assert (caught.value.code, caught.value.message) == (
        11,
        "etcdserver: mvcc: required revision has been compacted",
    )
    with pytest.raises(Unimplemented):
        result(memory_client.member_list())


def test_stream_delivery_is_never_reentrant(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    order: List[str] = []

    def first(batch: WatchBatch) -> None:
        order.append(f"first {batch.events[0].key.decode()}")
        if batch.events[0].key == b"a":
            result(client.put("b", "from a callback"))  # answered at once...
            order.append("put b answered")

    client.watch_prefix("", callback=first)
    result(client.put("a", "1"))
    # ...while the watch event of b waits until the callback of a has returned
    assert order == ["first a", "put b answered", "first b"]


def test_a_slow_consumer_pauses_the_stream_and_loses_nothing(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    busy: List[Deferred[None]] = []
    got: List[int] = []

    def slow(batch: WatchBatch) -> "Deferred[None]":
        got.append(batch.revision)
        d: Deferred[None] = Deferred()
        busy.append(d)
        return d

    watch = client.watch_prefix("", callback=slow, max_backlog=1)
    revisions = [result(client.put(f"k{i}", "v")).header.revision for i in range(6)]
    assert watch._stream is not None and watch._stream.grpc.paused
    while busy:
        busy.pop(0).callback(None)
        memory_etcd.clock.advance(0)  # a resumed stream delivers from the next turn
    assert got == revisions


def test_closed_client(memory_etcd: MemoryEtcd) -> None:
    client = memory_etcd.client()
    watch = client.watch("k")
    result(client.close())
    assert result(watch.done) is None
    with pytest.raises(ClientClosed):
        result(client.get("k"))
    other = memory_etcd.client()  # another client of the same etcd is not affected
    assert result(other.put("k", "v")).header.revision == 2


def test_clients_share_one_store_and_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        memory = MemoryEtcd()
        one, two = memory.client(), memory.client()
        result(one.put("k", "v"))
        assert result(two.get("k")).value == b"v"
        ids.append(result(one.grant(30)).id)
        memory.close()
    assert ids[0] == ids[1] > 0


def test_network_options_refused() -> None:
    with pytest.raises(TypeError, match="endpoints"):
        MemoryEtcd().client(endpoints=["http://127.0.0.1:2379"])
    with pytest.raises(ValueError):
        MemoryEtcd(progress_notify_interval=0)


def test_lock_and_election_recipes(memory_etcd: MemoryEtcd) -> None:
    concurrency = pytest.importorskip("txetcd.concurrency")
    client = memory_etcd.client()
    s1 = concurrency.Session(client, ttl=10)
    s2 = concurrency.Session(client, ttl=10)
    first = result(concurrency.Lock(s1, "job").acquire())
    assert result(concurrency.Lock(s2, "job").try_acquire()) is False
    result(first.release())
    second = result(concurrency.Lock(s2, "job").acquire())
    result(second.release())
    e1 = concurrency.Election(s1, "leader")
    result(e1.campaign("one"))
    assert result(e1.leader()).value == b"one"
    result(e1.resign())


def test_a_write_from_a_watch_callback_loses_no_event_for_later_watches(
    memory_etcd: MemoryEtcd,
) -> None:
    # Every watch is given a revision before any consumer runs: a callback that writes (a
    # newer revision) while the others are still to be served must not make them skip it.
    client = memory_etcd.client()
    seen: List[Any] = []

    def writer(batch: WatchBatch) -> None:
        seen.append(("writer", batch.revision))
        if batch.revision == 2:
            client.put(b"other", b"x")

    client.watch(b"k", callback=writer)  # first on the stream: served first
    client.watch_prefix(b"", callback=lambda b: seen.append(("all", b.revision)))
    result(client.put(b"k", b"v"))
    assert seen == [("writer", 2), ("all", 2), ("all", 3)]


def test_a_write_is_answered_with_its_own_revision_while_a_watcher_writes(
    memory_etcd: MemoryEtcd,
) -> None:
    client = memory_etcd.client()
    client.watch(b"k", callback=lambda b: client.put(b"echo", b"%d" % b.revision))
    assert result(client.put(b"k", b"v")).header.revision == 2
    assert memory_etcd.revision == 3
    ok = result(client.txn(compare=[], success=[Put(b"k", b"w")]))
    assert ok.header.revision == 4 and memory_etcd.revision == 5
    lease = result(client.grant(10))
    result(client.put(b"k", b"x", lease_id=lease.id))  # 6, echoed at 7
    assert result(client.revoke(lease.id)).header.revision == 8
    assert memory_etcd.revision == 9


def test_contended_lock_hands_over_while_a_watcher_writes(memory_etcd: MemoryEtcd) -> None:
    # The waiter watches the holder's key; a watch created before it (an audit trail that
    # writes on each change of the lock's keys) is served first and writes at once.
    concurrency = pytest.importorskip("txetcd.concurrency")
    client = memory_etcd.client()
    client.watch_prefix(b"job/", callback=lambda b: client.put(b"audit", b"%d" % b.revision))
    holder = concurrency.Lock(concurrency.Session(client, ttl=10), "job")
    waiter = concurrency.Lock(concurrency.Session(client, ttl=10), "job")
    result(holder.acquire())
    acquired = waiter.acquire()
    assert not acquired.called
    result(holder.release())
    assert result(acquired) is waiter and waiter.locked
    result(waiter.release())
    assert result(client.get_prefix(b"job/")).count == 0


def test_a_lease_found_gone_by_its_refresh_is_not_refreshed_again(
    memory_etcd: MemoryEtcd,
) -> None:
    """An answer that comes within the send (as MemoryEtcd's do) saying the lease is gone drops
    it; the refresh timer must not be armed again for it afterwards."""
    client = memory_etcd.client()
    clock = memory_etcd.clock
    lease = result(client.grant(6))
    kept = client.keepalive(lease.id, ttl=6)
    lost: List[Any] = []
    kept.lost.addBoth(lost.append)
    result(client.revoke(lease.id))
    clock.advance(2)  # the next refresh is answered "gone": lost, and nothing more for it
    assert lost and isinstance(lost[0], LeaseExpired)
    assert clock.getDelayedCalls() == []  # no refresh timer left for the dropped lease
    result(client.close())
    memory_etcd.close()
