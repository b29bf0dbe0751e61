"""Errors of etcd's v2 keys API, under txetcd's one root, :class:`txetcd.EtcdError`.

etcd answers a failed v2 request with ``{"errorCode", "message", "cause", "index"}``.
:func:`from_json` turns such a body into an exception, chosen by ``errorCode`` alone (never by
the HTTP status) from one table, :data:`V2_ERROR_CLASSES`. The class names are python-etcd's
(``EtcdKeyNotFound``, ``EtcdCompareFailed``, ...) so code written for python-etcd reads the same;
the codes python-etcd left out have names of their own (``EtcdTTLNaN``, ``EtcdRaftInternal``, ...).

Codes and messages are those of etcd 3.5's ``v2error`` package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Dict, Optional, Tuple, Type, Union

from txetcd._errors import AuthError, ClientError, ConnectionFailed, EtcdError, ServerError, Timeout

__all__ = [
    "EtcdException",
    "EtcdV2Error",
    "EtcdKeyError",
    "EtcdValueError",
    "EtcdKeyNotFound",
    "EtcdCompareFailed",
    "EtcdNotFile",
    "EtcdNoMorePeer",
    "EtcdNotDir",
    "EtcdAlreadyExist",
    "EtcdKeyIsPreserved",
    "EtcdRootReadOnly",
    "EtcdDirNotEmpty",
    "EtcdExistingPeerAddr",
    "EtcdInsufficientPermissions",
    "EtcdValueRequired",
    "EtcdPrevValueRequired",
    "EtcdTTLNaN",
    "EtcdIndexNaN",
    "EtcdValueOrTTLRequired",
    "EtcdTimeoutNaN",
    "EtcdNameRequired",
    "EtcdIndexOrValueRequired",
    "EtcdIndexValueMutex",
    "EtcdInvalidField",
    "EtcdInvalidForm",
    "EtcdRefreshValue",
    "EtcdRefreshTTLRequired",
    "EtcdRaftInternal",
    "EtcdLeaderElectionInProgress",
    "EtcdWatcherCleared",
    "EtcdEventIndexCleared",
    "EtcdStandbyInternal",
    "EtcdInvalidActiveSize",
    "EtcdInvalidRemoveDelay",
    "EtcdClientInternal",
    "EtcdConnectionFailed",
    "EtcdWatchTimedOut",
    "EtcdClusterIdChanged",
    "EtcdLockExpired",
    "EtcdInvalidRequest",
    "EtcdInvalidKey",
    "EtcdV2NotEnabled",
    "V2_ERROR_CLASSES",
    "V2_ERROR_MESSAGES",
    "V2_ERROR_STATUS",
    "from_json",
]

#: python-etcd's root exception; in txetcd it is the one root of everything, :class:`EtcdError`.
EtcdException = EtcdError


class EtcdV2Error(ServerError):
    """An error answer of the v2 keys API (``{"errorCode", "message", "cause", "index"}``).

    Unknown ``errorCode`` values come back as this class itself.

    :ivar error_code: etcd's ``errorCode`` (``None`` when the body had none, e.g. the
        ``{"message"}`` bodies of ``/v2/members``).
    :ivar message: etcd's ``message`` (the text fixed by the code).
    :ivar cause: etcd's ``cause`` (the key, or what failed, e.g. ``[b != a] [99 != 11]``).
    :ivar index: etcd's ``index``: the store index for store errors, 0 for request errors.
    :ivar status: the HTTP status of the answer, when known.
    :ivar payload: the decoded error body (a dict), as python-etcd kept it.
    """

    #: the errorCode this class stands for (``None`` on the generic classes)
    error_code_value: Optional[int] = None
    # v2 errors carry no gRPC status code
    code: Optional[int] = None

    def __init__(
        self,
        message: str = "",
        *,
        error_code: Optional[int] = None,
        cause: str = "",
        index: int = 0,
        status: Optional[int] = None,
        payload: object = None,
    ) -> None:
        super().__init__(message, payload=payload)
        self.error_code = error_code if error_code is not None else self.error_code_value
        self.cause = cause
        self.index = index
        self.status = status

    @property
    def errorCode(self) -> Optional[int]:  # noqa: N802 - etcd's own field name
        """``error_code`` under etcd's JSON name."""
        return self.error_code

    def __str__(self) -> str:
        if self.cause:
            return f"{self.message} ({self.cause})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, error_code={self.error_code!r}, "
            f"cause={self.cause!r}, index={self.index!r})"
        )


