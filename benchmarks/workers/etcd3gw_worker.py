"""etcd3gw worker (the v3 JSON gateway over blocking ``requests``, N threads for N in flight).

Its ``put`` returns ``True`` and no header, so the put check reads the store revision as the
``mod_revision`` of a key just written; gets are its default (linearizable) range.
"""

from __future__ import annotations

from typing import Any

import etcd3gw  # type: ignore[import-not-found]
from _common import (
    CheckFailed,
    Spec,
    Workload,
    check_value,
    main,
    populate_threads,
    run_threads,
)


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    client = etcd3gw.client(host=spec.host, port=spec.port)
    keys, values, size = wl.keys, wl.values, wl.size

    def put(i: int) -> None:
        j = i % size
        if client.put(keys[j], values[j]) is not True:
            raise CheckFailed(f"put {keys[j]!r} did not return True")

    def get(i: int) -> None:
        j = i % size
        found = client.get(keys[j])
        value = found[0] if len(found) == 1 else None
        if value != values[j]:
            check_value(value, values[j], keys[j])

    def revision() -> int:
        client.put(keys[0], values[0])
        ((_value, meta),) = client.get(keys[0], metadata=True)
        return int(meta["mod_revision"])

    if spec.op == "populate":
        return populate_threads(wl, put, get)
    if spec.op == "put":
        return run_threads(spec, put, revision)
    if spec.op == "get":
        return run_threads(spec, get)
    raise ValueError(f"unknown op {spec.op!r}")


if __name__ == "__main__":
    main(run, ("etcd3gw", "requests", "urllib3"))
