"""python3-etcd3 failover worker: ``MultiEndpointEtcd3Client`` with every endpoint and
``failover=True`` (its documented multi-endpoint client: a call that fails with UNAVAILABLE or a
deadline marks its endpoint failed for ``time_retry`` seconds, default 300, and later calls use
another; nothing is retried); each call's deadline is the spec's ``timeout``. Blocking: one thread
per loop on one client."""

from __future__ import annotations

from typing import Any

import etcd3  # type: ignore[import-not-found]
from _failover import FailoverSpec, drive_threads, main
from etcd3.client import Endpoint, MultiEndpointEtcd3Client  # type: ignore[import-not-found]


def run(spec: FailoverSpec) -> dict[str, Any]:
    endpoints = [Endpoint(h, p, secure=False) for h, p in spec.hostports]
    client = MultiEndpointEtcd3Client(endpoints=endpoints, timeout=spec.timeout, failover=True)

    def put(key: bytes, value: bytes) -> None:
        client.put(key, value)

    def get(key: bytes) -> Any:
        value, _meta = client.get(key)
        return value

    try:
        return drive_threads(spec, put, get)
    finally:
        client.close()


if __name__ == "__main__":
    assert etcd3.__name__  # the package itself, for the versions line
    main(run, ("python3-etcd3", "grpcio", "protobuf"))
