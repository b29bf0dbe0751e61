"""The pure v2 layer (txetcd.v2): keys and forms, the error table, typed results.

Part 1 is pure: JSON captured from etcd 3.5 (``/work/shared/etcd-api.md`` sections 12-13) and
hypothesis round-trips of the key encoding. Part 2 sends requests built by ``txetcd.v2`` to a
real etcd with ``--enable-v2=true`` (plain blocking ``http.client`` calls to loopback) and checks
that keys round-trip byte-exact and that answers map to the right classes.
"""

from __future__ import annotations

import http.client
import json
from datetime import datetime, timezone
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import txetcd
from txetcd import EtcdError, ProtocolViolation
from txetcd.test.helpers import HOSTILE_KEYS, HOSTILE_VALUES
from txetcd.testing import EtcdServer
from txetcd.v2 import (
    ComparedThenDeleted,
    ComparedThenSwapped,
    Created,
    Deleted,
    EtcdAlreadyExist,
    EtcdClientInternal,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdDirNotEmpty,
    EtcdEventIndexCleared,
    EtcdException,
    EtcdIndexNaN,
    EtcdInsufficientPermissions,
    EtcdInvalidField,
    EtcdInvalidForm,
    EtcdInvalidKey,
    EtcdInvalidRequest,
    EtcdKeyError,
    EtcdKeyNotFound,
    EtcdLeaderElectionInProgress,
    EtcdNotDir,
    EtcdNotFile,
    EtcdPrevValueRequired,
    EtcdRaftInternal,
    EtcdRefreshTTLRequired,
    EtcdRefreshValue,
    EtcdResult,
    EtcdRootReadOnly,
    EtcdTTLNaN,
    EtcdV2Error,
    EtcdValueError,
    EtcdWatcherCleared,
    EtcdWatchTimedOut,
    Expired,
    Got,
    Set,
    Updated,
    join_key,
    normalize_key,
)
from txetcd.v2._errors import V2_ERROR_CLASSES, V2_ERROR_MESSAGES, V2_ERROR_STATUS, from_json
from txetcd.v2._keys import (
    FORM_CONTENT_TYPE,
    V2Request,
    append_request,
    delete_request,
    encode_bool,
    encode_form,
    encode_key,
    get_request,
    key_path,
    key_segments,
    set_request,
)
from txetcd.v2._result import parse_expiration

#: any character but a lone surrogate (not text; refused, see test_any_text_key_...)
CHARS = st.characters(exclude_categories=["Cs"])
HOSTILE = " ?#%+&;=:@,/\x00\t\r\n'\"<>\\^`{|}~€é鍵🔑\u200b\ufeff"

# ============================================================================================
# Part 1: pure
# ============================================================================================

# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, encoded",
    [
        ("", "/"),
        ("/", "/"),
        ("message", "/message"),
        ("/message", "/message"),
        ("/dir/", "/dir"),
        ("a b", "/a%20b"),
        ("q?x", "/q%3Fx"),
        ("h#x", "/h%23x"),
        ("pct%x", "/pct%25x"),
        ("plus+x", "/plus%2Bx"),
        ("amp&x;y", "/amp%26x%3By"),
        ("nul\x00x", "/nul%00x"),
        ("€-euro", "/%E2%82%AC-euro"),
        ("tilde~_.-AZaz09", "/tilde~_.-AZaz09"),
        ("a/b c/d", "/a/b%20c/d"),
        ("...", "/..."),
        (".hidden/x.", "/.hidden/x."),
        (b"bytes \xe2\x82\xac", "/bytes%20%E2%82%AC"),
    ],
)
def test_encode_key_examples(key: str, encoded: str) -> None:
    assert encode_key(key) == encoded
    assert key_path(key) == "/v2/keys" + encoded


@pytest.mark.parametrize(
    "key",
    ["a//b", "//", "//a", "a//", "/./a", "a/..", ".", "..", "/a/./b", "/a/../b", "a/.", b"\xff"],
)
def test_refused_keys(key: str) -> None:
    with pytest.raises(EtcdInvalidKey) as info:
        encode_key(key)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, EtcdError)
    assert "v2 key" in str(info.value)


def test_refused_key_types_and_surrogates() -> None:
    with pytest.raises(EtcdInvalidKey):
        encode_key("lone\ud800surrogate")
    with pytest.raises(TypeError):
        encode_key(42)  # type: ignore[arg-type]


def test_join_key() -> None:
    assert join_key() == "/"
    assert join_key("a", "b c", "q?x") == "/a/b c/q?x"
    assert encode_key(join_key("a", "b c")) == "/a/b%20c"
    for bad in (("a/b",), ("",), (".",), ("..",), ("a", "")):
        with pytest.raises(EtcdInvalidKey):
            join_key(*bad)


