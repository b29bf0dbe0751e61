"""etcetra lock worker: etcetra's ``EtcdLockManager(name, channel)`` per contender (what
``EtcdClient.with_lock(name)`` enters, here on one connection for all instead of a new one per
acquisition), asyncio over grpc.aio. It calls etcd's own lock service (``v3lockpb.Lock``): the
queue and the wait run inside etcd (Go's ``concurrency.Mutex`` on a lease etcd grants for each
Lock call when none is given, etcetra's default ``ttl=None``); release is ``Unlock`` (the key is
deleted; that lease is left to expire). See ``workers/_lock.py``."""

from __future__ import annotations

import asyncio
from typing import Any

from _common import Spec, Workload, main
from _lock import AsyncLocker, contenders, drive_async
from etcetra import EtcdClient, EtcdLockManager, HostPortPair  # type: ignore[import-not-found]


def _locker(manager: Any) -> AsyncLocker:
    async def acquire() -> None:
        await manager.__aenter__()

    async def release() -> None:
        await manager.__aexit__(None, None, None)

    return acquire, release


async def _gather(coros: list[Any]) -> None:
    await asyncio.gather(*coros)


async def _run(spec: Spec) -> dict[str, Any]:
    client = EtcdClient(HostPortPair(spec.host, spec.port))
    async with client.connect() as comm:
        lockers = [
            _locker(EtcdLockManager(spec.prefix, comm.channel)) for _ in range(contenders(spec))
        ]
        return await drive_async(spec, lockers, asyncio.sleep, _gather)


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return asyncio.run(_run(spec))


if __name__ == "__main__":
    main(run, ("etcetra", "grpcio", "protobuf"))
