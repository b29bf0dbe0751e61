"""Transactions: compare builders and the operations a txn runs.

Compares are built from a target and never mutate anything::

    from txetcd import Value, Version, CreateRevision, ModRevision, LeaseId, Put, Get, Delete, Txn

    await client.txn(
        compare=[Value(b"config/mode") == b"blue", CreateRevision(b"lock/x") == 0],
        success=[Put(b"config/mode", b"green"), Get(b"config/", prefix=True)],
        failure=[Get(b"config/mode")],
    )

``Value(k) == v`` is sugar for ``Value(k).eq(v)``; both return a new :class:`Compare`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence, Tuple, Union

from txetcd._args import check_int, key_range, to_bytes
from txetcd._kv import delete_request, put_request, range_request
from txetcd._proto import rpc_pb2

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
    "txn_request",
]

_PBCompare: Any = rpc_pb2.Compare
_RESULTS = {"==": 0, ">": 1, "<": 2, "!=": 3}


class Compare:
    """One condition of a txn: ``target(key) <op> operand``; build it with a target class."""

    __slots__ = ("_pb", "_text")

    def __init__(self, pb: Any, text: str) -> None:
        self._pb = pb
        self._text = text

    def to_protobuf(self) -> Any:
        """A copy of the ``etcdserverpb.Compare`` message."""
        c = _PBCompare()
        c.CopyFrom(self._pb)
        return c

    def __repr__(self) -> str:
        return f"<Compare {self._text}>"


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
        shown = self.key.decode("utf-8", "replace")
        if self.range_end:
            shown += ".." + self.range_end.decode("utf-8", "replace")
        return Compare(pb, f"{type(self).__name__}({shown}) {op} {value!r}")

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
    """The ID of the lease the key is attached to (0: none)."""

    _target = 4
    _field = "lease"


class Op:
    """An operation inside a txn: a :class:`Get`, :class:`Put`, :class:`Delete` or :class:`Txn`."""

    __slots__ = ("_op",)
    _op: Any  # the etcdserverpb.RequestOp
    read_only = True

    def to_protobuf(self) -> Any:
        """The ``etcdserverpb.RequestOp`` message."""
        op = rpc_pb2.RequestOp()
        op.CopyFrom(self._op)
        return op


class Get(Op):
    """A range read in a txn; takes the options of :meth:`txetcd.Client.get`."""

    __slots__ = ()

    def __init__(self, key: object, range_end: object = None, **options: Any) -> None:
        self._op = rpc_pb2.RequestOp(request_range=range_request(key, range_end, **options))


class Put(Op):
    """A put in a txn; takes the options of :meth:`txetcd.Client.put`."""

    __slots__ = ()
    read_only = False

    def __init__(self, key: object, value: object = b"", **options: Any) -> None:
        self._op = rpc_pb2.RequestOp(request_put=put_request(key, value, **options))


class Delete(Op):
    """A delete in a txn (one key, a range, or ``prefix=True``; ``prev_kv``)."""

    __slots__ = ()
    read_only = False

    def __init__(self, key: object, range_end: object = None, **options: Any) -> None:
        self._op = rpc_pb2.RequestOp(request_delete_range=delete_request(key, range_end, **options))


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
