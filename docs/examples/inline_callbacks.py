"""The same client from ``inlineCallbacks`` code: yield each Deferred.

    python docs/examples/inline_callbacks.py [http://127.0.0.1:2379]

Works under the key prefix ``examples/ic/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Get, Put, Value

PREFIX = b"examples/ic/"


@defer.inlineCallbacks
def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        yield client.delete_prefix(PREFIX)
        result = yield client.put(PREFIX + b"mode", b"blue")
        print(f"put mode=blue at revision {result.header.revision}")

        got = yield client.get(PREFIX + b"mode")
        print(f"get mode -> {got.value!r}")

        txn = yield client.txn(
            compare=[Value(PREFIX + b"mode") == b"blue"],
            success=[Put(PREFIX + b"mode", b"green")],
            failure=[Get(PREFIX + b"mode")],
        )
        print(f"txn blue -> green: succeeded={txn.succeeded}")

        txn = yield client.txn(
            compare=[Value(PREFIX + b"mode") == b"blue"],
            success=[Put(PREFIX + b"mode", b"red")],
            failure=[Get(PREFIX + b"mode")],
        )
        print(f"same txn again: succeeded={txn.succeeded}, mode is {txn.responses[0].value!r}")

        deleted = yield client.delete_prefix(PREFIX)
        print(f"deleted {deleted.deleted} key")
    finally:
        yield client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(main, [endpoint])
