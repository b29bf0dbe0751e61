"""The JSON gateway's wire: requests as JSON, headers, answers and errors (no I/O here)."""

from __future__ import annotations

import json
from typing import Any, Callable, List

from txetcd._errors import EtcdError, ProtocolViolation, Unimplemented, error_from_status
from txetcd._gateway.kvjson import Fallback
from txetcd._gateway.pbjson import dict_to_message, json_loads, json_to_message, message_to_json
from txetcd._http1.interface import HTTPResponse
from txetcd._methods import LEASE_KEEPALIVE
from txetcd._transport import REQUIRE_LEADER, Metadata

__all__ = [
    "LINES",
    "decode_direct",
    "from_json",
    "gateway_error",
    "gateway_headers",
    "result_lines",
    "to_json",
]


_JSON = ((b"content-type", b"application/json"),)
#: methods whose gateway answer is stream lines (``{"result": ...}``), not one object
LINES = frozenset({LEASE_KEEPALIVE.path})


def to_json(message: Any) -> bytes:
    """A protobuf message as the gateway wants it (proto names, defaults left out)."""
    return message_to_json(message)


def from_json(body: bytes, response_type: Any) -> Any:
    """The gateway's JSON answer as a protobuf message (unknown fields are ignored)."""
    return json_to_message(body, response_type)


def decode_direct(
    body: bytes,
    response_type: Any,
    decode: Callable[[Any], Any],
    direct: Callable[[Any], Any],
) -> Any:
    """``decode(from_json(body, response_type))``, made by ``direct`` from the JSON itself when
    it can (:mod:`txetcd._gateway.kvjson`: no protobuf message in between)."""
    data = json_loads(body)
    try:
        return direct(data)
    except Fallback:
        return decode(dict_to_message(data, response_type))


def gateway_error(response: HTTPResponse, *, mutation: bool) -> EtcdError:
    """The error a non-200 gateway answer stands for, by its gRPC ``code``."""
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), int):
        message = data.get("message") or data.get("error") or ""
        return error_from_status(data["code"], str(message), mutation=mutation)
    text = response.body.decode("utf-8", "replace").strip()
    if response.status == 404:
        return Unimplemented(f"the gateway has no such route ({text})", code=12)
    return ProtocolViolation(f"HTTP {response.status} from the gateway: {text[:200]}")


def gateway_headers(metadata: Metadata) -> Any:
    """Request headers for the gateway: JSON, and each metadata pair as a header (the auth
    token as ``Authorization``, the rest as ``Grpc-Metadata-<name>``)."""
    if not metadata:
        return _JSON
    if metadata is REQUIRE_LEADER:
        return _JSON_REQUIRE_LEADER
    return (
        _JSON
        + tuple((b"grpc-metadata-" + k, v) for k, v in metadata if k != b"token")
        + tuple((b"authorization", v) for k, v in metadata if k == b"token")
    )


_JSON_REQUIRE_LEADER = _JSON + tuple((b"grpc-metadata-" + k, v) for k, v in REQUIRE_LEADER)


def result_lines(body: bytes) -> List[Any]:
    """The ``{"result": ...}`` objects of a gateway stream body; raises on an error line."""
    out = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        data = json.loads(line)
        if "result" in data:
            out.append(data["result"])
        elif isinstance(data.get("error"), dict):
            err = data["error"]
            raise error_from_status(int(err.get("grpc_code", 2)), str(err.get("message", "")))
    return out
