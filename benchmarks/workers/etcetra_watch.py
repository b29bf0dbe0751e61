"""etcetra watcher: ``comm.watch_prefix(prefix)``, an async iterator of ``WatchEvent``.

etcetra's events carry the key, the value (decoded to ``str``) and the type, but no revision, so
for etcetra the exactly-once check rests on the sequence numbers alone. ``watch_prefix`` is called
with its defaults (``progress_notify=True``); readiness is proved with a probe (see ``_watch.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from _watch import Recorder, WatchSpec, drive_asyncio, run_main
from etcetra import EtcdClient, HostPortPair  # type: ignore[import-not-found]


async def _run(spec: WatchSpec) -> dict[str, Any]:
    client = EtcdClient(HostPortPair(spec.host, spec.port))
    rec = Recorder()
    add = rec.add
    async with client.connect() as comm:
        events = comm.watch_prefix(spec.prefix)

        async def consume() -> None:
            async for event in events:
                add(event.value)

        async def put(key: str, value: str) -> None:
            await comm.put(key, value)

        result = await drive_asyncio(spec, rec, put, consume())
    result["api"] = "async for event in comm.watch_prefix(prefix)"
    return result


if __name__ == "__main__":
    run_main(lambda spec: asyncio.run(_run(spec)))
