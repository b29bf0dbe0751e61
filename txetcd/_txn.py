"""Transactions: compare builders and the operations a txn runs.

Compares are built from a target and never mutate anything::

    from txetcd import Value, Version, CreateRevision, ModRevision, LeaseId, Put, Get, Delete, Txn

    await client.txn(
        compare=[Value(b"config/mode") == b"blue", CreateRevision(b"lock/x") == 0],
        success=[Put(b"config/mode", b"green"), Get(b"config/", prefix=True)],
        failure=[Get(b"config/mode")],
    )

``Value(k) == v`` is sugar for ``Value(k).eq(v)``; both return a new :class:`Compare`. Compares
and operations show as the code that makes them: ``Put(b'k', b'v', lease_id=5)``.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Literal, Sequence, Tuple, Union

from txetcd._args import check_int, key_range, prefix_range_end, to_bytes
from txetcd._kv import delete_request, put_request, range_request
from txetcd._lease import LeaseLike, lease_id_of
from txetcd._proto import rpc_pb2
from txetcd._types import SortOrder, SortTarget

__all__ = [
    "Compare",
    "Value",
    "Version",
    "CreateRevision",
    "ModRevision",
    "LeaseId",
    "Get",
    "Put",
    "Delete",
    "Txn",
    "Op",
    "SortOrderName",
    "SortTargetName",
    "txn_request",
]

_PBCompare: Any = rpc_pb2.Compare
_RESULTS = {"==": 0, ">": 1, "<": 2, "!=": 3}
_OPERATORS = {v: k for k, v in _RESULTS.items()}
#: compare target number -> (its class name, the operand's field)
_TARGETS = {
    0: ("Version", "version"),
    1: ("CreateRevision", "create_revision"),
    2: ("ModRevision", "mod_revision"),
    3: ("Value", "value"),
    4: ("LeaseId", "lease"),
}

#: the names ``sort_order`` takes besides :class:`~txetcd.SortOrder` itself
SortOrderName = Literal["none", "ascend", "descend"]
#: the names ``sort_target`` takes besides :class:`~txetcd.SortTarget` itself
SortTargetName = Literal["key", "version", "create", "mod", "value"]


class Compare:
    """One condition of a txn: ``target(key) <op> operand``; build it with a target class.

    Its repr is the code that builds it, e.g. ``Value(b'k') == b'v'``.
    """

    __slots__ = ("_pb",)

    def __init__(self, pb: Any) -> None:
        self._pb = pb

    def to_protobuf(self) -> Any:
        """A copy of the ``etcdserverpb.Compare`` message."""
        c = _PBCompare()
        c.CopyFrom(self._pb)
        return c

    def __repr__(self) -> str:
        return _compare_text(self._pb)


class _Target:
    """What a compare looks at, for one key or every key of a range (all must match)."""

    __slots__ = ("key", "range_end")
    _target = 0
    _field = ""

    def __init__(self, key: object, range_end: object = None, *, prefix: bool = False) -> None:
        self.key, self.range_end = key_range(key, range_end, prefix)

    def _operand(self, value: object) -> object:
        return check_int(value, f"{type(self).__name__} operand", minimum=None)

    def _compare(self, op: str, value: object) -> Compare:
        pb = _PBCompare(
            key=self.key,
            range_end=self.range_end,
            target=self._target,
            result=_RESULTS[op],
            **{self._field: self._operand(value)},
        )
        return Compare(pb)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_range_text(self.key, self.range_end)})"

    def eq(self, value: object) -> Compare:
        """``target == value``."""
        return self._compare("==", value)

    def ne(self, value: object) -> Compare:
        """``target != value``."""
        return self._compare("!=", value)

    def lt(self, value: object) -> Compare:
        """``target < value``."""
        return self._compare("<", value)

    def gt(self, value: object) -> Compare:
        """``target > value``."""
        return self._compare(">", value)

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return self.eq(value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return self.ne(value)

    def __lt__(self, value: object) -> Compare:
        return self.lt(value)

    def __gt__(self, value: object) -> Compare:
        return self.gt(value)

    __hash__ = None  # type: ignore[assignment]


class Version(_Target):
    """The key's version (number of writes since creation; 0 if it does not exist)."""

    _target = 0
    _field = "version"


