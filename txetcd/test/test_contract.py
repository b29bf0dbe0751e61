"""One contract for etcd's KV, txn, watch and lease behaviour, and for the lock and election
recipes on top, held by BOTH a real etcd 3.5 and
:class:`txetcd.testing.MemoryEtcd`: every test runs once per backend (``[etcd]``, ``[memory]``).

Only what the two must share is asserted: revisions relative to the test's own writes (a real
etcd shared by the session has other keys and revisions), keys under the test's own prefix.
Known differences are listed in docs/testing.rst and are not asserted here.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, List

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed

from txetcd import (
    Client,
    CreateRevision,
    Delete,
    DuplicateKey,
    EmptyKey,
    FutureRevision,
    Get,
    KeyNotFound,
    LeaseExists,
    LeaseExpired,
    LeaseId,
    LeaseNotFound,
    LeaseProvided,
    LeaseTTLTooLarge,
    ModRevision,
    Put,
    RevisionCompacted,
    TooManyOperations,
    Txn,
    Value,
    ValueProvided,
    Version,
    WatchBatch,
)
from txetcd._methods import PUT, RANGE
from txetcd._proto import rpc_pb2
from txetcd._transport import Method
from txetcd.testing import EtcdServer, MemoryEtcd


class Backend:
    """A client, a key prefix of the test's own, and a way to let time pass."""

    def __init__(self, client: Client, prefix: bytes, memory: "MemoryEtcd | None") -> None:
        self.client = client
        self.prefix = prefix
        self.memory = memory

    def k(self, name: str) -> bytes:
        return self.prefix + name.encode()

    def sleep(self, seconds: float) -> "Deferred[None]":
        if self.memory is not None:
            self.memory.clock.advance(seconds)
            return succeed(None)
        from twisted.internet import reactor

        return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture(params=["etcd", "memory"])
def kind(request: Any) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def be(kind: str, request: Any, etcd_prefix: bytes) -> AsyncIterator[Backend]:
    if kind == "memory":
        memory = MemoryEtcd()
        client = memory.client(timeout=10.0)
        try:
            yield Backend(client, etcd_prefix, memory)
        finally:
            await client.close()
            memory.close()
            assert memory.clock.getDelayedCalls() == []
        return
    from twisted.internet import reactor

    server: EtcdServer = request.getfixturevalue("etcd_server")
    client = Client(server.endpoint, reactor=reactor, timeout=10.0)
    try:
        yield Backend(client, etcd_prefix, None)
    finally:
        await client.delete_prefix(etcd_prefix)
        await client.close()


def _raw(be: Backend, method: Method, request: Any) -> "Deferred[Any]":
    """Send a request message as it is, through the client's transport."""
    return be.client._channel.unary(
        method, request, timeout=10.0, idempotent=False, decode=lambda resp: resp
    )


async def _fill(be: Backend) -> int:
    """r/a, r/b (written twice), r/c, r/d; returns the revision of the first write."""
    c = be.client
    first = (await c.put(be.k("r/a"), "val-a")).header.revision
    await c.put(be.k("r/b"), "val-b1")
    await c.put(be.k("r/c"), "val-c")
    await c.put(be.k("r/d"), "val-d")
    await c.put(be.k("r/b"), "val-b2")
    return first


# -- KV ----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_put_revisions_versions_prev_kv(be: Backend) -> None:
    c, key = be.client, be.k("x")
    r1 = (await c.put(key, "v1", prev_kv=True)).header.revision
    got = await c.get(key)
    assert got.kv is not None
    assert (got.kv.create_revision, got.kv.mod_revision, got.kv.version) == (r1, r1, 1)
    second = await c.put(key, "v2", prev_kv=True)
    assert second.header.revision == r1 + 1
    assert second.prev_kv is not None and second.prev_kv.value == b"v1"
    got = await c.get(key)
    assert got.kv is not None
    assert (got.kv.create_revision, got.kv.mod_revision, got.kv.version) == (r1, r1 + 1, 2)
    assert got.header.cluster_id and got.header.member_id and got.header.raft_term
    missing = await c.get(be.k("nope"))
    assert (missing.kvs, missing.count, missing.value) == ((), 0, None)
    await c.put(be.k("empty"), b"")
    assert (await c.get(be.k("empty"))).value == b""


