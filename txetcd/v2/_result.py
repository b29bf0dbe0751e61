"""Results of the v2 keys API: :class:`EtcdResult` and its subclasses typed by action.

:meth:`EtcdResult.from_response` turns an answer (body, headers, HTTP status) into a result
whose class says what happened: :class:`Got`, :class:`Set`, :class:`Created`, :class:`Updated`,
:class:`Deleted`, :class:`Expired`, :class:`ComparedThenSwapped` or :class:`ComparedThenDeleted`
(the way sublee/etc types them), or raises the v2 error the body carries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, Optional, Tuple, Type, Union

from txetcd._errors import ProtocolViolation
from txetcd._gateway.pbjson import json_loads
from txetcd.v2._errors import from_json

__all__ = [
    "EtcdResult",
    "Got",
    "Set",
    "Created",
    "Updated",
    "Deleted",
    "Expired",
    "ComparedThenSwapped",
    "ComparedThenDeleted",
    "RESULT_CLASSES",
    "result_class",
    "parse_expiration",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))$"
)


def parse_expiration(text: str) -> datetime:
    """An RFC 3339 time as etcd writes it (``2026-11-23T05:52:19.14871256Z``): an aware datetime.

    Fractions finer than a microsecond (etcd gives nanoseconds) are truncated.
    """
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction = m.group(7) or ""
    micro = int((fraction + "000000")[:6])
    if m.group(8):
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(-offset if m.group(9) == "-" else offset)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def _header(headers: Optional[Mapping[Any, Any]], name: str) -> Optional[str]:
    """The first value of header ``name`` (any case; str or bytes keys and values; lists)."""
    if not headers:
        return None
    wanted = name.lower()
    if type(headers) is dict:  # txetcd's own clients: lower-case bytes names, joined values
        fast = headers.get(wanted.encode("latin-1"))
        if type(fast) is bytes:
            return fast.decode("latin-1")
    for key, value in headers.items():
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.lower() != wanted:
            continue
        if isinstance(value, (list, tuple)):
            if not value:
                return None
            value = value[0]
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _int_header(headers: Optional[Mapping[Any, Any]], name: str) -> Optional[int]:
    text = _header(headers, name)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ProtocolViolation(f"header {name} is not a number: {text!r}") from None


def _int_value(raw: Any, name: str) -> Optional[int]:
    if type(raw) is not bytes:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolViolation(f"header {name} is not a number: {raw!r}") from None


def _opt_int(node: Mapping[str, Any], name: str) -> Optional[int]:
    value = node.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolViolation(f"v2 node field {name!r} is not an integer: {value!r}")
    return value


class EtcdResult:
    """One node of the v2 keys API, or the whole answer to a request (python-etcd's shape).

    For an answer, the node is the answer's ``node`` and ``action``, ``prev_node`` and the
    ``X-Etcd-Index``/``X-Raft-Index``/``X-Raft-Term`` headers are set; children of a directory
    are plain :class:`EtcdResult` nodes with no action.

    :ivar action: ``get``, ``set``, ``create``, ``update``, ``delete``, ``expire``,
        ``compareAndSwap`` or ``compareAndDelete`` (``None`` on child nodes).
    :ivar key: the key, ``/a/b`` (``/`` for the root, which etcd sends without a key).
    :ivar value: the value of a file (``""`` included); ``None`` for a directory or a deleted node.
    :ivar dir: true for a directory.
    :ivar ttl: seconds left to live, or ``None`` without a TTL.
    :ivar expiration: when the node expires (aware, UTC), or ``None``.
    :ivar expiration_text: ``expiration`` as etcd wrote it (with nanoseconds).
    :ivar created_index: the store index that created the node.
    :ivar modified_index: the store index of the node's last change.
    :ivar nodes: the immediate children of a directory (hidden ``_`` keys never appear).
    :ivar prev_node: the node before the change (``prevNode``), or ``None``.
    :ivar etcd_index: ``X-Etcd-Index``: the store index (for a wait, when it started).
    :ivar raft_index: ``X-Raft-Index``; ``raft_term``: ``X-Raft-Term``.
    :ivar cluster_id: ``X-Etcd-Cluster-Id`` (hex).
    :ivar status: the HTTP status when known (201 = created, 200 = anything else).
    :ivar new_key: the request created the node (HTTP 201; python-etcd's ``newKey``).
    :ivar raw: the decoded JSON this was built from.
    """

    action: Optional[str]
    key: str
    value: Optional[str]
    dir: bool
    ttl: Optional[int]
    expiration: Optional[datetime]
    expiration_text: Optional[str]
    created_index: Optional[int]
    modified_index: Optional[int]
    nodes: Tuple["EtcdResult", ...]
    prev_node: Optional["EtcdResult"]
    etcd_index: Optional[int]
    raft_index: Optional[int]
    raft_term: Optional[int]
    cluster_id: Optional[str]
    status: Optional[int]
    new_key: bool
    raw: Mapping[str, Any]

    def __init__(self, node: Mapping[str, Any], action: Optional[str] = None) -> None:
        if type(node) is not dict and not isinstance(node, Mapping):
            raise ProtocolViolation(f"a v2 node is a JSON object, not {node!r}")
        get = node.get
        key = get("key")
        value = get("value")
        ttl = get("ttl")
        created = get("createdIndex")
        modified = get("modifiedIndex")
        # (type() is int: JSON's true/false are bools, not indexes)
        if (
            (ttl is not None and type(ttl) is not int)
            or (created is not None and type(created) is not int)
            or (modified is not None and type(modified) is not int)
        ):
            for name in ("ttl", "createdIndex", "modifiedIndex"):
                _opt_int(node, name)  # raises, naming the field
        self.action = action
        self.key = key if type(key) is str else "/"
        self.dir = get("dir") is True
        self.value = value if type(value) is str else None
        self.ttl = ttl
        self.created_index = created
        self.modified_index = modified
        expiration = get("expiration")
        if expiration is None:
            self.expiration_text = self.expiration = None
        else:
            self.expiration_text = expiration if isinstance(expiration, str) else None
            try:
                self.expiration = (
                    parse_expiration(self.expiration_text) if self.expiration_text else None
                )
            except ValueError as e:
                raise ProtocolViolation(str(e)) from None
        children = get("nodes")
        if children:
            if not isinstance(children, (list, tuple)):
                raise ProtocolViolation(f"v2 'nodes' is not a list: {children!r}")
            self.nodes = tuple(EtcdResult(child) for child in children)
        else:
            self.nodes = ()
        self.prev_node = None
        self.etcd_index = self.raft_index = self.raft_term = None
        self.cluster_id = None
        self.status = None
        self.new_key = False
        self.raw = node

    # -- building ------------------------------------------------------------------------------

    @staticmethod
    def from_response(
        body: Union[bytes, str, Mapping[str, Any]],
        headers: Optional[Mapping[Any, Any]] = None,
        status: Optional[int] = None,
    ) -> "EtcdResult":
        """The typed result of a v2 keys answer, or raise the error it carries.

        ``body`` is the JSON body (bytes, text or decoded); ``headers`` any mapping of header
        names (any case, str or bytes) to a value or a list of values; ``status`` the HTTP
        status if known. An error body (``errorCode``) or a status >= 400 raises the matching
        :class:`~txetcd.v2.EtcdV2Error`; a body that is not a v2 answer raises
        :class:`~txetcd.ProtocolViolation`.
        """
        data: Any = body
        if type(body) is bytes or (type(body) is not dict and not isinstance(body, Mapping)):
            try:
                data = json_loads(body)
            except ValueError:
                if status is not None and status >= 400:
                    raise from_json(body, status) from None
                raise ProtocolViolation(f"v2 answer is not JSON: {body[:200]!r}") from None
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ProtocolViolation(f"v2 answer is not a JSON object: {data!r}")
        if "errorCode" in data or (status is not None and status >= 400):
            raise from_json(data, status)
        node = data.get("node")
        action = data.get("action")
        if (type(node) is not dict and not isinstance(node, Mapping)) or not isinstance(
            action, str
        ):
            raise ProtocolViolation(f"v2 answer without action and node: {data!r}")
        prev = data.get("prevNode")
        cls = result_class(action, status, prev is not None)
        result = cls(node, action)
        result.raw = data
        result.prev_node = EtcdResult(prev) if prev is not None else None
        result.status = status
        result.new_key = status == 201 if status is not None else cls is Created
        if type(headers) is dict and type(headers.get(b"x-etcd-index")) is bytes:
            # txetcd's own HTTP clients: lower-case bytes names, one bytes value each
            get = headers.get
            result.etcd_index = _int_value(get(b"x-etcd-index"), "X-Etcd-Index")
            result.raft_index = _int_value(get(b"x-raft-index"), "X-Raft-Index")
            result.raft_term = _int_value(get(b"x-raft-term"), "X-Raft-Term")
            cluster = get(b"x-etcd-cluster-id")
            result.cluster_id = cluster.decode("latin-1") if type(cluster) is bytes else None
            return result
        result.etcd_index = _int_header(headers, "X-Etcd-Index")
        result.raft_index = _int_header(headers, "X-Raft-Index")
        result.raft_term = _int_header(headers, "X-Raft-Term")
        result.cluster_id = _header(headers, "X-Etcd-Cluster-Id")
        return result

    # -- walking -------------------------------------------------------------------------------

    @property
    def leaves(self) -> Iterator["EtcdResult"]:
        """Every leaf below this node, depth first: files and empty directories.

        A file (or an empty directory) yields itself, as in python-etcd.
        """
        if not self.nodes:
            yield self
            return
        for child in self.nodes:
            yield from child.leaves

    @property
    def children(self) -> Iterator["EtcdResult"]:
        """The same as :attr:`leaves` (python-etcd's older name: a recursive flattening)."""
        return self.leaves

    def get_subtree(self, leaves_only: bool = False) -> Iterator["EtcdResult"]:
        """This node and every node below it, depth first (only leaves with ``leaves_only``)."""
        if not self.nodes:
            yield self
            return
        if not leaves_only:
            yield self
        for child in self.nodes:
            yield from child.get_subtree(leaves_only=leaves_only)

    # -- python-etcd's spellings ---------------------------------------------------------------

    @property
    def createdIndex(self) -> Optional[int]:  # noqa: N802
        """``created_index`` under etcd's (and python-etcd's) name."""
        return self.created_index

    @property
    def modifiedIndex(self) -> Optional[int]:  # noqa: N802
        """``modified_index`` under etcd's (and python-etcd's) name."""
        return self.modified_index

    @property
    def newKey(self) -> bool:  # noqa: N802
        """``new_key`` under python-etcd's name."""
        return self.new_key

    @property
    def _prev_node(self) -> Optional["EtcdResult"]:
        """``prev_node`` under python-etcd's name."""
        return self.prev_node

    # -- comparison ----------------------------------------------------------------------------

    def _fields(self) -> Tuple[object, ...]:
        return (
            type(self),
            self.action,
            self.key,
            self.value,
            self.dir,
            self.ttl,
            self.expiration_text,
            self.created_index,
            self.modified_index,
            self.nodes,
            self.prev_node,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EtcdResult):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"key={self.key!r}"]
        if self.action is not None:
            parts.insert(0, f"action={self.action!r}")
        if self.dir:
            parts.append(f"dir=True, nodes={len(self.nodes)}")
        else:
            parts.append(f"value={self.value!r}")
        if self.ttl is not None:
            parts.append(f"ttl={self.ttl}")
        parts.append(f"modified_index={self.modified_index!r}")
        if self.etcd_index is not None:
            parts.append(f"etcd_index={self.etcd_index}")
        return f"{type(self).__name__}({', '.join(parts)})"


class Got(EtcdResult):
    """A read (``get``)."""


class Set(EtcdResult):
    """A ``set`` that replaced an existing node (HTTP 200, with ``prev_node``)."""


class Created(EtcdResult):
    """A node created: ``create`` (``prevExist=false``, POST), or a ``set`` of a new key."""


class Updated(EtcdResult):
    """An ``update`` (``prevExist=true``, including a TTL refresh)."""


class Deleted(EtcdResult):
    """A ``delete``; the old value is in ``prev_node``."""


class Expired(EtcdResult):
    """An ``expire``: a TTL ran out (seen only by waits); the old node is in ``prev_node``."""


class ComparedThenSwapped(EtcdResult):
    """A ``compareAndSwap`` whose ``prevValue``/``prevIndex`` matched."""


class ComparedThenDeleted(EtcdResult):
    """A ``compareAndDelete`` whose ``prevValue``/``prevIndex`` matched."""


#: action -> result class (``set`` is :class:`Set` or :class:`Created`, see :func:`result_class`)
RESULT_CLASSES: Dict[str, Type[EtcdResult]] = {
    "get": Got,
    "set": Set,
    "create": Created,
    "update": Updated,
    "delete": Deleted,
    "expire": Expired,
    "compareAndSwap": ComparedThenSwapped,
    "compareAndDelete": ComparedThenDeleted,
}


def result_class(action: str, status: Optional[int], has_prev_node: bool) -> Type[EtcdResult]:
    """The class for an answer: by ``action``; a ``set`` is :class:`Created` when it made the
    node (HTTP 201, or no ``prevNode``: a wait's answer is 200 before its event is known).

    Unknown actions give :class:`EtcdResult`.
    """
    if action == "set" and (status == 201 or not has_prev_node):
        return Created
    return RESULT_CLASSES.get(action, EtcdResult)
