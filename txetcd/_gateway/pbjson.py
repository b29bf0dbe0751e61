"""Protobuf messages to and from the JSON the gateway speaks, without ``json_format``'s cost.

The rules are protobuf's JSON mapping as grpc-gateway applies it: proto field names (camelCase
names are read too), fields left unset or at their proto3 default are left out (a field of a
oneof is written whenever it is set, zero included), 64-bit integers as strings (read from
strings or numbers), bytes as standard base64 (URL-safe and unpadded are read too), enums by
name (read by name or number), ``null`` read as "not set", unknown fields ignored.

``google.protobuf.json_format`` does all this generically and slowly (about 0.1 ms for a small
message); these converters do only what etcd's messages need, with a plan per message type
made once. Message types outside that subset (maps, well-known types) go to ``json_format``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Dict, Tuple, Union

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["message_to_dict", "message_to_json", "dict_to_message", "json_to_message"]

_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT32 = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
_FLOAT = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
_LABEL_REPEATED = 3  # FieldDescriptor.LABEL_REPEATED, gone from newer protobuf


def _is_repeated(fd: FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)  # protobuf >= 5.x
    if flag is not None:
        return bool(flag)
    return bool(getattr(fd, "label", 0) == _LABEL_REPEATED)


class _Unsupported(Exception):
    """A message type these converters do not handle: ``json_format`` does."""


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _strict_a2b() -> Callable[[str], bytes]:
    """A validating base64 decoder: ``a2b_base64`` in strict mode where there is one (3.11+),
    else ``b64decode(validate=True)`` (the same answers, at twice the cost)."""
    try:
        binascii.a2b_base64("", strict_mode=True)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # pragma: no cover - Python < 3.11
        return lambda text: base64.b64decode(text, validate=True)
    return lambda text: binascii.a2b_base64(text, strict_mode=True)  # type: ignore[call-arg,unused-ignore]


_a2b = _strict_a2b()


def b64decode_text(value: Any) -> bytes:
    """JSON's base64 text (standard or URL-safe alphabet, padding optional) as bytes."""
    if type(value) is not str:
        raise ValueError(f"expected base64 text, not {value!r}")
    text = value
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    pad = -len(text) % 4
    if pad:
        text += "=" * pad
    try:
        return _a2b(text)
    except ValueError as e:  # binascii.Error, or text that is not ASCII
        raise ValueError(f"bad base64 {value!r}: {e}") from None


def int64_value(value: Any) -> int:
    """An integer field as JSON carries it: text (int64), or (leniently) a number."""
    t = type(value)  # (JSON values are exact types; true/false are not integers here)
    if t is int:
        return int(value)
    if t is str:
        return int(value)
    if t is float and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, not {value!r}")


