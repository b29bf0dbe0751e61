"""The KV verbs: ``get``, ``put``, ``del`` and ``compaction``, with etcdctl's flags, checks,
messages and exit codes. The checks are functions of their own (:func:`get_request`,
:func:`put_request`, :func:`delete_request`) because ``txn`` reads its operations with them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Dict, List

from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    Bool,
    CommandError,
    Context,
    Int,
    Str,
    register,
)
from txetcd._cli._printer import go_quote, show_delete, show_get, show_put

__all__ = ["DEL_FLAGS", "GET_FLAGS", "PUT_FLAGS", "KVRequest", "get_request", "put_request"]

#: etcd's answer to an empty key; the client refuses one before sending, the CLI says what
#: etcd would
KEY_NOT_PROVIDED = "etcdserver: key is not provided"

GET_FLAGS = (
    Str("consistency", "Linearizable(l) or Serializable(s)", "l"),
    Str("order", "Order of results; ASCEND or DESCEND (ASCEND by default)"),
    Str("sort-by", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
    Int("limit", "Maximum number of results"),
    Bool("prefix", "Get keys with matching prefix"),
    Bool(
        "from-key",
        "Get keys that are greater than or equal to the given key using byte compare",
    ),
    Int("rev", "Specify the kv revision"),
    Bool("keys-only", "Get only the keys"),
    Bool("count-only", "Get only the count"),
    Bool("print-value-only", 'Only write values when using the "simple" output format'),
)

PUT_FLAGS = (
    Str("lease", "lease ID (in hexadecimal) to attach to the key", "0"),
    Bool("prev-kv", "return the previous key-value pair before modification"),
    Bool("ignore-value", "updates the key using its current value"),
    Bool("ignore-lease", "updates the key using its current lease"),
)

DEL_FLAGS = (
    Bool("prefix", "delete keys with matching prefix"),
    Bool("prev-kv", "return deleted key-value pairs"),
    Bool(
        "from-key",
        "delete keys that are greater than or equal to the given key using byte compare",
    ),
)

_ORDERS = {"": "none", "ASCEND": "ascend", "DESCEND": "descend"}
_TARGETS = {
    "": "key",
    "CREATE": "create",
    "KEY": "key",
    "MODIFY": "mod",
    "VALUE": "value",
    "VERSION": "version",
}


@dataclass
class KVRequest:
    """One get, put or del as read from its words: ``kind``, ``key`` and the client method's
    keyword arguments."""

    kind: str
    key: bytes
    options: Dict[str, Any] = field(default_factory=dict)
    value: bytes = b""


def _arg(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def get_request(args: List[str], options: argparse.Namespace) -> KVRequest:
    """etcdctl's ``getGetOp``: a get from its words and flags (CommandError as etcdctl)."""
    if not args:
        raise CommandError(
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        )
    if options.prefix and options.from_key:
        raise CommandError(
            EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one"
        )
    if options.keys_only and options.count_only:
        raise CommandError(
            EXIT_BAD_ARGS,
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        )
    kwargs: Dict[str, Any] = {}
    if options.consistency == "s":
        kwargs["serializable"] = True
    elif options.consistency != "l":
        raise CommandError(
            EXIT_BAD_FEATURE, f"unknown consistency flag {go_quote(options.consistency)}"
        )
    key = _arg(args[0])
    if len(args) > 1:
        if options.prefix or options.from_key:
            raise CommandError(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key`"
                " is set",
            )
        kwargs["range_end"] = _arg(args[1])
    if options.limit > 0:
        kwargs["limit"] = options.limit
    if options.rev > 0:
        kwargs["revision"] = options.rev
    order = _ORDERS.get(options.order.upper())
    if order is None:
        raise CommandError(EXIT_BAD_FEATURE, f"bad sort order {options.order}")
    target = _TARGETS.get(options.sort_by.upper())
    if target is None:
        raise CommandError(EXIT_BAD_FEATURE, f"bad sort target {options.sort_by}")
    if target == "key" and order == "ascend":
        order = "none"  # clientv3: etcd sorts by key anyway
    kwargs["sort_order"], kwargs["sort_target"] = order, target
    if options.prefix:
        if key:
            kwargs["prefix"] = True
        else:
            key, kwargs["range_end"] = b"\0", b"\0"
    if options.from_key:
        key = key or b"\0"
        kwargs["range_end"] = b"\0"
    if options.keys_only:
        kwargs["keys_only"] = True
    if options.count_only:
        kwargs["count_only"] = True
    return KVRequest("get", key, kwargs)


def put_request(args: List[str], options: argparse.Namespace, stdin: Any) -> KVRequest:
    """etcdctl's ``getPutOp``: a put from its words and flags; the value is read from
    ``stdin`` when not given (None: no stdin, as in a txn)."""
    needs = "put command needs 1 argument and input from stdin or 2 arguments"
    if not args:
        raise CommandError(EXIT_BAD_ARGS, needs)
    if options.ignore_value and len(args) > 1:
        raise CommandError(
            EXIT_BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set"
        )
    value = b""
    if not options.ignore_value:
        if len(args) > 1:
            value = _arg(args[1])
        else:
            value = stdin.read() if stdin is not None else b""
            if not value:
                raise CommandError(EXIT_BAD_ARGS, needs)
    lease = _parse_hex_lease(options.lease)
    kwargs: Dict[str, Any] = {}
    if lease:
        kwargs["lease_id"] = lease
    if options.prev_kv:
        kwargs["prev_kv"] = True
    if options.ignore_value:
        kwargs["ignore_value"] = True
    if options.ignore_lease:
        kwargs["ignore_lease"] = True
    return KVRequest("put", _arg(args[0]), kwargs, value)


def _parse_hex_lease(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 16, 64)`` with put's message."""
    body = text[1:] if text[:1] in "+-" else text
    problem = None
    if not body or any(c not in "0123456789abcdefABCDEF" for c in body):
        problem = "invalid syntax"
    else:
        value = int(text, 16)
        if not -(2**63) <= value < 2**63:
            problem = "value out of range"
    if problem is not None:
        raise CommandError(
            EXIT_BAD_ARGS,
            f'bad lease ID (strconv.ParseInt: parsing "{text}": {problem}), expecting ID in Hex',
        )
    return value


def delete_request(args: List[str], options: argparse.Namespace) -> KVRequest:
    """etcdctl's ``getDelOp``: a del from its words and flags."""
    if not args or len(args) > 2:
        raise CommandError(
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        )
    if options.prefix and options.from_key:
        raise CommandError(
            EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one"
        )
    key = _arg(args[0])
    kwargs: Dict[str, Any] = {}
    if len(args) > 1:
        if options.prefix or options.from_key:
            raise CommandError(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key`"
                " is set",
            )
        kwargs["range_end"] = _arg(args[1])
    if options.prefix:
        if key:
            kwargs["prefix"] = True
        else:
            key, kwargs["range_end"] = b"\0", b"\0"
    if options.prev_kv:
        kwargs["prev_kv"] = True
    if options.from_key:
        key = key or b"\0"
        kwargs["range_end"] = b"\0"
    return KVRequest("del", key, kwargs)


