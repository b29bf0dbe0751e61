"""Frozen value types for what etcd answers. Keys and values are always ``bytes``."""

from __future__ import annotations

import collections
import enum
import sys
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Dict,
    Generic,
    Iterator,
    NamedTuple,
    Optional,
    SupportsIndex,
    Tuple,
    TypeVar,
    Union,
    overload,
)

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


# -- results: frozen records -------------------------------------------------------------------

_new = tuple.__new__
_item = tuple.__getitem__
_items = tuple.__iter__
_tuplegetter: Any = getattr(collections, "_tuplegetter", None)  # namedtuple's field accessor
R = TypeVar("R", bound="_Record")
T = TypeVar("T")


def _field(index: int, doc: str) -> Any:
    """A read-only attribute giving item ``index`` of the record's tuple."""
    if _tuplegetter is not None:
        return _tuplegetter(index, doc)
    return property(lambda self: _item(self, index), doc=doc)  # pragma: no cover - not CPython


class _Record(Tuple[Any, ...]):
    """The base of the result types: a frozen record with named fields.

    A tuple underneath, so it is built in one C call on the decoding hot path, immutable,
    hashable, equal to another record when every field is, picklable. Not a tuple of its fields
    to its users: a record does not iterate, index or measure its fields (``for x in put_result``
    is a ``TypeError`` naming the fields to use); :class:`_ListRecord` makes the one list a
    result holds its items. ``_fields``, ``_asdict()`` and ``_replace()`` work as on a
    namedtuple, and so does ``match``.
    """

    __slots__ = ()
    _fields: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for index, name in enumerate(cls._fields):
            setattr(cls, name, _field(index, f"The ``{name}`` field."))

    def _not_a_container(self) -> TypeError:
        fields = ", ".join(f".{name}" for name in self._fields)
        return TypeError(f"a {type(self).__name__} is a record, not a sequence: use {fields}")

    def __iter__(self) -> Iterator[Any]:
        raise self._not_a_container()

    def __len__(self) -> int:
        raise self._not_a_container()

    def __getitem__(self, index: Any) -> Any:
        raise self._not_a_container()

    def __contains__(self, item: object) -> bool:
        raise self._not_a_container()

    def __bool__(self) -> bool:
        return True

    def __getnewargs__(self) -> Tuple[Any, ...]:  # pickle and copy: the fields, as __new__'s
        return tuple(_items(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, _items(self), strict=True))
        return f"{type(self).__name__}({shown})"

    def _asdict(self) -> Dict[str, Any]:
        """The fields as a dict, in order."""
        return dict(zip(self._fields, _items(self), strict=True))

    def _replace(self: R, **changes: Any) -> R:
        """A copy with some fields changed."""
        values = [changes.pop(n, v) for n, v in zip(self._fields, _items(self), strict=True)]
        if changes:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(changes))}")
        return _new(type(self), values)


class _ListRecord(_Record, Generic[T]):
    """A record that holds one list of results, and is a sequence of it: iterating, indexing,
    ``len()`` and ``in`` go to that list (the field at ``_list``); ``bool()`` is whether it has
    any item."""

    __slots__ = ()
    _list: ClassVar[int]

    def __iter__(self) -> Iterator[T]:
        return iter(_item(self, self._list))

    def __len__(self) -> int:
        return len(_item(self, self._list))

    @overload
    def __getitem__(self, index: SupportsIndex) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Tuple[T, ...]: ...

    def __getitem__(self, index: Any) -> Any:
        items: Tuple[T, ...] = _item(self, self._list)
        return items[index]

    def __contains__(self, item: object) -> bool:
        return item in _item(self, self._list)

    def __reversed__(self) -> Iterator[T]:
        items: Tuple[T, ...] = _item(self, self._list)
        return reversed(items)

    def __bool__(self) -> bool:
        return bool(_item(self, self._list))

    def index(self, value: Any, start: SupportsIndex = 0, stop: SupportsIndex = sys.maxsize) -> int:
        """The position of ``value`` in the list (``ValueError`` if absent)."""
        items: Tuple[T, ...] = _item(self, self._list)
        return items.index(value, start, stop)


