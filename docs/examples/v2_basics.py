"""The v2 client: set, read, compare-and-swap, in-order keys and an eternal watch.

    python docs/examples/v2_basics.py [http://127.0.0.1:2379]

Needs an etcd 3.4 or 3.5 started with ``--enable-v2=true``. Works under the directory
``/examples/v2`` and deletes it again at the end.
"""

import sys
from urllib.parse import urlsplit

from twisted.internet import defer, task

from txetcd.v2 import Client, EtcdCompareFailed, EtcdKeyNotFound, Resynced

DIR = "/examples/v2"


async def main(reactor, endpoint):
    url = urlsplit(endpoint)
    client = Client(url.hostname, url.port or 2379, reactor=reactor, read_timeout=10)
    try:
        try:
            await client.delete(DIR, recursive=True)  # start clean
        except EtcdKeyNotFound:
            pass

        # set: the class of the result says what happened
        created = await client.set(DIR + "/colour", "blue")
        print(f"set colour=blue: {type(created).__name__}, new_key={created.new_key}")
        replaced = await client.set(DIR + "/colour", "green")
        print(
            f"set colour=green: {type(replaced).__name__}, "
            f"previous value {replaced.prev_node.value!r}"
        )

        # read; a missing key is an error, as in python-etcd
        got = await client.read(DIR + "/colour")
        print(f"read colour -> {got.value!r}")
        try:
            await client.read(DIR + "/nothing-here")
        except EtcdKeyNotFound as e:
            print(f"read a missing key -> EtcdKeyNotFound, errorCode {e.error_code}")

        # compare-and-swap on the value, then on the modified index
        swapped = await client.test_and_set(DIR + "/colour", "red", "green")
        print(f"test_and_set green -> red: {type(swapped).__name__}")
        try:
            await client.test_and_set(DIR + "/colour", "blue", "green")
        except EtcdCompareFailed as e:
            print(f"test_and_set green -> blue: EtcdCompareFailed {e.cause}")
        # python-etcd's spelling of an option works too
        await client.write(DIR + "/colour", "black", prevIndex=swapped.modified_index)
        print(f"colour is {(await client.get(DIR + '/colour')).value!r}")

        # in-order keys: each append makes a key named by its creation index
        for job in ("first", "second", "third"):
            await client.append(DIR + "/queue", job)
        queue = await client.read(DIR + "/queue", sorted=True)
        print(f"queue: {[node.value for node in queue.nodes]}")

        # an eternal watch of the directory, from right after what a read saw
        start = await client.read(DIR, recursive=True)
        watch = client.eternal_watch(DIR, index=start.etcd_index + 1, recursive=True)
        await client.set(DIR + "/colour", "white")
        await client.delete(DIR + "/queue", recursive=True)
        seen = 0
        async for item in watch:
            if isinstance(item, Resynced):  # history was lost: item.result is a fresh read
                print(f"resynced at index {item.etcd_index}")
                continue
            print(f"watch: {item.action} {item.key} {item.value!r}")
            seen += 1
            if seen == 2:
                break
        watch.cancel()
        await watch.done

        await client.delete(DIR, recursive=True)
    finally:
        await client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
