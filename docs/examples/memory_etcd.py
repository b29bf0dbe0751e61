"""An in-memory etcd for tests: the real Client, no process, time on a task.Clock.

    python docs/examples/memory_etcd.py

(It takes no endpoint: MemoryEtcd needs none. An argument, if given, is ignored.)
"""

from twisted.internet.defer import Deferred

from txetcd.testing import MemoryEtcd


async def main():
    etcd = MemoryEtcd()  # its clock is a twisted.internet.task.Clock
    client = etcd.client(timeout=5)

    await client.put("config/mode", "blue")
    print("mode is", (await client.get("config/mode")).value)

    seen = []
    client.watch_prefix("config/", callback=seen.append)
    lease = await client.grant(10)
    await client.put("config/leader", "me", lease_id=lease.id)
    etcd.clock.advance(10)  # ten seconds pass at once: the lease expires
    print("events:", [(e.type.name, e.key.decode()) for b in seen for e in b.events])
    print("leader key left:", (await client.get("config/leader")).count)

    await client.close()
    etcd.close()
    print("timers left:", etcd.clock.getDelayedCalls())
    print("done")


if __name__ == "__main__":
    # Every call is answered at once, so the coroutine runs to its end without a reactor.
    d = Deferred.fromCoroutine(main())
    d.addErrback(lambda f: print(f.getTraceback()))