class EtcdKeyError(EtcdV2Error):
    """A key is missing, in the way, or of the wrong kind (python-etcd's ``EtcdKeyError``)."""


class EtcdValueError(EtcdV2Error, ValueError):
    """A request etcd refused as invalid (python-etcd's ``EtcdValueError``); the 2xx codes."""


# -- 1xx: command errors ------------------------------------------------------------------------


class EtcdKeyNotFound(EtcdKeyError, KeyError):
    """100 Key not found (HTTP 404): the key (or, for a CAS, the compared key) does not exist."""

    error_code_value = 100

    def __str__(self) -> str:  # KeyError would repr() the message
        return EtcdV2Error.__str__(self)


class EtcdCompareFailed(EtcdValueError):
    """101 Compare failed (HTTP 412): ``prevValue``/``prevIndex`` did not match.

    ``cause`` lists each failed test, e.g. ``[b != a] [99 != 11]``.
    """

    error_code_value = 101


class EtcdNotFile(EtcdKeyError):
    """102 Not a file (HTTP 403): a value written to (or a delete without ``dir``) of a dir."""

    error_code_value = 102


class EtcdNoMorePeer(EtcdV2Error):
    """103 Reached the max number of peers in the cluster."""

    error_code_value = 103


class EtcdNotDir(EtcdKeyError):
    """104 Not a directory: a file used as a parent, or a POST to a file."""

    error_code_value = 104


class EtcdAlreadyExist(EtcdKeyError):
    """105 Key already exists (HTTP 412): ``prevExist=false`` on an existing key."""

    error_code_value = 105


class EtcdKeyIsPreserved(EtcdKeyError):
    """106 The prefix of given key is a keyword in etcd."""

    error_code_value = 106


class EtcdRootReadOnly(EtcdKeyError):
    """107 Root is read only: a PUT or DELETE of ``/``."""

    error_code_value = 107


class EtcdDirNotEmpty(EtcdValueError):
    """108 Directory not empty (HTTP 403): ``dir=true`` delete of a directory with children."""

    error_code_value = 108


class EtcdExistingPeerAddr(EtcdV2Error):
    """109 Peer address has existed."""

    error_code_value = 109


class EtcdInsufficientPermissions(EtcdV2Error, AuthError):
    """110 The request requires user authentication (HTTP 401).

    v2 auth gives the same answer for missing or wrong credentials and for a denied permission.
    """

    error_code_value = 110


# -- 2xx: request (form) errors, index 0 --------------------------------------------------------


class EtcdValueRequired(EtcdValueError):
    """200 Value is Required in POST form."""

    error_code_value = 200


class EtcdPrevValueRequired(EtcdValueError):
    """201 PrevValue is Required in POST form (an empty ``prevValue``)."""

    error_code_value = 201


class EtcdTTLNaN(EtcdValueError):
    """202 The given TTL in POST form is not a number (also a negative TTL)."""

    error_code_value = 202


class EtcdIndexNaN(EtcdValueError):
    """203 The given index in POST form is not a number (``prevIndex``/``waitIndex``)."""

    error_code_value = 203


class EtcdValueOrTTLRequired(EtcdValueError):
    """204 Value or TTL is required in POST form."""

    error_code_value = 204


class EtcdTimeoutNaN(EtcdValueError):
    """205 The given timeout in POST form is not a number."""

    error_code_value = 205


class EtcdNameRequired(EtcdValueError):
    """206 Name is required in POST form."""

    error_code_value = 206


class EtcdIndexOrValueRequired(EtcdValueError):
    """207 Index or value is required."""

    error_code_value = 207


class EtcdIndexValueMutex(EtcdValueError):
    """208 Index and value cannot both be specified."""

    error_code_value = 208


class EtcdInvalidField(EtcdValueError):
    """209 Invalid field: a bad boolean, or ``wait`` on a write."""

    error_code_value = 209


class EtcdInvalidForm(EtcdValueError):
    """210 Invalid POST form: the form body could not be parsed (e.g. a bad escape)."""

    error_code_value = 210


class EtcdRefreshValue(EtcdValueError):
    """211 Value provided on refresh."""

    error_code_value = 211


class EtcdRefreshTTLRequired(EtcdValueError):
    """212 A TTL must be provided on refresh."""

    error_code_value = 212