def test_key_segments_and_normalize() -> None:
    assert key_segments("/") == ()
    assert key_segments("a/b/") == ("a", "b")
    assert normalize_key("a/b/") == "/a/b"
    assert normalize_key("") == "/"


_segment = st.text(
    alphabet=st.one_of(st.sampled_from(HOSTILE.replace("/", "")), CHARS),
    min_size=1,
    max_size=20,
).filter(lambda s: "/" not in s and s not in (".", ".."))


@settings(max_examples=400, deadline=None)
@given(segments=st.lists(_segment, min_size=1, max_size=5))
@example(segments=["\x00"])
@example(segments=["%", "+", "#", "?", "&", ";", " "])
@example(segments=["%2F", "%00", "%zz"])
@example(segments=["..."])
def test_key_encoding_round_trips(segments: List[str]) -> None:
    key = "/" + "/".join(segments)
    encoded = encode_key(key)
    assert encoded.isascii()
    assert set(encoded) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%/"
    )
    assert unquote(encoded, errors="strict") == key
    assert [unquote(s, errors="strict") for s in encoded[1:].split("/")] == segments
    assert encode_key(key.encode("utf-8")) == encoded
    assert join_key(*segments) == key
    assert urlsplit("http://h" + key_path(key)).path == key_path(key)  # no ?, # split


def _should_refuse(text: str) -> bool:
    if any("\ud800" <= c <= "\udfff" for c in text):
        return True
    body = text[1:] if text.startswith("/") else text
    body = body[:-1] if body.endswith("/") else body
    if body == "":
        return text not in ("", "/")
    return any(s in ("", ".", "..") for s in body.split("/"))


@settings(max_examples=400, deadline=None)
@given(key=st.text(alphabet=st.one_of(st.sampled_from("/./.a"), st.characters()), max_size=12))
@example(key="a//b")
@example(key="./")
@example(key="a\udc80")
def test_any_text_key_is_encoded_exactly_or_refused(key: str) -> None:
    if _should_refuse(key):
        with pytest.raises(ValueError):
            encode_key(key)
        return
    body = key[1:] if key.startswith("/") else key
    body = body[:-1] if body.endswith("/") else body
    assert normalize_key(key) == "/" + body
    assert unquote(encode_key(key), errors="strict") == normalize_key(key)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=24))
def test_binaryish_keys(raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(ValueError):
            encode_key(raw)
        return
    if _should_refuse(text):
        with pytest.raises(ValueError):
            encode_key(raw)
    else:
        assert unquote(encode_key(raw), errors="strict") == normalize_key(text)


# -- forms and requests ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.one_of(st.sampled_from(HOSTILE), CHARS)))
@example(value="a+b&c=d")
@example(value="")
def test_form_values_round_trip(value: str) -> None:
    form = encode_form([("value", value), ("ttl", "5")])
    assert form.isascii() and "+" not in form and " " not in form
    assert parse_qsl(form, keep_blank_values=True, errors="strict") == [
        ("value", value),
        ("ttl", "5"),
    ]


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.one_of(st.sampled_from(HOSTILE), CHARS)))
@example(value="".join(map(chr, range(128))))
def test_form_text_is_every_byte_but_the_unreserved_percent_encoded(value: str) -> None:
    # ASCII text takes a faster path than the rest: both give quote()'s answer
    assert encode_form([("v", value)]) == "v=" + quote(value.encode("utf-8"), safe="")


def test_built_requests_are_plain_frozen_v2_requests() -> None:
    for req in (set_request("/a b", "x", ttl=5), get_request("/a", recursive=True)):
        fields = (req.method, req.path, req.query, req.body, req.headers, req.params)
        assert req == V2Request(*fields) and vars(req) == vars(V2Request(*fields))
        with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
            req.method = "DELETE"  # type: ignore[misc]


def test_encode_bool() -> None:
    assert encode_bool(True) == "true" and encode_bool(False) == "false"
    with pytest.raises(TypeError):
        encode_bool(1)  # type: ignore[arg-type]


def test_set_request_shape() -> None:
    req = set_request("/a b", "x+y&z=é", ttl=5, prev_exist=False)
    assert req.method == "PUT"
    assert req.path == "/v2/keys/a%20b" and req.uri == req.path and req.query == ""
    assert req.headers == {"Content-Type": FORM_CONTENT_TYPE}
    assert req.body == b"value=x%2By%26z%3D%C3%A9&ttl=5&prevExist=false"
    assert req.params == (("value", "x+y&z=é"), ("ttl", "5"), ("prevExist", "false"))
    req = set_request("k", b"v", prev_value="old", prev_index=7, prev_exist=True)
    assert req.body == b"value=v&prevValue=old&prevIndex=7&prevExist=true"
    assert set_request("d", dir=True, ttl=0).body == b"ttl=0&dir=true"
    req = set_request("k", ttl=20, refresh=True, prev_exist=True)
    assert req.body == b"ttl=20&prevExist=true&refresh=true"