@pytest_twisted.ensureDeferred
async def test_range_options(be: Backend) -> None:
    c, p = be.client, be.k("r/")
    first = await _fill(be)
    whole = await c.get_prefix(p)
    assert [kv.key for kv in whole] == [be.k(f"r/{x}") for x in "abcd"]
    page = await c.get_prefix(p, limit=2)
    assert (len(page.kvs), page.more, page.count) == (2, True, 4)
    counted = await c.get_prefix(p, count_only=True)
    assert (counted.kvs, counted.count) == ((), 4)
    keys = await c.get_prefix(p, keys_only=True)
    assert [kv.value for kv in keys] == [b""] * 4
    by_mod = await c.get_prefix(p, sort_order="descend", sort_target="mod", keys_only=True)
    assert [kv.key[-1:] for kv in by_mod] == [b"b", b"d", b"c", b"a"]
    target_only = await c.get_prefix(p, sort_target="mod")
    assert [kv.key[-1:] for kv in target_only] == [b"a", b"c", b"d", b"b"]
    by_value = await c.get_prefix(p, sort_order="descend", sort_target="value")
    assert [kv.key[-1:] for kv in by_value] == [b"d", b"c", b"b", b"a"]
    filtered = await c.get_prefix(p, min_mod_revision=first + 2)
    assert ([kv.key[-1:] for kv in filtered], filtered.count) == ([b"b", b"c", b"d"], 4)
    filtered = await c.get_prefix(p, max_create_revision=first + 1, limit=1)
    assert ([kv.key[-1:] for kv in filtered], filtered.more) == ([b"a"], True)
    filtered = await c.get_prefix(p, min_create_revision=first + 2, max_mod_revision=first + 3)
    assert [kv.key[-1:] for kv in filtered] == [b"c", b"d"]
    old = await c.get_prefix(p, revision=first + 1)
    assert [(kv.key[-1:], kv.value) for kv in old] == [(b"a", b"val-a"), (b"b", b"val-b1")]
    assert old.header.revision == first + 4  # the header tells the current revision
    span = await c.get_range(be.k("r/b"), be.k("r/d"))
    assert [kv.key[-1:] for kv in span] == [b"b", b"c"]
    onwards = await c.get_range(be.k("r/c"), b"\0")
    assert [kv.key for kv in onwards if kv.key.startswith(p)] == [be.k("r/c"), be.k("r/d")]
    assert (await c.get_range(be.k("r/d"), be.k("r/a"))).kvs == ()
    assert (await c.get_prefix(p, serializable=True)).count == 4
    with pytest.raises(FutureRevision):
        await c.get(p, revision=first + 1000)


@pytest_twisted.ensureDeferred
async def test_put_options_and_errors(be: Backend) -> None:
    c, key = be.client, be.k("o")
    lease = await c.grant(60)
    await c.put(key, "v1")
    await c.put(key, "v2", lease_id=lease.id)
    await c.put(key, b"", ignore_value=True)  # value kept, lease dropped
    got = await c.get(key)
    assert got.kv is not None and (got.kv.value, got.kv.lease, got.kv.version) == (b"v2", 0, 3)
    await c.put(key, "v3", lease_id=lease.id)
    await c.put(key, "v4", ignore_lease=True)
    got = await c.get(key)
    assert got.kv is not None and (got.kv.value, got.kv.lease) == (b"v4", lease.id)
    # the client refuses these itself: sent raw, the server's answers are held to the contract
    with pytest.raises(ValueProvided):
        await _raw(be, PUT, rpc_pb2.PutRequest(key=key, value=b"x", ignore_value=True))
    with pytest.raises(LeaseProvided):
        await _raw(be, PUT, rpc_pb2.PutRequest(key=key, ignore_lease=True, lease=lease.id))
    with pytest.raises(EmptyKey):
        await _raw(be, PUT, rpc_pb2.PutRequest(key=b"", value=b"x"))
    with pytest.raises(EmptyKey):
        await _raw(be, RANGE, rpc_pb2.RangeRequest(key=b""))
    with pytest.raises(KeyNotFound):
        await c.put(be.k("missing"), b"", ignore_value=True)
    with pytest.raises(KeyNotFound):
        await c.put(be.k("missing"), "x", ignore_lease=True)
    with pytest.raises(LeaseNotFound):
        await c.put(key, "x", lease_id=123456789)
    await c.revoke(lease.id)


