"""txaioetcd worker (Twisted/treq over the v3 JSON gateway; the epoll reactor, as for txetcd).

txaioetcd 18.10 hard-codes the ``/v3alpha/`` gateway prefix, which etcd 3.5 removed: the worker
rewrites its endpoint constants to ``/v3/`` before the first call (nothing else is changed).
Concurrency N is N coroutines awaiting its Deferreds on one ``Client``; gets are its default
(linearizable) range.
"""

from __future__ import annotations

from typing import Any

import _tx  # installs the epoll reactor (and puts the checkout on sys.path; unused here)
import txaioetcd  # type: ignore[import-not-found]
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
from txaioetcd import _client_commons  # type: ignore[import-not-found]


def patch_paths() -> int:
    """Point every ``ENDPOINT_*`` at ``/v3/``; how many were rewritten."""
    patched = 0
    for name in dir(_client_commons):
        value = getattr(_client_commons, name)
        if name.startswith("ENDPOINT_") and isinstance(value, str) and "/v3alpha/" in value:
            setattr(_client_commons, name, value.replace("/v3alpha/", "/v3/"))
            patched += 1
    if patched == 0:
        raise RuntimeError("txaioetcd: no /v3alpha/ endpoint found to patch")
    return patched


async def _run(reactor: IReactorTime, spec: Spec, wl: Workload) -> dict[str, Any]:
    patch_paths()
    client = txaioetcd.Client(reactor, url=spec.endpoint)
    keys, values, size = wl.keys, wl.values, wl.size

    async def put(i: int) -> None:
        j = i % size
        result = await client.set(keys[j], values[j])
        if result.header is None or result.header.revision <= 0:
            raise CheckFailed(f"put {keys[j]!r}: no revision in {result!r}")

    async def get(i: int) -> None:
        j = i % size
        kvs = (await client.get(keys[j])).kvs
        value = kvs[0].value if len(kvs) == 1 else None
        if value != values[j]:
            check_value(value, values[j], keys[j])

    async def revision() -> int:
        return int((await client.set(keys[0], values[0])).header.revision)

    if spec.op == "populate":
        return await populate_async(wl, put, get)
    if spec.op == "put":
        return await run_async(spec, put, revision, gather=_tx.gather)
    if spec.op == "get":
        return await run_async(spec, get, gather=_tx.gather)
    raise ValueError(f"unknown op {spec.op!r}")


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return _tx.react_run(lambda reactor: _run(reactor, spec, wl))


if __name__ == "__main__":
    main(run, ("txaioetcd", "treq", "twisted"))