def test_get_delete_append_shapes() -> None:
    req = get_request("dir", recursive=True, sorted=True, quorum=False)
    assert req.method == "GET" and req.body is None and req.headers == {}
    assert req.uri == "/v2/keys/dir?recursive=true&sorted=true&quorum=false"
    req = get_request("w", wait=True, wait_index=36, stream=True)
    assert req.query == "wait=true&waitIndex=36&stream=true"
    assert get_request("").uri == "/v2/keys/"
    req = delete_request("k", prev_value="a b", prev_index=3)
    assert req.method == "DELETE" and req.uri == "/v2/keys/k?prevValue=a%20b&prevIndex=3"
    assert delete_request("d", dir=True, recursive=True).query == "recursive=true&dir=true"
    req = append_request("queue", "Job1", ttl=60)
    assert req.method == "POST" and req.body == b"value=Job1&ttl=60"
    assert append_request("queue", dir=True).body == b"dir=true"
    assert isinstance(req, V2Request)


@pytest.mark.parametrize(
    "build",
    [
        lambda: set_request("k", "v", prev_index=0),
        lambda: set_request("k", "v", prev_value=""),
        lambda: set_request("k", "v", ttl=-1),
        lambda: set_request("k", "v", refresh=True, ttl=5),
        lambda: set_request("k", refresh=True),
        lambda: set_request("k", "v", dir=True),
        lambda: set_request("k"),
        lambda: set_request("k", b"\xff"),
        lambda: get_request("k", wait_index=3),
        lambda: get_request("k", wait=True, wait_index=0),
        lambda: get_request("k", stream=True),
        lambda: append_request("q"),
        lambda: append_request("q", "v", dir=True),
        lambda: delete_request("k", prev_index=0),
        lambda: delete_request("a//b"),
    ],
)
def test_refused_requests(build: object) -> None:
    with pytest.raises(EtcdInvalidRequest) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, ValueError) and isinstance(info.value, EtcdError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: set_request("k", "v", ttl=True),
        lambda: set_request("k", "v", ttl="5"),  # type: ignore[arg-type]
        lambda: get_request("k", recursive=1),  # type: ignore[arg-type]
    ],
)
def test_wrong_types(build: object) -> None:
    with pytest.raises(TypeError):
        build()  # type: ignore[operator]


# -- errors -----------------------------------------------------------------------------------

ALL_CODES = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110]
ALL_CODES += list(range(200, 213)) + [300, 301, 400, 401, 402, 403, 404, 500]


def test_error_table_is_complete() -> None:
    assert sorted(V2_ERROR_CLASSES) == ALL_CODES
    assert sorted(V2_ERROR_MESSAGES) == ALL_CODES
    assert set(V2_ERROR_STATUS) <= set(ALL_CODES)
    for code, cls in V2_ERROR_CLASSES.items():
        assert cls.error_code_value == code
        assert issubclass(cls, EtcdV2Error) and issubclass(cls, EtcdError)
        assert cls.__doc__ and str(code) in cls.__doc__
        err = from_json({"errorCode": code, "message": V2_ERROR_MESSAGES[code], "index": 3})
        assert type(err) is cls and err.error_code == code == err.errorCode and err.index == 3
    assert len(set(V2_ERROR_CLASSES.values())) == len(ALL_CODES)


