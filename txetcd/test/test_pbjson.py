"""txetcd._gateway.pbjson agrees with protobuf's own json_format on etcd's messages, both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from txetcd._gateway.pbjson import (
    dict_to_message,
    json_loads,
    json_to_message,
    message_to_dict,
    message_to_json,
)
from txetcd._proto import kv_pb2, rpc_pb2
from txetcd.test.helpers import blob, header, i64, kv, range_response

range_request = st.builds(
    rpc_pb2.RangeRequest,
    key=blob,
    range_end=blob,
    limit=i64,
    revision=i64,
    sort_order=st.sampled_from([0, 1, 2]),
    sort_target=st.sampled_from([0, 1, 2, 3, 4]),
    serializable=st.booleans(),
    keys_only=st.booleans(),
    count_only=st.booleans(),
    min_mod_revision=i64,
)
put_request = st.builds(
    rpc_pb2.PutRequest,
    key=blob,
    value=blob,
    lease=i64,
    prev_kv=st.booleans(),
    ignore_value=st.booleans(),
    ignore_lease=st.booleans(),
)


def compare() -> Any:
    target = st.sampled_from(["version", "create_revision", "mod_revision", "value", "lease"])

    def build(t: str, result: Any, key: bytes, n: int, v: bytes) -> Any:
        c = rpc_pb2.Compare(
            result=result,
            key=key,
            target=["VERSION", "CREATE", "MOD", "VALUE", "LEASE"][
                ["version", "create_revision", "mod_revision", "value", "lease"].index(t)
            ],
        )
        if t == "value":
            c.value = v
        else:
            setattr(c, t, n)  # zero included: a oneof member is present once set
        return c

    return st.builds(build, target, st.sampled_from([0, 1, 2, 3]), blob, i64, blob)


def request_op() -> Any:
    return st.one_of(
        range_request.map(lambda r: rpc_pb2.RequestOp(request_range=r)),
        put_request.map(lambda r: rpc_pb2.RequestOp(request_put=r)),
        st.builds(
            lambda k: rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k)),
            blob,
        ),
    )


txn_request = st.builds(
    rpc_pb2.TxnRequest,
    compare=st.lists(compare(), max_size=3),
    success=st.lists(request_op(), max_size=3),
    failure=st.lists(request_op(), max_size=2),
)
watch_response = st.builds(
    rpc_pb2.WatchResponse,
    header=header,
    watch_id=i64,
    created=st.booleans(),
    canceled=st.booleans(),
    compact_revision=i64,
    cancel_reason=st.text(max_size=10),
    fragment=st.booleans(),
    events=st.lists(
        st.builds(kv_pb2.Event, type=st.sampled_from([0, 1]), kv=kv(), prev_kv=kv()), max_size=3
    ),
)
messages = st.one_of(range_request, put_request, range_response, txn_request, watch_response)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_same_as_json_format(message: Any) -> None:
    expected = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert message_to_dict(message) == expected
    assert dict_to_message(expected, type(message)) == message
    assert json_to_message(message_to_json(message), type(message)) == message
    assert json.loads(message_to_json(message)) == expected
    camel = json_format.MessageToDict(message)  # lowerCamelCase names are read too
    assert dict_to_message(camel, type(message)) == message


def test_reading_is_lenient_like_protobuf() -> None:
    data = {
        "header": {"revision": 7, "raft_term": "3"},  # 64-bit ints as numbers or strings
        "kvs": [{"key": "YS1i", "value": "_-8", "mod_revision": None}],  # URL-safe, unpadded
        "unknown": {"x": 1},
        "count": "2",
    }
    m = dict_to_message(data, rpc_pb2.RangeResponse)
    assert m.header.revision == 7 and m.header.raft_term == 3 and m.count == 2
    assert m.kvs[0].key == b"a-b" and m.kvs[0].value == b"\xff\xef"
    sorted_req = dict_to_message({"sort_order": "DESCEND", "sort_target": 2}, rpc_pb2.RangeRequest)
    assert sorted_req.sort_order == 2 and sorted_req.sort_target == 2
    empty = dict_to_message({"request_range": {}}, rpc_pb2.RequestOp)
    assert empty.WhichOneof("request") == "request_range"
    bad: Any
    for bad in ({"count": "x"}, {"kvs": {}}, {"more": "yes"}, {"kvs": [{"key": "%%"}]}):
        with pytest.raises(ValueError):
            dict_to_message(bad, rpc_pb2.RangeResponse)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def _loads_or_error(body: Any) -> Any:
    try:
        return ("value", json.loads(body))
    except ValueError as e:
        return ("error", type(e))


@settings(max_examples=300, deadline=None)
@given(
    json_values,
    st.sampled_from(["", " ", "\n", "\t\r\n "]),
    st.sampled_from(["", " ", "\n", "x", "\x0b", "1", "{}"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "str"]),
)
def test_json_loads_is_json_loads(value: Any, before: str, after: str, encoding: str) -> None:
    text = before + json.dumps(value, ensure_ascii=False) + after
    body: Any = text if encoding == "str" else text.encode(encoding)
    expected = _loads_or_error(body)
    try:
        got: Any = ("value", json_loads(body))
    except ValueError as e:
        got = ("error", type(e))
    assert got == expected
