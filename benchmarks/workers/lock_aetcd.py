"""aetcd lock worker: ``client.lock(name, ttl)`` per contender, all on one ``aetcd.Client``
(asyncio over grpc.aio). Each attempt grants a lease and tries a put-if-absent txn; a waiter
watches the key for its delete and tries again (no queue); release is a txn deleting the key if
it holds our value (the lease is left to expire). ``acquire(timeout=None)``: wait as long as it
takes (see ``workers/_lock.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _lock import TTL, AsyncLocker, contenders, drive_async


def _locker(lock: Any) -> AsyncLocker:
    async def acquire() -> bool:
        return bool(await lock.acquire(timeout=None))

    async def release() -> None:
        await lock.release()

    return acquire, release


async def _gather(coros: list[Any]) -> None:
    await asyncio.gather(*coros)


async def _run(spec: Spec) -> dict[str, Any]:
    client = aetcd.Client(host=spec.host, port=spec.port)
    await client.connect()
    try:
        name = spec.prefix.encode()
        lockers = [_locker(client.lock(name, ttl=TTL)) for _ in range(contenders(spec))]
        return await drive_async(spec, lockers, asyncio.sleep, _gather)
    finally:
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return asyncio.run(_run(spec))


if __name__ == "__main__":
    main(run, ("aetcd", "grpcio", "protobuf"))