# (body, HTTP status, class) as etcd 3.5.1 answered them (etcd-api.md 12.1-12.9, 14)
CAPTURED_ERRORS = [
    ('{"errorCode":100,"message":"Key not found","cause":"/message","index":3}', 404,
     EtcdKeyNotFound),
    ('{"errorCode":101,"message":"Compare failed","cause":"[b != a] [99 != 11]","index":11}',
     412, EtcdCompareFailed),
    ('{"errorCode":102,"message":"Not a file","cause":"/dir","index":15}', 403, EtcdNotFile),
    ('{"errorCode":104,"message":"Not a directory","cause":"/dir/a","index":18}', 400,
     EtcdNotDir),
    ('{"errorCode":105,"message":"Key already exists","cause":"/message","index":6}', 412,
     EtcdAlreadyExist),
    ('{"errorCode":107,"message":"Root is read only","cause":"/","index":21}', 400,
     EtcdRootReadOnly),
    ('{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":18}', 403,
     EtcdDirNotEmpty),
    ('{"errorCode":110,"message":"The request requires user authentication",'
     '"cause":"Insufficient credentials","index":0}', 401, EtcdInsufficientPermissions),
    ('{"errorCode":201,"message":"PrevValue is Required in POST form",'
     '"cause":"\\"prevValue\\" cannot be empty","index":0}', 400, EtcdPrevValueRequired),
    ('{"errorCode":202,"message":"The given TTL in POST form is not a number",'
     '"cause":"invalid value for \\"ttl\\"","index":0}', 400, EtcdTTLNaN),
    ('{"errorCode":203,"message":"The given index in POST form is not a number",'
     '"cause":"invalid value for \\"prevIndex\\"","index":0}', 400, EtcdIndexNaN),
    ('{"errorCode":209,"message":"Invalid field","cause":"invalid value for \\"recursive\\"",'
     '"index":0}', 400, EtcdInvalidField),
    ('{"errorCode":210,"message":"Invalid POST form","cause":"invalid URL escape \\"%zz\\"",'
     '"index":0}', 400, EtcdInvalidForm),
    ('{"errorCode":211,"message":"Value provided on refresh",'
     '"cause":"A value was provided on a refresh","index":0}', 400, EtcdRefreshValue),
    ('{"errorCode":212,"message":"A TTL must be provided on refresh","cause":"No TTL value set",'
     '"index":0}', 400, EtcdRefreshTTLRequired),
    ('{"errorCode":300,"message":"Raft Internal Error",'
     '"cause":"nodePath /1/tdir : Not a file ()","index":0}', 500, EtcdRaftInternal),
    ('{"errorCode":401,"message":"The event in requested index is outdated and cleared",'
     '"cause":"the requested history has been cleared [142/36]","index":1141}', 400,
     EtcdEventIndexCleared),
]  # fmt: skip


@pytest.mark.parametrize("body, status, cls", CAPTURED_ERRORS)
def test_captured_errors(body: str, status: int, cls: type) -> None:
    data = json.loads(body)
    for form in (body, body.encode() + b"\n", data):
        err = from_json(form, status)
        assert type(err) is cls
        assert isinstance(err, EtcdError) and isinstance(err, EtcdException)
        assert err.error_code == data["errorCode"]
        assert err.message == data["message"] == V2_ERROR_MESSAGES[data["errorCode"]]
        assert err.cause == data["cause"] and err.index == data["index"]
        assert err.status == status == V2_ERROR_STATUS.get(data["errorCode"], 400)
        assert err.payload == data
        assert str(err) == f"{data['message']} ({data['cause']})"
        assert cls.__name__ in repr(err)
        with pytest.raises(cls):
            EtcdResult.from_response(form, {}, status)


def test_python_etcd_hierarchy() -> None:
    assert EtcdException is EtcdError is txetcd.EtcdError
    assert issubclass(EtcdCompareFailed, ValueError)
    assert issubclass(EtcdCompareFailed, EtcdValueError)
    assert issubclass(EtcdKeyNotFound, KeyError) and issubclass(EtcdKeyNotFound, EtcdKeyError)
    assert issubclass(EtcdDirNotEmpty, EtcdValueError)
    for cls in (EtcdNotFile, EtcdNotDir, EtcdAlreadyExist, EtcdRootReadOnly):
        assert issubclass(cls, EtcdKeyError)
    assert issubclass(EtcdInsufficientPermissions, txetcd.AuthError)
    assert issubclass(EtcdV2Error, txetcd.ServerError)
    assert issubclass(EtcdConnectionFailed, txetcd.ConnectionFailed)
    assert issubclass(EtcdWatchTimedOut, txetcd.Timeout)
    assert issubclass(EtcdWatchTimedOut, EtcdConnectionFailed)
    assert issubclass(EtcdWatchTimedOut, TimeoutError)
    cause = OSError("reset")
    err = EtcdConnectionFailed("lost", cause=cause)
    assert err.cause is cause and str(err) == "lost"
    for other in (EtcdWatcherCleared, EtcdLeaderElectionInProgress, EtcdClientInternal):
        assert issubclass(other, EtcdV2Error) and not issubclass(other, ValueError)
    # KeyError does not repr() the message
    assert str(from_json({"errorCode": 100, "message": "Key not found", "cause": "/k"})) == (
        "Key not found (/k)"
    )
    assert from_json({"errorCode": 100}).code is None


def test_event_index_cleared_cause() -> None:
    err = from_json(CAPTURED_ERRORS[-1][0], 400)
    assert isinstance(err, EtcdEventIndexCleared)
    assert err.oldest_index == 142 and err.requested_index == 36
    assert from_json({"errorCode": 401}).oldest_index is None  # type: ignore[attr-defined]


