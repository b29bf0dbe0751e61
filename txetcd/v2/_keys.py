"""v2 keys: validation, percent-encoding, and the requests of the v2 keys API.

Pure functions, no I/O: they build the method, path, query string and form body of a request
to ``/v2/keys/...`` exactly as etcd expects them, for a transport to send.

Keys. A key is split on ``/``; every segment is UTF-8 encoded and every byte of it except the
unreserved characters (``A-Z a-z 0-9 - . _ ~``) is percent-encoded, so spaces, ``?``, ``#``,
``%``, ``+``, ``&``, ``;``, NUL and any Unicode text reach etcd byte-exact. etcd cleans the path it
decodes and answers ``301`` for ``//``, ``.`` and ``..`` instead of storing the key, so such keys
are refused here (:class:`~txetcd.v2.EtcdInvalidKey`, a ``ValueError``). A leading ``/`` is
optional and one trailing ``/`` is dropped (``"dir/"`` is ``"/dir"``, as etcd names it).

Values are text: ``str`` as it is, ``bytes`` as UTF-8, anything else as ``str(value)``, as
python-etcd sends them (``3`` is stored as ``"3"``). Values and options always travel
``application/x-www-form-urlencoded`` (in the body of PUT and POST, in the query string of GET
and DELETE): with any other Content-Type etcd silently stores ``""``. ``+`` is sent as ``%2B``
(a form reads ``+`` as a space); booleans as ``true``/``false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from txetcd.v2._errors import EtcdInvalidKey, EtcdInvalidRequest

__all__ = [
    "KEYS_PREFIX",
    "FORM_CONTENT_TYPE",
    "Key",
    "Value",
    "V2Request",
    "key_segments",
    "normalize_key",
    "join_key",
    "encode_segment",
    "encode_key",
    "key_path",
    "encode_bool",
    "encode_form",
    "get_request",
    "set_request",
    "append_request",
    "delete_request",
]

#: the path of the v2 keys API
KEYS_PREFIX = "/v2/keys"
#: the one Content-Type etcd reads v2 keys values from
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Key = Union[str, bytes]
#: a v2 value: ``str`` as it is, ``bytes`` as UTF-8 text, anything else as ``str(value)`` (what
#: python-etcd sends: ``3`` is ``"3"``, ``True`` is ``"True"``)
Value = object
Params = List[Tuple[str, str]]


# -- keys ---------------------------------------------------------------------------------------


def _key_text(key: Key) -> str:
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            raise EtcdInvalidKey(
                f"v2 keys are text: {key!r} is not UTF-8 (etcd's JSON would mangle it)"
            ) from None
    if not isinstance(key, str):
        raise TypeError(f"a v2 key is str or bytes, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise EtcdInvalidKey(f"v2 key {key!r} is not valid Unicode (lone surrogate)") from None
    return key


def _check_segment(segment: str, key: str) -> None:
    if segment == "":
        raise EtcdInvalidKey(f"v2 key {key!r} has an empty segment ('//'): etcd would redirect")
    if segment in (".", ".."):
        raise EtcdInvalidKey(
            f"v2 key {key!r} has a {segment!r} segment: etcd would redirect, not store it"
        )


def key_segments(key: Key) -> Tuple[str, ...]:
    """The segments of ``key`` (``()`` for the root, ``""`` or ``"/"``), checked.

    A leading ``/`` is optional and one trailing ``/`` is dropped. Raises
    :class:`~txetcd.v2.EtcdInvalidKey` (a ``ValueError``) for an empty (``//``), ``.`` or ``..``
    segment, and for bytes that are not UTF-8.
    """
    text = _key_text(key)
    body = text[1:] if text.startswith("/") else text
    if body.endswith("/"):
        body = body[:-1]
    if body == "":
        if text not in ("", "/"):
            raise EtcdInvalidKey(f"v2 key {text!r} has an empty segment ('//')")
        return ()
    segments = tuple(body.split("/"))
    for segment in segments:
        _check_segment(segment, text)
    return segments


def normalize_key(key: Key) -> str:
    """``key`` as etcd names it in answers: ``"/a/b"`` (``"/"`` for the root)."""
    return "/" + "/".join(key_segments(key))


def join_key(*segments: str) -> str:
    """The key made of ``segments``, each taken literally: ``join_key("a", "b c")`` is ``/a/b c``.

    A segment may hold any character but ``/``; ``/`` inside a segment, an empty, ``.`` or
    ``..`` segment raise :class:`~txetcd.v2.EtcdInvalidKey`.
    """
    texts = [_key_text(segment) for segment in segments]
    for text in texts:
        if "/" in text:
            raise EtcdInvalidKey(f"v2 key segment {text!r} contains '/'")
        _check_segment(text, "/".join(texts))
    return "/" + "/".join(texts)


def encode_segment(segment: str) -> str:
    """One segment percent-encoded: every UTF-8 byte but ``A-Z a-z 0-9 - . _ ~``."""
    return quote(segment.encode("utf-8"), safe="")


def encode_key(key: Key) -> str:
    """The percent-encoded key path, ``"/a%20b/c%3F"`` (``"/"`` for the root)."""
    return "/" + "/".join(encode_segment(s) for s in key_segments(key))


def key_path(key: Key) -> str:
    """The request path for ``key``: ``/v2/keys/a%20b`` (``/v2/keys/`` for the root)."""
    if type(key) is str or type(key) is bytes:
        return _cached_key_path(key)
    return KEYS_PREFIX + encode_key(key)


@lru_cache(maxsize=4096)
def _cached_key_path(key: Key) -> str:
    # Keys repeat (the same config keys, locks and queues): encode each once.
    return KEYS_PREFIX + encode_key(key)


# -- form encoding ------------------------------------------------------------------------------


def encode_bool(value: bool) -> str:
    """A boolean as etcd reads it: ``"true"`` or ``"false"``."""
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, not {type(value).__name__}")
    return "true" if value else "false"


def encode_form(params: Sequence[Tuple[str, str]]) -> str:
    """``application/x-www-form-urlencoded`` text of ``params``, every reserved byte escaped.

    Spaces become ``%20`` and ``+`` becomes ``%2B``, so nothing depends on how the reader treats
    ``+``; the text is ASCII.
    """
    return "&".join(f"{_form_text(name)}={_form_text(value)}" for name, value in params)


_UNRESERVED_ASCII = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# every ASCII character, escaped unless unreserved (str.translate indexes it by code point)
_ASCII_ESCAPES = [chr(c) if c in _UNRESERVED_ASCII else f"%{c:02X}" for c in range(128)]


def _form_text(text: str) -> str:
    if text.isascii():  # names and most values: one pass in C, 2-3x quote()'s speed
        return text.translate(_ASCII_ESCAPES)
    return quote(text.encode("utf-8"), safe="")


def _text_value(value: Value, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise EtcdInvalidRequest(
                f"v2 {what}s are text: {value!r} is not UTF-8 (etcd's JSON would mangle it)"
            ) from None
    if not isinstance(value, str):
        value = str(value)  # python-etcd's rule: etcd stores text, 3 is sent as "3"
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EtcdInvalidRequest(f"v2 {what} {value!r} is not valid Unicode") from None
    return value


def _int(value: int, name: str, minimum: int, why: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int, not {type(value).__name__}")
    if value < minimum:
        raise EtcdInvalidRequest(f"{name} must be >= {minimum}, not {value}{why}")
    return str(value)


def _bool(params: Params, name: str, value: Optional[bool]) -> None:
    if value is not None:
        params.append((name, encode_bool(value)))


def _compare(params: Params, prev_value: Optional[Value], prev_index: Optional[int]) -> None:
    if prev_value is not None:
        text = _text_value(prev_value, "prevValue")
        if text == "":
            raise EtcdInvalidRequest(
                "prev_value cannot be empty: etcd cannot compare against an empty value"
            )
        params.append(("prevValue", text))
    if prev_index is not None:
        params.append(
            ("prevIndex", _int(prev_index, "prev_index", 1, " (etcd ignores prevIndex=0)"))
        )


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class V2Request:
    """One v2 keys request, ready to send: method, path, query string, body and headers.

    :ivar method: ``GET``, ``PUT``, ``POST`` or ``DELETE``.
    :ivar path: the percent-encoded path, e.g. ``/v2/keys/a%20b``.
    :ivar query: the query string without ``?`` (``""`` when none).
    :ivar body: the form body of PUT and POST (``None`` for GET and DELETE).
    :ivar headers: the headers the request needs (``Content-Type`` with a body).
    :ivar params: the parameters, unencoded, in the order sent.
    """

    method: str
    path: str
    query: str = ""
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    params: Tuple[Tuple[str, str], ...] = ()

    @classmethod
    def _of(
        cls,
        method: str,
        path: str,
        query: str,
        body: Optional[bytes],
        headers: Dict[str, str],
        params: Tuple[Tuple[str, str], ...],
    ) -> "V2Request":
        # The builders' constructor: the same object as V2Request(...), made in one step
        # (a frozen dataclass's __init__ sets each field through object.__setattr__).
        request = object.__new__(cls)
        request.__dict__.update(
            method=method, path=path, query=query, body=body, headers=headers, params=params
        )
        return request

    @property
    def uri(self) -> str:
        """The request target: path plus ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


def _in_query(method: str, key: Key, params: Params) -> V2Request:
    return V2Request._of(method, key_path(key), encode_form(params), None, {}, tuple(params))


def _in_body(method: str, key: Key, params: Params) -> V2Request:
    body = encode_form(params).encode("ascii")
    headers = {"Content-Type": FORM_CONTENT_TYPE}
    return V2Request._of(method, key_path(key), "", body, headers, tuple(params))


def get_request(
    key: Key,
    *,
    recursive: Optional[bool] = None,
    sorted: Optional[bool] = None,
    quorum: Optional[bool] = None,
    wait: Optional[bool] = None,
    wait_index: Optional[int] = None,
    stream: Optional[bool] = None,
) -> V2Request:
    """A GET of ``key``: a read, or with ``wait=True`` a long poll for its next change.

    ``wait_index`` (>= 1) waits for the first change at or after that index; it and ``stream``
    need ``wait=True`` (etcd ignores them otherwise).
    """
    params: Params = []
    _bool(params, "recursive", recursive)
    _bool(params, "sorted", sorted)
    _bool(params, "quorum", quorum)
    _bool(params, "wait", wait)
    if wait_index is not None:
        if not wait:
            raise EtcdInvalidRequest("wait_index needs wait=True")
        params.append(("waitIndex", _int(wait_index, "wait_index", 1, " (0 means 'now')")))
    if stream is not None:
        if stream and not wait:
            raise EtcdInvalidRequest("stream needs wait=True")
        _bool(params, "stream", stream)
    return _in_query("GET", key, params)


def set_request(
    key: Key,
    value: Optional[Value] = None,
    *,
    ttl: Optional[int] = None,
    dir: Optional[bool] = None,
    prev_value: Optional[Value] = None,
    prev_index: Optional[int] = None,
    prev_exist: Optional[bool] = None,
    refresh: Optional[bool] = None,
) -> V2Request:
    """A PUT of ``key``: set, create (``prev_exist=False``), update (``prev_exist=True``),
    compare-and-swap (``prev_value``/``prev_index``), make a directory (``dir=True``) or refresh
    a TTL (``refresh=True`` with ``ttl`` and no value).

    Everything goes form-encoded in the body. Without ``ttl`` a set drops any TTL the key had.
    """
    params: Params = []
    if refresh:
        if value is not None:
            raise EtcdInvalidRequest("a refresh sends no value (etcd answers 211)")
        if ttl is None:
            raise EtcdInvalidRequest("a refresh needs a ttl (etcd answers 212)")
    elif dir:
        if value is not None:
            raise EtcdInvalidRequest("a directory has no value (etcd would drop it)")
    elif value is None:
        raise EtcdInvalidRequest("set needs a value (or dir=True, or refresh=True with a ttl)")
    if value is not None:
        params.append(("value", _text_value(value, "value")))
    if ttl is not None:
        params.append(("ttl", _int(ttl, "ttl", 0)))
    _bool(params, "dir", dir)
    _compare(params, prev_value, prev_index)
    _bool(params, "prevExist", prev_exist)
    _bool(params, "refresh", refresh)
    return _in_body("PUT", key, params)


def append_request(
    key: Key,
    value: Optional[Value] = None,
    *,
    ttl: Optional[int] = None,
    dir: Optional[bool] = None,
) -> V2Request:
    """A POST to the directory ``key``: a new in-order key named by its creation index.

    ``value`` is required unless ``dir=True`` (then it must be absent).
    """
    params: Params = []
    if dir:
        if value is not None:
            raise EtcdInvalidRequest("a directory has no value (etcd would drop it)")
    elif value is None:
        raise EtcdInvalidRequest("append needs a value (or dir=True)")
    if value is not None:
        params.append(("value", _text_value(value, "value")))
    if ttl is not None:
        params.append(("ttl", _int(ttl, "ttl", 0)))
    _bool(params, "dir", dir)
    return _in_body("POST", key, params)


def delete_request(
    key: Key,
    *,
    recursive: Optional[bool] = None,
    dir: Optional[bool] = None,
    prev_value: Optional[Value] = None,
    prev_index: Optional[int] = None,
    prev_exist: Optional[bool] = None,
) -> V2Request:
    """A DELETE of ``key``; with ``prev_value``/``prev_index`` a compare-and-delete.

    ``dir=True`` deletes an empty directory, ``recursive=True`` a directory and all below it.
    Options go in the query string.
    """
    params: Params = []
    _bool(params, "recursive", recursive)
    _bool(params, "dir", dir)
    _compare(params, prev_value, prev_index)
    _bool(params, "prevExist", prev_exist)
    return _in_query("DELETE", key, params)
