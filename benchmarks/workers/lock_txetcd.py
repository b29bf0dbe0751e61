"""txetcd lock worker: ``txetcd.concurrency.Lock`` on a ``Session`` per contender, every session on
one ``Client`` (gRPC, one connection), in Twisted (see ``workers/_lock.py``).

Variant ``service``: etcd's own lock service through the same client instead,
``client.lock(name, session)`` then ``client.unlock(key)`` (the queue runs inside etcd, as for
etcetra's row)."""

from __future__ import annotations

from typing import Any

import _tx  # installs the epoll reactor and puts this checkout on sys.path
from _common import Spec, Workload, main
from _lock import TTL, AsyncLocker, contenders, drive_async

from txetcd import Client, Session
from txetcd.concurrency import Lock


def _service(client: Client, session: Session, name: str) -> AsyncLocker:
    held: list[bytes] = []

    async def acquire() -> None:
        held.append((await client.lock(name, session)).key)

    async def release() -> None:
        await client.unlock(held.pop())

    return acquire, release


def _locker(lock: Lock) -> AsyncLocker:
    async def acquire() -> None:
        await lock.acquire()

    async def release() -> None:
        await lock.release()

    return acquire, release


async def _run(reactor: Any, spec: Spec) -> dict[str, Any]:
    client = Client(spec.endpoint, reactor=reactor)
    sessions = [Session(client, ttl=TTL) for _ in range(contenders(spec))]
    try:
        for s in sessions:
            await s.ready
        if spec.variant == "service":
            lockers = [_service(client, s, spec.prefix) for s in sessions]
        elif spec.variant is None:
            lockers = [_locker(Lock(s, spec.prefix)) for s in sessions]
        else:
            raise ValueError(f"unknown variant {spec.variant!r}")
        return await drive_async(spec, lockers, lambda s: _tx.sleep(reactor, s), _tx.gather)
    finally:
        for s in sessions:
            await s.close()
        await client.close()


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return _tx.react_run(lambda reactor: _run(reactor, spec))


if __name__ == "__main__":
    main(run, ("twisted", "protobuf", "hpack"))
