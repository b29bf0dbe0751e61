"""The command framework of the ``txetcd`` CLI: etcdctl's verbs, flags and exit codes.

How to add a verb
-----------------
Write a module ``txetcd/_cli/_cmd_<topic>.py`` (every module named so is imported by
:func:`load_verbs`, nothing else to edit) and call :func:`register` once per verb::

    from txetcd._cli._command import Bool, CommandError, Context, Int, register, EXIT_BAD_ARGS

    async def _grant(ctx: Context) -> None:
        if len(ctx.args) != 1:
            raise CommandError(EXIT_BAD_ARGS, "lease grant command needs TTL argument")
        client = await ctx.client()          # connected with the global flags; closed for you
        result = await client.grant(int(ctx.args[0]))
        ctx.out.line(f"lease {result.id:016x} granted with TTL({result.ttl}s)")

    register(
        "lease grant",                        # words of the verb ("lease grant", "get")
        _grant,
        summary="Creates leases",
        usage="<ttl>",
        flags=[Bool("keys", "Get keys attached to this lease")],
    )

- ``ctx.args``: the positional words (``ctx.dash``: how many came before a ``--``, or None);
  ``ctx.options.<name>``: the verb's flags (``--print-value-only`` -> ``print_value_only``),
  parsed as pflag does (``--keys``, ``--keys=false``; ``--limit 5``, ``--limit=5``).
- Output goes through ``ctx.out`` (:class:`txetcd._cli._printer.Output`): ``ctx.out.format``
  is ``-w`` (simple, json, fields, table, protobuf), ``ctx.out.hex`` is ``--hex``;
  ``ctx.out.line()``, ``ctx.out.json()`` (Go's ``json.Marshal`` spelling), ``ctx.out.table()``
  (etcdctl's tablewriter look), ``ctx.out.unsupported()`` for a format the verb lacks.
- A user mistake is ``raise CommandError(code, message)``: one ``Error: message`` line on
  stderr, exit ``code`` (the EXIT_* constants are etcdctl's). :class:`txetcd.EtcdError` from a
  call is printed the same way with exit 1 (``EXIT_ERROR``); anything else is a bug and shows
  its traceback.
- The function may return an int: the exit code (0 when it returns None).
- ``client=False`` for verbs that need no connection (``version``); ``raw=True`` to get the
  words after the verb unparsed in ``ctx.args`` (a verb with a parser of its own).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from txetcd._cli import _flags
from txetcd._cli._exit import (
    EXIT_BAD_ARGS,
    EXIT_BAD_CONNECTION,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    EXIT_IO,
    EXIT_SUCCESS,
    CommandError,
)
from txetcd._cli._flags import CONNECTION_FLAGS, Flag, FlagError
from txetcd._cli._printer import Output

__all__ = [
    "EXIT_BAD_ARGS",
    "EXIT_BAD_CONNECTION",
    "EXIT_BAD_FEATURE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_INPUT",
    "EXIT_IO",
    "EXIT_SUCCESS",
    "Bool",
    "CommandError",
    "Context",
    "Duration",
    "Int",
    "OUTPUT_FLAGS",
    "Str",
    "Verb",
    "load_verbs",
    "register",
    "verbs",
]

PROG = "txetcd"


# -- verb flags ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A flag of one verb (use :class:`Bool`, :class:`Str`, :class:`Int`, :class:`Duration`)."""

    name: str
    help: str
    default: Any = None
    short: Optional[str] = None
    kind: str = "str"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def Bool(name: str, help: str, *, short: Optional[str] = None) -> Option:  # noqa: N802
    """A boolean flag (false unless given; ``--name=false`` works too)."""
    return Option(name, help, False, short, "bool")


def Str(name: str, help: str, default: str = "", *, short: Optional[str] = None) -> Option:  # noqa: N802
    """A flag with a text value."""
    return Option(name, help, default, short, "str")


def Int(name: str, help: str, default: int = 0, *, short: Optional[str] = None) -> Option:  # noqa: N802
    """A flag with an integer value (Go's ``int64``: decimal, ``0x``/``0o``/``0b`` too)."""
    return Option(name, help, default, short, "int")


def Duration(name: str, help: str, default: str, *, short: Optional[str] = None) -> Option:  # noqa: N802
    """A flag with a Go duration (``5s``, ``1m30s``), as seconds (float)."""
    return Option(name, help, default, short, "duration")