# -- 3xx: raft errors ---------------------------------------------------------------------------


class EtcdRaftInternal(EtcdV2Error):
    """300 Raft Internal Error (HTTP 500)."""

    error_code_value = 300


class EtcdLeaderElectionInProgress(EtcdV2Error):
    """301 During Leader Election (HTTP 500)."""

    error_code_value = 301


# -- 4xx: etcd errors ---------------------------------------------------------------------------


class EtcdWatcherCleared(EtcdV2Error):
    """400 watcher is cleared due to etcd recovery: wait again."""

    error_code_value = 400


_CLEARED_CAUSE = re.compile(r"\[(\d+)/(\d+)\]")


class EtcdEventIndexCleared(EtcdV2Error):
    """401 The event in requested index is outdated and cleared.

    etcd keeps the last 1,000 events. Recover by reading the key (or directory, recursively) and
    waiting again from its ``X-Etcd-Index`` + 1. ``cause`` is ``[oldest kept/requested]``.
    """

    error_code_value = 401

    @property
    def oldest_index(self) -> Optional[int]:
        """The oldest index etcd still has events for, from ``cause``."""
        m = _CLEARED_CAUSE.search(self.cause)
        return int(m.group(1)) if m else None

    @property
    def requested_index(self) -> Optional[int]:
        """The ``waitIndex`` that was asked for, from ``cause``."""
        m = _CLEARED_CAUSE.search(self.cause)
        return int(m.group(2)) if m else None


class EtcdStandbyInternal(EtcdV2Error):
    """402 Standby Internal Error."""

    error_code_value = 402


class EtcdInvalidActiveSize(EtcdV2Error):
    """403 Invalid active size."""

    error_code_value = 403


class EtcdInvalidRemoveDelay(EtcdV2Error):
    """404 Standby remove delay."""

    error_code_value = 404


class EtcdClientInternal(EtcdV2Error):
    """500 Client Internal Error."""

    error_code_value = 500


# -- raised by the client itself ----------------------------------------------------------------


class EtcdConnectionFailed(ConnectionFailed):
    """No v2 answer could be had: connection refused, reset or lost (python-etcd's name).

    :ivar cause: the underlying failure, when there is one.
    """

    def __init__(
        self,
        message: str = "",
        *,
        cause: Optional[BaseException] = None,
        maybe_sent: bool = False,
        payload: object = None,
    ) -> None:
        super().__init__(message, maybe_sent=maybe_sent, payload=payload)
        self.cause = cause


class EtcdWatchTimedOut(EtcdConnectionFailed, Timeout):
    """A v2 wait gave no event within the client's timeout (python-etcd's name)."""


class EtcdInvalidRequest(ClientError, ValueError):
    """The client refused to build a v2 request: a bad option value or combination.

    Raised before anything is sent, for requests etcd would reject, or worse, silently turn into
    something else (``prevIndex=0`` is an unconditional set; a value beside ``dir=true`` is
    dropped).
    """


class EtcdInvalidKey(EtcdInvalidRequest):
    """The client refused a v2 key: an empty, ``.`` or ``..`` segment, ``/`` inside a segment,
    or text that is not valid Unicode. etcd would redirect (301) or clean such a path rather than
    store the key as written.
    """


class EtcdV2NotEnabled(EtcdV2Error):
    """The server does not serve etcd's v2 API: etcd 3.4 and 3.5 serve it only when started
    with ``--enable-v2``, and etcd 3.6 not at all. They answer every ``/v2`` request with a plain
    ``404 page not found``; the message names the server. Use :class:`txetcd.Client` (v3) there.
    """


class EtcdClusterIdChanged(ClientError):
    """The ``X-Etcd-Cluster-Id`` of an answer differs from the one seen before."""


class EtcdLockExpired(ClientError):
    """A v2 lock's key expired (or vanished) while the lock was held."""


# -- the table ----------------------------------------------------------------------------------

