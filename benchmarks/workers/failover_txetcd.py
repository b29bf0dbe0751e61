"""txetcd failover worker: one ``Client`` given every endpoint, over gRPC (default) or the JSON
gateway (variant ``gateway``), with its default resend rules (see ``workers/_failover.py``)."""

from __future__ import annotations

from typing import Any

import _tx  # installs the epoll reactor and puts this checkout on sys.path
from _failover import FailoverSpec, drive_async, main

from txetcd import Client


async def _run(reactor: Any, spec: FailoverSpec) -> dict[str, Any]:
    transport = spec.variant or "grpc"
    client = Client(spec.endpoints, reactor=reactor, timeout=spec.timeout, transport=transport)

    async def put(key: bytes, value: bytes) -> None:
        await client.put(key, value)

    async def get(key: bytes) -> bytes | None:
        kvs = (await client.get(key)).kvs
        return kvs[0].value if len(kvs) == 1 else None

    try:
        return await drive_async(spec, put, get, lambda s: _tx.sleep(reactor, s), _tx.gather)
    finally:
        await client.close()


def run(spec: FailoverSpec) -> dict[str, Any]:
    return _tx.react_run(lambda reactor: _run(reactor, spec))


if __name__ == "__main__":
    main(run, ("twisted", "protobuf", "hpack"))
