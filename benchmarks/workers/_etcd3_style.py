"""The blocking python-etcd3 API.

Shared by python3-etcd3 (``etcd3``) and etcd-sdk-python (``pyetcd``).

Both expose ``client(host, port)``, ``put(key, value) -> PutResponse`` and
``get(key) -> (value, metadata)`` (linearizable by default) on grpcio's blocking stubs. Concurrency
N means N threads sharing one client, as their documentation suggests for concurrent use.
Both take ``client(..., ca_cert=path)`` for TLS (the tls suite).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from _common import (
    CheckFailed,
    Spec,
    Workload,
    check_value,
    populate_threads,
    run_threads,
)


def run_with(module: ModuleType, spec: Spec, wl: Workload) -> dict[str, Any]:
    tls = {"ca_cert": spec.ca_cert} if spec.ca_cert else {}  # TLS: the CA's file path
    client = module.client(host=spec.host, port=spec.port, **tls)
    keys, values, size = wl.keys, wl.values, wl.size

    def put(i: int) -> None:
        j = i % size
        response = client.put(keys[j], values[j])
        if response.header.revision <= 0:
            raise CheckFailed(f"put {keys[j]!r}: no revision in {response!r}")

    def get(i: int) -> None:
        j = i % size
        value, _meta = client.get(keys[j])
        if value != values[j]:
            check_value(value, values[j], keys[j])

    def revision() -> int:
        return int(client.put(keys[0], values[0]).header.revision)

    try:
        if spec.op == "populate":
            return populate_threads(wl, put, get)
        if spec.op == "put":
            return run_threads(spec, put, revision)
        if spec.op == "get":
            return run_threads(spec, get)
        raise ValueError(f"unknown op {spec.op!r}")
    finally:
        client.close()