@pytest_twisted.ensureDeferred
async def test_delete(be: Backend) -> None:
    c, p = be.client, be.k("r/")
    await _fill(be)
    gone = await c.delete_range(be.k("r/a"), be.k("r/c"), prev_kv=True)
    assert gone.deleted == 2
    assert [(kv.key[-1:], kv.value) for kv in gone.prev_kvs] == [
        (b"a", b"val-a"),
        (b"b", b"val-b2"),
    ]
    nothing = await c.delete(be.k("r/a"))
    assert (nothing.deleted, nothing.header.revision) == (0, gone.header.revision)
    rest = await c.delete_prefix(p)
    assert rest.deleted == 2 and rest.header.revision == gone.header.revision + 1
    assert (await c.get_prefix(p)).count == 0


# -- txn ---------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_txn_compares(be: Backend) -> None:
    c = be.client
    a, b, missing = be.k("t/a"), be.k("t/b"), be.k("t/missing")
    await c.put(a, "10")
    rev = (await c.put(a, "11")).header.revision
    await c.put(b, "20")

    async def holds(*compare: Any) -> bool:
        return (await c.txn(compare, [], [])).succeeded

    assert await holds(Version(a) > 1)
    assert not await holds(ModRevision(a) < rev)
    assert await holds(ModRevision(a) == rev)
    assert await holds(Value(a) != "10")
    assert await holds(Value(a) == "11")
    assert await holds(LeaseId(a) == 0)
    assert await holds(Version(be.k("t/"), prefix=True) > 0)
    assert not await holds(ModRevision(be.k("t/"), prefix=True) < rev)
    assert not await holds(Version(be.k("zz/"), prefix=True) > 5)
    assert await holds(Version(be.k("zz/"), prefix=True) == 0)
    assert await holds(Version(missing) == 0)
    assert await holds(CreateRevision(missing) == 0)
    assert not await holds(Value(missing) == "")
    assert not await holds(Value(missing) != "x")


@pytest_twisted.ensureDeferred
async def test_txn_branches_nested_and_sub_headers(be: Backend) -> None:
    c, a, b = be.client, be.k("t/a"), be.k("t/b")
    await c.put(a, "10")
    await c.put(b, "20")
    swapped: Any = await c.txn([Value(a) == "10"], [Put(a, "11", prev_kv=True)], [Get(a)])
    assert swapped.succeeded
    rev = swapped.header.revision
    assert swapped[0].header.revision == rev and swapped[0].prev_kv.value == b"10"
    again: Any = await c.txn([Value(a) == "10"], [Put(a, "12")], [Get(a)])
    assert not again.succeeded and again.header.revision == rev
    assert again[0].value == b"11"
    nested: Any = await c.txn(
        [Version(a) > 0],
        [
            Txn([Value(b) == "20"], [Put(b, "21"), Get(b)], [Delete(b)]),
            Get(a, keys_only=True),
        ],
        [],
    )
    inner = nested[0]
    assert nested.succeeded and inner.succeeded
    assert inner[0].header.revision == rev + 1 and inner[1].value == b"21"
    assert nested[1].kv.value == b"" and nested.header.revision == rev + 1
    reads_own: Any = await c.txn([], [Get(a), Put(a, "13"), Get(a)], [])
    assert [reads_own[0].value, reads_own[2].value] == [b"11", b"13"]
    empty = await c.txn([], [], [])
    assert empty.succeeded and empty.header.revision == rev + 2
    many: Any = await c.txn([], [Delete(a), Delete(b)], [])
    assert many[0].deleted == 1 and many.header.revision == rev + 3


