"""etcd3aio failover worker: ``Etcd3Client([host:port, ...])`` (grpc round-robin over every
endpoint) with its default retries (up to 3 attempts on UNAVAILABLE/DEADLINE_EXCEEDED, puts
included); each call's deadline is the spec's ``timeout``."""

from __future__ import annotations

import asyncio
from typing import Any

import etcd3aio  # type: ignore[import-not-found]
from _failover import FailoverSpec, asyncio_gather, drive_async, main


async def _run(spec: FailoverSpec) -> dict[str, Any]:
    client = etcd3aio.Etcd3Client([f"{h}:{p}" for h, p in spec.hostports])
    await client.connect()
    kv = client.kv

    async def put(key: bytes, value: bytes) -> None:
        await kv.put(key, value, timeout=spec.timeout)

    async def get(key: bytes) -> bytes | None:
        kvs = (await kv.get(key, timeout=spec.timeout)).kvs
        return kvs[0].value if len(kvs) == 1 else None

    try:
        return await drive_async(spec, put, get, asyncio.sleep, asyncio_gather)
    finally:
        await client.close()


def run(spec: FailoverSpec) -> dict[str, Any]:
    return asyncio.run(_run(spec))


if __name__ == "__main__":
    main(run, ("etcd3aio", "grpcio", "protobuf"))