def test_unknown_and_non_keys_errors() -> None:
    err = from_json('{"errorCode":999,"message":"new","cause":"c","index":4}', 400)
    assert type(err) is EtcdV2Error and err.error_code == 999 and err.index == 4
    err = from_json('{"message":"No such member: 1234"}', 404)
    assert type(err) is EtcdV2Error and err.error_code is None
    assert err.message == "No such member: 1234" and err.status == 404
    err = from_json(b"404 page not found\n", 404)
    assert type(err) is EtcdV2Error and err.message == "404 page not found"
    assert from_json(b"", 500).message == "HTTP 500"
    assert from_json({"errorCode": 105}).message == "Key already exists"
    with pytest.raises(EtcdV2Error):
        EtcdResult.from_response(b"404 page not found", {}, 404)


# -- results ----------------------------------------------------------------------------------

HEADERS = {
    "Content-Type": "application/json",
    "X-Etcd-Cluster-Id": "babc9795b64f03e3",
    "X-Etcd-Index": "4",
    "X-Raft-Index": "128",
    "X-Raft-Term": "2",
}

# (body, status, class) from etcd-api.md 12.1-12.9
CAPTURED_RESULTS = [
    ('{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":4,'
     '"createdIndex":4}}', 201, Created),
    ('{"action":"set","node":{"key":"/message","value":"Hello etcd","modifiedIndex":5,'
     '"createdIndex":5},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":4,'
     '"createdIndex":4}}', 200, Set),
    ('{"action":"create","node":{"key":"/newkey","value":"x","modifiedIndex":7,'
     '"createdIndex":7}}', 201, Created),
    ('{"action":"update","node":{"key":"/newkey","value":"y","modifiedIndex":8,'
     '"createdIndex":7},"prevNode":{"key":"/newkey","value":"x","modifiedIndex":7,'
     '"createdIndex":7}}', 200, Updated),
    ('{"action":"compareAndSwap","node":{"key":"/newkey","value":"z","modifiedIndex":9,'
     '"createdIndex":7},"prevNode":{"key":"/newkey","value":"y","modifiedIndex":8,'
     '"createdIndex":7}}', 200, ComparedThenSwapped),
    ('{"action":"compareAndDelete","node":{"key":"/newkey","modifiedIndex":10,'
     '"createdIndex":7},"prevNode":{"key":"/newkey","value":"z","modifiedIndex":9,'
     '"createdIndex":7}}', 200, ComparedThenDeleted),
    ('{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":22,'
     '"createdIndex":15},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":15,'
     '"createdIndex":15}}', 200, Deleted),
    ('{"action":"expire","node":{"key":"/ex","modifiedIndex":33,"createdIndex":32},'
     '"prevNode":{"key":"/ex","value":"soon","expiration":"2026-11-23T05:52:22.392928544Z",'
     '"modifiedIndex":32,"createdIndex":32}}', 200, Expired),
    ('{"action":"get","node":{"key":"/message","value":"Hello world","modifiedIndex":4,'
     '"createdIndex":4}}', 200, Got),
    ('{"action":"create","node":{"key":"/queue/00000000000000001142","value":"Job1",'
     '"modifiedIndex":1142,"createdIndex":1142}}', 201, Created),
    ('{"action":"set","node":{"key":"/dir","dir":true,"modifiedIndex":15,"createdIndex":15}}',
     201, Created),
    ('{"action":"set","node":{"key":"/val","dir":true,"modifiedIndex":1178,'
     '"createdIndex":1178},"prevNode":{"key":"/val","value":"x","modifiedIndex":1177,'
     '"createdIndex":1177}}', 200, Set),
]  # fmt: skip


@pytest.mark.parametrize("body, status, cls", CAPTURED_RESULTS)
def test_captured_results(body: str, status: int, cls: type) -> None:
    data = json.loads(body)
    result = EtcdResult.from_response(body.encode() + b"\n", HEADERS, status)
    assert type(result) is cls
    assert result.action == data["action"]
    node = data["node"]
    assert result.key == node["key"]
    assert result.value == node.get("value")
    assert result.dir is node.get("dir", False)
    assert result.modified_index == result.modifiedIndex == node["modifiedIndex"]
    assert result.created_index == result.createdIndex == node["createdIndex"]
    assert (result.etcd_index, result.raft_index, result.raft_term) == (4, 128, 2)
    assert result.cluster_id == "babc9795b64f03e3"
    assert result.status == status and result.new_key is result.newKey is (status == 201)
    if "prevNode" in data:
        assert result.prev_node is not None and result._prev_node is result.prev_node
        assert result.prev_node.value == data["prevNode"].get("value")
        assert result.prev_node.action is None
    else:
        assert result.prev_node is None
    # the same without the status (e.g. a wait's answer): the class does not change
    assert type(EtcdResult.from_response(data)) is cls
    assert cls.__name__ in repr(result)