#: errorCode -> message, as etcd 3.5 defines them
V2_ERROR_MESSAGES: Dict[int, str] = {
    100: "Key not found",
    101: "Compare failed",
    102: "Not a file",
    103: "Reached the max number of peers in the cluster",
    104: "Not a directory",
    105: "Key already exists",
    106: "The prefix of given key is a keyword in etcd",
    107: "Root is read only",
    108: "Directory not empty",
    109: "Peer address has existed",
    110: "The request requires user authentication",
    200: "Value is Required in POST form",
    201: "PrevValue is Required in POST form",
    202: "The given TTL in POST form is not a number",
    203: "The given index in POST form is not a number",
    204: "Value or TTL is required in POST form",
    205: "The given timeout in POST form is not a number",
    206: "Name is required in POST form",
    207: "Index or value is required",
    208: "Index and value cannot both be specified",
    209: "Invalid field",
    210: "Invalid POST form",
    211: "Value provided on refresh",
    212: "A TTL must be provided on refresh",
    300: "Raft Internal Error",
    301: "During Leader Election",
    400: "watcher is cleared due to etcd recovery",
    401: "The event in requested index is outdated and cleared",
    402: "Standby Internal Error",
    403: "Invalid active size",
    404: "Standby remove delay",
    500: "Client Internal Error",
}

#: errorCode -> the HTTP status etcd answers with (400 for every code not listed)
V2_ERROR_STATUS: Dict[int, int] = {
    100: 404,
    101: 412,
    102: 403,
    105: 412,
    108: 403,
    110: 401,
    300: 500,
    301: 500,
}

#: errorCode -> exception class: the one translation table
V2_ERROR_CLASSES: Dict[int, Type[EtcdV2Error]] = {
    cls.error_code_value: cls
    for cls in (
        EtcdKeyNotFound,
        EtcdCompareFailed,
        EtcdNotFile,
        EtcdNoMorePeer,
        EtcdNotDir,
        EtcdAlreadyExist,
        EtcdKeyIsPreserved,
        EtcdRootReadOnly,
        EtcdDirNotEmpty,
        EtcdExistingPeerAddr,
        EtcdInsufficientPermissions,
        EtcdValueRequired,
        EtcdPrevValueRequired,
        EtcdTTLNaN,
        EtcdIndexNaN,
        EtcdValueOrTTLRequired,
        EtcdTimeoutNaN,
        EtcdNameRequired,
        EtcdIndexOrValueRequired,
        EtcdIndexValueMutex,
        EtcdInvalidField,
        EtcdInvalidForm,
        EtcdRefreshValue,
        EtcdRefreshTTLRequired,
        EtcdRaftInternal,
        EtcdLeaderElectionInProgress,
        EtcdWatcherCleared,
        EtcdEventIndexCleared,
        EtcdStandbyInternal,
        EtcdInvalidActiveSize,
        EtcdInvalidRemoveDelay,
        EtcdClientInternal,
    )
    if cls.error_code_value is not None
}


def _as_int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _decode(body: Union[bytes, str, Mapping[str, Any]]) -> Tuple[Optional[Mapping[str, Any]], str]:
    """The body as a JSON object (or ``None``), and its text."""
    if isinstance(body, Mapping):
        return body, ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return None, text
    return (data if isinstance(data, dict) else None), text


def from_json(
    body: Union[bytes, str, Mapping[str, Any]], status: Optional[int] = None
) -> EtcdV2Error:
    """The exception for a v2 error answer, chosen by its ``errorCode`` from one table.

    ``body`` is the answer's body (bytes, text, or the decoded dict). An unknown ``errorCode``
    gives :class:`EtcdV2Error` itself; a body without one (``{"message"}`` of ``/v2/members``,
    or a text body such as ``404 page not found``) gives :class:`EtcdV2Error` with
    ``error_code=None`` and the message as sent. ``status`` is the HTTP status, kept on the
    error for information only.
    """
    data, text = _decode(body)
    if data is None:
        message = text.strip() or (f"HTTP {status}" if status is not None else "unknown error")
        return EtcdV2Error(message, status=status, payload=text)
    raw_code = data.get("errorCode")
    error_code: Optional[int] = (
        raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    )
    sent = data.get("message")
    message = sent if isinstance(sent, str) else ""
    if not message:
        message = V2_ERROR_MESSAGES.get(error_code, "") if error_code is not None else ""
        if not message:
            message = f"HTTP {status}" if status is not None else "unknown error"
    cause = data.get("cause")
    cls = V2_ERROR_CLASSES.get(error_code, EtcdV2Error) if error_code is not None else EtcdV2Error
    return cls(
        message,
        error_code=error_code,
        cause=cause if isinstance(cause, str) else "",
        index=_as_int(data.get("index")),
        status=status,
        payload=dict(data),
    )
