"""etcetra worker (asyncio over grpc.aio).

etcetra's ``get()`` always sends ``serializable=True`` (a serializable read: the member answers from
its local store without confirming it is up to date, so a read may be stale).
With the default variant the worker measures exactly that, and the harness marks the figure.
The ``linearizable`` variant reads through etcetra's public transaction API instead: a
read-only txn holding one ``get(key, serializable=False)``, which etcd serves on its
linearizable read path (no raft write).

TLS (the tls suite): etcetra has ``EtcdClient(..., secure=True)``, which builds its credentials
with ``grpc.ssl_channel_credentials()`` and no CA argument, so grpc uses its default root
certificates. The worker points those at the test CA with grpc's own environment variable
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` (set before grpc loads them); nothing in etcetra is changed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from _common import Spec, Workload, check_value, main, populate_async, run_async
from etcetra import EtcdClient, HostPortPair  # type: ignore[import-not-found]


async def _run(spec: Spec, wl: Workload) -> dict[str, Any]:
    if spec.ca_cert:
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = spec.ca_cert
    client = EtcdClient(HostPortPair(spec.host, spec.port), secure=bool(spec.ca_cert))
    keys, values, size = wl.key_strs, wl.value_strs, wl.size
    linearizable = spec.variant == "linearizable"
    if spec.variant not in (None, "linearizable"):
        raise ValueError(f"unknown variant {spec.variant!r}")

    async with client.connect() as comm:

        async def put(i: int) -> None:
            # etcetra's put returns nothing to check (no header); the revision check covers it.
            j = i % size
            await comm.put(keys[j], values[j])

        async def get_serializable(i: int) -> None:
            j = i % size
            value = await comm.get(keys[j])
            if value != values[j]:
                check_value(value, values[j], keys[j])

        async def get_linearizable(i: int) -> None:
            j = i % size
            key = keys[j]
            results: list[Any] = await comm.txn(lambda action: action.get(key, serializable=False))
            value = results[0].get(key) if len(results) == 1 else None
            if value != values[j]:
                check_value(value, values[j], key)

        async def revision() -> int:
            # A txn holding one put reports the new revision (etcetra's plain put does not).
            results = await comm.txn(lambda action: action.put(keys[0], values[0]))
            return int(results[0]["revision"])

        get = get_linearizable if linearizable else get_serializable
        if spec.op == "populate":
            return await populate_async(wl, put, get)
        if spec.op == "put":
            return await run_async(spec, put, revision)
        if spec.op == "get":
            return await run_async(spec, get)
        raise ValueError(f"unknown op {spec.op!r}")


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return asyncio.run(_run(spec, wl))


if __name__ == "__main__":
    main(run, ("etcetra", "grpcio", "protobuf"))