def test_expiration_and_ttl() -> None:
    body = (
        '{"action":"set","node":{"key":"/tk","value":"v","expiration":'
        '"2026-11-23T05:52:19.14871256Z","ttl":5,"modifiedIndex":25,"createdIndex":25}}'
    )
    result = EtcdResult.from_response(body, None, 201)
    assert result.ttl == 5
    assert result.expiration == datetime(2026, 11, 23, 5, 52, 19, 148712, tzinfo=timezone.utc)
    assert result.expiration_text == "2026-11-23T05:52:19.14871256Z"
    assert result.etcd_index is None and result.raft_index is None
    assert parse_expiration("2026-11-23T05:52:19Z").microsecond == 0
    assert parse_expiration("2026-11-23T07:52:19.5+02:00") == datetime(
        2026, 11, 23, 5, 52, 19, 500000, tzinfo=timezone.utc
    )
    with pytest.raises(ValueError):
        parse_expiration("yesterday")
    with pytest.raises(ProtocolViolation):
        EtcdResult.from_response({"action": "get", "node": {"key": "/k", "expiration": "x"}})


RECURSIVE = (
    '{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1",'
    '"modifiedIndex":16,"createdIndex":16},{"key":"/dir/b","value":"2","modifiedIndex":17,'
    '"createdIndex":17},{"key":"/dir/sub","dir":true,"nodes":[{"key":"/dir/sub/c","value":"3",'
    '"modifiedIndex":18,"createdIndex":18}],"modifiedIndex":18,"createdIndex":18},'
    '{"key":"/dir/empty","dir":true,"modifiedIndex":19,"createdIndex":19}],'
    '"modifiedIndex":15,"createdIndex":15}}'
)


def test_recursive_listing() -> None:
    # Twisted-style headers: bytes names, lists of values
    headers = {b"x-etcd-index": [b"19"], b"X-Raft-Index": [b"200", b"201"], b"X-Raft-Term": []}
    result = EtcdResult.from_response(RECURSIVE, headers, 200)
    assert isinstance(result, Got) and result.dir and result.value is None
    assert (result.etcd_index, result.raft_index, result.raft_term) == (19, 200, None)
    assert [n.key for n in result.nodes] == ["/dir/a", "/dir/b", "/dir/sub", "/dir/empty"]
    assert all(type(n) is EtcdResult and n.action is None for n in result.nodes)
    leaves = ["/dir/a", "/dir/b", "/dir/sub/c", "/dir/empty"]
    assert [n.key for n in result.leaves] == leaves
    assert [n.key for n in result.children] == leaves
    assert [n.value for n in result.leaves] == ["1", "2", "3", None]
    assert [n.key for n in result.get_subtree()] == [
        "/dir",
        "/dir/a",
        "/dir/b",
        "/dir/sub",
        "/dir/sub/c",
        "/dir/empty",
    ]
    assert [n.key for n in result.get_subtree(leaves_only=True)] == leaves
    assert EtcdResult.from_response(RECURSIVE) == result  # headers are not part of equality
    assert result != EtcdResult.from_response(RECURSIVE.replace('"3"', '"4"'))


def test_root_file_and_edge_results() -> None:
    root = EtcdResult.from_response(
        '{"action":"get","node":{"dir":true,"nodes":[{"key":"/wt","value":"1",'
        '"modifiedIndex":36,"createdIndex":36}]}}'
    )
    assert root.key == "/" and root.dir and root.created_index is None
    file = EtcdResult.from_response(
        '{"action":"get","node":{"key":"/e","value":"","modifiedIndex":2,"createdIndex":2}}'
    )
    assert file.value == "" and list(file.leaves) == [file]
    assert list(file.get_subtree()) == [file]
    unknown = EtcdResult.from_response({"action": "frobnicate", "node": {"key": "/k"}})
    assert type(unknown) is EtcdResult
    for bad in (b"not json", b"[1]", b'{"node":{}}', b'{"action":"get"}'):
        with pytest.raises(ProtocolViolation):
            EtcdResult.from_response(bad, {}, 200)
    with pytest.raises(ProtocolViolation):
        EtcdResult.from_response({"action": "get", "node": {"key": "/k", "modifiedIndex": "7"}})
    with pytest.raises(ProtocolViolation):
        EtcdResult.from_response(RECURSIVE, {"X-Etcd-Index": "seven"})


# ============================================================================================
# Part 2: a real etcd with the v2 API on
# ============================================================================================

Answer = Tuple[int, Dict[str, str], bytes]


