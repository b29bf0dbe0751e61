"""txetcd v2 worker: ``txetcd.v2.Client`` (python-etcd's API on Deferreds), from this checkout.

Runs with the harness's own interpreter. Concurrency N is N coroutines, each awaiting one
Deferred at a time, on one ``Client`` (its HTTP/1.1 keep-alive pool opens the connections it
needs). Gets are its default read, a plain GET like every other row's.
"""

from __future__ import annotations

from typing import Any

import _tx  # installs the epoll reactor and puts this checkout on sys.path
from _common import (
    CheckFailed,
    Spec,
    Workload,
    check_value,
    main,
    populate_async,
    run_async,
)
from twisted.internet.interfaces import IReactorTime

from txetcd.v2 import Client


async def _run(reactor: IReactorTime, spec: Spec, wl: Workload) -> dict[str, Any]:
    client = Client(host=spec.host, port=spec.port, reactor=reactor)
    keys, values, size = wl.key_strs, wl.value_strs, wl.size

    async def put(i: int) -> None:
        j = i % size
        result = await client.write(keys[j], values[j])
        if not result.modifiedIndex or result.value != values[j]:
            raise CheckFailed(f"put {keys[j]!r}: unexpected answer {result!r}")

    async def get(i: int) -> None:
        j = i % size
        value = (await client.read(keys[j])).value
        if value != values[j]:
            check_value(value, values[j], keys[j])

    async def revision() -> int:
        return int((await client.write(keys[0], values[0])).modifiedIndex)

    try:
        if spec.op == "populate":
            return await populate_async(wl, put, get)
        if spec.op == "put":
            return await run_async(spec, put, revision, gather=_tx.gather)
        if spec.op == "get":
            return await run_async(spec, get, gather=_tx.gather)
        raise ValueError(f"unknown op {spec.op!r}")
    finally:
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return _tx.react_run(lambda reactor: _run(reactor, spec, wl))


if __name__ == "__main__":
    main(run, ("twisted", "httptools"))
