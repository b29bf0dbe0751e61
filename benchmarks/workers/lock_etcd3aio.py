"""etcd3aio lock worker: ``client.lock(name, ttl=...)`` per contender, all on one
``Etcd3Client`` (asyncio over grpc.aio). Acquire grants a lease, puts ``<prefix>/<lease>``, lists
the prefix and, unless first, watches the key just ahead until it is deleted, then lists again;
release deletes the key and revokes the lease (see ``workers/_lock.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import etcd3aio  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _lock import TTL, AsyncLocker, contenders, drive_async


def _locker(lock: Any) -> AsyncLocker:
    return lock.acquire, lock.release


async def _gather(coros: list[Any]) -> None:
    await asyncio.gather(*coros)


async def _run(spec: Spec) -> dict[str, Any]:
    client = etcd3aio.Etcd3Client([spec.hostport])
    await client.connect()
    try:
        lockers = [_locker(client.lock(spec.prefix, ttl=TTL)) for _ in range(contenders(spec))]
        return await drive_async(spec, lockers, asyncio.sleep, _gather)
    finally:
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return asyncio.run(_run(spec))


if __name__ == "__main__":
    main(run, ("etcd3aio", "grpcio", "protobuf"))
