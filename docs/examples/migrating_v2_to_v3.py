"""The same small job twice: with txetcd.v2 (python-etcd's API) and with txetcd's v3 Client.

    python docs/examples/migrating_v2_to_v3.py [http://127.0.0.1:2379]

Needs an etcd 3.4 or 3.5 started with ``--enable-v2=true`` for the v2 half. Works under
``/examples/migrating`` (v2) and the prefix ``examples/migrating/`` (v3), and deletes both at
the end.
"""

import sys
from urllib.parse import urlsplit

from twisted.internet import defer, task

from txetcd import Client, CreateRevision, Put, Value
from txetcd.v2 import Client as V2Client
from txetcd.v2 import EtcdAlreadyExist, EtcdCompareFailed, EtcdKeyNotFound

DIR = "/examples/migrating"
PREFIX = b"examples/migrating/"


async def with_v2(reactor, endpoint):
    url = urlsplit(endpoint)
    client = V2Client(url.hostname, url.port or 2379, reactor=reactor, read_timeout=10)
    try:
        try:
            await client.delete(DIR, recursive=True)
        except EtcdKeyNotFound:
            pass
        # a key that expires unless refreshed: a TTL on the key
        await client.write(DIR + "/workers/w1", "up", ttl=30)
        # create only if absent
        await client.write(DIR + "/owner", "w1", prevExist=False)
        try:
            await client.write(DIR + "/owner", "w2", prevExist=False)
        except EtcdAlreadyExist:
            print("v2: owner taken")
        # compare-and-swap on the value
        await client.write(DIR + "/config/mode", "blue")
        await client.test_and_set(DIR + "/config/mode", "green", "blue")
        try:
            await client.test_and_set(DIR + "/config/mode", "red", "blue")
        except EtcdCompareFailed:
            print("v2: mode was not blue any more")
        # list a directory, then follow it from right after what was listed
        await client.write(DIR + "/config/size", "L")
        listing = await client.read(DIR + "/config", recursive=True, sorted=True)
        print("v2: config", {node.key.rsplit("/", 1)[1]: node.value for node in listing.leaves})
        watch = client.eternal_watch(DIR + "/config", index=listing.etcd_index + 1, recursive=True)
        await client.write(DIR + "/config/size", "XL")
        change = await anext(watch)
        print(f"v2: change {change.action} {change.key.rsplit('/', 1)[1]} = {change.value}")
        watch.cancel()
        # delete the whole directory
        await client.delete(DIR, recursive=True)
    finally:
        await client.close()


async def with_v3(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await client.delete_prefix(PREFIX)
        # a key that expires unless refreshed: a lease (client.keepalive(lease) refreshes it)
        lease = await client.grant(30)
        await client.put(PREFIX + b"workers/w1", b"up", lease_id=lease)
        # create only if absent: the key's create revision is 0 while it does not exist
        owner = PREFIX + b"owner"
        await client.txn(compare=[CreateRevision(owner) == 0], success=[Put(owner, b"w1")])
        taken = await client.txn(compare=[CreateRevision(owner) == 0], success=[Put(owner, b"w2")])
        if not taken.succeeded:
            print("v3: owner taken")
        # compare-and-swap on the value: a failed compare is a result, not an exception
        mode = PREFIX + b"config/mode"
        await client.put(mode, b"blue")
        await client.txn(compare=[Value(mode) == b"blue"], success=[Put(mode, b"green")])
        swapped = await client.txn(compare=[Value(mode) == b"blue"], success=[Put(mode, b"red")])
        if not swapped.succeeded:
            print("v3: mode was not blue any more")
        # list a prefix, then follow it from the revision right after the listing
        await client.put(PREFIX + b"config/size", b"L")
        listing = await client.get_prefix(PREFIX + b"config/")
        print(
            "v3: config", {kv.key.rsplit(b"/", 1)[1].decode(): kv.value.decode() for kv in listing}
        )
        watch = client.watch_prefix(PREFIX + b"config/", start_revision=listing.header.revision + 1)
        await client.put(PREFIX + b"config/size", b"XL")
        event = (await anext(watch)).events[0]
        name = event.key.rsplit(b"/", 1)[1].decode()
        print(f"v3: change {event.type.name} {name} = {event.value.decode()}")
        watch.cancel()
        # delete everything under the prefix (the lease goes with a revoke)
        await client.delete_prefix(PREFIX)
        await client.revoke(lease)
    finally:
        await client.close()


async def main(reactor, endpoint):
    await with_v2(reactor, endpoint)
    await with_v3(reactor, endpoint)
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