class RangeResult(_ListRecord[KeyValue]):
    """The answer to a get: a sequence of the :class:`KeyValue` found, in the requested order.

    ``for kv in result``, ``result[0]``, ``len(result)``, ``kv in result`` and ``bool(result)``
    (any key found?) all go to ``kvs``. ``count`` is the number of keys in the whole range (it
    ignores ``limit`` and the min/max revision filters, and is set with ``count_only``, when
    ``kvs`` is empty); ``more`` says that ``limit`` cut the list.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "kvs", "more", "count")
    _list = 1
    if TYPE_CHECKING:
        header: ResponseHeader
        kvs: Tuple[KeyValue, ...]
        more: bool
        count: int  # type: ignore[assignment]  # etcd's name; it shadows tuple.count

    def __new__(
        cls, header: ResponseHeader, kvs: Tuple[KeyValue, ...], more: bool, count: int
    ) -> "RangeResult":
        return _new(cls, (header, kvs, more, count))

    @property
    def value(self) -> Optional[bytes]:
        """The first key's value, or ``None`` when nothing matched (sugar for single gets)."""
        kvs = self.kvs
        return kvs[0].value if kvs else None

    @property
    def kv(self) -> Optional[KeyValue]:
        """The first key, or ``None`` when nothing matched."""
        kvs = self.kvs
        return kvs[0] if kvs else None


class PutResult(_Record):
    """The answer to a put; ``prev_kv`` only when asked for and the key existed."""

    __slots__ = ()
    __match_args__ = _fields = ("header", "prev_kv")
    if TYPE_CHECKING:
        header: ResponseHeader
        prev_kv: Optional[KeyValue]

    def __new__(cls, header: ResponseHeader, prev_kv: Optional[KeyValue]) -> "PutResult":
        return _new(cls, (header, prev_kv))


class DeleteResult(_Record):
    """The answer to a delete: how many keys went, and their last state if asked for.

    A record, not a sequence: ``deleted`` counts the keys deleted whether or not ``prev_kvs``
    (filled only with ``prev_kv=True``) lists them, so iterate ``result.prev_kvs``.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "deleted", "prev_kvs")
    if TYPE_CHECKING:
        header: ResponseHeader
        deleted: int
        prev_kvs: Tuple[KeyValue, ...]

    def __new__(
        cls, header: ResponseHeader, deleted: int, prev_kvs: Tuple[KeyValue, ...]
    ) -> "DeleteResult":
        return _new(cls, (header, deleted, prev_kvs))


class TxnResult(_ListRecord["OpResult"]):
    """The answer to a txn. A failed compare is ``succeeded=False``, not an error.

    ``responses`` holds one result per operation of the branch that ran, in order
    (:class:`RangeResult`, :class:`PutResult`, :class:`DeleteResult` or a nested
    :class:`TxnResult`). Headers of sub-results carry only ``revision``.

    A sequence of ``responses`` (``got, = await client.txn(..., success=[Get(k)])``,
    ``result[0]``, ``len(result)``), except that ``bool(result)`` is ``succeeded``: ``if await
    client.txn(...):`` asks whether the compares held, whatever the branch returned.
    """

    __slots__ = ()
    __match_args__ = _fields = ("header", "succeeded", "responses")
    _list = 2
    if TYPE_CHECKING:
        header: ResponseHeader
        succeeded: bool
        responses: Tuple[OpResult, ...]

    def __new__(
        cls, header: ResponseHeader, succeeded: bool, responses: Tuple["OpResult", ...]
    ) -> "TxnResult":
        return _new(cls, (header, succeeded, responses))

    def __bool__(self) -> bool:
        return bool(_item(self, 1))


class CompactResult(_Record):
    """The answer to a compaction."""

    __slots__ = ()
    __match_args__ = _fields = ("header",)
    if TYPE_CHECKING:
        header: ResponseHeader

    def __new__(cls, header: ResponseHeader) -> "CompactResult":
        return _new(cls, (header,))


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