@pytest_twisted.ensureDeferred
async def test_txn_errors(be: Backend) -> None:
    c, a = be.client, be.k("t/a")
    with pytest.raises(DuplicateKey):
        await c.txn([], [Put(a, "1"), Put(a, "2")], [])
    with pytest.raises(DuplicateKey):
        await c.txn([], [Delete(a), Put(a, "2")], [])
    with pytest.raises(DuplicateKey):
        await c.txn([], [Put(a, "1"), Txn([], [Put(a, "2")], [])], [])
    await c.txn([], [Txn([], [Put(a, "1")], [Put(a, "2")])], [])  # one branch runs
    with pytest.raises(TooManyOperations):
        await c.txn([], [Put(be.k(f"t/{i}"), "x") for i in range(129)], [])
    assert (await c.txn([], [Put(be.k(f"t/{i}"), "x") for i in range(128)], [])).succeeded
    with pytest.raises(KeyNotFound):  # a failed op leaves nothing behind
        await c.txn([], [Put(be.k("t/z"), "1"), Put(be.k("t/none"), b"", ignore_value=True)], [])
    assert (await c.get(be.k("t/z"))).kvs == ()


# -- compaction --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_compaction(be: Backend) -> None:
    c, key = be.client, be.k("c")
    r1 = (await c.put(key, "1")).header.revision
    r2 = (await c.put(key, "2")).header.revision
    r3 = (await c.put(key, "3")).header.revision
    await c.compact(r2)
    assert (await c.get(key, revision=r2)).value == b"2"
    assert (await c.get(key)).value == b"3"
    with pytest.raises(RevisionCompacted):
        await c.get(key, revision=r1)
    with pytest.raises(RevisionCompacted):
        await c.compact(r2)
    with pytest.raises(FutureRevision):
        await c.compact(r3 + 1000)
    watch = c.watch(key, start_revision=r1)
    with pytest.raises(RevisionCompacted) as caught:
        await watch.done
    assert caught.value.compact_revision == r2


# -- watch -------------------------------------------------------------------------------------


async def _settle(be: Backend, batches: List[WatchBatch], n: int) -> None:
    for _ in range(200):
        if len(batches) >= n:
            return
        await be.sleep(0.01)


@pytest_twisted.ensureDeferred
async def test_watch_events(be: Backend) -> None:
    c, p = be.client, be.k("w/")
    plain: List[WatchBatch] = []
    with_prev: List[WatchBatch] = []
    deletes: List[WatchBatch] = []
    w1 = c.watch_prefix(p, callback=plain.append)
    w2 = c.watch_prefix(p, prev_kv=True, callback=with_prev.append)
    w3 = c.watch_prefix(p, filters=["noput"], callback=deletes.append)
    for w in (w1, w2, w3):
        await w.created
    r1 = (await c.put(be.k("w/x"), "one")).header.revision
    await c.put(be.k("w/x"), "two")
    await c.delete(be.k("w/x"))
    await c.txn([], [Put(be.k("w/y"), "1"), Put(be.k("w/z"), "2")], [])
    await c.put(be.k("other"), "not watched")
    await _settle(be, plain, 4)
    await _settle(be, with_prev, 4)
    await _settle(be, deletes, 1)
    assert [b.revision for b in plain] == [r1, r1 + 1, r1 + 2, r1 + 3]
    assert [len(b.events) for b in plain] == [1, 1, 1, 2]
    assert plain[2].events[0].type.name == "DELETE" and plain[2].events[0].kv.mod_revision == r1 + 2
    assert all(e.prev_kv is None for b in plain for e in b.events)
    assert with_prev[0].events[0].prev_kv is None
    prevs: List[Any] = [b.events[0].prev_kv for b in with_prev[1:3]]
    assert [kv.value for kv in prevs] == [b"one", b"two"]
    assert [b.revision for b in deletes] == [r1 + 2]
    for w in (w1, w2, w3):
        w.cancel()


