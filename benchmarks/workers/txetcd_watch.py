"""txetcd watcher: ``client.watch(prefix, prefix=True, callback=...)`` on the epoll reactor.

The callback gets one :class:`txetcd.WatchBatch` per revision and records each of its events (see
``_watch.py`` for the protocol). Runs with the harness's own interpreter, txetcd imported from this
checkout.
"""

from __future__ import annotations

from typing import Any

import _tx
from _watch import Recorder, WatchSpec, drive, run_main
from twisted.internet import defer

from txetcd import Client, WatchBatch


async def _run(reactor: Any, spec: WatchSpec) -> dict[str, Any]:
    client = Client(endpoints=(spec.endpoint,), reactor=reactor)
    rec = Recorder()
    ended: defer.Deferred[None] = defer.Deferred()
    rec.on_end = lambda: ended.callback(None)
    add = rec.add

    def on_batch(batch: WatchBatch) -> None:
        for event in batch.events:
            kv = event.kv
            add(kv.value, kv.mod_revision)

    watch = client.watch(spec.prefix, prefix=True, callback=on_batch)
    try:
        await watch.created

        async def put(key: str, value: str) -> None:
            await client.put(key, value)

        async def wait_end(timeout: float) -> bool:
            return await _tx.wait_for(reactor, ended, timeout)

        result = await drive(spec, rec, put, lambda s: _tx.sleep(reactor, s), wait_end)
        result["api"] = "client.watch(prefix, prefix=True, callback=fn)"
        return result
    finally:
        watch.cancel()
        await client.close()


if __name__ == "__main__":
    run_main(lambda spec: _tx.react_run(lambda reactor: _run(reactor, spec)))
