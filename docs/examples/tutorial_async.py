"""The tutorial's program in ``async def`` style: connect, put and get, a transaction, a watch,
a lease and a session, then close.

    python docs/examples/tutorial_async.py [http://127.0.0.1:2379]

Works under the key prefix ``tutorial/async/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Get, LeaseNotFound, ModRevision, Put, Session

PREFIX = b"tutorial/async/"
COLOUR = PREFIX + b"config/colour"


async def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await client.delete_prefix(PREFIX)  # start clean
        await put_and_get(client)
        await compare_and_swap(client)
        await watch_jobs(client)
        await leases(client)
        await client.delete_prefix(PREFIX)
    finally:
        await client.close()
    print("done")


async def put_and_get(client):
    await client.put(COLOUR, b"blue")
    got = await client.get(COLOUR)
    print(f"colour is {got.value!r}, version {got.kv.version}")
    missing = await client.get(PREFIX + b"config/size")
    print(f"a missing key: value={missing.value}, found={bool(missing)}")


async def compare_and_swap(client):
    # Read, then write only if nobody wrote in between: compare the key's mod revision.
    seen = (await client.get(COLOUR)).kv
    result = await client.txn(
        compare=[ModRevision(COLOUR) == seen.mod_revision],
        success=[Put(COLOUR, b"green")],
        failure=[Get(COLOUR)],
    )
    print(f"blue -> green: succeeded={result.succeeded}")
    # The same txn again: the key changed since `seen`, so the failure branch runs.
    result = await client.txn(
        compare=[ModRevision(COLOUR) == seen.mod_revision],
        success=[Put(COLOUR, b"red")],
        failure=[Get(COLOUR)],
    )
    print(f"stale swap: succeeded={result.succeeded}, colour is {result[0].value!r}")


async def watch_jobs(client):
    watch = client.watch_prefix(PREFIX + b"jobs/")
    await watch.created  # from here on, every change under jobs/ is seen
    await client.put(PREFIX + b"jobs/1", b"queued")
    await client.put(PREFIX + b"jobs/1", b"running")
    await client.delete(PREFIX + b"jobs/1")
    seen = 0
    async for batch in watch:
        for event in batch.events:
            name = event.key[len(PREFIX) :].decode()
            print(f"watch: {event.type.name} {name} {event.value!r}")
            seen += 1
        if seen == 3:
            watch.cancel()  # ends the loop
    await watch.done  # fires with None after cancel()


async def leases(client):
    # A lease: keys attached to it go when it is revoked or expires.
    lease = await client.grant(10)
    await client.put(PREFIX + b"tmp", b"x", lease_id=lease)
    await client.revoke(lease)
    print(f"tmp after the revoke: {(await client.get(PREFIX + b'tmp')).value}")
    try:
        await client.revoke(lease)
    except LeaseNotFound:
        print("revoking it again: LeaseNotFound")

    # A session keeps its lease alive (on the client's clock) until it is closed.
    async with Session(client, ttl=10) as session:
        await client.put(PREFIX + b"workers/me", b"alive", lease_id=session)
        print(f"while the session lives: {(await client.get(PREFIX + b'workers/me')).value!r}")
    print(f"once it is closed: {(await client.get(PREFIX + b'workers/me')).value}")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
