"""A first program: put, get, a transaction and a first watch.

    python docs/examples/quickstart.py [http://127.0.0.1:2379]

Works under the key prefix ``quickstart/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Get, Put, Value


async def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor)
    try:
        await client.put(b"quickstart/colour", b"blue")
        result = await client.get(b"quickstart/colour")
        print("colour:", result.value)  # b'blue'

        txn = await client.txn(
            compare=[Value(b"quickstart/colour") == b"blue"],
            success=[Put(b"quickstart/colour", b"green")],
            failure=[Get(b"quickstart/colour")],
        )
        print("it was blue, now it is green:", txn.succeeded)  # True

        # A watch sees every change after it was created, in order.
        watch = client.watch_prefix(b"quickstart/")
        await watch.created
        await client.put(b"quickstart/size", b"XL")
        await client.delete(b"quickstart/colour")
        seen = 0
        async for batch in watch:  # one batch per revision
            for event in batch.events:
                print("watch:", event.type.name, event.key, event.value)
                seen += 1
            if seen == 2:
                watch.cancel()  # ends the loop

        await client.delete_prefix(b"quickstart/")
    finally:
        await client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
