"""The fair queue under :class:`Lock` and :class:`Election`: owner keys ordered by create
revision, each waiter waiting (by watch) only on the key just ahead of it (Go's
``waitDeletes``), so a release wakes one waiter."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import SessionExpired
from txetcd._txn import CreateRevision, Delete, Get, LeaseId, Put
from txetcd._types import KeyValue
from txetcd.concurrency._common import Guard, owner_key, resending, session_lease, wait_deleted
from txetcd.concurrency._session import Session

__all__ = ["enqueue", "wait_turn", "fenced_delete", "withdraw", "first_of", "first_to_fire"]

_log = Logger()

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


async def enqueue(
    client: Any, session: Session, prefix: bytes, value: bytes
) -> Tuple[bytes, int, bool, Optional[KeyValue]]:
    """Create our key under ``prefix`` unless it exists: (key, its create revision, whether
    this call created it, the owner). The txn is safe to resend: once the key exists it only
    reads it."""
    lease = await session_lease(session)
    key = owner_key(prefix, lease)
    attempts = 0

    def create() -> Any:
        nonlocal attempts
        attempts += 1
        return client.txn(
            compare=[CreateRevision(key) == 0],
            success=[Put(key, value, lease_id=lease), first_of(prefix)],
            failure=[Get(key), first_of(prefix)],
        )

    try:
        result = await resending(client.clock, create)
    except BaseException:
        if attempts:  # a create may have been applied: take our key back
            await _withdraw_unknown(client, key, lease)
        raise
    owner = result.responses[1].kv
    if result.succeeded:
        return key, result.header.revision, True, owner
    mine = result.responses[0].kv
    assert mine is not None
    # Created by an earlier attempt whose answer was lost: ours all the same.
    return key, mine.create_revision, attempts > 1, owner


async def _withdraw_unknown(client: Any, key: bytes, lease: int) -> None:
    try:
        await resending(
            client.clock,
            lambda: client.txn(compare=[LeaseId(key) == lease], success=[Delete(key)]),
            CLEANUP_ATTEMPTS,
        )
    except Exception as e:  # best effort: the lease takes the key at the latest
        _log.warn("could not remove waiter key {key!r}: {error}", key=key, error=e)


async def _predecessors_gone(client: Any, prefix: bytes, revision: int) -> None:
    while True:
        newest = await resending(
            client.clock,
            lambda: client.get(
                prefix,
                prefix=True,
                max_create_revision=revision - 1,
                sort_target="create",
                sort_order="descend",
                limit=1,
            ),
        )
        if not newest:
            return
        await wait_deleted(client, newest.kv.key, newest.header.revision)


async def wait_turn(client: Any, session: Session, guard: Guard, prefix: bytes) -> None:
    """Wait until no key under ``prefix`` is older than ours, then check that ours is still
    there; :class:`~txetcd.SessionExpired` if our key or lease is lost meanwhile."""
    waiting: Deferred[Any] = Deferred.fromCoroutine(
        _predecessors_gone(client, prefix, guard.revision)
    )
    lost: Deferred[Any] = guard.lost
    index, outcome = await first_to_fire([waiting, lost])
    if index == 1:
        raise SessionExpired(f"lost while waiting: {outcome}", cause=outcome)
    mine = await resending(client.clock, lambda: client.get(guard.key))
    if not mine or mine.kv.create_revision != guard.revision or guard.is_lost:
        raise SessionExpired(f"{guard.key!r} was gone after the wait: the session expired")


async def fenced_delete(
    client: Any, key: bytes, revision: int, limit: Optional[int] = None
) -> bool:
    """Delete ``key`` only if it is still the one created at ``revision`` (never a newer
    owner's); True if it was deleted."""
    result = await resending(
        client.clock,
        lambda: client.txn(compare=[CreateRevision(key) == revision], success=[Delete(key)]),
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
