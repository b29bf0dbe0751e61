"""KV against a real etcd: every range, put and delete option, and compaction."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from txetcd import (
    Client,
    CompactResult,
    DeleteResult,
    FutureRevision,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    PutResult,
    RangeResult,
    RequestTooLarge,
    ResponseHeader,
    RevisionCompacted,
    SortOrder,
    SortTarget,
)
from txetcd.test.helpers import (
    etcd_client_tls_too as etcd_client,  # noqa: F401  (both transports, and gRPC over TLS)
)
from txetcd.test.helpers import (
    grant_lease,
)


async def fill(client: Client, prefix: bytes) -> dict[bytes, int]:
    """p/a, p/b, p/c, p/d written in order, then p/b rewritten: returns each key's mod revision."""
    revs = {}
    for name, value in ((b"a", b"3"), (b"b", b"1"), (b"c", b"4"), (b"d", b"2")):
        r = await client.put(prefix + name, value)
        revs[name] = r.header.revision
    r = await client.put(prefix + b"b", b"5")
    revs[b"b2"] = r.header.revision
    return revs


@pytest_twisted.ensureDeferred
async def test_put_then_get(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    put = await etcd_client.put(key, b"v1")
    assert isinstance(put, PutResult)
    assert isinstance(put.header, ResponseHeader)
    assert put.header.revision > 1 and put.header.cluster_id and put.header.member_id
    assert put.header.raft_term >= 1
    assert put.prev_kv is None
    got = await etcd_client.get(key)
    assert isinstance(got, RangeResult)
    assert got.kvs == (KeyValue(key, b"v1", put.header.revision, put.header.revision, 1, 0),)
    assert got.count == 1 and not got.more
    assert got.value == b"v1" and got.kv is got.kvs[0]
    assert got.header.revision == put.header.revision


@pytest_twisted.ensureDeferred
async def test_str_is_utf8(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix.decode() + "clé"
    await etcd_client.put(key, "välue")
    got = await etcd_client.get(key.encode("utf-8"))
    assert got.kvs[0].key == key.encode("utf-8")
    assert got.value == "välue".encode()


@pytest_twisted.ensureDeferred
async def test_missing_key_is_empty_not_error(etcd_client: Client, etcd_prefix: bytes) -> None:
    got = await etcd_client.get(etcd_prefix + b"nope")
    assert got.kvs == () and got.count == 0 and got.value is None and got.kv is None


@pytest_twisted.ensureDeferred
async def test_put_prev_kv_and_version(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"k"
    first = await etcd_client.put(key, b"one", prev_kv=True)
    assert first.prev_kv is None  # a new key has no previous state
    second = await etcd_client.put(key, b"two", prev_kv=True)
    assert second.prev_kv is not None
    assert second.prev_kv.value == b"one"
    assert second.prev_kv.version == 1
    assert second.prev_kv.mod_revision == first.header.revision
    got = await etcd_client.get(key)
    assert got.kvs[0].version == 2
    assert got.kvs[0].create_revision == first.header.revision
    assert got.kvs[0].mod_revision == second.header.revision


@pytest_twisted.ensureDeferred
async def test_empty_value_is_stored(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"empty"
    await etcd_client.put(key, b"")
    got = await etcd_client.get(key)
    assert got.count == 1 and got.value == b""


@pytest_twisted.ensureDeferred
async def test_put_lease_ignore_lease_ignore_value(etcd_client: Client, etcd_prefix: bytes) -> None:
    key = etcd_prefix + b"leased"
    lease = await grant_lease(etcd_client)
    await etcd_client.put(key, b"v1", lease=lease)
    assert (await etcd_client.get(key)).kvs[0].lease == lease
    # ignore_lease: the value changes, the lease stays
    await etcd_client.put(key, b"v2", ignore_lease=True)
    kv = (await etcd_client.get(key)).kvs[0]
    assert (kv.value, kv.lease) == (b"v2", lease)
    # a plain put without a lease detaches the key (etcd's rule)
    await etcd_client.put(key, b"v3")
    assert (await etcd_client.get(key)).kvs[0].lease == 0
    # ignore_value: the lease changes, the value stays
    await etcd_client.put(key, b"", ignore_value=True, lease=lease)
    kv = (await etcd_client.get(key)).kvs[0]
    assert (kv.value, kv.lease) == (b"v3", lease)


@pytest_twisted.ensureDeferred
async def test_put_errors(etcd_client: Client, etcd_prefix: bytes) -> None:
    with pytest.raises(LeaseNotFound) as e:
        await etcd_client.put(etcd_prefix + b"x", b"v", lease=987654321)
    assert e.value.code == 5
    assert "requested lease not found" in str(e.value)
    with pytest.raises(KeyNotFound):
        await etcd_client.put(etcd_prefix + b"missing", b"", ignore_value=True)
    with pytest.raises(RequestTooLarge):
        await etcd_client.put(etcd_prefix + b"big", b"x" * (1536 * 1024 + 10))
    assert (await etcd_client.get(etcd_prefix, prefix=True)).count == 0  # nothing was written


@pytest_twisted.ensureDeferred
async def test_range_limit_more_count(etcd_client: Client, etcd_prefix: bytes) -> None:
    await fill(etcd_client, etcd_prefix)
    r = await etcd_client.get_prefix(etcd_prefix, limit=2)
    assert [kv.key for kv in r.kvs] == [etcd_prefix + b"a", etcd_prefix + b"b"]
    assert r.more is True and r.count == 4
    r = await etcd_client.get_prefix(etcd_prefix, limit=4)
    assert r.more is False and len(r.kvs) == 4
    r = await etcd_client.get_prefix(etcd_prefix, count_only=True, limit=1)
    assert r.kvs == () and r.count == 4


@pytest_twisted.ensureDeferred
async def test_range_keys_only(etcd_client: Client, etcd_prefix: bytes) -> None:
    await fill(etcd_client, etcd_prefix)
    r = await etcd_client.get_prefix(etcd_prefix, keys_only=True)
    assert len(r.kvs) == 4
    assert all(kv.value == b"" and kv.mod_revision > 0 for kv in r.kvs)


@pytest.mark.parametrize(
    "order,target,expected",
    [
        ("descend", "key", b"dcba"),
        (SortOrder.ASCEND, SortTarget.VALUE, b"dacb"),  # values 3,5,4,2 -> d(2) a(3) c(4) b(5)
        ("descend", "value", b"bcad"),
        ("ascend", "mod", b"acdb"),
        ("descend", "create", b"dcba"),
        ("ascend", "version", b"acdb"),  # b has version 2; ties keep key order
        ("none", "mod", b"acdb"),  # a target alone sorts ascending (etcd's rule)
        ("none", "key", b"abcd"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_range_sort(
    etcd_client: Client, etcd_prefix: bytes, order: Any, target: Any, expected: bytes
) -> None:
    await fill(etcd_client, etcd_prefix)
    r = await etcd_client.get_prefix(etcd_prefix, sort_order=order, sort_target=target)
    assert b"".join(kv.key[-1:] for kv in r.kvs) == expected


@pytest_twisted.ensureDeferred
async def test_range_revision_filters(etcd_client: Client, etcd_prefix: bytes) -> None:
    revs = await fill(etcd_client, etcd_prefix)
    keys = lambda r: b"".join(kv.key[-1:] for kv in r.kvs)  # noqa: E731
    r = await etcd_client.get_prefix(etcd_prefix, min_mod_revision=revs[b"c"])
    assert keys(r) == b"bcd" and r.count == 4  # count ignores the filters
    r = await etcd_client.get_prefix(etcd_prefix, max_mod_revision=revs[b"c"])
    assert keys(r) == b"ac"
    r = await etcd_client.get_prefix(etcd_prefix, min_create_revision=revs[b"c"])
    assert keys(r) == b"cd"
    r = await etcd_client.get_prefix(etcd_prefix, max_create_revision=revs[b"b"])
    assert keys(r) == b"ab"
    r = await etcd_client.get_prefix(etcd_prefix, max_create_revision=revs[b"b"], limit=1)
    assert keys(r) == b"a" and r.more


@pytest_twisted.ensureDeferred
async def test_range_at_revision_and_serializable(etcd_client: Client, etcd_prefix: bytes) -> None:
    revs = await fill(etcd_client, etcd_prefix)
    old = await etcd_client.get(etcd_prefix + b"b", revision=revs[b"b"])
    assert old.value == b"1"
    assert old.header.revision >= revs[b"b2"]  # the header shows the current revision
    before = await etcd_client.get_prefix(etcd_prefix, revision=revs[b"b"])
    assert [kv.key[-1:] for kv in before.kvs] == [b"a", b"b"]
    ser = await etcd_client.get(etcd_prefix + b"b", serializable=True)
    assert ser.value == b"5"


@pytest_twisted.ensureDeferred
async def test_get_range_and_all_keys(etcd_client: Client, etcd_prefix: bytes) -> None:
    await fill(etcd_client, etcd_prefix)
    r = await etcd_client.get_range(etcd_prefix + b"b", etcd_prefix + b"d")
    assert [kv.key[-1:] for kv in r.kvs] == [b"b", b"c"]
    r = await etcd_client.get_range(etcd_prefix + b"c", b"\0")  # every key >= start
    assert [kv.key for kv in r.kvs][:2] == [etcd_prefix + b"c", etcd_prefix + b"d"]
    r = await etcd_client.get_range(etcd_prefix + b"d", etcd_prefix + b"a")  # end < start
    assert r.kvs == ()
    everything = await etcd_client.get_prefix(b"", count_only=True)
    assert everything.count >= 4


@pytest_twisted.ensureDeferred
async def test_delete_variants(etcd_client: Client, etcd_prefix: bytes) -> None:
    await fill(etcd_client, etcd_prefix)
    d = await etcd_client.delete(etcd_prefix + b"a", prev_kv=True)
    assert isinstance(d, DeleteResult)
    assert d.deleted == 1 and d.prev_kvs[0].value == b"3"
    none = await etcd_client.delete(etcd_prefix + b"a")
    assert none.deleted == 0 and none.prev_kvs == ()
    assert none.header.revision == d.header.revision  # nothing deleted: no new revision
    r = await etcd_client.delete_range(etcd_prefix + b"b", etcd_prefix + b"c")
    assert r.deleted == 1
    r = await etcd_client.delete_prefix(etcd_prefix, prev_kv=True)
    assert r.deleted == 2 and sorted(kv.key[-1:] for kv in r.prev_kvs) == [b"c", b"d"]
    assert (await etcd_client.get_prefix(etcd_prefix)).count == 0


@pytest_twisted.ensureDeferred
async def test_compact(etcd_server: Any, etcd_prefix: bytes) -> None:
    from twisted.internet import reactor

    client = Client(etcd_server.endpoint, reactor=reactor)
    try:
        key = etcd_prefix + b"c"
        r1 = await client.put(key, b"1")
        r2 = await client.put(key, b"2")
        res = await client.compact(r2.header.revision, physical=True)
        assert isinstance(res, CompactResult) and res.header.revision >= r2.header.revision
        assert (await client.get(key, revision=r2.header.revision)).value == b"2"
        with pytest.raises(RevisionCompacted) as e:
            await client.get(key, revision=r1.header.revision)
        assert e.value.code == 11
        with pytest.raises(RevisionCompacted):
            await client.compact(r1.header.revision)
        with pytest.raises(FutureRevision):
            await client.get(key, revision=r2.header.revision + 10_000)
        with pytest.raises(FutureRevision):
            await client.compact(r2.header.revision + 10_000)
    finally:
        await client.close()


@pytest_twisted.inlineCallbacks
def test_inline_callbacks_style(etcd_client: Client, etcd_prefix: bytes) -> Any:
    """The same API from inlineCallbacks code."""
    yield etcd_client.put(etcd_prefix + b"ic", b"yes")
    result = yield etcd_client.get(etcd_prefix + b"ic")
    assert result.value == b"yes"