def bool_value(value: Any) -> bool:
    """A bool field: JSON's true or false only."""
    if type(value) is not bool:
        raise ValueError(f"expected true or false, not {value!r}")
    return bool(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


# -- plans ----------------------------------------------------------------------------------------

#: per field, for writing: (name, kind, descriptor) with kind one of the _K* below
_KSCALAR, _KINT64, _KBYTES, _KENUM, _KMSG = range(5)


class _Plan:
    __slots__ = ("write", "read")

    def __init__(
        self,
        write: Dict[int, Tuple[str, int, bool, FieldDescriptor]],
        read: Dict[str, Tuple[FieldDescriptor, int, bool, Callable[[Any], Any]]],
    ) -> None:
        self.write = write
        self.read = read


_PLANS: Dict[str, _Plan] = {}


def _plan(descriptor: Descriptor) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is not None:
        return plan
    if descriptor.GetOptions().map_entry or descriptor.full_name.startswith("google.protobuf."):
        raise _Unsupported(descriptor.full_name)
    write: Dict[int, Tuple[str, int, bool, FieldDescriptor]] = {}
    read: Dict[str, Tuple[FieldDescriptor, int, bool, Callable[[Any], Any]]] = {}
    for fd in descriptor.fields:
        repeated = _is_repeated(fd)
        convert: Callable[[Any], Any]
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type is None or fd.message_type.GetOptions().map_entry:
                raise _Unsupported(descriptor.full_name)
            kind, convert = _KMSG, _identity
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            kind, convert = _KBYTES, b64decode_text
        elif fd.type in _INT64:
            kind, convert = _KINT64, int64_value
        elif fd.type in _INT32:
            kind, convert = _KSCALAR, int64_value
        elif fd.type == FieldDescriptor.TYPE_BOOL:
            kind, convert = _KSCALAR, bool_value
        elif fd.type == FieldDescriptor.TYPE_STRING:
            kind, convert = _KSCALAR, _str
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            kind, convert = _KENUM, _enum_reader(fd)
        elif fd.type in _FLOAT:
            kind, convert = _KSCALAR, float
        else:
            raise _Unsupported(descriptor.full_name)
        write[fd.number] = (fd.name, kind, repeated, fd)
        entry = (fd, kind, repeated, convert)
        read[fd.name] = entry
        read[fd.json_name] = entry
    plan = _PLANS[descriptor.full_name] = _Plan(write, read)
    return plan


def _identity(value: Any) -> Any:
    return value


def _enum_reader(fd: FieldDescriptor) -> Callable[[Any], int]:
    enum = fd.enum_type
    assert enum is not None
    by_name = {v.name: v.number for v in enum.values}

    def read(value: Any) -> int:
        if isinstance(value, str):
            if value not in by_name:
                raise ValueError(f"unknown {enum.name} value {value!r}")
            return by_name[value]
        return int64_value(value)

    return read


# -- writing --------------------------------------------------------------------------------------


def _to_dict(message: Any) -> Dict[str, Any]:
    plan = _plan(message.DESCRIPTOR)
    out: Dict[str, Any] = {}
    for fd, value in message.ListFields():
        name, kind, repeated, _ = plan.write[fd.number]
        if kind == _KSCALAR:
            out[name] = list(value) if repeated else value
        elif kind == _KINT64:
            out[name] = [str(v) for v in value] if repeated else str(value)
        elif kind == _KBYTES:
            out[name] = [_b64encode(v) for v in value] if repeated else _b64encode(value)
        elif kind == _KENUM:
            values = fd.enum_type.values_by_number
            if repeated:
                out[name] = [values[v].name if v in values else v for v in value]
            else:
                out[name] = values[value].name if value in values else value
        else:
            out[name] = [_to_dict(v) for v in value] if repeated else _to_dict(value)
    return out


def message_to_dict(message: Any) -> Dict[str, Any]:
    """``message`` as a JSON-ready dict (the mapping in the module docstring)."""
    try:
        return _to_dict(message)
    except _Unsupported:
        result: Dict[str, Any] = json_format.MessageToDict(
            message, preserving_proto_field_name=True
        )
        return result


def _json_text(message: Any) -> str:
    """``message`` written as compact JSON directly (no dict, no encoder pass)."""
    plan = _plan(message.DESCRIPTOR)
    parts = []
    for fd, value in message.ListFields():
        name, kind, repeated, _ = plan.write[fd.number]
        if repeated:
            items = [_json_value(fd, kind, v) for v in value]
            parts.append(f'"{name}":[{",".join(items)}]')
        else:
            parts.append(f'"{name}":{_json_value(fd, kind, value)}')
    return "{" + ",".join(parts) + "}"


def _json_value(fd: FieldDescriptor, kind: int, value: Any) -> str:
    if kind == _KBYTES:
        return '"' + _b64encode(value) + '"'
    if kind == _KINT64:
        return f'"{value}"'
    if kind == _KMSG:
        return _json_text(value)
    if kind == _KENUM:
        enum = fd.enum_type
        assert enum is not None
        known = enum.values_by_number.get(value)
        return f'"{known.name}"' if known is not None else str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    return json.dumps(value)  # text (escaped) and floats


def message_to_json(message: Any) -> bytes:
    """``message`` as compact JSON bytes."""
    try:
        return _json_text(message).encode("utf-8")
    except _Unsupported:
        return json.dumps(message_to_dict(message), separators=(",", ":")).encode("utf-8")


_scan = json.JSONDecoder().raw_decode


def json_loads(body: Union[bytes, str]) -> Any:
    """``json.loads(body)``, quicker for the usual UTF-8 object: one scan, no encoding guess and
    no whitespace regexes. Anything unusual (a BOM, other encodings, leading whitespace, bad
    JSON) goes to ``json.loads`` itself, which gives the same value or the same error."""
    try:
        text: str = body.decode("utf-8") if isinstance(body, bytes) else body
        value, end = _scan(text)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return json.loads(body)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(body)  # extra data: raises
    return value


# -- reading --------------------------------------------------------------------------------------


def _build(message_type: Any, data: Any) -> Any:
    """A new ``message_type`` from ``data``, made by one constructor call (C code) with every
    field converted first: much cheaper than setting fields one by one."""
    if type(data) is not dict:
        raise ValueError(f"expected a JSON object for {message_type.DESCRIPTOR.name}, not {data!r}")
    read = _plan(message_type.DESCRIPTOR).read
    kwargs: Dict[str, Any] = {}
    for key, value in data.items():
        entry = read.get(key)
        if entry is None or value is None:
            continue  # unknown fields are ignored; null means "not set"
        fd, kind, repeated, convert = entry
        if kind == _KMSG:
            sub_type = _message_class(fd)
            if repeated:
                if type(value) is not list:
                    raise ValueError(f"{fd.name}: expected a list, not {value!r}")
                kwargs[fd.name] = [_build(sub_type, item) for item in value]
            else:
                kwargs[fd.name] = _build(sub_type, value)
        elif repeated:
            if type(value) is not list:
                raise ValueError(f"{fd.name}: expected a list, not {value!r}")
            kwargs[fd.name] = [convert(v) for v in value]
        else:
            kwargs[fd.name] = convert(value)
    return message_type(**kwargs)


_CLASSES: Dict[str, Any] = {}


def _message_class(fd: FieldDescriptor) -> Any:
    descriptor = fd.message_type
    assert descriptor is not None
    cls = _CLASSES.get(descriptor.full_name)
    if cls is None:
        cls = getattr(descriptor, "_concrete_class", None)
        if cls is None:  # pragma: no cover - older protobuf without _concrete_class
            from google.protobuf import message_factory

            cls = message_factory.GetMessageClass(descriptor)
        _CLASSES[descriptor.full_name] = cls
    return cls


def dict_to_message(data: Any, message_type: Any) -> Any:
    """A new ``message_type`` filled from decoded JSON ``data``.

    :raises ValueError: ``data`` does not fit the message.
    """
    try:
        message = _build(message_type, data)
    except _Unsupported:
        message = message_type()
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (TypeError, OverflowError) as e:
        raise ValueError(str(e)) from None
    return message


def json_to_message(body: bytes, message_type: Any) -> Any:
    """A new ``message_type`` from JSON ``body``. :raises ValueError: bad JSON or shape."""
    return dict_to_message(json_loads(body), message_type)
