"""etcd3aio watcher: ``client.watch.watch(prefix, range_end=prefix_range_end(prefix))``.

An async iterator of raw ``WatchResponse`` messages (the first is the "created" answer, with no
events); each event has ``kv.value`` and ``kv.mod_revision``. etcd3aio has no ``watch_prefix``:
its documentation says to pass ``prefix_range_end(prefix)`` as the range end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import etcd3aio  # type: ignore[import-not-found]
from _watch import Recorder, WatchSpec, drive_asyncio, run_main


async def _run(spec: WatchSpec) -> dict[str, Any]:
    client = etcd3aio.Etcd3Client([spec.hostport])
    await client.connect()
    rec = Recorder()
    add = rec.add
    prefix = spec.prefix.encode()
    try:
        responses = client.watch.watch(prefix, range_end=etcd3aio.prefix_range_end(prefix))

        async def consume() -> None:
            async for response in responses:
                for event in response.events:
                    kv = event.kv
                    add(kv.value, kv.mod_revision)

        async def put(key: str, value: str) -> None:
            await client.kv.put(key.encode(), value.encode())

        result = await drive_asyncio(spec, rec, put, consume())
    finally:
        await client.close()
    result["api"] = "async for response in client.watch.watch(prefix, range_end=...)"
    return result


if __name__ == "__main__":
    run_main(lambda spec: asyncio.run(_run(spec)))
