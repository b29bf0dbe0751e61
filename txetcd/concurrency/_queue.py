"""The fair queue under :class:`Lock` and :class:`Election`: owner keys ordered by create
revision; a waiter's turn comes when every key older than its own is gone (Go's
``waitDeletes``), which it learns from its client's one watch of the queue's deletes
(``_feed``), so a release wakes the next waiter with no read."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple, Optional, Tuple, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import SessionExpired
from txetcd._txn import Compare, CreateRevision, Delete, Get, LeaseId, Put
from txetcd.concurrency._common import Guard, owner_key, resending, session_lease
from txetcd.concurrency._feed import View, established, feed_for
from txetcd.concurrency._session import Session

__all__ = [
    "Entry",
    "enqueue",
    "wait_turn",
    "fenced_delete",
    "withdraw",
    "first_of",
    "first_to_fire",
]

_log = Logger()

T = TypeVar("T")

#: how many keys ahead of ours one read returns; with more queued, the wait reads again once
#: those are gone
AHEAD_LIMIT = 64

#: how many times a waiter's key is asked to go after a failed wait before leaving it to its
#: lease
CLEANUP_ATTEMPTS = 5


def first_to_fire(ds: "list[Deferred[Any]]") -> "Deferred[Tuple[int, Any]]":
    """(index, result) of the first of ``ds`` to fire, or its failure (the others are
    cancelled). Unlike Twisted's ``race``, a failure ends the race: a wait that broke must not
    leave the caller waiting on the other Deferreds."""

    def cancel_all(_: object) -> None:
        for d in ds:
            d.cancel()

    out: Deferred[Tuple[int, Any]] = Deferred(cancel_all)
    decided: "list[int]" = []

    def settle(result: Any, index: int) -> None:
        if out.called or decided:
            return None  # a loser, cancelled (or late): nothing to report
        decided.append(index)  # before cancelling the others, whose errbacks come back here
        for i, d in enumerate(ds):
            if i != index:
                d.cancel()
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback((index, result))
        return None

    for i, d in enumerate(ds):
        d.addBoth(settle, i)
    return out


def first_of(prefix: bytes) -> Get:
    """The prefix's oldest key: the owner or leader."""
    return Get(prefix, prefix=True, sort_target="create", sort_order="ascend", limit=1)


def newest_ahead(prefix: bytes, revision: int = 0) -> Get:
    """The keys under ``prefix`` created before ``revision`` (all of them if 0), newest first,
    at most :data:`AHEAD_LIMIT`, keys only."""
    return Get(
        prefix,
        prefix=True,
        max_create_revision=revision - 1 if revision else 0,
        sort_target="create",
        sort_order="descend",
        limit=AHEAD_LIMIT,
        keys_only=True,
    )


class Entry(NamedTuple):
    """Our place in a queue, as :func:`enqueue` found it."""

    #: our owner key and its create revision
    key: bytes
    revision: int
    #: whether this call created the key
    created: bool
    #: no key is older than ours: we own it
    first: bool
    #: keys older than ours at revision ``read`` (newest first), ``None`` if not read
    ahead: Optional[Tuple[bytes, ...]]
    #: the read of ``ahead`` was cut by its limit: older keys may remain
    more: bool
    read: int


async def enqueue(
    client: Any, session: Session, prefix: bytes, value: bytes
) -> Tuple[Entry, Optional[View]]:
    """Create our key under ``prefix`` unless it exists, reading the keys ahead of it in the
    same txn. The txn is safe to resend: once the key exists it only reads it.

    If the client already runs a feed on ``prefix``, a view of it is taken before the txn is
    sent, so that the txn's read is all a wait needs (see ``_feed``): returned with the entry
    (the caller closes it)."""
    lease = await session_lease(session)
    key = owner_key(prefix, lease)
    feed = established(client, prefix)
    view = None if feed is None else feed.view(key)
    try:
        entry = await _enqueue(client, prefix, value, key, lease)
    except BaseException:
        if view is not None:
            view.close()
        raise
    return entry, view


@lru_cache(maxsize=256)
def _create_ops(
    prefix: bytes, key: bytes, value: bytes, lease: int
) -> Tuple[Tuple[Compare], Tuple[Get, Put], Tuple[Get, Get]]:
    # built once per key and value: a lock taken again and again sends the same txn
    return (
        (CreateRevision(key) == 0,),
        # the read comes before the put: every key it finds is older than ours
        (newest_ahead(prefix), Put(key, value, lease_id=lease)),
        (Get(key), first_of(prefix)),
    )


@lru_cache(maxsize=256)
def _delete_of(key: bytes) -> Tuple[Delete]:
    return (Delete(key),)


