"""Registry (txetcd.concurrency) against real etcd: instances on their sessions' leases, the
live set following registrations, and a process whose session dies leaving the set."""

from __future__ import annotations

from typing import Any, List

import pytest
import pytest_twisted

from txetcd import Client, MirrorChange, Session
from txetcd.concurrency import Registry
from txetcd.test.helpers import reactor, until, within
from txetcd.testing import EtcdServer


@pytest_twisted.ensureDeferred
async def test_the_live_set_follows_registrations_and_dying_sessions(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    prefix = etcd_prefix + b"services/api/"
    # three "processes", each with its own client and session; one observer
    clients = [Client(etcd_server.endpoint, reactor=reactor(), timeout=10.0) for _ in range(4)]
    sessions = [Session(c, ttl=2) for c in clients[:3]]
    observer = Registry(clients[3], prefix)
    changes: List[MirrorChange] = []
    try:
        await Registry(clients[0], prefix).register("node-0", "10.0.0.0:80", sessions[0])
        await within(observer.watch(changes.append).ready)
        assert observer.instances == {b"node-0": b"10.0.0.0:80"}

        for i in (1, 2):
            registry = Registry(clients[i], prefix)
            await registry.register(f"node-{i}", f"10.0.0.{i}:80", sessions[i])
        await until(lambda: len(observer.instances) == 3, what="three instances")
        assert observer.instances[b"node-2"] == b"10.0.0.2:80"

        # each key is on its session's lease
        for i, session in enumerate(sessions):
            got = await clients[3].get(prefix + f"node-{i}".encode())
            assert got.kv is not None and got.kv.lease == session.lease_id

        # a re-registration changes the value in place
        await Registry(clients[1], prefix).register("node-1", "10.0.0.11:80", sessions[1])
        await until(lambda: observer.instances.get(b"node-1") == b"10.0.0.11:80")

        # node-1 unregisters; node-2's process stops refreshing its lease and dies with it
        await Registry(clients[1], prefix).unregister("node-1")
        handle = sessions[2].keepalive
        assert handle is not None
        handle.stop()
        await until(
            lambda: set(observer.instances) == {b"node-0"}, timeout=6, what="the dead one gone"
        )
        assert (await clients[3].get_prefix(prefix)).count == 1
        assert changes, "on_change saw the changes after ready"

        # the same registrations, one at a time, are seen by a fresh watcher as well
        late = Registry(clients[0], prefix)
        await within(late.watch().ready)
        assert late.instances == {b"node-0": b"10.0.0.0:80"}
        late.close()
    finally:
        observer.close()
        for s in sessions:
            await s.close()
        await clients[0].delete_prefix(prefix)
        for c in clients:
            await c.close()


def test_bad_arguments_fail_at_once() -> None:
    client: Any = object()
    with pytest.raises(ValueError):
        Registry(client, b"")
    registry = Registry(client, b"svc/")
    with pytest.raises(TypeError):
        registry.register("node", "v", object())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        _ = registry.instances
