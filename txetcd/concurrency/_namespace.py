"""Namespace: a view of a client with every key under a prefix (Go's ``namespace`` package)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._args import key_range, prefix_range_end, to_bytes
from txetcd._txn import Compare, Op
from txetcd._types import (
    DeleteResult,
    Event,
    KeyValue,
    PutResult,
    RangeResult,
    TxnResult,
    WatchBatch,
)

__all__ = ["Namespace"]


class _RawOp(Op):
    __slots__ = ("read_only",)

    def __init__(self, pb: Any, read_only: bool) -> None:
        self._op = pb
        self.read_only = read_only


class Namespace:
    """``client`` with every key under ``prefix``: keys given are prefixed, keys returned are
    stripped, in KV calls, txn compares and operations (nested ones too) and watches. Leases
    pass through. Sessions, locks and elections made on a Namespace live inside it::

        ns = Namespace(client, b"app1/")          # or client.namespace(b"app1/")
        await ns.put(b"config", b"x")             # writes app1/config
        (await ns.get(b"config")).kv.key          # b"config"

    It owns nothing: close the client itself.
    """

    def __init__(self, client: Any, prefix: Union[bytes, str]) -> None:
        pfx = to_bytes(prefix, "prefix")
        if not pfx:
            raise ValueError("prefix must not be empty")
        self.client = client
        self.prefix = pfx

    def __repr__(self) -> str:
        return f"<Namespace {self.prefix!r} of {self.client!r}>"

    # -- what the recipes and sessions read --------------------------------------------------------
    @property
    def clock(self) -> Any:
        """The client's clock."""
        return self.client.clock

    @property
    def reactor(self) -> Any:
        """The client's reactor."""
        return self.client.reactor

    @property
    def timeout(self) -> Optional[float]:
        """The client's default call timeout."""
        return self.client.timeout  # type: ignore[no-any-return]

    def namespace(self, prefix: Union[bytes, str]) -> "Namespace":
        """A namespace inside this one."""
        return Namespace(self.client, self.prefix + to_bytes(prefix, "prefix"))

    # -- key mapping -------------------------------------------------------------------------------
    def _range(self, key: bytes, end: bytes) -> Tuple[bytes, bytes]:
        if key == b"\0" and end == b"\0":  # every key
            return self.prefix, prefix_range_end(self.prefix)
        if end == b"\0":  # every key from `key` on
            return self.prefix + key, prefix_range_end(self.prefix)
        return self.prefix + key, (self.prefix + end if end else b"")

    def _strip(self, kv: Optional[KeyValue]) -> Optional[KeyValue]:
        if kv is None:
            return None
        return kv._replace(key=kv.key[len(self.prefix) :])

    def _strip_result(self, result: Any) -> Any:
        if isinstance(result, RangeResult):
            kvs = tuple(self._strip(kv) for kv in result.kvs)
            return RangeResult(result.header, kvs, result.more, result.count)  # type: ignore[arg-type]
        if isinstance(result, PutResult):
            return PutResult(result.header, self._strip(result.prev_kv))
        if isinstance(result, DeleteResult):
            prev = tuple(self._strip(kv) for kv in result.prev_kvs)
            return DeleteResult(result.header, result.deleted, prev)  # type: ignore[arg-type]
        if isinstance(result, TxnResult):
            responses = tuple(self._strip_result(r) for r in result.responses)
            return TxnResult(result.header, result.succeeded, responses)
        return result

    def _map_pb_range(self, pb: Any) -> None:
        pb.key, pb.range_end = self._range(pb.key, pb.range_end)

    def _map_op(self, pb: Any) -> None:
        kind = pb.WhichOneof("request")
        if kind == "request_range":
            self._map_pb_range(pb.request_range)
        elif kind == "request_put":
            pb.request_put.key = self.prefix + pb.request_put.key
        elif kind == "request_delete_range":
            self._map_pb_range(pb.request_delete_range)
        elif kind == "request_txn":
            txn = pb.request_txn
            for c in txn.compare:
                self._map_pb_range(c)
            for sub in list(txn.success) + list(txn.failure):
                self._map_op(sub)

    # -- KV ----------------------------------------------------------------------------------------
    def get(
        self,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        **options: Any,
    ) -> "Deferred[RangeResult]":
        """:meth:`txetcd.Client.get` inside the namespace."""
        k, end = self._range(*key_range(key, range_end, prefix))
        d = self.client.get(k, range_end=end or None, **options)
        return d.addCallback(self._strip_result)  # type: ignore[no-any-return]

    def get_prefix(self, prefix: Union[bytes, str], **options: Any) -> "Deferred[RangeResult]":
        """:meth:`txetcd.Client.get_prefix` inside the namespace."""
        return self.get(prefix, prefix=True, **options)

    def get_range(
        self, start: Union[bytes, str], end: Union[bytes, str], **options: Any
    ) -> "Deferred[RangeResult]":
        """:meth:`txetcd.Client.get_range` inside the namespace."""
        return self.get(start, range_end=end, **options)

    def put(
        self, key: Union[bytes, str], value: Union[bytes, str], **options: Any
    ) -> "Deferred[PutResult]":
        """:meth:`txetcd.Client.put` inside the namespace."""
        k, _ = key_range(key)
        d = self.client.put(self.prefix + k, value, **options)
        return d.addCallback(self._strip_result)  # type: ignore[no-any-return]

    def delete(
        self,
        key: Union[bytes, str],
        *,
        range_end: Union[bytes, str, None] = None,
        prefix: bool = False,
        **options: Any,
    ) -> "Deferred[DeleteResult]":
        """:meth:`txetcd.Client.delete` inside the namespace."""
        k, end = self._range(*key_range(key, range_end, prefix))
        d = self.client.delete(k, range_end=end or None, **options)
        return d.addCallback(self._strip_result)  # type: ignore[no-any-return]

    def delete_prefix(self, prefix: Union[bytes, str], **options: Any) -> "Deferred[DeleteResult]":
        """:meth:`txetcd.Client.delete_prefix` inside the namespace."""
        return self.delete(prefix, prefix=True, **options)

    def delete_range(
        self, start: Union[bytes, str], end: Union[bytes, str], **options: Any
    ) -> "Deferred[DeleteResult]":
        """:meth:`txetcd.Client.delete_range` inside the namespace."""
        return self.delete(start, range_end=end, **options)

    def txn(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
        **options: Any,
    ) -> "Deferred[TxnResult]":
        """:meth:`txetcd.Client.txn` inside the namespace (compares and operations, nested
        txns included)."""
        d = self.client.txn(
            self._compares(compare), self._ops(success), self._ops(failure), **options
        )
        return d.addCallback(self._strip_result)  # type: ignore[no-any-return]

    def _compares(self, compares: Iterable[Compare]) -> List[Compare]:
        if isinstance(compares, Compare):
            raise TypeError("compare must be a list of Compare, not a single Compare")
        out = []
        for c in compares:
            if not isinstance(c, Compare):
                raise TypeError(f"compare must hold Compare objects, not {type(c).__name__}")
            pb = c.to_protobuf()
            self._map_pb_range(pb)
            out.append(Compare(pb))
        return out

    def _ops(self, ops: Iterable[Op]) -> List[Op]:
        if isinstance(ops, Op):
            raise TypeError(f"operations must be a list, not a single {type(ops).__name__}")
        out: List[Op] = []
        for op in ops:
            if not isinstance(op, Op):
                raise TypeError(
                    f"operations must be Get, Put, Delete or Txn, not {type(op).__name__}"
                )
            pb = op.to_protobuf()
            self._map_op(pb)
            out.append(_RawOp(pb, op.read_only))
        return out

    # -- watches -----------------------------------------------------------------------------------
    def watch(
        self,
        key: Union[bytes, str],
        *,
        prefix: bool = False,
        range_end: Union[bytes, str, None] = None,
        callback: Optional[Callable[[WatchBatch], Any]] = None,
        **options: Any,
    ) -> "NamespacedWatch":
        """:meth:`txetcd.Client.watch` inside the namespace: batches carry stripped keys."""
        k, end = self._range(*key_range(key, range_end, prefix))
        wrapped = None
        if callback is not None:
            if not callable(callback):
                raise TypeError("callback must be callable")

            def wrapped(batch: WatchBatch) -> Any:
                return callback(self._strip_batch(batch))

        watch = self.client.watch(k, range_end=end or None, callback=wrapped, **options)
        return NamespacedWatch(watch, self)

    def watch_prefix(self, prefix: Union[bytes, str], **options: Any) -> "NamespacedWatch":
        """:meth:`txetcd.Client.watch_prefix` inside the namespace."""
        return self.watch(prefix, prefix=True, **options)

    def _strip_batch(self, batch: WatchBatch) -> WatchBatch:
        events = tuple(
            Event(e.type, self._strip(e.kv), self._strip(e.prev_kv))  # type: ignore[arg-type]
            for e in batch.events
        )
        return WatchBatch(batch.revision, events, batch.header)

    # -- leases (not namespaced) -------------------------------------------------------------------
    def grant(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.grant`."""
        return self.client.grant(*args, **kwargs)

    def revoke(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.revoke`."""
        return self.client.revoke(*args, **kwargs)

    def time_to_live(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.time_to_live`."""
        return self.client.time_to_live(*args, **kwargs)

    def leases(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.leases`."""
        return self.client.leases(*args, **kwargs)

    def keepalive_once(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.keepalive_once`."""
        return self.client.keepalive_once(*args, **kwargs)

    def keepalive(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`txetcd.Client.keepalive`."""
        return self.client.keepalive(*args, **kwargs)


class NamespacedWatch:
    """A :class:`~txetcd.Watch` of a :class:`Namespace`: the same, with stripped keys when
    iterated (``async for batch in watch``)."""

    def __init__(self, watch: Any, namespace: Namespace) -> None:
        self._watch = watch
        self._namespace = namespace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._watch, name)

    def __repr__(self) -> str:
        return f"<NamespacedWatch {self._namespace.prefix!r} {self._watch!r}>"

    def __aiter__(self) -> "NamespacedWatch":
        self._watch.__aiter__()
        return self

    async def __anext__(self) -> WatchBatch:
        batch = await self._watch.__anext__()
        return self._namespace._strip_batch(batch)
