"""Arbitrary bytes round-trip through a real etcd (hypothesis), up to 1 MiB values.

pytest-twisted runs tests inside the reactor, where a hypothesis test body cannot block on a
Deferred; so hypothesis draws the examples (with its bias toward edge cases: empty, NUL, 0xff,
long runs) and the async test sends every one of them to etcd.
"""

from __future__ import annotations

from typing import List, Tuple

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from txetcd import Client
from txetcd.test.helpers import etcd_client  # noqa: F401  (both transports)

Case = Tuple[bytes, bytes]


def draw_cases(n: int) -> List[Case]:
    cases: List[Case] = []

    @settings(max_examples=n, deadline=None, database=None)
    @given(key=st.binary(min_size=1, max_size=512), value=st.binary(max_size=4096))
    @example(key=b"\x00", value=b"")
    @example(key=b"\xff", value=b"\x00")
    @example(key=b"\xff\xff\x00", value=b"\x00" * 100)
    @example(key="ключ/🔑 ?#%+&;".encode(), value="значение".encode())
    def collect(key: bytes, value: bytes) -> None:
        cases.append((key, value))

    collect()
    return cases


@pytest_twisted.ensureDeferred
async def test_any_bytes_round_trip(etcd_client: Client) -> None:
    cases = {key: value for key, value in draw_cases(300)}  # one value per key
    assert len(cases) > 100

    async def check(key: bytes, value: bytes) -> None:
        put = await etcd_client.put(key, value)
        got = await etcd_client.get(key)
        assert got.count == 1, key
        kv = got.kvs[0]
        assert (kv.key, kv.value) == (key, value)
        assert kv.mod_revision == put.header.revision
        ranged = await etcd_client.get_range(key, key + b"\x00")  # exactly this key
        assert [k.key for k in ranged.kvs] == [key]
        deleted = await etcd_client.delete(key, prev_kv=True)
        assert deleted.deleted == 1 and deleted.prev_kvs[0].value == value

    # 16 at a time: distinct keys, so the checks cannot disturb each other.
    items = list(cases.items())
    for i in range(0, len(items), 16):
        await defer.gatherResults(
            [defer.ensureDeferred(check(k, v)) for k, v in items[i : i + 16]], consumeErrors=True
        )


@pytest.mark.parametrize("size", [1024 * 1024, 1024 * 1024 + 12345])
@pytest_twisted.ensureDeferred
async def test_one_mebibyte_values(etcd_client: Client, etcd_prefix: bytes, size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    key = etcd_prefix + b"big"
    await etcd_client.put(key, value)
    got = await etcd_client.get(key)
    assert got.value == value
    both = await etcd_client.txn([], [], [])  # the connection still works after big frames
    assert both.succeeded
