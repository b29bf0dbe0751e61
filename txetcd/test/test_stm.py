"""STM (txetcd.concurrency.stm) against real etcd: concurrent transfers keep the total."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client
from txetcd.concurrency import STM, stm
from txetcd.test.helpers import within

ACCOUNTS, WORKERS, TRANSFERS = 5, 4, 8


@pytest.mark.parametrize(
    "isolation", ["serializable-snapshot", "serializable", "repeatable-reads", "read-committed"]
)
@pytest_twisted.ensureDeferred
async def test_transfers_keep_the_total(
    etcd_client: Client, etcd_prefix: bytes, isolation: Any
) -> None:
    keys = [etcd_prefix + b"acct/%d" % i for i in range(ACCOUNTS)]
    for k in keys:
        await etcd_client.put(k, b"100")
    applied = 0

    async def transfer(s: STM, src: bytes, dst: bytes) -> None:
        a = int(await s.get(src) or b"0")
        b = int(await s.get(dst) or b"0")
        s.put(src, str(a - 1))
        s.put(dst, str(b + 1))

    async def worker(seed: int) -> None:
        nonlocal applied
        rnd = random.Random(seed)
        for _ in range(TRANSFERS):
            src, dst = rnd.sample(keys, 2)
            result = await stm(
                etcd_client, partial(transfer, src=src, dst=dst), isolation=isolation
            )
            assert result.succeeded
            applied += 1

    # read-committed checks nothing at commit (Go's meaning): run its workers one at a time
    if isolation == "read-committed":
        for seed in range(WORKERS):
            await worker(seed)
    else:
        await within(
            defer.gatherResults([defer.ensureDeferred(worker(i)) for i in range(WORKERS)]), 60
        )
    total = sum(int(kv.value) for kv in await etcd_client.get_prefix(etcd_prefix + b"acct/"))
    assert total == 100 * ACCOUNTS and applied == WORKERS * TRANSFERS


@pytest_twisted.ensureDeferred
async def test_inline_callbacks_apply_and_bad_isolation(
    etcd_client: Client, etcd_prefix: bytes
) -> None:
    key = etcd_prefix + b"k"

    @defer.inlineCallbacks
    def apply(s: STM) -> Any:
        v = yield s.get(key)
        s.put(key, b"1" if v is None else v + b"1")

    await stm(etcd_client, apply)
    await stm(etcd_client, apply)
    assert (await etcd_client.get(key)).value == b"11"
    with pytest.raises(ValueError):
        stm(etcd_client, apply, isolation="nope")  # type: ignore[arg-type]
