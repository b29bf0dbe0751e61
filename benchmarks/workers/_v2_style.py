"""The blocking python-etcd v2 API: ``Client(host, port)``, ``write(key, value)``, ``read(key)``.

Shared by python-etcd (``etcd``) and k3etcd (``k3etcd``), which keep python-etcd's shape: both
return a result with ``.value`` and ``.modifiedIndex``. Concurrency N means N threads sharing one
client. Keys are v2 paths (``/bench/00000``); values are text. Reads are each client's default
(a plain GET, no ``quorum``: etcd answers v2 reads from its local store, the same for every row).
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
    client = module.Client(host=spec.host, port=spec.port)
    keys, values, size = wl.key_strs, wl.value_strs, wl.size

    def put(i: int) -> None:
        j = i % size
        result = client.write(keys[j], values[j])
        if not result.modifiedIndex or result.value != values[j]:
            raise CheckFailed(f"put {keys[j]!r}: unexpected answer {result!r}")

    def get(i: int) -> None:
        j = i % size
        value = client.read(keys[j]).value
        if value != values[j]:
            check_value(value, values[j], keys[j])

    def revision() -> int:
        return int(client.write(keys[0], values[0]).modifiedIndex)

    if spec.op == "populate":
        return populate_threads(wl, put, get)
    if spec.op == "put":
        return run_threads(spec, put, revision)
    if spec.op == "get":
        return run_threads(spec, get)
    raise ValueError(f"unknown op {spec.op!r}")
