"""The tutorial's program in ``inlineCallbacks`` style: connect, put and get, a transaction, a
watch, a lease and a session, then close.

    python docs/examples/tutorial_inline_callbacks.py [http://127.0.0.1:2379]

Works under the key prefix ``tutorial/ic/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Get, LeaseNotFound, ModRevision, Put, Session

PREFIX = b"tutorial/ic/"
COLOUR = PREFIX + b"config/colour"


@defer.inlineCallbacks
def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        yield client.delete_prefix(PREFIX)  # start clean
        yield put_and_get(client)
        yield compare_and_swap(client)
        yield watch_jobs(client, reactor)
        yield leases(client)
        yield client.delete_prefix(PREFIX)
    finally:
        yield client.close()
    print("done")


@defer.inlineCallbacks
def put_and_get(client):
    yield client.put(COLOUR, b"blue")
    got = yield client.get(COLOUR)
    print(f"colour is {got.value!r}, version {got.kv.version}")
    missing = yield client.get(PREFIX + b"config/size")
    print(f"a missing key: value={missing.value}, found={bool(missing)}")


@defer.inlineCallbacks
def compare_and_swap(client):
    # Read, then write only if nobody wrote in between: compare the key's mod revision.
    seen = (yield client.get(COLOUR)).kv
    result = yield client.txn(
        compare=[ModRevision(COLOUR) == seen.mod_revision],
        success=[Put(COLOUR, b"green")],
        failure=[Get(COLOUR)],
    )
    print(f"blue -> green: succeeded={result.succeeded}")
    # The same txn again: the key changed since `seen`, so the failure branch runs.
    result = yield client.txn(
        compare=[ModRevision(COLOUR) == seen.mod_revision],
        success=[Put(COLOUR, b"red")],
        failure=[Get(COLOUR)],
    )
    print(f"stale swap: succeeded={result.succeeded}, colour is {result[0].value!r}")


@defer.inlineCallbacks
def watch_jobs(client, reactor):
    events = []
    three = defer.Deferred()

    def changed(batch):  # called with each WatchBatch: every event of one revision
        for event in batch.events:
            name = event.key[len(PREFIX) :].decode()
            print(f"watch: {event.type.name} {name} {event.value!r}")
            events.append(event)
        if len(events) == 3 and not three.called:
            three.callback(None)

    watch = client.watch_prefix(PREFIX + b"jobs/", callback=changed)
    yield watch.created  # from here on, every change under jobs/ is seen
    yield client.put(PREFIX + b"jobs/1", b"queued")
    yield client.put(PREFIX + b"jobs/1", b"running")
    yield client.delete(PREFIX + b"jobs/1")
    yield three.addTimeout(10, reactor)
    watch.cancel()
    yield watch.done  # fires with None after cancel()


@defer.inlineCallbacks
def leases(client):
    # A lease: keys attached to it go when it is revoked or expires.
    lease = yield client.grant(10)
    yield client.put(PREFIX + b"tmp", b"x", lease_id=lease)
    yield client.revoke(lease)
    print(f"tmp after the revoke: {(yield client.get(PREFIX + b'tmp')).value}")
    try:
        yield client.revoke(lease)
    except LeaseNotFound:
        print("revoking it again: LeaseNotFound")

    # A session keeps its lease alive (on the client's clock) until it is closed.
    session = Session(client, ttl=10)
    yield session.ready
    try:
        yield client.put(PREFIX + b"workers/me", b"alive", lease_id=session)
        alive = yield client.get(PREFIX + b"workers/me")
        print(f"while the session lives: {alive.value!r}")
    finally:
        yield session.close()  # stops the keepalive and revokes the lease
    print(f"once it is closed: {(yield client.get(PREFIX + b'workers/me')).value}")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(main, [endpoint])
