"""The code under test: services announce themselves in etcd, and clients wait for them.

Nothing here knows about tests: time comes from the client's clock (``client.clock``), which
is the reactor in production and a ``task.Clock`` under test.
"""

from twisted.internet.defer import Deferred

from txetcd import EventType, Session

PREFIX = b"services/"


async def announce(client, name, address, ttl=10):
    """Put ``services/<name> = address`` on a new session's lease and return the session: the
    key lives while the session does (its close, or the process's death, removes it)."""
    session = Session(client, ttl=ttl)
    await session.ready
    await client.put(PREFIX + name, address, lease_id=session)
    return session


def wait_for(client, name, timeout):
    """A Deferred that fires with the address of ``name`` once it is announced (at once if it
    is), or fails with ``twisted.internet.defer.TimeoutError`` after ``timeout`` seconds."""

    async def wait():
        current = await client.get(PREFIX + name)
        if current:
            return current.value
        watch = client.watch(PREFIX + name, start_revision=current.header.revision + 1)
        try:
            async for batch in watch:
                for event in batch.events:
                    if event.type == EventType.PUT:
                        return event.value
        finally:
            watch.cancel()

    return Deferred.fromCoroutine(wait()).addTimeout(timeout, client.clock)