@pytest_twisted.ensureDeferred
async def test_watch_history_and_key(be: Backend) -> None:
    c, key = be.client, be.k("h")
    r1 = (await c.put(key, "1")).header.revision
    await c.put(be.k("h2"), "not this key")
    await c.delete(key)
    seen: List[WatchBatch] = []
    w = c.watch(key, start_revision=r1, callback=seen.append)
    await w.created
    await _settle(be, seen, 2)
    events = [(e.type.name, e.kv.mod_revision) for b in seen for e in b.events]
    assert events == [("PUT", r1), ("DELETE", r1 + 2)]
    w.cancel()


# -- leases ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_lease_grant_ttl_keys_revoke(be: Backend) -> None:
    c = be.client
    lease = await c.grant(60)
    assert lease.ttl == 60
    assert (await c.grant(1)).ttl == 2  # raised to the minimum
    with pytest.raises(LeaseTTLTooLarge):
        await c.grant(10_000_000_000)
    chosen = 7_000_000 + (hash(be.prefix) % 1_000_000)
    await c.grant(30, lease_id=chosen)
    with pytest.raises(LeaseExists):
        await c.grant(30, lease_id=chosen)
    await c.put(be.k("l1"), "a", lease_id=lease.id)
    await c.put(be.k("l2"), "b", lease_id=lease.id)
    ttl = await c.time_to_live(lease.id, keys=True)
    assert ttl.granted_ttl == 60 and 55 <= ttl.ttl <= 60
    assert sorted(ttl.keys) == [be.k("l1"), be.k("l2")]
    assert {lease.id, chosen} <= set((await c.leases()).leases)
    seen: List[WatchBatch] = []
    w = c.watch_prefix(be.k("l"), callback=seen.append)
    await w.created
    revoked = await c.revoke(lease.id)
    await _settle(be, seen, 1)
    assert [len(b.events) for b in seen] == [2]  # both keys, one revision
    assert seen[0].revision == revoked.header.revision
    assert (await c.get_prefix(be.k("l"))).count == 0
    assert (await c.time_to_live(lease.id)).ttl == -1
    with pytest.raises(LeaseNotFound):
        await c.revoke(lease.id)
    with pytest.raises(LeaseExpired):
        await c.keepalive_once(lease.id)
    refreshed = await c.keepalive_once(chosen)
    assert refreshed.ttl == 30
    await c.revoke(chosen)
    w.cancel()


@pytest_twisted.ensureDeferred
async def test_lease_expiry_deletes_keys_and_notifies(be: Backend) -> None:
    c = be.client
    lease = await c.grant(2)
    await c.put(be.k("e1"), "a", lease_id=lease.id)
    await c.put(be.k("e2"), "b", lease_id=lease.id)
    seen: List[WatchBatch] = []
    w = c.watch_prefix(be.k("e"), callback=seen.append)
    await w.created
    for _ in range(100):
        if seen:
            break
        await be.sleep(0.1)
    assert [len(b.events) for b in seen] == [2]
    assert all(e.type.name == "DELETE" for e in seen[0].events)
    assert (await c.get_prefix(be.k("e"))).count == 0
    assert (await c.time_to_live(lease.id)).ttl == -1
    w.cancel()


# -- lock and election (txetcd.concurrency on each backend) ------------------------------------