class V2Wire:
    """Sends txetcd.v2 requests over one keep-alive HTTP/1.1 connection (blocking, loopback)."""

    def __init__(self, server: EtcdServer) -> None:
        self.host, self.port = "127.0.0.1", server.client_port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def raw(
        self,
        method: str,
        uri: str,
        body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: float = 10.0,
    ) -> Answer:
        conn = self.conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request(method, uri, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k: v for k, v in resp.getheaders()}, resp.read()

    def send(self, req: V2Request, timeout: float = 10.0) -> Answer:
        return self.raw(req.method, req.uri, req.body, req.headers, timeout)

    def result(self, req: V2Request) -> EtcdResult:
        return EtcdResult.from_response(*reversed_answer(self.send(req)))

    def error(self, req: V2Request) -> EtcdV2Error:
        status, headers, body = self.send(req)
        assert status >= 400, body
        assert "X-Raft-Index" not in headers
        with pytest.raises(EtcdV2Error) as info:
            EtcdResult.from_response(body, headers, status)
        err = info.value
        assert err.status == status
        if err.error_code is not None and err.error_code < 200:
            assert err.index == int(headers["X-Etcd-Index"])
        return err

    def close(self) -> None:
        self.conn.close()


def reversed_answer(answer: Answer) -> Tuple[bytes, Dict[str, str], int]:
    status, headers, body = answer
    return body, headers, status


