"""txetcd gateway worker: ``Client(endpoint, transport="gateway")``, the v3 JSON gateway.

The same calls as ``txetcd_worker.py`` (``put``/``get`` with checked revision and value), over
etcd's JSON gateway on HTTP/1.1 instead of gRPC. Concurrency N is N coroutines on one ``Client``.
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

from txetcd import Client


async def _run(reactor: IReactorTime, spec: Spec, wl: Workload) -> dict[str, Any]:
    client = Client(spec.endpoint, transport="gateway", reactor=reactor)
    keys, values, size = wl.keys, wl.values, wl.size

    async def put(i: int) -> None:
        j = i % size
        result = await client.put(keys[j], values[j])
        if result.header.revision <= 0:
            raise CheckFailed(f"put {keys[j]!r}: no revision in {result!r}")

    async def get(i: int) -> None:
        j = i % size
        kvs = (await client.get(keys[j])).kvs
        value = kvs[0].value if len(kvs) == 1 else None
        if value != values[j]:
            check_value(value, values[j], keys[j])

    async def revision() -> int:
        return int((await client.put(keys[0], values[0])).header.revision)

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
    main(run, ("twisted", "treq", "httptools"))