class CreateRevision(_Target):
    """The revision that created the key (0 if it does not exist: ``== 0`` tests absence)."""

    _target = 1
    _field = "create_revision"


class ModRevision(_Target):
    """The revision of the key's last write."""

    _target = 2
    _field = "mod_revision"


class Value(_Target):
    """The key's value (compared as bytes; a VALUE compare on a missing key is always false)."""

    _target = 3
    _field = "value"

    def _operand(self, value: object) -> object:
        return to_bytes(value, "Value operand")


class LeaseId(_Target):
    """The ID of the lease the key is attached to (0: none); compare it with an ID, a lease
    result, a :class:`~txetcd.KeepAlive` or a :class:`~txetcd.Session` (``LeaseId(k) == grant``).
    """

    _target = 4
    _field = "lease"

    def _operand(self, value: object) -> object:
        return check_int(lease_id_of(value, "LeaseId operand"), "LeaseId operand", minimum=None)


class Op:
    """An operation inside a txn: a :class:`Get`, :class:`Put`, :class:`Delete` or :class:`Txn`.

    Its repr is the code that builds it, e.g. ``Put(b'k', b'v', lease_id=5)``.
    """

    __slots__ = ("_op",)
    _op: Any  # the etcdserverpb.RequestOp
    read_only = True

    def to_protobuf(self) -> Any:
        """The ``etcdserverpb.RequestOp`` message."""
        op = rpc_pb2.RequestOp()
        op.CopyFrom(self._op)
        return op

    def __repr__(self) -> str:
        return _op_text(self._op)


