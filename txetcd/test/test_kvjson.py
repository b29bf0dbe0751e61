"""txetcd._gateway.kvjson decodes gateway answers to the same results as the generic path (JSON
into a
protobuf message, then _kv's decoders), and falls back to it for what it does not know."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from txetcd._gateway.kvjson import DIRECT, Fallback
from txetcd._gateway.pbjson import dict_to_message
from txetcd._gateway.wire import decode_direct
from txetcd._kv import delete_result, put_result, range_result, txn_result
from txetcd._proto import rpc_pb2
from txetcd.test.helpers import header, kv, range_response

put_response = st.builds(
    rpc_pb2.PutResponse, header=header, prev_kv=st.one_of(st.none(), kv())
).map(lambda m: m if m.prev_kv.key or m.prev_kv.value else rpc_pb2.PutResponse(header=m.header))
delete_response = st.builds(
    rpc_pb2.DeleteRangeResponse,
    header=header,
    deleted=st.integers(min_value=0, max_value=2**40),
    prev_kvs=st.lists(kv(), max_size=3),
)


def _txn_response(inner: Any) -> Any:
    op = st.one_of(
        range_response.map(lambda r: rpc_pb2.ResponseOp(response_range=r)),
        put_response.map(lambda r: rpc_pb2.ResponseOp(response_put=r)),
        delete_response.map(lambda r: rpc_pb2.ResponseOp(response_delete_range=r)),
        inner.map(lambda r: rpc_pb2.ResponseOp(response_txn=r)),
    )
    return st.builds(
        rpc_pb2.TxnResponse,
        header=header,
        succeeded=st.booleans(),
        responses=st.lists(op, max_size=3),
    )


txn_response = st.recursive(
    st.builds(rpc_pb2.TxnResponse, header=header, succeeded=st.booleans()),
    _txn_response,
    max_leaves=6,
)

DECODERS: dict[Any, Callable[[Any], Any]] = {
    rpc_pb2.RangeResponse: range_result,
    rpc_pb2.PutResponse: put_result,
    rpc_pb2.DeleteRangeResponse: delete_result,
    rpc_pb2.TxnResponse: txn_result,
}


@settings(max_examples=300, deadline=None)
@given(st.one_of(range_response, put_response, delete_response, txn_response))
def test_same_result_as_the_generic_path(message: Any) -> None:
    decode = DECODERS[type(message)]
    expected = decode(message)
    snake = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert DIRECT[decode](snake) == expected
    body = json.dumps(snake).encode()
    assert decode_direct(body, type(message), decode, DIRECT[decode]) == expected
    # lowerCamelCase names are not the gateway's: the direct decoder hands them to the generic
    # path, which reads them, so the answer is the same either way.
    camel = json_format.MessageToDict(message)
    if camel != snake:
        with pytest.raises(Fallback):
            DIRECT[decode](camel)
    assert decode_direct(json.dumps(camel).encode(), type(message), decode, DIRECT[decode]) == (
        expected
    )


def test_unknown_fields_take_the_generic_path() -> None:
    data = {"header": {"revision": "5", "raft_term": "2"}, "kvs": [], "later_field": 1}
    with pytest.raises(Fallback):
        DIRECT[range_result](data)
    got = decode_direct(
        json.dumps(data).encode(), rpc_pb2.RangeResponse, range_result, DIRECT[range_result]
    )
    assert got == range_result(dict_to_message(data, rpc_pb2.RangeResponse))
    assert got.header.revision == 5 and got.header.raft_term == 2 and got.kvs == ()


def test_lenient_and_strict_like_the_generic_path() -> None:
    direct = DIRECT[range_result]
    data = {
        "header": {"revision": 7, "raft_term": "3", "member_id": None},
        "kvs": [{"key": "YS1i", "value": "_-8", "mod_revision": None, "version": 2.0}],
        "count": "2",
    }
    expected = range_result(dict_to_message(data, rpc_pb2.RangeResponse))
    assert direct(data) == expected
    assert expected.kvs[0].key == b"a-b" and expected.kvs[0].value == b"\xff\xef"
    assert expected.header.revision == 7 and expected.count == 2
    bad: Any
    for bad in (
        {"count": "x"},
        {"count": 1.5},
        {"kvs": {}},
        {"kvs": ["a"]},
        {"more": "yes"},
        {"kvs": [{"key": "%%"}]},
        {"header": []},
        [],
    ):
        with pytest.raises(ValueError):
            direct(bad)
        with pytest.raises(ValueError):
            dict_to_message(bad, rpc_pb2.RangeResponse)
    with pytest.raises(ValueError):
        DIRECT[txn_result]({"responses": [{"response_put": {}, "response_range": {}}]})
