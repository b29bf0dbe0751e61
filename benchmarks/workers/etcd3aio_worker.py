"""etcd3aio worker (asyncio over grpc.aio). Gets use etcd3aio's default, linearizable reads."""

from __future__ import annotations

import asyncio
from typing import Any

import etcd3aio  # type: ignore[import-not-found]
from _common import (
    CheckFailed,
    Spec,
    Workload,
    check_value,
    main,
    populate_async,
    run_async,
)


async def _run(spec: Spec, wl: Workload) -> dict[str, Any]:
    tls = {"ca_cert": spec.ca_pem()} if spec.ca_cert else {}  # TLS: the CA's PEM bytes
    client = etcd3aio.Etcd3Client([spec.hostport], **tls)
    await client.connect()
    kv = client.kv
    keys, values, size = wl.keys, wl.values, wl.size

    async def put(i: int) -> None:
        j = i % size
        response = await kv.put(keys[j], values[j])
        if response.header.revision <= 0:
            raise CheckFailed(f"put {keys[j]!r}: no revision in {response!r}")

    async def get(i: int) -> None:
        j = i % size
        response = await kv.get(keys[j])
        kvs = response.kvs
        value = kvs[0].value if len(kvs) == 1 else None
        if value != values[j]:
            check_value(value, values[j], keys[j])

    async def revision() -> int:
        response = await kv.put(keys[0], values[0])
        return int(response.header.revision)

    try:
        if spec.op == "populate":
            return await populate_async(wl, put, get)
        if spec.op == "put":
            return await run_async(spec, put, revision)
        if spec.op == "get":
            return await run_async(spec, get)
        raise ValueError(f"unknown op {spec.op!r}")
    finally:
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return asyncio.run(_run(spec, wl))


if __name__ == "__main__":
    main(run, ("etcd3aio", "grpcio", "protobuf"))
