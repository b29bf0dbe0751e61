"""The store behind :class:`txetcd.testing.MemoryEtcd`: keys with their history, and leases.

Everything here is plain data and synchronous: a request message goes in, a response message
comes out (or the typed error etcd's status would become, raised through
:func:`txetcd._errors.error_from_status`). Time, timers and streams live in ``_memory.py``.

History is kept per key as a list of ``(revision, KeyValue or None for a deletion)``; a read at
revision R takes each key's last entry at or below R. Every write appends to :attr:`events`
(one list per revision), which the watches replay and follow.
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from txetcd._errors import error_from_status
from txetcd._proto import kv_pb2, rpc_pb2

__all__ = ["Lease", "Store", "fail", "in_range"]

CLUSTER_ID = 14841639068965178418
MEMBER_ID = 10276657743932975437
RAFT_TERM = 2

#: etcd's defaults (``--max-txn-ops``, ``--max-request-bytes``, gRPC's limit above it)
MAX_TXN_OPS = 128
MAX_REQUEST_BYTES = 1572864
GRPC_MAX_BYTES = MAX_REQUEST_BYTES + 512 * 1024
#: the lowest TTL a single member with default raft timings grants, and the highest it accepts
MIN_LEASE_TTL = 2
MAX_LEASE_TTL = 9000000000

COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE = "etcdserver: mvcc: required revision is a future revision"
LEASE_NOT_FOUND = "etcdserver: requested lease not found"

_PUT = kv_pb2.Event.PUT
_DELETE = kv_pb2.Event.DELETE
_R = rpc_pb2.RangeRequest
_C = rpc_pb2.Compare


def fail(code: int, message: str) -> Exception:
    """The typed error etcd's status ``(code, message)`` turns into on the client."""
    return error_from_status(code, message)


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether ``key`` is in etcd's range ``[start, end)`` (``end`` empty: ``start`` alone;
    ``b"\\0"``: every key from ``start`` on)."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