def parse_int(text: str, name: str) -> int:
    """Go's ``strconv.ParseInt(text, 0, 64)`` as pflag reads int64 flags, pflag's message."""
    body = text.lstrip("+-")
    try:
        if text != text.strip() or not body:
            raise ValueError(text)
        if len(body) > 1 and body[0] == "0" and body[1].isdigit():  # Go: 017 is octal
            value = int(text.replace(body, "0o" + body[1:], 1), 0)
        else:
            value = int(text, 0)
    except ValueError:
        raise FlagError(
            f'invalid argument "{text}" for "--{name}" flag: strconv.ParseInt: parsing '
            f'"{text}": invalid syntax'
        ) from None
    if not -(2**63) <= value < 2**63:
        raise FlagError(
            f'invalid argument "{text}" for "--{name}" flag: strconv.ParseInt: parsing '
            f'"{text}": value out of range'
        )
    return value


#: the flags of the CLI itself, next to the connection flags (also from ``ETCDCTL_*``)
OUTPUT_FLAGS: Tuple[Flag, ...] = (
    Flag(
        "write-out",
        "simple",
        "set the output format (fields, json, protobuf, simple, table)",
        short="w",
    ),
    Flag("hex", "false", "print byte strings as hex encoded strings", boolean=True),
    Flag("debug", "false", "enable client-side debug logging", boolean=True),
)

GLOBAL_FLAGS: Tuple[Flag, ...] = CONNECTION_FLAGS + OUTPUT_FLAGS

# -- verbs -----------------------------------------------------------------------------------

Run = Callable[["Context"], Awaitable[Optional[int]]]


@dataclass(frozen=True)
class Verb:
    """One verb of the CLI, as :func:`register` records it."""

    words: Tuple[str, ...]
    run: Run
    summary: str
    usage: str = ""
    flags: Tuple[Option, ...] = ()
    client: bool = True
    raw: bool = False
    description: str = ""

    @property
    def name(self) -> str:
        return " ".join(self.words)


_VERBS: Dict[Tuple[str, ...], Verb] = {}


def register(
    name: str,
    run: Run,
    *,
    summary: str,
    usage: str = "",
    flags: Sequence[Option] = (),
    client: bool = True,
    raw: bool = False,
    description: str = "",
) -> Verb:
    """Add a verb to the CLI: ``name`` is its words (``"get"``, ``"lease grant"``), ``run`` an
    ``async`` function of a :class:`Context`; see this module's docstring."""
    words = tuple(name.split())
    if not words:
        raise ValueError("a verb needs a name")
    verb = Verb(
        words,
        run,
        summary,
        usage,
        tuple(flags),
        client,
        raw,
        description,
    )
    _VERBS[words] = verb
    return verb


def verbs() -> Dict[Tuple[str, ...], Verb]:
    """Every registered verb, by its words."""
    return dict(_VERBS)


_loaded = False


def load_verbs() -> None:
    """Import every ``txetcd._cli._cmd_*`` module (each registers its verbs), once."""
    global _loaded
    if _loaded:
        return
    import txetcd._cli as package

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name.startswith("_cmd_"):
            importlib.import_module(f"txetcd._cli.{module.name}")
    _loaded = True


# -- the context a verb runs in --------------------------------------------------------------


@dataclass
class Context:
    """What a verb's function gets: its words, its flags, the output, a client on demand."""

    verb: Verb
    args: List[str]
    dash: Optional[int]
    options: argparse.Namespace
    globals: Dict[str, str]
    out: Output
    reactor: Any
    stdin: IO[bytes]
    environ: Mapping[str, str]
    argv: List[str] = field(default_factory=list)
    stderr: Optional[IO[bytes]] = None
    prompt: Optional[Callable[[str], str]] = None
    _client: Any = None
    _connection: Optional[_flags.ConnectionSettings] = None

    def connection(self) -> _flags.ConnectionSettings:
        """The global connection flags, checked (FlagError for bad values)."""
        if self._connection is None:
            self._connection = _flags.settings(self.globals, prompt=self.prompt)
        return self._connection

    async def client(self) -> Any:
        """A :class:`txetcd.Client` for the global flags (the same one on every call); the
        framework closes it when the verb is done."""
        if self._client is None:
            connection = self.connection()
            try:
                self._client = await _flags.connect(connection, self.reactor)
            except (OSError, ValueError, TypeError) as e:
                # TLS files that cannot be read or do not match: etcdctl's newClientCfg error
                raise CommandError(EXIT_BAD_ARGS, str(e)) from e
        return self._client

    async def close(self) -> None:
        """Close the client, if one was made."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


# -- parsing ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse without its exits: a bad command line is a :class:`FlagError` with pflag's
    wording."""

    def error(self, message: str) -> Any:
        needs = re.match(r"argument (\S+?)(?:/\S+)?: expected one argument", message)
        if needs:
            flag = needs.group(1)
            raise FlagError(f"flag needs an argument: {flag}")
        raise FlagError(message)


