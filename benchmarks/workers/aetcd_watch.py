"""aetcd watcher: ``await client.watch_prefix(prefix)``, then ``async for event in watch``.

``watch_prefix`` returns once etcd confirmed the watch; each event is an ``aetcd.Event`` with
``kv.value`` and ``kv.mod_revision``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd  # type: ignore[import-not-found]
from _watch import Recorder, WatchSpec, drive_asyncio, run_main


async def _run(spec: WatchSpec) -> dict[str, Any]:
    client = aetcd.Client(host=spec.host, port=spec.port)
    await client.connect()
    rec = Recorder()
    add = rec.add
    try:
        watch = await client.watch_prefix(spec.prefix.encode())

        async def consume() -> None:
            async for event in watch:
                kv = event.kv
                add(kv.value, kv.mod_revision)

        async def put(key: str, value: str) -> None:
            await client.put(key.encode(), value.encode())

        result = await drive_asyncio(spec, rec, put, consume())
        await asyncio.wait_for(watch.cancel(), 2.0)
    finally:
        await client.close()
    result["api"] = "async for event in await client.watch_prefix(prefix)"
    return result


if __name__ == "__main__":
    run_main(lambda spec: asyncio.run(_run(spec)))