class Lease:
    """A granted lease: its TTL, its deadline on the clock and its keys."""

    def __init__(self, lease_id: int, ttl: int, deadline: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.deadline = deadline
        self.keys: Set[bytes] = set()
        self.timer: Any = None


class Store:
    """Keys, revisions, history, compaction and leases, as one etcd member keeps them."""

    def __init__(self) -> None:
        self.revision = 1
        self.compacted = 0
        self.keys: List[bytes] = []  # sorted: every key that ever had a value
        self.history: Dict[bytes, List[Tuple[int, Optional[Any]]]] = {}
        #: (revision, events of that revision), in order
        self.events: List[Tuple[int, List[Any]]] = []
        self.leases: Dict[int, Lease] = {}
        self._next_lease = 7587862045913870000
        #: called with (revision, events) after each write
        self.on_write: Callable[[int, List[Any]], None] = lambda rev, evs: None

    # -- headers ---------------------------------------------------------------------------
    def header(self, revision: Optional[int] = None) -> Any:
        return rpc_pb2.ResponseHeader(
            cluster_id=CLUSTER_ID,
            member_id=MEMBER_ID,
            revision=self.revision if revision is None else revision,
            raft_term=RAFT_TERM,
        )

    # -- reading -------------------------------------------------------------------------------
    def current(self, key: bytes, revision: Optional[int] = None) -> Optional[Any]:
        """The key's KeyValue at ``revision`` (now by default), or None."""
        entries = self.history.get(key)
        if not entries:
            return None
        at = self.revision if revision is None else revision
        i = bisect.bisect_right(entries, at, key=lambda e: e[0]) - 1
        return entries[i][1] if i >= 0 else None

    def live(self, start: bytes, end: bytes, revision: Optional[int] = None) -> List[Any]:
        """The KeyValues in the range at ``revision``, in key order."""
        if not end:
            kv = self.current(start, revision)
            return [] if kv is None else [kv]
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end == b"\0" else bisect.bisect_left(self.keys, end)
        out = []
        for key in self.keys[lo:hi]:
            kv = self.current(key, revision)
            if kv is not None:
                out.append(kv)
        return out

    def check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise fail(11, FUTURE)
        if 0 < revision < self.compacted:
            raise fail(11, COMPACTED)

    def range(self, r: Any, header_revision: Optional[int] = None) -> Any:
        if not r.key:
            raise fail(3, "etcdserver: key is not provided")
        self.check_revision(r.revision)
        kvs = self.live(r.key, r.range_end, r.revision or None)
        resp = rpc_pb2.RangeResponse(header=self.header(header_revision), count=len(kvs))
        kvs = [
            kv
            for kv in kvs
            if (not r.min_mod_revision or kv.mod_revision >= r.min_mod_revision)
            and (not r.max_mod_revision or kv.mod_revision <= r.max_mod_revision)
            and (not r.min_create_revision or kv.create_revision >= r.min_create_revision)
            and (not r.max_create_revision or kv.create_revision <= r.max_create_revision)
        ]
        kvs = _sorted(kvs, r.sort_order, r.sort_target)
        if r.limit > 0 and len(kvs) > r.limit:
            kvs, resp.more = kvs[: r.limit], True
        if not r.count_only:
            for kv in kvs:
                out = resp.kvs.add()
                out.CopyFrom(kv)
                if r.keys_only:
                    out.ClearField("value")
        return resp

    # -- writing -------------------------------------------------------------------------------
    def _record(self, key: bytes, revision: int, kv: Optional[Any]) -> None:
        entries = self.history.get(key)
        if entries is None:
            entries = self.history[key] = []
            bisect.insort(self.keys, key)
        entries.append((revision, kv))

    def check_put(self, r: Any) -> None:
        if not r.key:
            raise fail(3, "etcdserver: key is not provided")
        if r.ignore_value and r.value:
            raise fail(3, "etcdserver: value is provided")
        if r.ignore_lease and r.lease:
            raise fail(3, "etcdserver: lease is provided")

    def put(self, r: Any, revision: int, events: List[Any]) -> Any:
        """Apply a put at ``revision`` (the caller moves :attr:`revision` once for a txn)."""
        prev = self.current(r.key)
        if (r.ignore_value or r.ignore_lease) and prev is None:
            raise fail(3, "etcdserver: key not found")
        lease = prev.lease if r.ignore_lease and prev is not None else r.lease
        if lease and lease not in self.leases:
            raise fail(5, LEASE_NOT_FOUND)
        kv = kv_pb2.KeyValue(
            key=r.key,
            value=prev.value if r.ignore_value and prev is not None else r.value,
            create_revision=prev.create_revision if prev is not None else revision,
            mod_revision=revision,
            version=(prev.version if prev is not None else 0) + 1,
            lease=lease,
        )
        if prev is not None and prev.lease and prev.lease != lease:
            self._detach(prev.lease, r.key)
        if lease:
            self.leases[lease].keys.add(r.key)
        self._record(r.key, revision, kv)
        events.append(_event(_PUT, kv, prev))
        resp = rpc_pb2.PutResponse()
        if r.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def delete(self, r: Any, revision: int, events: List[Any]) -> Any:
        if not r.key:
            raise fail(3, "etcdserver: key is not provided")
        gone = self.live(r.key, r.range_end)
        resp = rpc_pb2.DeleteRangeResponse(deleted=len(gone))
        for kv in gone:
            self._remove(kv, revision, events)
            if r.prev_kv:
                resp.prev_kvs.add().CopyFrom(kv)
        return resp

    def _remove(self, kv: Any, revision: int, events: List[Any]) -> None:
        if kv.lease:
            self._detach(kv.lease, kv.key)
        self._record(kv.key, revision, None)
        events.append(_event(_DELETE, kv_pb2.KeyValue(key=kv.key, mod_revision=revision), kv))

    def _detach(self, lease_id: int, key: bytes) -> None:
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def commit(self, revision: int, events: List[Any]) -> None:
        """Make a write visible: the store's revision moves if anything changed."""
        if events:
            self.revision = revision
            self.events.append((revision, events))
            self.on_write(revision, events)

    def write(self, apply: Callable[[int, List[Any]], Any]) -> Any:
        """Run ``apply(revision, events)`` as one write; its answer gets the header."""
        revision, events = self.revision + 1, []  # type: Tuple[int, List[Any]]
        try:
            resp = apply(revision, events)
        except BaseException:
            self._undo(revision)
            raise
        # The header names this write's revision (or the unchanged one): taken before the
        # watchers are told, as their consumers may write again at once.
        resp.header.CopyFrom(self.header(revision if events else self.revision))
        self.commit(revision, events)
        return resp

    def _undo(self, revision: int) -> None:
        """Drop what a failed write had recorded at ``revision`` (leases too)."""
        for entries in self.history.values():
            while entries and entries[-1][0] == revision:
                entries.pop()
        for lease in self.leases.values():
            lease.keys = {k for k in lease.keys if _lease_of(self.current(k)) == lease.id}
        for key in list(self.history):
            kv = self.current(key)
            if kv is not None and kv.lease in self.leases:
                self.leases[kv.lease].keys.add(key)

    # -- txn -----------------------------------------------------------------------------------
    def txn(self, r: Any) -> Any:
        _check_txn(r, set(), set())
        return self.write(lambda rev, evs: self._txn(r, rev, evs, top=True))

    def _txn(self, r: Any, revision: int, events: List[Any], top: bool) -> Any:
        ok = all(self._compare(c) for c in r.compare)
        resp = rpc_pb2.TxnResponse(succeeded=ok)
        for op in r.success if ok else r.failure:
            out = resp.responses.add()
            which = op.WhichOneof("request")
            if which == "request_range":
                # reads in a txn see the txn's own earlier writes
                self.revision, saved = (revision if events else self.revision), self.revision
                try:
                    got = self.range(op.request_range)
                finally:
                    self.revision = saved
                out.response_range.CopyFrom(got)
            elif which == "request_put":
                out.response_put.CopyFrom(self.put(op.request_put, revision, events))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(
                    self.delete(op.request_delete_range, revision, events)
                )
            elif which == "request_txn":
                out.response_txn.CopyFrom(self._txn(op.request_txn, revision, events, False))
        if top:
            final = revision if events else self.revision
            _sub_headers(resp, final)
        return resp

    def _compare(self, c: Any) -> bool:
        kvs = self.live(c.key, c.range_end)
        if not kvs:
            if c.target == _C.VALUE:
                return False
            kvs = [kv_pb2.KeyValue()]
        return all(_compare_kv(c, kv) for kv in kvs)

    # -- compaction ----------------------------------------------------------------------------
    def compact(self, r: Any) -> Any:
        if r.revision <= self.compacted:
            raise fail(11, COMPACTED)
        if r.revision > self.revision:
            raise fail(11, FUTURE)
        self.compacted = r.revision
        for entries in self.history.values():
            # keep the last entry at or below the compaction point: reads there still see it
            i = bisect.bisect_right(entries, r.revision, key=lambda e: e[0]) - 1
            if i > 0:
                del entries[:i]
        i = bisect.bisect_left(self.events, r.revision, key=lambda e: e[0])
        del self.events[:i]
        return rpc_pb2.CompactionResponse(header=self.header())

    # -- leases --------------------------------------------------------------------------------
    def new_lease_id(self) -> int:
        while True:
            self._next_lease += 1
            if self._next_lease not in self.leases:
                return self._next_lease

    def revoke_keys(self, lease: Lease) -> int:
        """Delete the lease's keys, all in one revision; the store's revision after it."""
        revision, events = self.revision + 1, []  # type: Tuple[int, List[Any]]
        for key in sorted(lease.keys):
            kv = self.current(key)
            if kv is not None:
                self._remove(kv, revision, events)
        lease.keys.clear()
        after = revision if events else self.revision
        self.commit(revision, events)
        return after

    def history_events(self, start: int) -> Iterable[Tuple[int, List[Any]]]:
        """Every write's events from revision ``start`` on."""
        i = bisect.bisect_left(self.events, start, key=lambda e: e[0])
        return self.events[i:]


def _lease_of(kv: Optional[Any]) -> int:
    return 0 if kv is None else int(kv.lease)


def _event(kind: Any, kv: Any, prev: Optional[Any]) -> Any:
    ev = kv_pb2.Event(type=kind, kv=kv)
    if prev is not None:
        ev.prev_kv.CopyFrom(prev)
    return ev


_SORT_KEYS: Dict[int, Callable[[Any], Any]] = {
    _R.KEY: lambda kv: kv.key,
    _R.VERSION: lambda kv: kv.version,
    _R.CREATE: lambda kv: kv.create_revision,
    _R.MOD: lambda kv: kv.mod_revision,
    _R.VALUE: lambda kv: kv.value,
}


def _sorted(kvs: List[Any], order: int, target: int) -> List[Any]:
    if order == _R.NONE and target == _R.KEY:
        return kvs
    if order == _R.NONE:
        order = _R.ASCEND  # a target alone sorts ascending, as etcd does
    return sorted(kvs, key=_SORT_KEYS[target], reverse=order == _R.DESCEND)


def _compare_kv(c: Any, kv: Any) -> bool:
    target = c.target
    if target == _C.VALUE:
        left, right = kv.value, c.value
    elif target == _C.VERSION:
        left, right = kv.version, c.version
    elif target == _C.CREATE:
        left, right = kv.create_revision, c.create_revision
    elif target == _C.MOD:
        left, right = kv.mod_revision, c.mod_revision
    else:
        left, right = kv.lease, c.lease
    result = c.result
    if result == _C.EQUAL:
        return bool(left == right)
    if result == _C.NOT_EQUAL:
        return bool(left != right)
    if result == _C.GREATER:
        return bool(left > right)
    return bool(left < right)


def _write_keys(op: Any) -> Optional[Tuple[bytes, bytes]]:
    which = op.WhichOneof("request")
    if which == "request_put":
        return op.request_put.key, b""
    if which == "request_delete_range":
        return op.request_delete_range.key, op.request_delete_range.range_end
    return None


def _overlaps(a: Tuple[bytes, bytes], b: Tuple[bytes, bytes]) -> bool:
    (ka, ea), (kb, eb) = a, b
    if not ea and not eb:
        return ka == kb
    if not ea:
        return in_range(ka, kb, eb)
    if not eb:
        return in_range(kb, ka, ea)
    end_a = None if ea == b"\0" else ea
    end_b = None if eb == b"\0" else eb
    return (end_b is None or ka < end_b) and (end_a is None or kb < end_a)


def _check_txn(r: Any, puts: Set[Tuple[bytes, bytes]], dels: Set[Tuple[bytes, bytes]]) -> None:
    """etcd's checks before a txn runs: sizes of each list, empty keys, and no key written
    twice (a nested txn's branches are checked apart: only one of them runs)."""
    for ops in (r.compare, r.success, r.failure):
        if len(ops) > MAX_TXN_OPS:
            raise fail(3, "etcdserver: too many operations in txn request")
    for branch in (r.success, r.failure):
        written: List[Tuple[bytes, bytes]] = list(puts) + list(dels)
        for op in branch:
            which = op.WhichOneof("request")
            if which == "request_txn":
                _check_txn(op.request_txn, set(written), set())
                written.extend(_txn_writes(op.request_txn))
                continue
            if which == "request_range":
                if not op.request_range.key:
                    raise fail(3, "etcdserver: key is not provided")
                continue
            span = _write_keys(op)
            if span is None:
                continue
            if not span[0]:
                raise fail(3, "etcdserver: key is not provided")
            if which == "request_put" and any(_overlaps(span, w) for w in written):
                raise fail(3, "etcdserver: duplicate key given in txn request")
            if which == "request_delete_range" and any(
                _overlaps(span, w) for w in written if not w[1]
            ):
                raise fail(3, "etcdserver: duplicate key given in txn request")
            written.append(span)


def _txn_writes(r: Any) -> List[Tuple[bytes, bytes]]:
    out: List[Tuple[bytes, bytes]] = []
    for op in list(r.success) + list(r.failure):
        which = op.WhichOneof("request")
        if which == "request_txn":
            out.extend(_txn_writes(op.request_txn))
        else:
            span = _write_keys(op)
            if span is not None:
                out.append(span)
    return out


def _sub_headers(resp: Any, revision: int) -> None:
    """Sub-responses carry a header with only the revision; a nested txn's is empty."""
    for out in resp.responses:
        which = out.WhichOneof("response")
        if which == "response_txn":
            out.response_txn.ClearField("header")
            _sub_headers(out.response_txn, revision)
            continue
        sub = getattr(out, which)
        sub.header.CopyFrom(rpc_pb2.ResponseHeader(revision=revision))