async def _enqueue(client: Any, prefix: bytes, value: bytes, key: bytes, lease: int) -> Entry:
    attempts = 0

    compare, success, failure = _create_ops(prefix, key, value, lease)

    def create() -> Any:
        nonlocal attempts
        attempts += 1
        return client.txn(compare=compare, success=success, failure=failure)

    try:
        result = await resending(client.clock, create)
    except BaseException:
        if attempts:  # a create may have been applied: take our key back
            await _withdraw_unknown(client, key, lease)
        raise
    revision = result.header.revision
    if result.succeeded:
        found = result.responses[0]
        ahead = tuple(kv.key for kv in found.kvs)
        return Entry(key, revision, True, not ahead, ahead, found.more, revision)
    mine = result.responses[0].kv
    owner = result.responses[1].kv
    assert mine is not None
    first = owner is not None and owner.create_revision == mine.create_revision
    # Created by an earlier attempt whose answer was lost: ours all the same.
    return Entry(
        key, mine.create_revision, attempts > 1, first, () if first else None, False, revision
    )


async def _withdraw_unknown(client: Any, key: bytes, lease: int) -> None:
    try:
        await resending(
            client.clock,
            lambda: client.txn(compare=[LeaseId(key) == lease], success=[Delete(key)]),
            CLEANUP_ATTEMPTS,
        )
    except Exception as e:  # best effort: the lease takes the key at the latest
        _log.warn("could not remove waiter key {key!r}: {error}", key=key, error=e)


async def _race(guard: Guard, d: "Deferred[T]") -> T:
    index, outcome = await first_to_fire([d, guard.lost])
    if index == 1:
        raise SessionExpired(f"lost while waiting: {outcome}", cause=outcome)
    result: T = outcome
    return result


async def _read_ahead(
    client: Any, guard: Guard, view: View, prefix: bytes
) -> Tuple[Tuple[bytes, ...], bool, int]:
    await _race(guard, view.feed.created)
    view.record()  # before the read is sent
    read: Deferred[Any] = Deferred.fromCoroutine(
        resending(
            client.clock,
            lambda: client.txn(success=[newest_ahead(prefix, guard.revision), Get(guard.key)]),
        )
    )
    result = await _race(guard, read)
    found, mine = result.responses
    if not mine or mine.kv.create_revision != guard.revision:
        raise SessionExpired(f"{guard.key!r} was gone while waiting: the session expired")
    return tuple(kv.key for kv in found.kvs), bool(found.more), result.header.revision


async def wait_turn(
    client: Any, guard: Guard, prefix: bytes, entry: Entry, view: Optional[View]
) -> None:
    """Wait until no key under ``prefix`` is older than ours (``guard.key``); then we own it.
    :class:`~txetcd.SessionExpired` if our key or lease is lost meanwhile.

    ``view`` is one taken before ``entry`` was read (by :func:`enqueue`), already followed by
    ``guard``: it is told what the entry read (also when we are first, so that it goes on to
    report our key's delete). Without it, one is made and the keys ahead are read again once
    the feed runs. The wait ends on the event of the last delete ahead: our own key was not deleted
    up to that revision, or the view would have said so (see ``_feed`` for why this is as good
    as reading it again after the wait, etcd #11456)."""
    ahead, more, read = entry.ahead, entry.more, entry.read
    if view is None:
        view = feed_for(client, prefix).view(guard.key)
        guard.follow(view)
        ahead = None
    while True:
        if ahead is None:
            ahead, more, read = await _read_ahead(client, guard, view, prefix)
        more = await _race(guard, view.expect(read, ahead, more))
        if not more:
            break
        ahead = None
    if guard.is_lost:
        raise SessionExpired(f"{guard.key!r} was lost at the end of the wait")


async def fenced_delete(
    client: Any, key: bytes, revision: int, limit: Optional[int] = None
) -> bool:
    """Delete ``key`` only if it is still the one created at ``revision`` (never a newer
    owner's); True if it was deleted."""
    result = await resending(
        client.clock,
        lambda: client.txn(compare=[CreateRevision(key) == revision], success=_delete_of(key)),
        limit,
    )
    return bool(result.succeeded)


async def withdraw(client: Any, key: bytes, revision: int) -> None:
    """Remove a waiter's key after a failed or cancelled wait (best effort: the key is on the
    session's lease, so it goes with the session at the latest)."""
    try:
        await fenced_delete(client, key, revision, CLEANUP_ATTEMPTS)
    except Exception as e:  # best effort: the lease takes the key at the latest
        _log.warn("could not remove waiter key {key!r}: {error}", key=key, error=e)
