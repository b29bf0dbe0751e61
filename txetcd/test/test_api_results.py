"""Results as users meet them: a RangeResult is a sequence of its keys, a TxnResult of its
responses (true when it succeeded), other results are records that refuse to iterate."""

from __future__ import annotations

import copy
import pickle
from typing import Any, Callable

import pytest
import pytest_twisted

from txetcd import (
    Client,
    CompactResult,
    DeleteResult,
    Get,
    KeyValue,
    Put,
    PutResult,
    RangeResult,
    ResponseHeader,
    TxnResult,
    Value,
)

H = ResponseHeader(1, 2, 3, 4)
A = KeyValue(b"a", b"1", 2, 2, 1, 0)
B = KeyValue(b"b", b"2", 3, 3, 1, 0)


def test_range_result_is_a_sequence_of_its_keys() -> None:
    r = RangeResult(H, (A, B), False, 2)
    assert list(r) == [A, B] and len(r) == 2 and bool(r)
    assert r[0] is A and r[-1] is B and r[:1] == (A,) and list(reversed(r)) == [B, A]
    assert A in r and KeyValue(b"c", b"", 0, 0, 0, 0) not in r and H not in r
    assert r.index(B) == 1
    first, second = r
    assert (first, second) == (A, B)
    empty = RangeResult(H, (), False, 5)  # count_only: keys counted, none returned
    assert list(empty) == [] and len(empty) == 0 and not empty and empty.count == 5
    with pytest.raises(IndexError):
        empty[0]


def test_records_keep_attributes_equality_hashing_repr() -> None:
    r = RangeResult(header=H, kvs=(A,), more=True, count=7)
    assert (r.header, r.kvs, r.more, r.count, r.value, r.kv) == (H, (A,), True, 7, b"1", A)
    assert r == RangeResult(H, (A,), True, 7) and r != RangeResult(H, (A,), False, 7)
    assert hash(r) == hash(RangeResult(H, (A,), True, 7))
    assert repr(r) == f"RangeResult(header={H!r}, kvs=({A!r},), more=True, count=7)"
    assert r._fields == ("header", "kvs", "more", "count")
    assert r._asdict() == {"header": H, "kvs": (A,), "more": True, "count": 7}
    assert r._replace(count=8) == RangeResult(H, (A,), True, 8)
    with pytest.raises(TypeError, match="no field"):
        r._replace(nope=1)
    for result in (
        r,
        PutResult(H, A),
        DeleteResult(H, 2, (A, B)),
        TxnResult(H, True, (r,)),
        CompactResult(H),
    ):
        assert pickle.loads(pickle.dumps(result)) == result
        assert copy.copy(result) == result == copy.deepcopy(result)
        assert type(pickle.loads(pickle.dumps(result))) is type(result)
    with pytest.raises(AttributeError):
        r.count = 3
    with pytest.raises(AttributeError):
        r.other = 3  # type: ignore[attr-defined]


def test_match_by_position_and_name() -> None:
    match RangeResult(H, (A,), False, 1):
        case RangeResult(header, kvs, more=False):
            assert header == H and kvs == (A,)
        case _:  # pragma: no cover
            raise AssertionError("no match")


@pytest.mark.parametrize(
    "record", [PutResult(H, None), DeleteResult(H, 2, (A, B)), CompactResult(H)]
)
def test_other_results_are_records_not_sequences(record: Any) -> None:
    fields = ", ".join(f".{n}" for n in record._fields)
    attempts: list[Callable[[Any], object]] = [list, len, lambda r: r[0], lambda r: A in r]
    for attempt in attempts:
        with pytest.raises(TypeError, match=f"is a record, not a sequence: use {fields}"):
            attempt(record)
    assert bool(record)


def test_txn_result_is_its_responses_and_true_when_it_succeeded() -> None:
    got, put = RangeResult(H, (A,), False, 1), PutResult(H, None)
    t = TxnResult(H, True, (got, put))
    assert list(t) == [got, put] and len(t) == 2 and t[0] is got and put in t
    assert bool(t)
    failed = TxnResult(H, False, (got,))
    assert not failed and len(failed) == 1  # the failure branch ran; the compares did not hold
    assert TxnResult(H, True, ()) and not TxnResult(H, False, ())


@pytest_twisted.ensureDeferred
async def test_iterating_real_answers(etcd_client: Client, etcd_prefix: bytes) -> None:
    for name in (b"a", b"b", b"c"):
        await etcd_client.put(etcd_prefix + name, name.upper())
    keys = [kv.key for kv in await etcd_client.get_prefix(etcd_prefix)]
    assert keys == [etcd_prefix + b"a", etcd_prefix + b"b", etcd_prefix + b"c"]
    assert len(await etcd_client.get_prefix(etcd_prefix, limit=2)) == 2
    assert not await etcd_client.get(etcd_prefix + b"missing")
    (kv,) = await etcd_client.get(etcd_prefix + b"b")
    assert kv.value == b"B"

    result = await etcd_client.txn(
        [Value(etcd_prefix + b"a") == b"A"],
        [Get(etcd_prefix + b"b"), Put(etcd_prefix + b"d", b"D")],
    )
    assert result and result.succeeded
    got, put = result
    assert isinstance(got, RangeResult) and isinstance(put, PutResult) and got.value == b"B"
    result = await etcd_client.txn([Value(etcd_prefix + b"a") == b"x"], [], [Get(etcd_prefix)])
    assert not result and len(result) == 1

    deleted = await etcd_client.delete_prefix(etcd_prefix, prev_kv=True)
    assert deleted.deleted == 4 and len(deleted.prev_kvs) == 4
    with pytest.raises(TypeError, match="use .header, .deleted, .prev_kvs"):
        iter(deleted)
