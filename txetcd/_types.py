"""Frozen value types for what etcd answers. Keys and values are always ``bytes``."""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional, Tuple, Union

__all__ = [
    "ResponseHeader",
    "KeyValue",
    "RangeResult",
    "PutResult",
    "DeleteResult",
    "TxnResult",
    "CompactResult",
    "SortOrder",
    "SortTarget",
    "EventType",
    "Event",
    "WatchBatch",
]


class SortOrder(enum.IntEnum):
    """How a range is sorted (etcd's ``RangeRequest.SortOrder``)."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    """What a range is sorted by (etcd's ``RangeRequest.SortTarget``)."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class ResponseHeader(NamedTuple):
    """The header of every answer.

    ``revision`` is the store's revision when the request was served (for a write, the write's
    own revision; for a historical read, still the *current* revision).
    """

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


class KeyValue(NamedTuple):
    """One key as stored.

    ``create_revision`` never changes while the key exists, which makes it a fencing token for
    whoever created the key; ``version`` counts writes since creation; ``lease`` is 0 when none.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


class RangeResult(NamedTuple):
    """The answer to a get: ``kvs`` in the requested order.

    ``count`` is the number of keys in the whole range (it ignores ``limit`` and the min/max
    revision filters); ``more`` says that ``limit`` cut the list.
    """

    header: ResponseHeader
    kvs: Tuple[KeyValue, ...]
    more: bool
    count: int  # type: ignore[assignment]  # etcd's name; it shadows tuple.count

    @property
    def value(self) -> Optional[bytes]:
        """The first key's value, or ``None`` when nothing matched (sugar for single gets)."""
        return self.kvs[0].value if self.kvs else None

    @property
    def kv(self) -> Optional[KeyValue]:
        """The first key, or ``None`` when nothing matched."""
        return self.kvs[0] if self.kvs else None


class PutResult(NamedTuple):
    """The answer to a put; ``prev_kv`` only when asked for and the key existed."""

    header: ResponseHeader
    prev_kv: Optional[KeyValue]


class DeleteResult(NamedTuple):
    """The answer to a delete: how many keys went, and their last state if asked for."""

    header: ResponseHeader
    deleted: int
    prev_kvs: Tuple[KeyValue, ...]


class TxnResult(NamedTuple):
    """The answer to a txn. A failed compare is ``succeeded=False``, not an error.

    ``responses`` holds one result per operation of the branch that ran, in order
    (:class:`RangeResult`, :class:`PutResult`, :class:`DeleteResult` or a nested
    :class:`TxnResult`). Headers of sub-results carry only ``revision``.
    """

    header: ResponseHeader
    succeeded: bool
    responses: Tuple["OpResult", ...]


class CompactResult(NamedTuple):
    """The answer to a compaction."""

    header: ResponseHeader


OpResult = Union[RangeResult, PutResult, DeleteResult, TxnResult]


class EventType(enum.IntEnum):
    """What happened to a key (etcd's ``mvccpb.Event.EventType``)."""

    PUT = 0
    DELETE = 1


class Event(NamedTuple):
    """One change seen by a watch.

    For a DELETE, ``kv`` holds only the key and ``mod_revision`` (the deletion's revision).
    ``prev_kv`` is the key before the change, when the watch asked for it and there was one.
    """

    type: EventType
    kv: KeyValue
    prev_kv: Optional[KeyValue]

    @property
    def key(self) -> bytes:
        return self.kv.key

    @property
    def value(self) -> bytes:
        return self.kv.value

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


class WatchBatch(NamedTuple):
    """Every event a watch saw at one revision (a txn or a range delete makes several), in order.

    ``header`` is the header of the server message that carried them.
    """

    revision: int
    events: Tuple[Event, ...]
    header: ResponseHeader
