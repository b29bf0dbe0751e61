"""Software transactional memory on etcd (Go's ``concurrency.NewSTM``)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._args import key_bytes, to_bytes
from txetcd._lease import LeaseLike
from txetcd._txn import Compare, Delete, ModRevision, Op, Put
from txetcd._types import TxnResult

__all__ = ["stm", "STM", "Isolation"]

#: isolation levels, with Go's meanings
Isolation = Literal["serializable-snapshot", "serializable", "repeatable-reads", "read-committed"]
_LEVELS = ("serializable-snapshot", "serializable", "repeatable-reads", "read-committed")


class STM:
    """What an STM ``apply`` function reads and writes through (one attempt).

    ``await stm.get(key)`` gives the value (``None``: absent), as of this attempt's isolation;
    ``stm.put(key, value)`` and ``stm.delete(key)`` are buffered and committed together if no
    key read (and, with serializable-snapshot, none written) changed meanwhile.
    """

    def __init__(self, client: Any, isolation: str) -> None:
        self._client = client
        self._isolation = isolation
        self._reads: Dict[bytes, Any] = {}  # key -> RangeResult
        self._writes: Dict[bytes, Optional[Tuple[bytes, Any]]] = {}  # None: delete
        self._first_revision: Optional[int] = None

    def get(self, key: Union[bytes, str]) -> "Deferred[Optional[bytes]]":
        """The value of ``key`` (``None`` if absent); our own writes are seen."""
        k = key_bytes(key)
        return Deferred.fromCoroutine(self._get(k))

    def rev(self, key: Union[bytes, str]) -> "Deferred[int]":
        """The mod revision of ``key`` as read in this attempt (0: absent)."""
        k = key_bytes(key)

        async def revision() -> int:
            await self._get(k)
            result = self._reads.get(k)
            return result.kv.mod_revision if result else 0

        return Deferred.fromCoroutine(revision())

    async def _get(self, key: bytes) -> Optional[bytes]:
        if key in self._writes:
            write = self._writes[key]
            return None if write is None else write[0]
        if key in self._reads and self._isolation != "read-committed":
            return self._reads[key].value  # type: ignore[no-any-return]
        pinned = self._isolation in ("serializable", "serializable-snapshot")
        revision = self._first_revision if pinned and self._first_revision else 0
        result = await self._client.get(key, revision=revision, serializable=False)
        if self._first_revision is None:
            self._first_revision = result.header.revision
        self._reads[key] = result
        return result.value  # type: ignore[no-any-return]

    def put(
        self, key: Union[bytes, str], value: Union[bytes, str], lease_id: LeaseLike = 0
    ) -> None:
        """Write ``key = value`` at commit."""
        self._writes[key_bytes(key)] = (to_bytes(value, "value"), lease_id)

    def delete(self, key: Union[bytes, str]) -> None:
        """Delete ``key`` at commit."""
        self._writes[key_bytes(key)] = None

    def _compares(self) -> List[Compare]:
        if self._isolation == "read-committed":
            return []
        compares = []
        for key, result in self._reads.items():
            # unchanged since our read: its mod revision is below the next one
            if result:
                rev = result.kv.mod_revision + 1
            elif self._isolation != "repeatable-reads" and self._first_revision is not None:
                rev = self._first_revision + 1  # read at the pinned revision
            else:
                rev = result.header.revision + 1
            compares.append(ModRevision(key) < rev)
        if self._isolation == "serializable-snapshot" and self._first_revision is not None:
            for key in self._writes:
                if key not in self._reads:
                    compares.append(ModRevision(key) < self._first_revision + 1)
        return compares

    def _ops(self) -> List[Op]:
        ops: List[Op] = []
        for key, write in self._writes.items():
            if write is None:
                ops.append(Delete(key))
            else:
                ops.append(Put(key, write[0], lease_id=write[1]))
        return ops


def stm(
    client: Any,
    apply: Callable[[STM], Any],
    *,
    isolation: Isolation = "serializable-snapshot",
    max_attempts: Optional[int] = None,
) -> "Deferred[TxnResult]":
    """Run ``apply(stm)`` (an ``async def``, an ``inlineCallbacks`` function or a plain one)
    and commit its writes atomically, running it again whenever a key it read (or, with
    ``"serializable-snapshot"``, wrote) changed before the commit.

    Isolation levels (Go's): ``"serializable-snapshot"`` (the default: reads pinned at the
    first read's revision; read and written keys must not change before the commit),
    ``"serializable"`` (reads pinned at the first read's revision; read keys must not change),
    ``"repeatable-reads"`` (a key reads the same within an attempt; read keys must not
    change), ``"read-committed"`` (reads see the latest value; no conflict check at all).

    Fires with the commit's :class:`~txetcd.TxnResult`. ``max_attempts``: give up after so
    many conflicts (the last result, ``succeeded=False``, is then returned). A commit whose
    outcome is unknown fails with :class:`~txetcd.OutcomeUnknown`: it is not run again.
    """
    if isolation not in _LEVELS:
        raise ValueError(f"isolation must be one of {', '.join(_LEVELS)}, not {isolation!r}")
    if not callable(apply):
        raise TypeError("apply must be callable")
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        raise ValueError("max_attempts must be a positive int or None")
    return Deferred.fromCoroutine(_run(client, apply, isolation, max_attempts))


async def _run(
    client: Any, apply: Callable[[STM], Any], isolation: str, max_attempts: Optional[int]
) -> TxnResult:
    attempt = 0
    while True:
        attempt += 1
        s = STM(client, isolation)
        outcome = apply(s)
        if inspect.isawaitable(outcome):
            await outcome
        result: TxnResult = await client.txn(compare=s._compares(), success=s._ops())
        if result.succeeded or (max_attempts is not None and attempt >= max_attempts):
            return result
