"""Put, get, ranges and deletes, with the range options most programs need.

    python docs/examples/kv_basics.py [http://127.0.0.1:2379]

Works under the key prefix ``examples/kv/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client

PREFIX = b"examples/kv/"


async def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await client.delete_prefix(PREFIX)  # start clean

        # put: the header carries the revision the write created
        first = await client.put(PREFIX + b"colour", b"blue")
        print(f"put colour=blue at revision {first.header.revision}")
        again = await client.put(PREFIX + b"colour", b"green", prev_kv=True)
        print(f"put colour=green, previous value {again.prev_kv.value!r}")
        for name, value in ((b"size", b"10"), (b"shape", b"round"), (b"weight", b"3")):
            await client.put(PREFIX + name, value)

        # get: .value and .kv are the first key, or None
        got = await client.get(PREFIX + b"colour")
        kv = got.kv
        print(
            f"get colour -> {got.value!r}, version {kv.version}, "
            f"created at {kv.create_revision}, modified at {kv.mod_revision}"
        )
        missing = await client.get(PREFIX + b"nothing-here")
        print(
            f"get a missing key -> kvs={missing.kvs}, value={missing.value}, count={missing.count}"
        )

        # a read of the past: the key as it was at the first put's revision
        old = await client.get(PREFIX + b"colour", revision=first.header.revision)
        print(
            f"colour at revision {first.header.revision} -> {old.value!r} "
            f"(the header still says {old.header.revision})"
        )

        # get_prefix with a limit: count is the whole range, more says the list was cut
        page = await client.get_prefix(PREFIX, limit=2)
        print(
            f"first page: {[kv.key.decode() for kv in page.kvs]}, "
            f"more={page.more}, count={page.count}"
        )

        # sorting by value, descending; keys only; count only
        by_value = await client.get_prefix(PREFIX, sort_order="descend", sort_target="value")
        print(f"by value, descending: {[kv.value.decode() for kv in by_value.kvs]}")
        keys = await client.get_prefix(PREFIX, keys_only=True)
        print(f"keys only: {[kv.key.decode() for kv in keys.kvs]}")
        counted = await client.get_prefix(PREFIX, count_only=True)
        print(f"count only: {counted.count} keys, kvs={counted.kvs}")

        # get_range is [start, end)
        some = await client.get_range(PREFIX + b"c", PREFIX + b"t")
        print(f"range [c, t): {[kv.key.decode() for kv in some.kvs]}")

        # deletes
        one = await client.delete(PREFIX + b"weight", prev_kv=True)
        print(f"deleted weight (it was {one.prev_kvs[0].value!r}): {one.deleted} key")
        rest = await client.delete_prefix(PREFIX)
        print(f"delete_prefix -> {rest.deleted} keys deleted")
    finally:
        await client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
