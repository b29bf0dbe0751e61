"""``txn``: etcdctl's transaction syntax, read from stdin (``-i``: with prompts).

Three parts, each ended by an empty line: the compares, the operations run when they all
hold, the operations run otherwise::

    mod("key1") > "0"
    value("key2") = "x"

    put key1 "new value"
    get key2

    del key3

A compare is ``target("key") op "value"``: target ``version``/``ver``, ``create``/``c``,
``mod``/``m`` (decimal numbers), ``value``/``val``, ``lease`` (a lease ID in hexadecimal);
op ``=``, ``==``, ``!=``, ``>``, ``<``. An operation is a get, put or del line with that
verb's flags.
"""

from __future__ import annotations

from typing import IO, Any, List, Optional

from txetcd._cli._cmd_kv import (
    DEL_FLAGS,
    GET_FLAGS,
    PUT_FLAGS,
    check_key,
    delete_request,
    get_request,
    put_request,
)
from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    EXIT_INVALID_INPUT,
    Bool,
    CommandError,
    Context,
    Verb,
    parse,
    register,
)
from txetcd._cli._flags import FlagError
from txetcd._cli._gotext import GoSyntaxError, argify, scan_quoted, scan_word
from txetcd._cli._printer import go_quote, show_txn
from txetcd._txn import CreateRevision, Delete, Get, LeaseId, ModRevision, Put, Value, Version

__all__ = ["parse_compare", "parse_operation", "read_txn"]


async def _nothing(ctx: Context) -> None:
    """(the operations of a txn are parsed, never run on their own)"""


_OPERATIONS = {
    "get": Verb(("get",), _nothing, "", flags=GET_FLAGS),
    "put": Verb(("put",), _nothing, "", flags=PUT_FLAGS),
    "del": Verb(("del",), _nothing, "", flags=DEL_FLAGS),
}

_NUMBER_TARGETS = {
    "ver": Version,
    "version": Version,
    "c": CreateRevision,
    "create": CreateRevision,
    "m": ModRevision,
    "mod": ModRevision,
}


def _go_int(text: str, base: int) -> int:
    """Go's strconv.ParseInt(text, base, 64) (ValueError otherwise)."""
    body = text[1:] if text[:1] in "+-" else text
    digits = "0123456789" if base == 10 else "0123456789abcdefABCDEF"
    if not body or any(c not in digits for c in body):
        raise ValueError(text)
    value = int(text, base)
    if not -(2**63) <= value < 2**63:
        raise ValueError(text)
    return value


def parse_compare(line: str) -> Any:
    """One compare line as a txetcd compare (CommandError with etcdctl's message)."""
    target, paren, rest = line.partition("(")
    if not paren:
        raise CommandError(EXIT_INVALID_INPUT, f"malformed comparison: {line}")
    key: Optional[bytes] = None
    op: Optional[str] = None
    value: Optional[bytes] = None
    try:
        key, index = scan_quoted(rest, 0)
        if key is not None and rest[index : index + 1] == ")":
            op, index = scan_word(rest, index + 1)
            if op is not None:
                value, index = scan_quoted(rest, index)
    except GoSyntaxError as e:
        raise CommandError(EXIT_INVALID_INPUT, f"malformed comparison: {line} ({e})") from None
    if key is None or op is None or value is None:
        shown = f"{target}({go_quote(key or b'')}) {op or ''} {go_quote(value or b'')}"
        raise CommandError(EXIT_INVALID_INPUT, f"malformed comparison: {line}; got {shown}")
    if op not in ("=", "==", "!=", ">", "<"):
        raise CommandError(
            EXIT_INVALID_INPUT, f"malformed comparison: {line} (unknown operator {op})"
        )
    text = value.decode("utf-8", "surrogateescape")
    operand: object
    if target in _NUMBER_TARGETS:
        kind: Any = _NUMBER_TARGETS[target]
        base = 10
    elif target in ("val", "value"):
        kind, operand = Value, value
        base = 0
    elif target == "lease":
        kind, base = LeaseId, 16
    else:
        raise CommandError(
            EXIT_INVALID_INPUT, f"malformed comparison: {line} (unknown target {target})"
        )
    if base:
        try:
            operand = _go_int(text, base)
        except ValueError:
            raise CommandError(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}") from None
    if not key:
        raise CommandError(EXIT_ERROR, "etcdserver: key is not provided")
    subject = kind(key)
    if op in ("=", "=="):
        return subject.eq(operand)
    if op == "!=":
        return subject.ne(operand)
    return subject.gt(operand) if op == ">" else subject.lt(operand)


def parse_operation(line: str) -> Any:
    """One operation line (get, put or del with their flags) as a txetcd op."""
    try:
        words = argify(line)
    except GoSyntaxError as e:
        raise CommandError(EXIT_INVALID_INPUT, str(e)) from None
    if len(words) < 2:
        raise CommandError(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}")
    found = [name for name in _OPERATIONS if name.startswith(words[0])]
    if len(found) != 1:
        raise CommandError(EXIT_INVALID_INPUT, f"invalid txn request: {line}")
    verb = _OPERATIONS[found[0]]
    try:
        options, _, args, _ = parse(verb, words[1:], {}, global_flags=())
    except FlagError:
        raise CommandError(EXIT_INVALID_INPUT, f"invalid txn request: {line}") from None
    if options.help:
        raise CommandError(EXIT_INVALID_INPUT, f"invalid txn request: {line}")
    if verb.name == "get":
        request = get_request(args, options)
        check_key(request)
        return Get(request.key, **request.options)
    if verb.name == "put":
        request = put_request(args, options, None)
        check_key(request)
        return Put(request.key, request.value, **request.options)
    request = delete_request(args, options)
    check_key(request)
    return Delete(request.key, **request.options)


def _read_section(stdin: IO[bytes]) -> List[str]:
    """Lines up to an empty one (Go's ReadString: input that ends without one is an EOF
    error)."""
    lines: List[str] = []
    while True:
        raw = stdin.readline()
        if not raw.endswith(b"\n"):
            raise CommandError(EXIT_INVALID_INPUT, "EOF")
        line = raw.decode("utf-8", "surrogateescape").strip()
        if not line:
            return lines
        lines.append(line)


def read_txn(
    stdin: IO[bytes], prompt: Optional[Any] = None
) -> "tuple[List[Any], List[Any], List[Any]]":
    """The compares, success and failure operations, as etcdctl reads them from ``stdin``;
    ``prompt(text)`` shows the interactive prompts."""
    say = prompt or (lambda text: None)
    say("compares:")
    compares = [parse_compare(line) for line in _read_section(stdin)]
    say("success requests (get, put, del):")
    success = [parse_operation(line) for line in _read_section(stdin)]
    say("failure requests (get, put, del):")
    failure = [parse_operation(line) for line in _read_section(stdin)]
    return compares, success, failure


async def _txn(ctx: Context) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "txn command does not accept argument")

    def prompt(text: str) -> None:
        ctx.out.line(text)
        ctx.out.flush()

    compares, success, failure = read_txn(ctx.stdin, prompt if ctx.options.interactive else None)
    client = await ctx.client()
    result = await client.txn(compares, success, failure)
    show_txn(ctx.out, result)


register(
    "txn",
    _txn,
    summary="Txn processes all the requests in one transaction",
    flags=[Bool("interactive", "Input transaction in interactive mode", short="i")],
    description=(
        "Reads compares, success and failure requests from stdin, each part ended by an\n"
        'empty line: e.g. mod("k") > "0", then put k v, then get k.'
    ),
)
