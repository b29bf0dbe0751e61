"""Argument checks, done before anything is sent, and the "not given" sentinel.

Wrong types raise ``TypeError`` naming the argument and the type given; bad values (an empty
key, a negative revision) raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

__all__ = [
    "NOT_GIVEN",
    "BytesLike",
    "check_bool",
    "check_enum",
    "check_int",
    "check_timeout",
    "key_bytes",
    "key_range",
    "prefix_range_end",
    "to_bytes",
]

BytesLike = Union[bytes, str]


class _NotGiven:
    def __repr__(self) -> str:
        return "<not given>"


#: an option left to the client's default (e.g. ``timeout``: the client's ``timeout``)
NOT_GIVEN: Any = _NotGiven()


def to_bytes(value: object, what: str) -> bytes:
    """bytes as they are; str as UTF-8; anything else is a ``TypeError`` naming ``what``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def key_bytes(key: object, what: str = "key") -> bytes:
    """A non-empty key as bytes."""
    b = to_bytes(key, what)
    if not b:
        raise ValueError(f"{what} must not be empty")
    return b


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix`` (``b"\\0"``: to the end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def check_int(value: object, what: str, *, minimum: Optional[int] = 0) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {value}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{what} does not fit in 64 bits: {value}")
    return value


def check_timeout(timeout: object, what: str = "timeout") -> Optional[float]:
    """A deadline in seconds, the same for the v3 and the v2 client: ``None`` and ``0`` (and
    infinity) mean no deadline, as 0 does in python-etcd; a negative number is a ``ValueError``,
    anything but a number a ``TypeError``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # NaN too
        raise ValueError(f"{what} must be >= 0 seconds (0 or None: no deadline), not {timeout}")
    if timeout == 0 or timeout == float("inf"):
        return None
    return float(timeout)


def check_bool(value: object, what: str) -> bool:
    if value is False or value is True:
        return value
    raise TypeError(f"{what} must be a bool, not {type(value).__name__}")


def check_enum(value: object, enum: Any, what: str) -> int:
    if isinstance(value, enum):
        return int(value)
    if isinstance(value, str):
        try:
            return int(enum[value.upper()])
        except KeyError:
            names = ", ".join(m.name.lower() for m in enum)
            raise ValueError(f"{what} must be one of {names}, not {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(enum(value))
        except ValueError:
            raise ValueError(f"{what} {value} is not a valid {enum.__name__}") from None
    raise TypeError(f"{what} must be a {enum.__name__} or str, not {type(value).__name__}")


def key_range(
    key: object, range_end: object = None, prefix: bool = False, *, allow_empty: bool = False
) -> tuple[bytes, bytes]:
    """(key, range_end) for a single key, an explicit range, or a prefix."""
    check_bool(prefix, "prefix")
    if prefix:
        if range_end is not None:
            raise TypeError("give either prefix=True or range_end, not both")
        k = to_bytes(key, "prefix")
        if not k:
            return b"\0", b"\0"
        return k, prefix_range_end(k)
    k = to_bytes(key, "key") if allow_empty else key_bytes(key)
    end = b"" if range_end is None else to_bytes(range_end, "range_end")
    if not k:
        raise ValueError("key must not be empty")
    return k, end