class Get(Op):
    """A range read in a txn; takes the options of :meth:`txetcd.Client.get`."""

    __slots__ = ()

    def __init__(
        self,
        key: Union[bytes, str],
        range_end: Union[bytes, str, None] = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: Union[SortOrder, SortOrderName] = SortOrder.NONE,
        sort_target: Union[SortTarget, SortTargetName] = SortTarget.KEY,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> None:
        self._op = rpc_pb2.RequestOp(
            request_range=range_request(
                key,
                range_end,
                prefix=prefix,
                limit=limit,
                revision=revision,
                sort_order=sort_order,
                sort_target=sort_target,
                serializable=serializable,
                keys_only=keys_only,
                count_only=count_only,
                min_mod_revision=min_mod_revision,
                max_mod_revision=max_mod_revision,
                min_create_revision=min_create_revision,
                max_create_revision=max_create_revision,
            )
        )


class Put(Op):
    """A put in a txn; takes the options of :meth:`txetcd.Client.put` (``lease=``, the old
    spelling of ``lease_id=``, still works)."""

    __slots__ = ()
    read_only = False

    def __init__(
        self,
        key: Union[bytes, str],
        value: Union[bytes, str] = b"",
        *,
        lease_id: LeaseLike = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        lease: Any = None,
    ) -> None:
        if lease is not None:
            lease_id = lease_alias(lease, lease_id)
        req = put_request(
            key,
            value,
            lease=lease_id,
            prev_kv=prev_kv,
            ignore_value=ignore_value,
            ignore_lease=ignore_lease,
        )
        self._op = rpc_pb2.RequestOp(request_put=req)


class Delete(Op):
    """A delete in a txn (one key, a range, or ``prefix=True``; ``prev_kv``)."""

    __slots__ = ()
    read_only = False

    def __init__(
        self,
        key: Union[bytes, str],
        range_end: Union[bytes, str, None] = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> None:
        req = delete_request(key, range_end, prefix=prefix, prev_kv=prev_kv)
        self._op = rpc_pb2.RequestOp(request_delete_range=req)


class Txn(Op):
    """A nested txn inside a txn."""

    __slots__ = ("read_only",)

    def __init__(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
    ) -> None:
        req, self.read_only = txn_request(compare, success, failure)
        self._op = rpc_pb2.RequestOp(request_txn=req)


OpLike = Union[Get, Put, Delete, Txn]


def _ops(ops: Iterable[Op], what: str) -> Tuple[Sequence[Any], bool]:
    if isinstance(ops, (Op, Compare)):
        raise TypeError(f"{what} must be a list of operations, not a single {type(ops).__name__}")
    out = []
    read_only = True
    for op in ops:
        if not isinstance(op, Op):
            raise TypeError(
                f"{what} must hold Get, Put, Delete or Txn operations, not {type(op).__name__}"
            )
        out.append(op._op)
        read_only = read_only and op.read_only
    return out, read_only


def txn_request(
    compare: Iterable[Compare], success: Iterable[Op], failure: Iterable[Op]
) -> Tuple[Any, bool]:
    """(``TxnRequest``, read_only) from compares and ops, checking every element's type."""
    if isinstance(compare, Compare):
        raise TypeError("compare must be a list of Compare, not a single Compare")
    cmps = []
    for c in compare:
        if not isinstance(c, Compare):
            hint = " (did you compare a target with `is` or a bool?)" if isinstance(c, bool) else ""
            raise TypeError(f"compare must hold Compare objects, not {type(c).__name__}{hint}")
        cmps.append(c._pb)
    ok, ok_ro = _ops(success, "success")
    ko, ko_ro = _ops(failure, "failure")
    return rpc_pb2.TxnRequest(compare=cmps, success=ok, failure=ko), ok_ro and ko_ro


def lease_alias(lease: object, lease_id: object) -> Any:
    """``lease=``, the old spelling of ``lease_id=`` (both given: a ``TypeError``)."""
    if type(lease_id) is not int or lease_id != 0:
        raise TypeError("give lease_id or lease (its old spelling), not both")
    return lease


# -- reprs: the code that makes each compare and operation ------------------------------------

_SHOWN_VALUE = 64  # longer values show their start and their length


def _bytes_text(data: bytes) -> str:
    if len(data) <= _SHOWN_VALUE:
        return repr(data)
    return f"{data[:_SHOWN_VALUE]!r}...({len(data)} bytes)"


def _range_text(key: bytes, range_end: bytes) -> str:
    if not range_end:
        return repr(key)
    if key == b"\0" and range_end == b"\0":
        return "b'', prefix=True"
    if range_end == prefix_range_end(key):
        return f"{key!r}, prefix=True"
    return f"{key!r}, {range_end!r}"


def _compare_text(pb: Any) -> str:
    name, field = _TARGETS.get(pb.target, (f"<target {pb.target}>", "value"))
    operand = getattr(pb, field)
    shown = _bytes_text(operand) if isinstance(operand, bytes) else repr(operand)
    op = _OPERATORS.get(pb.result, f"<result {pb.result}>")
    return f"{name}({_range_text(pb.key, pb.range_end)}) {op} {shown}"


def _options_text(pairs: Sequence[Tuple[str, object]]) -> str:
    return "".join(f", {name}={value!r}" for name, value in pairs if value)


def _op_text(op: Any) -> str:
    kind = op.WhichOneof("request")
    if kind == "request_range":
        r = op.request_range
        options: List[Tuple[str, object]] = [
            ("limit", r.limit),
            ("revision", r.revision),
            ("sort_order", SortOrder(r.sort_order).name.lower() if r.sort_order else 0),
            ("sort_target", SortTarget(r.sort_target).name.lower() if r.sort_target else 0),
        ]
        options += [
            (name, getattr(r, name))
            for name in (
                "serializable",
                "keys_only",
                "count_only",
                "min_mod_revision",
                "max_mod_revision",
                "min_create_revision",
                "max_create_revision",
            )
        ]
        return f"Get({_range_text(r.key, r.range_end)}{_options_text(options)})"
    if kind == "request_put":
        p = op.request_put
        options = [
            ("lease_id", p.lease),
            ("prev_kv", p.prev_kv),
            ("ignore_value", p.ignore_value),
            ("ignore_lease", p.ignore_lease),
        ]
        value = "" if p.ignore_value else f", {_bytes_text(p.value)}"
        return f"Put({p.key!r}{value}{_options_text(options)})"
    if kind == "request_delete_range":
        d = op.request_delete_range
        shown = _range_text(d.key, d.range_end)
        return f"Delete({shown}{_options_text([('prev_kv', d.prev_kv)])})"
    if kind == "request_txn":
        t = op.request_txn
        compares = ", ".join(_compare_text(c) for c in t.compare)
        success = ", ".join(_op_text(o) for o in t.success)
        failure = ", ".join(_op_text(o) for o in t.failure)
        return f"Txn([{compares}], [{success}], [{failure}])"
    return "<empty operation>"