async def _until(be: Backend, condition: Any, what: str) -> None:
    for _ in range(300):
        if condition():
            return
        await be.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_twisted.ensureDeferred
async def test_lock_excludes_hands_over_in_order_and_fences(be: Backend) -> None:
    from txetcd.concurrency import Lock, Session

    c = be.client
    a, b, w = Session(c, ttl=10), Session(c, ttl=10), Session(c, ttl=10)
    for s in (a, b, w):
        await s.ready
    pending: List[Any] = []  # the waiters, so that a failed assertion leaves none unhandled
    try:
        name = be.k("lock")
        first, second, third = Lock(a, name), Lock(b, name), Lock(w, name)
        await first.acquire()

        async def keys_made(count: int) -> Any:
            for _ in range(300):  # a waiter's key is made once its watch is set up
                keys = await c.get_prefix(name + b"/")
                if keys.count == count:
                    return keys
                await be.sleep(0.01)
            raise AssertionError(f"{count} keys expected, {keys.count} found")

        # One waiter after the other: two txns in flight at once may be applied in either order.
        waiting = second.acquire()
        pending.append(waiting)
        await keys_made(2)
        withdrawn = third.acquire()
        pending.append(withdrawn)
        keys = await keys_made(3)  # one key per contender, ordered by create revision
        queue = sorted(keys, key=lambda kv: kv.create_revision)
        assert [kv.lease for kv in queue] == [a.lease_id, b.lease_id, w.lease_id]
        await be.sleep(0.05)
        assert not waiting.called and not withdrawn.called
        old_fence = first.is_owner()
        ok = await c.txn([old_fence], [Put(be.k("guarded"), "first")])
        assert ok.succeeded
        withdrawn.cancel()  # a cancelled waiter leaves no key behind
        await _until(be, lambda: withdrawn.called, "the cancel")
        withdrawn.addErrback(lambda _: None)
        await first.release()
        await _until(be, lambda: waiting.called, "the hand-over")
        assert second.locked and not first.locked
        stale = await c.txn([old_fence], [Put(be.k("guarded"), "stale")])
        fresh = await c.txn([second.is_owner()], [Put(be.k("guarded"), "second")])
        assert not stale.succeeded and fresh.succeeded
        assert (await c.get(be.k("guarded"))).value == b"second"
        await second.release()
        assert (await c.get_prefix(name + b"/")).count == 0
    finally:
        for d in pending:
            d.addErrback(lambda _: None)
            d.cancel()
        for s in (a, b, w):
            await s.close()


@pytest_twisted.ensureDeferred
async def test_election_campaign_proclaim_observe_resign(be: Backend) -> None:
    from txetcd.concurrency import Election, Session

    c = be.client
    a, b = Session(c, ttl=10), Session(c, ttl=10)
    await a.ready
    await b.ready
    try:
        name = be.k("election")
        one, two = Election(a, name), Election(b, name)
        await one.campaign(b"one")
        assert (await one.leader()).value == b"one"
        seen: List[bytes] = []
        observer = two.observe(lambda kv: seen.append(kv.value))
        campaigning = two.campaign(b"two")
        await _until(be, lambda: seen[-1:] == [b"one"], "the observer to see one")
        await one.proclaim(b"uno")
        await _until(be, lambda: seen[-1:] == [b"uno"], "the observer to see uno")
        assert not campaigning.called
        fence = one.is_leader()
        await one.resign()
        await _until(be, lambda: campaigning.called, "the second campaign")
        assert two.leading and not one.leading
        assert (await two.leader()).value == b"two"
        await _until(be, lambda: seen[-1:] == [b"two"], "the observer to see two")
        assert not (await c.txn([fence], [Put(be.k("led"), "one")])).succeeded
        assert (await c.txn([two.is_leader()], [Put(be.k("led"), "two")])).succeeded
        observer.cancel()
        await two.resign()
        assert (await c.get_prefix(name + b"/")).count == 0
    finally:
        await a.close()
        await b.close()
