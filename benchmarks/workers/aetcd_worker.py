"""aetcd worker (asyncio over grpc.aio). Gets use aetcd's default, linearizable reads."""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd  # type: ignore[import-not-found]
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
    client = aetcd.Client(host=spec.host, port=spec.port)
    await client.connect()
    keys, values, size = wl.keys, wl.values, wl.size

    async def put(i: int) -> None:
        j = i % size
        result = await client.put(keys[j], values[j])
        if result.header.revision <= 0:
            raise CheckFailed(f"put {keys[j]!r}: no revision in {result!r}")

    async def get(i: int) -> None:
        j = i % size
        result = await client.get(keys[j])
        value = None if result is None else result.value
        if value != values[j]:
            check_value(value, values[j], keys[j])

    async def revision() -> int:
        result = await client.put(keys[0], values[0])
        return int(result.header.revision)

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
    main(run, ("aetcd", "grpcio", "protobuf"))
