"""Coordination: a fenced lock handed from one process to the next, a leader election, an STM
transfer and a service registry, each process with its own client and session.

    python docs/examples/concurrency_lock_election.py [http://127.0.0.1:2379]

Works under the key prefix ``examples/concurrency/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Put, Session
from txetcd.concurrency import Election, Lock, Registry, stm

PREFIX = b"examples/concurrency/"


async def main(reactor, endpoint):
    a = Client(endpoint, reactor=reactor, timeout=5)
    b = Client(endpoint, reactor=reactor, timeout=5)
    try:
        async with Session(a, ttl=10) as sa, Session(b, ttl=10) as sb:
            # -- a lock, fenced: each write checks in the same txn that we still hold it
            lock_a = Lock(sa, PREFIX + b"lock")
            lock_b = Lock(sb, PREFIX + b"lock")
            await lock_a.acquire()
            waiting = lock_b.acquire()  # queued behind a
            print("b waits while a holds:", not waiting.called)
            fence = lock_a.is_owner()  # CreateRevision(a's key) == a's fencing token
            ok = await a.txn(compare=[fence], success=[Put(PREFIX + b"owner", "a")])
            print("a's fenced write:", ok.succeeded)
            first_token = lock_a.revision
            await lock_a.release()
            await waiting
            print("b holds it now, with a higher fencing token:", lock_b.revision > first_token)
            # a late write of a, still fenced on its old hold, changes nothing
            late = await a.txn(compare=[fence], success=[Put(PREFIX + b"owner", "a")])
            print("a's late fenced write:", late.succeeded)
            await lock_b.release()

            # -- leader election
            ea = Election(sa, PREFIX + b"leader")
            eb = Election(sb, PREFIX + b"leader")
            await ea.campaign("a")
            standing = eb.campaign("b")
            print("leader:", (await eb.leader()).value.decode())
            await ea.proclaim("a, version 2")
            print("leader says:", (await eb.leader()).value.decode())
            await ea.resign()
            await standing
            print("after a resigns, leader:", (await ea.leader()).value.decode())
            await eb.resign()

            # -- STM: move 30 from one account to another, atomically
            await a.put(PREFIX + b"acct/x", "100")
            await a.put(PREFIX + b"acct/y", "0")

            async def transfer(s):
                x = int(await s.get(PREFIX + b"acct/x"))
                y = int(await s.get(PREFIX + b"acct/y"))
                s.put(PREFIX + b"acct/x", str(x - 30))
                s.put(PREFIX + b"acct/y", str(y + 30))

            await stm(b, transfer)
            x = (await a.get(PREFIX + b"acct/x")).value
            y = (await a.get(PREFIX + b"acct/y")).value
            print(f"accounts after the transfer: x={x.decode()} y={y.decode()}")

            # -- a service registry: each instance lives on its session's lease
            registry = Registry(a, PREFIX + b"services/")
            await registry.register("node-a", "10.0.0.1:80", sa)
            await registry.register("node-b", "10.0.0.2:80", sb)
            await registry.watch().ready
            print("instances:", sorted(k.decode() for k in registry.instances))
            await sb.close()  # b's process ends: its lease, and its registration, go
            await until_gone(reactor, registry, b"node-b")
            print("after b's session ends:", sorted(k.decode() for k in registry.instances))
            registry.close()
        await a.delete_prefix(PREFIX)
    finally:
        await a.close()
        await b.close()
    print("done")


async def until_gone(reactor, registry, name):
    for _ in range(100):
        if name not in registry.instances:
            return
        await task.deferLater(reactor, 0.02, lambda: None)


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