def check_key(request: KVRequest) -> None:
    """An empty key: what etcd would answer (the client refuses to send it)."""
    if not request.key:
        raise CommandError(EXIT_ERROR, KEY_NOT_PROVIDED)


# -- the verbs -------------------------------------------------------------------------------


async def _get(ctx: Context) -> None:
    request = get_request(ctx.args, ctx.options)
    check_key(request)
    client = await ctx.client()
    result = await client.get(request.key, **request.options)
    if ctx.options.count_only and ctx.out.format != "fields":
        raise CommandError(EXIT_BAD_ARGS, "--count-only is only for `--write-out=fields`")
    if ctx.options.print_value_only:
        if ctx.out.format != "simple":
            raise CommandError(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`")
        ctx.out.value_only = True
    show_get(ctx.out, result)


async def _put(ctx: Context) -> None:
    request = put_request(ctx.args, ctx.options, ctx.stdin)
    check_key(request)
    client = await ctx.client()
    result = await client.put(request.key, request.value, **request.options)
    show_put(ctx.out, result)


async def _del(ctx: Context) -> None:
    request = delete_request(ctx.args, ctx.options)
    check_key(request)
    client = await ctx.client()
    result = await client.delete(request.key, **request.options)
    show_delete(ctx.out, result)


async def _compaction(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "compaction command needs 1 argument")
    text = ctx.args[0]
    try:
        if text != text.strip() or "_" in text:
            raise ValueError(text)
        revision = int(text, 10)
    except ValueError:
        raise CommandError(
            EXIT_ERROR, f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None
    client = await ctx.client()
    await client.compact(revision, physical=ctx.options.physical)
    ctx.out.line(f"compacted revision {revision}")


register(
    "get",
    _get,
    summary="Gets the key or a range of keys",
    usage="<key> [range_end]",
    flags=GET_FLAGS,
)
register(
    "put",
    _put,
    summary="Puts the given key into the store",
    usage="<key> <value> (<value> can also be given from stdin)",
    flags=PUT_FLAGS,
    description=(
        "A <value> starting with '-' would be read as a flag: put -- <key> <value>.\n"
        "Without <value> (and without --ignore-value) the value is read from stdin."
    ),
)
register(
    "del",
    _del,
    summary="Removes the specified key or range of keys [key, range_end)",
    usage="<key> [range_end]",
    flags=DEL_FLAGS,
)
register(
    "compaction",
    _compaction,
    summary="Compacts the event history in etcd",
    usage="<revision>",
    flags=[
        Bool("physical", "'true' to wait for compaction to physically remove all old revisions")
    ],
)
