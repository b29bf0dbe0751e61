"""A lock with fencing: why holding a lock is not enough, and how fenced writes fix it.

    python docs/examples/tutorial_locks.py [http://127.0.0.1:2379]

Two workers, a and b, each with its own client and session, share one job. a stalls while it
holds the lock; its lease runs out and b takes over; then a wakes up, still believing it holds
the lock. Its unfenced write clobbers b's work; its fenced writes are refused.

Works under the key prefix ``tutorial/locks/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, LockLost, Put, Session
from txetcd.concurrency import Lock

PREFIX = b"tutorial/locks/"
LOCK = PREFIX + b"lock"
REPORT = PREFIX + b"report"


async def record(client, lock, line):
    """Append ``line`` to the report, but only while ``lock`` is held: the compare and the
    write are one txn, so the check cannot go stale before the write lands."""
    current = await client.get(REPORT)
    text = (current.value or b"") + line + b"\n"
    result = await client.txn(compare=[lock.is_owner()], success=[Put(REPORT, text)])
    return result.succeeded


class Storage:
    """A system outside etcd that checks fencing tokens: it refuses a write whose token is
    lower than the highest it has seen."""

    def __init__(self):
        self.highest = 0
        self.value = None

    def write(self, token, value):
        if token < self.highest:
            return False
        self.highest, self.value = token, value
        return True


async def main(reactor, endpoint):
    a = Client(endpoint, reactor=reactor, timeout=10)
    b = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await a.delete_prefix(PREFIX)
        async with Session(a, ttl=10) as sa, Session(b, ttl=10) as sb:
            await take_turns(a, b, Lock(sa, LOCK), Lock(sb, LOCK))
            await stall(a, b, sa, Lock(sa, LOCK), Lock(sb, LOCK))
        await a.delete_prefix(PREFIX)
    finally:
        await a.close()
        await b.close()
    print("done")


async def take_turns(a, b, lock_a, lock_b):
    # -- the normal case
    async with lock_a:
        print("b's try_acquire while a holds it:", await lock_b.try_acquire())
        print("a records:", await record(a, lock_a, b"a was here"))
    async with lock_b:
        print("b records:", await record(b, lock_b, b"b was here"))
    print("report:", (await a.get(REPORT)).value.decode().splitlines())


async def stall(a, b, sa, lock_a, lock_b):
    # -- a holds the lock, and stalls
    storage = Storage()
    await lock_a.acquire()
    a_lost = lock_a.lost  # fires with a LockLost if the lock is lost while held
    b_turn = lock_b.acquire()  # b queues behind a
    fence, token_a = lock_a.is_owner(), lock_a.revision
    print("a writes with its token:", storage.write(token_a, "a's data"))

    # a stalls (a long GC pause, a blocked reactor, a frozen VM): nothing refreshes its
    # lease, which runs out. Here we stop a's keepalive and revoke the lease from b's side,
    # which is what etcd does once the TTL has passed, without waiting for it.
    sa.keepalive.stop()
    await b.revoke(sa.lease_id)

    await b_turn  # b holds the lock now, with a higher fencing token
    print("b's token is higher:", lock_b.revision > token_a)
    print("a's lock.lost fired:", type(await a_lost).__name__, "| a's lock.locked:", lock_a.locked)
    print("b records:", await record(b, lock_b, b"b took over"))
    print("b writes with its token:", storage.write(lock_b.revision, "b's data"))

    # -- a wakes up, unaware: an unfenced write lands on top of b's work
    await a.put(REPORT, b"a, late\n")
    print("a's unfenced write clobbered b's report:", (await b.get(REPORT)).value == b"a, late\n")
    await b.put(REPORT, b"b took over\n")  # (repair it, for the rest of the example)

    # -- fenced, the same late write is refused, in etcd and outside it
    late = await a.txn(compare=[fence], success=[Put(REPORT, b"a, late\n")])
    print("a's fenced write:", late.succeeded)
    print("storage takes a's old token:", storage.write(token_a, "a's late data"))
    print("storage holds:", storage.value)
    try:
        await lock_a.release()  # fenced too: b's key is left alone
    except LockLost:
        print("a's release: LockLost")
    print("b still holds the lock:", lock_b.locked)
    await lock_b.release()


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
