"""python3-etcd3 lock worker: ``client.lock(name, ttl)`` per contender, all on one
``etcd3.client()`` (blocking grpcio), one thread per contender. Each attempt grants a lease and
tries a put-if-absent txn; a waiter watches the key for its delete and tries again (no queue);
release is a txn deleting the key if it holds our value (the lease is left to expire).
``acquire(timeout=None)``: wait as long as it takes (see ``workers/_lock.py``)."""

from __future__ import annotations

from typing import Any

import etcd3  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _lock import TTL, SyncLocker, contenders, drive_threads


def _locker(lock: Any) -> SyncLocker:
    return (lambda: lock.acquire(timeout=None)), lock.release


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    client = etcd3.client(host=spec.host, port=spec.port)
    try:
        lockers = [_locker(client.lock(spec.prefix, ttl=TTL)) for _ in range(contenders(spec))]
        return drive_threads(spec, lockers)
    finally:
        client.close()


if __name__ == "__main__":
    main(run, ("python3-etcd3", "grpcio", "protobuf"))
