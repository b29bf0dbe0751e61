"""Namespace views against real etcd: nothing outside the prefix is touched."""

from __future__ import annotations

import pytest_twisted

from txetcd import Client, Get, Put, Session, Txn, Value
from txetcd.concurrency import Lock, Registry
from txetcd.test.helpers import etcd_client, until  # noqa: F401


@pytest_twisted.ensureDeferred
async def test_kv_txn_watch_inside_the_prefix(etcd_client: Client, etcd_prefix: bytes) -> None:
    outside = etcd_prefix + b"outside"
    await etcd_client.put(outside, b"keep")
    ns = etcd_client.namespace(etcd_prefix + b"ns/")
    seen: list[bytes] = []
    watch = ns.watch_prefix(b"", callback=lambda b: seen.extend(e.key for e in b.events))
    await watch.created
    put = await ns.put(b"a", b"1", prev_kv=True)
    assert put.prev_kv is None
    assert (await etcd_client.get(etcd_prefix + b"ns/a")).value == b"1"
    got = await ns.get(b"a")
    assert got.kv is not None and got.kv.key == b"a"
    result = await ns.txn(
        compare=[Value(b"a") == b"1"],
        success=[Put(b"b", b"2"), Get(b"", prefix=True), Txn(success=[Get(b"b")])],
    )
    assert result.succeeded
    assert [kv.key for kv in result.responses[1]] == [b"a", b"b"]
    assert result.responses[2].responses[0].kv.key == b"b"
    assert [kv.key for kv in await ns.get_prefix(b"")] == [b"a", b"b"]
    assert (await ns.delete_prefix(b"")).deleted == 2
    await until(lambda: seen == [b"a", b"b", b"a", b"b"], what=str(seen))
    watch.cancel()
    assert (await etcd_client.get(outside)).value == b"keep"
    assert [kv.key for kv in await etcd_client.get_prefix(etcd_prefix)] == [outside]


@pytest_twisted.ensureDeferred
async def test_lock_and_registry_in_a_namespace(etcd_client: Client, etcd_prefix: bytes) -> None:
    ns = etcd_client.namespace(etcd_prefix + b"ns/")
    async with Session(ns, ttl=10) as session:
        lock = Lock(session, b"l")
        async with lock:
            keys = [kv.key for kv in await etcd_client.get_prefix(etcd_prefix)]
            assert keys == [etcd_prefix + b"ns/" + lock.key]  # type: ignore[operator]
        registry = Registry(etcd_client, etcd_prefix + b"svc/")
        await registry.watch().ready
        await registry.register(b"node-1", b"addr1", session)
        await until(lambda: registry.instances == {b"node-1": b"addr1"})
    await until(lambda: registry.instances == {}, what="gone with the session")
    registry.close()