def _value_flags(flags: Sequence[Union[Flag, Option]]) -> Dict[str, bool]:
    """Every spelling (``--name``, ``-n``) of ``flags``, and whether it takes a value."""
    spellings: Dict[str, bool] = {}
    for flag in flags:
        takes = not (flag.boolean if isinstance(flag, Flag) else flag.kind == "bool")
        spellings["--" + flag.name] = takes
        if flag.short:
            spellings["-" + flag.short] = takes
    return spellings


def find_verb(argv: Sequence[str]) -> Tuple[Optional[Verb], List[str], List[str]]:
    """The verb named in ``argv`` (global flags may come before it, as with cobra), ``argv``
    without the verb's words, and the words that named no verb (an unknown command)."""
    spellings = _value_flags(GLOBAL_FLAGS)
    positions: List[int] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            if "=" not in word and spellings.get(word, False):
                index += 1  # its value
        else:
            positions.append(index)
        index += 1
    words = [argv[i] for i in positions]
    verb: Optional[Verb] = None
    used = 0
    for size in range(len(words), 0, -1):
        candidate = _VERBS.get(tuple(words[:size]))
        if candidate is None:
            candidate = _by_prefix(words[:size])
        if candidate is not None:
            verb, used = candidate, size
            break
    if verb is None:
        return None, list(argv), words[:1]
    if verb.raw:
        first = positions[0]
        rest = list(argv[:first]) + list(argv[positions[used - 1] + 1 :])
        return verb, rest, []
    drop = set(positions[:used])
    return verb, [w for i, w in enumerate(argv) if i not in drop], []


def _by_prefix(words: Sequence[str]) -> Optional[Verb]:
    """cobra's prefix matching: ``txetcd ge foo`` is ``get`` when only ``get`` starts so."""
    *head, last = words
    found = [
        v
        for w, v in _VERBS.items()
        if len(w) == len(words) and list(w[:-1]) == head and w[-1].startswith(last)
    ]
    return found[0] if len(found) == 1 and last else None


def group_words() -> Dict[Tuple[str, ...], List[Verb]]:
    """Verbs that are groups (``lease`` of ``lease grant``), with their sub-verbs."""
    groups: Dict[Tuple[str, ...], List[Verb]] = {}
    for words, verb in _VERBS.items():
        for size in range(1, len(words)):
            groups.setdefault(words[:size], []).append(verb)
    return groups


def build_parser(verb: Optional[Verb], global_flags: Sequence[Flag] = GLOBAL_FLAGS) -> _Parser:
    """The argparse parser of ``verb``'s flags and the global flags (no positionals: they are
    collected apart, as pflag does)."""
    prog = PROG + (" " + verb.name if verb else "")
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true", help=f"help for {prog}")
    if verb is not None:
        for option in verb.flags:
            names = [f"--{option.name}"] + ([f"-{option.short}"] if option.short else [])
            if option.kind == "bool":
                parser.add_argument(
                    *names, dest=option.dest, action="store_const", const="true", default=None
                )
            else:
                parser.add_argument(*names, dest=option.dest, default=None)
    for flag in global_flags:
        names = [f"--{flag.name}"] + ([f"-{flag.short}"] if flag.short else [])
        kwargs: Dict[str, Any] = {"dest": "global_" + flag.dest, "default": None}
        if flag.boolean:
            kwargs.update(action="store_const", const="true")
        parser.add_argument(*names, **kwargs)
    return parser


def parse(
    verb: Optional[Verb],
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    global_flags: Sequence[Flag] = GLOBAL_FLAGS,
) -> Tuple[argparse.Namespace, Dict[str, str], List[str], Optional[int]]:
    """``argv`` (without the verb's words) as the verb's options, the global flags' texts
    (command line, else ``ETCDCTL_*``, else default), the positional words and where a
    ``--`` was among them. FlagError for anything pflag would refuse. ``global_flags=()``:
    the verb's flags alone (a txn's operations)."""
    booleans = [f.name for f in global_flags if f.boolean]
    if verb is not None:
        booleans += [o.name for o in verb.flags if o.kind == "bool"]
    rest, bool_values = _flags.take_boolean_values(list(argv), booleans)
    parser = build_parser(verb, global_flags)
    namespace, extra = parser.parse_known_args(rest)
    args: List[str] = []
    dash: Optional[int] = None
    for position, word in enumerate(extra):
        if word == "--" and dash is None:
            dash = len(args)
            args.extend(extra[position + 1 :])
            break
        if word.startswith("--"):
            raise FlagError(f"unknown flag: {word.split('=', 1)[0]}")
        if word.startswith("-") and word != "-":
            raise FlagError(f"unknown shorthand flag: {word[1]!r} in {word}")
        args.append(word)
    given: Dict[str, Optional[str]] = {}
    for flag in global_flags:
        value = getattr(namespace, "global_" + flag.dest)
        if flag.dest in bool_values:
            value = bool_values[flag.dest]
        given[flag.dest] = value
    global_values = _flags.resolve(given, environ, global_flags)
    options = argparse.Namespace(help=bool(namespace.help))
    for option in verb.flags if verb is not None else ():
        text = bool_values.get(option.dest, getattr(namespace, option.dest))
        setattr(options, option.dest, _option_value(option, text))
    return options, global_values, args, dash


