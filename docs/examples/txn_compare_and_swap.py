"""Transactions: create-if-absent, compare-and-swap on a counter, and reading the failure branch.

    python docs/examples/txn_compare_and_swap.py [http://127.0.0.1:2379]

Works under the key prefix ``examples/txn/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, CreateRevision, Get, ModRevision, Put

PREFIX = b"examples/txn/"
COUNTER = PREFIX + b"counter"


async def create_if_absent(client, key, value):
    """Write key=value only if the key does not exist; return True if we created it."""
    result = await client.txn(
        compare=[CreateRevision(key) == 0],
        success=[Put(key, value)],
        failure=[Get(key)],
    )
    if not result.succeeded:
        print(f"  {key.decode()} exists already with {result.responses[0].value!r}")
    return result.succeeded


async def increment(client, key):
    """Add one to an integer stored at key, safely against concurrent writers.

    Returns (new value, how many times we lost a race and went around again).
    """
    current = await client.get(key)
    retries = 0
    while True:
        kv = current.kv
        value = int(kv.value) + 1
        result = await client.txn(
            compare=[ModRevision(key) == kv.mod_revision],  # nobody wrote since we read
            success=[Put(key, b"%d" % value)],
            failure=[Get(key)],  # else: read it again, same round trip
        )
        if result.succeeded:
            return value, retries
        retries += 1
        current = result.responses[0]


async def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await client.delete_prefix(PREFIX)

        print(f"create counter=0: {await create_if_absent(client, COUNTER, b'0')}")
        print(f"create counter=0 again: {await create_if_absent(client, COUNTER, b'0')}")

        # Ten increments at once: each compare-and-swap may lose a race and go around again,
        # but none is lost.
        results = await defer.gatherResults(
            [defer.ensureDeferred(increment(client, COUNTER)) for _ in range(10)]
        )
        final = await client.get(COUNTER)
        print(
            f"ten concurrent increments returned {sorted(v for v, _ in results)}, "
            f"going around again {sum(r for _, r in results)} times in all"
        )
        print(f"counter is {int(final.value)}")
        assert int(final.value) == 10

        await client.delete_prefix(PREFIX)
    finally:
        await client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
