"""txetcd worker: Twisted, gRPC over txetcd's own HTTP/2 layer, imported from this repository.

Runs with the harness's own interpreter (no venv). Concurrency N is N coroutines, each awaiting
one Deferred at a time, on one ``Client``. Gets are txetcd's default (linearizable) reads.
With ``ca_cert`` in the spec (the tls suite) the endpoint is ``https://`` and the client is given
that CA (``Client(endpoint, ca_cert=...)``).
"""

from __future__ import annotations

from collections.abc import Coroutine
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
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from txetcd import Client


def _gather(coros: list[Coroutine[Any, Any, None]]) -> defer.Deferred[Any]:
    d = defer.gatherResults([defer.ensureDeferred(c) for c in coros], consumeErrors=True)

    def unwrap(failure: Failure) -> Failure:
        # Report the loop's own exception, not gatherResults' FirstError wrapper.
        error = failure.value
        if isinstance(error, defer.FirstError):
            sub: Failure = error.subFailure
            return sub
        return failure

    return d.addErrback(unwrap)


async def _run(reactor: IReactorTime, spec: Spec, wl: Workload) -> dict[str, Any]:
    tls = {"ca_cert": spec.ca_cert} if spec.ca_cert else {}
    client = Client(endpoints=(spec.endpoint,), reactor=reactor, **tls)
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
        result = await client.put(keys[0], values[0])
        return int(result.header.revision)

    try:
        if spec.op == "populate":
            return await populate_async(wl, put, get)
        if spec.op == "put":
            return await run_async(spec, put, revision, gather=_gather)
        if spec.op == "get":
            return await run_async(spec, get, gather=_gather)
        raise ValueError(f"unknown op {spec.op!r}")
    finally:
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return _tx.react_run(lambda reactor: _run(reactor, spec, wl))


if __name__ == "__main__":
    main(run, ("twisted", "protobuf", "hpack"))