def _option_value(option: Option, text: Optional[str]) -> Any:
    if text is None:
        if option.kind == "duration":
            return _flags.parse_duration(option.default, option.name)
        return option.default
    if option.kind == "bool":
        return _flags.parse_bool(text, option.name)
    if option.kind == "int":
        return parse_int(text, option.name)
    if option.kind == "duration":
        return _flags.parse_duration(text, option.name)
    return text


# -- help ------------------------------------------------------------------------------------


def root_help() -> str:
    """``txetcd --help``: the verbs and the global flags."""
    lines = [
        "NAME:",
        f"\t{PROG} - an etcdctl-compatible command line client for etcd3 (txetcd)",
        "",
        "USAGE:",
        f"\t{PROG} [flags] <command> [command flags] [arguments]",
        "",
        "COMMANDS:",
    ]
    rows: Dict[str, str] = {}
    for words, verb in sorted(_VERBS.items()):
        rows[" ".join(words)] = verb.summary
    width = max((len(n) for n in rows), default=0)
    lines += [f"\t{name:<{width}}\t{summary}" for name, summary in rows.items()]
    lines += ["", "GLOBAL OPTIONS:"] + _flag_lines(GLOBAL_FLAGS)
    return "\n".join(lines) + "\n"


def verb_help(verb: Verb) -> str:
    """``txetcd VERB --help``."""
    lines = [
        "NAME:",
        f"\t{verb.name} - {verb.summary}",
        "",
        "USAGE:",
        f"\t{PROG} {verb.name} [options] {verb.usage}".rstrip(),
        "",
    ]
    if verb.description:
        lines += ["DESCRIPTION:"] + [f"\t{d}" for d in verb.description.splitlines()] + [""]
    if verb.flags:
        lines += ["OPTIONS:"] + _flag_lines(verb.flags) + [""]
    lines += ["GLOBAL OPTIONS:"] + _flag_lines(GLOBAL_FLAGS)
    return "\n".join(lines) + "\n"


def group_help(words: Tuple[str, ...], members: Sequence[Verb]) -> str:
    """``txetcd lease`` alone: the group's sub-verbs."""
    name = " ".join(words)
    lines = ["USAGE:", f"\t{PROG} {name} <subcommand> [flags]", "", "COMMANDS:"]
    width = max(len(v.name) for v in members)
    lines += [f"\t{v.name:<{width}}\t{v.summary}" for v in sorted(members, key=lambda v: v.words)]
    return "\n".join(lines) + "\n"


def _flag_lines(flags: Sequence[Union[Flag, Option]]) -> List[str]:
    """One aligned line per flag: ``-w, --write-out="simple"   help ($ETCDCTL_WRITE_OUT)``."""
    rows = []
    for flag in flags:
        short = f"-{flag.short}, " if flag.short else "    "
        if isinstance(flag, Flag):
            boolean, default, env = flag.boolean, flag.default, f" (${flag.env})"
        else:
            boolean, env = flag.kind == "bool", ""
            default = "false" if boolean else str(flag.default)
        plain = re.fullmatch(r"-?[0-9][0-9a-z.]*", default)  # numbers, durations
        shown = f"[={default}]" if boolean else f"={default}" if plain else f'="{default}"'
        rows.append((f"  {short}--{flag.name}{shown}", f"{flag.help}{env}"))
    width = max((len(left) for left, _ in rows), default=0)
    return [f"{left:<{width}}  {right}" for left, right in rows]


def fail(stderr: IO[bytes], error: Union[CommandError, FlagError, str]) -> None:
    """Write one ``Error: ...`` line on stderr."""
    message = error.message if isinstance(error, CommandError) else str(error)
    if not message:
        return  # said already (a watch's failed command)
    line = "Error: " + " ".join(message.splitlines())
    stderr.write(line.encode("utf-8", "replace") + b"\n")
    stderr.flush()


def stdio() -> Tuple[IO[bytes], IO[bytes], IO[bytes]]:
    """The process's stdin, stdout and stderr as binary streams."""
    return sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer
