"""What to do when a write's outcome is unknown.

    python docs/examples/handling_outcome_unknown.py [http://127.0.0.1:2379]

A deadline far too short for any answer (one microsecond) stands in for a lost answer: the
request is written, then the deadline passes and the call fails with WriteTimeout, an
OutcomeUnknown. Whether etcd applied the write varies from run to run, which is the point: the
program finds out. (Should the answer ever win the race, the write simply succeeds.)

Works under the key prefix ``examples/unknown/`` and deletes it again at the end.
"""

import sys
import uuid

from twisted.internet import defer, task

from txetcd import Client, Get, ModRevision, OutcomeUnknown, Put, Timeout

PREFIX = b"examples/unknown/"
TOO_SHORT = 0.000001  # seconds


async def put_and_verify(client, key, value):
    """A plain put; on OutcomeUnknown read the key back to learn what happened.

    Seeing the value proves the put landed. Not seeing it is good evidence, not proof: a write
    etcd had already proposed can still commit a moment later. Writing the same value twice is
    harmless here, so sending it again is fine; when it is not, use a conditional write as in
    set_if_unchanged() below.
    """
    try:
        await client.put(key, value, timeout=TOO_SHORT)
        print("  put answered in time")
        return
    except OutcomeUnknown as e:
        print(f"  {type(e).__name__}: {e}")
    current = await client.get(key)
    applied = current.value == value
    print(f"  read back: the put was {'applied' if applied else 'not applied'}")
    if not applied:
        await client.put(key, value)
        print("  sent it again (the same value twice would do no harm)")


async def set_if_unchanged(client, key, mod_revision, value, first_timeout=None):
    """Write key=value if nobody wrote the key after mod_revision.

    Returns True when the key holds our value, False when another writer got there first.
    The ModRevision compare lets the txn apply at most once, so it is safe to send it again
    after OutcomeUnknown. The value carries a unique token so we can recognise our own write.
    """
    timeout = first_timeout
    for attempt in range(1, 4):
        try:
            kwargs = {"timeout": timeout} if timeout is not None else {}
            result = await client.txn(
                compare=[ModRevision(key) == mod_revision],
                success=[Put(key, value)],
                failure=[Get(key)],
                **kwargs,
            )
        except OutcomeUnknown as e:
            print(f"  attempt {attempt}: {type(e).__name__}, sending the same txn again")
            timeout = None  # the client's default deadline from now on
            continue
        except Timeout:
            # A plain Timeout (not WriteTimeout): the request was never sent.
            print(f"  attempt {attempt}: not sent before the deadline, sending it again")
            timeout = None
            continue
        if result.succeeded:
            print(f"  attempt {attempt}: the compare held, our value is written")
            return True
        current = result.responses[0].kv
        if current is not None and current.value == value:
            print(
                f"  attempt {attempt}: the compare failed because an earlier attempt "
                f"was applied (at revision {current.mod_revision})"
            )
            return True
        print(f"  attempt {attempt}: another writer changed the key first")
        return False
    raise RuntimeError("no answer after three attempts")


async def main(reactor, endpoint):
    client = Client(endpoint, reactor=reactor, timeout=10)
    try:
        await client.delete_prefix(PREFIX)  # also opens the connection

        print("1. a plain put whose answer is lost")
        await put_and_verify(client, PREFIX + b"plain", b"hello")
        print(f"   value is {(await client.get(PREFIX + b'plain')).value!r}")

        print("2. a conditional write, sent again safely")
        key = PREFIX + b"config"
        start = await client.put(key, b"version 1")
        ours = b"version 2 from " + uuid.uuid4().hex.encode()
        ok = await set_if_unchanged(
            client, key, start.header.revision, ours, first_timeout=TOO_SHORT
        )
        final = await client.get(key)
        print(f"   our value is in place: {ok and final.value == ours}")
        print(f"   the key was written {final.kv.version - 1} more time(s) after version 1")

        print("3. a writer that lost the race")
        ok = await set_if_unchanged(
            client, key, start.header.revision, b"version 2 from someone late"
        )
        print(f"   our value is in place: {ok}")

        await client.delete_prefix(PREFIX)
    finally:
        await client.close()
    print("done")


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