@pytest.fixture(scope="module")
def v2_server() -> Iterator[EtcdServer]:
    """One etcd with ``--enable-v2=true`` for this module, stopped at teardown."""
    server = EtcdServer(["--enable-v2=true"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def wire(v2_server: EtcdServer) -> Iterator[V2Wire]:
    w = V2Wire(v2_server)
    try:
        yield w
    finally:
        w.close()


def test_hostile_keys_round_trip(wire: V2Wire) -> None:
    for i, key in enumerate(HOSTILE_KEYS):
        value = HOSTILE_VALUES[i % len(HOSTILE_VALUES)] + key
        status, headers, body = wire.send(set_request(key, value))
        assert status in (200, 201), body
        put = EtcdResult.from_response(body, headers, status)
        assert put.key == key and put.value == value
        got = wire.result(get_request(key))
        assert isinstance(got, Got)
        assert got.key == key and got.value == value, (key, value)
    # the listing names them exactly too (hidden keys excepted)
    listing = wire.result(get_request("/enc", recursive=True, sorted=True))
    listed = {n.key: n.value for n in listing.leaves}
    for key in HOSTILE_KEYS:
        if "/_" not in key:
            assert key in listed
    assert "/enc/_hidden" not in listed


def draw_keys(n: int) -> List[Tuple[List[str], str]]:
    cases: List[Tuple[List[str], str]] = []

    @settings(max_examples=n, deadline=None, database=None)
    @given(segments=st.lists(_segment, min_size=1, max_size=3), value=st.text(max_size=40))
    def collect(segments: List[str], value: str) -> None:
        cases.append((segments, value))

    collect()
    return cases


def test_drawn_keys_round_trip(wire: V2Wire) -> None:
    for i, (segments, value) in enumerate(draw_keys(60)):
        # a directory of its own per case: a drawn key may be a prefix of another
        key = join_key("drawn", str(i), *segments)
        status, headers, body = wire.send(set_request(key, value))
        assert status == 201, (key, body)
        got = wire.result(get_request(key))
        assert (got.key, got.value) == (key, value)


def test_actions_map_to_classes(wire: V2Wire) -> None:
    created = wire.result(set_request("/act/k", "1"))
    assert isinstance(created, Created) and created.new_key and created.status == 201
    assert created.etcd_index is not None and created.raft_index is not None
    assert created.raft_term is not None and created.cluster_id
    replaced = wire.result(set_request("/act/k", "2"))
    assert isinstance(replaced, Set) and not replaced.new_key
    assert replaced.prev_node is not None and replaced.prev_node.value == "1"
    made = wire.result(set_request("/act/new", "x", prev_exist=False))
    assert isinstance(made, Created) and made.action == "create"
    updated = wire.result(set_request("/act/new", "y", prev_exist=True))
    assert isinstance(updated, Updated) and updated.created_index == made.created_index
    swapped = wire.result(set_request("/act/new", "z", prev_value="y"))
    assert isinstance(swapped, ComparedThenSwapped)
    assert swapped.modified_index is not None
    swapped2 = wire.result(set_request("/act/new", "w", prev_index=swapped.modified_index))
    assert isinstance(swapped2, ComparedThenSwapped)
    refreshed = wire.result(set_request("/act/new", ttl=30, refresh=True, prev_exist=True))
    assert isinstance(refreshed, Updated) and refreshed.value == "w" and refreshed.ttl == 30
    assert refreshed.expiration is not None and refreshed.expiration.tzinfo is not None
    cad = wire.result(delete_request("/act/new", prev_value="w"))
    assert isinstance(cad, ComparedThenDeleted) and cad.value is None
    assert cad.prev_node is not None and cad.prev_node.value == "w"
    appended = wire.result(append_request("/act/queue", "Job1"))
    assert isinstance(appended, Created) and appended.key.startswith("/act/queue/0000")
    d = wire.result(set_request("/act/dir", dir=True))
    assert isinstance(d, Created) and d.dir
    wire.result(set_request("/act/dir/sub/c", "3"))
    tree = wire.result(get_request("/act", recursive=True, sorted=True))
    assert isinstance(tree, Got) and tree.dir
    assert [n.key for n in tree.leaves] == [
        "/act/dir/sub/c",
        "/act/k",
        f"{appended.key}",
    ]
    deleted = wire.result(delete_request("/act/k"))
    assert isinstance(deleted, Deleted) and deleted.prev_node is not None
    rdel = wire.result(delete_request("/act/dir", recursive=True))
    assert isinstance(rdel, Deleted) and rdel.dir


def test_expire(wire: V2Wire) -> None:
    made = wire.result(set_request("/exp/k", "soon", ttl=1))
    assert made.modified_index is not None and made.ttl == 1
    req = get_request("/exp/k", wait=True, wait_index=made.modified_index + 1)
    try:
        answer = wire.send(req, timeout=2.5)  # a bound against hanging (etcd's TTL is real time)
    except OSError:
        pytest.skip("the TTL did not run out within 2.5 s")
    expired = EtcdResult.from_response(answer[2], answer[1], None)
    assert isinstance(expired, Expired), expired
    assert expired.prev_node is not None and expired.prev_node.value == "soon"


def test_errors_from_a_real_etcd(wire: V2Wire) -> None:
    err = wire.error(get_request("/err/missing"))
    assert isinstance(err, EtcdKeyNotFound) and isinstance(err, KeyError)
    assert err.cause == "/err" and err.index > 0  # the first missing part of the path

    wire.result(set_request("/err/k", "a"))
    err = wire.error(delete_request("/err/missing"))
    assert isinstance(err, EtcdKeyNotFound) and err.cause == "/err/missing"
    err = wire.error(set_request("/err/k", "b", prev_value="wrong"))
    assert isinstance(err, EtcdCompareFailed) and isinstance(err, ValueError)
    assert err.cause == "[wrong != a]"

    wire.result(set_request("/err/dir/x", "1"))
    err = wire.error(set_request("/err/dir", "x"))
    assert isinstance(err, EtcdNotFile) and err.cause == "/err/dir"
    err = wire.error(set_request("/err/k/under", "x"))
    assert isinstance(err, EtcdNotDir) and err.cause == "/err/k"
    err = wire.error(set_request("/err/k", "x", prev_exist=False))
    assert isinstance(err, EtcdAlreadyExist) and err.cause == "/err/k"
    err = wire.error(set_request("/", "x"))
    assert isinstance(err, EtcdRootReadOnly) and err.cause == "/"
    err = wire.error(delete_request("/err/dir", dir=True))
    assert isinstance(err, EtcdDirNotEmpty) and err.cause == "/err/dir"

    # request errors: the builders refuse these, so send them by hand
    form = {"Content-Type": FORM_CONTENT_TYPE}
    cases = [
        (b"value=x&prevValue=", EtcdPrevValueRequired),
        (b"value=x&ttl=abc", EtcdTTLNaN),
        (b"value=x&prevIndex=abc", EtcdIndexNaN),
        (b"value=x&wait=true", EtcdInvalidField),
        (b"value=%zz", EtcdInvalidForm),
        (b"value=x&ttl=5&refresh=true&prevExist=true", EtcdRefreshValue),
        (b"refresh=true&prevExist=true", EtcdRefreshTTLRequired),
    ]
    for body, cls in cases:
        status, headers, raw = wire.raw("PUT", key_path("/err/k"), body, form)
        err = from_json(raw, status)
        assert type(err) is cls and err.index == 0 and status == 400, raw


def test_event_index_cleared(wire: V2Wire) -> None:
    first = wire.result(set_request("/hist/k", "0"))
    assert first.modified_index is not None
    for i in range(1010):
        status, _, _ = wire.send(set_request("/hist/k", str(i)))
        assert status == 200
    req = get_request("/hist/k", wait=True, wait_index=first.modified_index)
    err = wire.error(req)
    assert isinstance(err, EtcdEventIndexCleared)
    assert err.requested_index == first.modified_index
    assert err.oldest_index is not None and err.oldest_index > first.modified_index
    assert err.index >= err.oldest_index
    # recovery as the docs say: read, then wait from X-Etcd-Index + 1 (nothing new: times out
    # or answers; here a write after the read must be seen)
    got = wire.result(get_request("/hist/k"))
    assert got.etcd_index is not None
    written = wire.result(set_request("/hist/k", "after"))
    event = wire.result(get_request("/hist/k", wait=True, wait_index=got.etcd_index + 1))
    assert isinstance(event, Set) and event.value == "after"
    assert event.modified_index == written.modified_index
