"""The CLI's pieces without etcd: global flags (_flags), the command line parsing (_command),
Go's text rules (_gotext), the printers (_printer, _printer_json) and the txn syntax."""

from __future__ import annotations

import io
from typing import Any, List

import pytest

from txetcd._cli import _flags
from txetcd._cli._cmd_txn import parse_compare, parse_operation, read_txn
from txetcd._cli._cmd_watch import watch_arguments
from txetcd._cli._command import (
    CommandError,
    find_verb,
    load_verbs,
    parse,
    parse_int,
)
from txetcd._cli._flags import FlagError
from txetcd._cli._gotext import GoSyntaxError, argify, unquote
from txetcd._cli._printer import Output, go_quote, hex_bytes, render_table, show_get
from txetcd._cli._printer_json import encode, kv_json
from txetcd._types import KeyValue, RangeResult, ResponseHeader

load_verbs()

# -- _flags ----------------------------------------------------------------------------------


def test_flag_and_environment_both_given_is_an_error() -> None:
    with pytest.raises(FlagError, match="ETCDCTL_ENDPOINTS is shadowed by the command-line"):
        _flags.resolve({"endpoints": "a:1"}, {"ETCDCTL_ENDPOINTS": "b:2"})


def test_environment_then_default() -> None:
    values = _flags.resolve({}, {"ETCDCTL_DIAL_TIMEOUT": "3s"})
    assert values["dial_timeout"] == "3s"
    assert values["command_timeout"] == "5s"
    assert values["endpoints"] == "127.0.0.1:2379"


@pytest.mark.parametrize(
    "text, seconds",
    [("5s", 5.0), ("1m30s", 90.0), ("500ms", 0.5), ("0", 0.0), ("1.5h", 5400.0), ("2us", 2e-6)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert _flags.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "5x", "", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(FlagError, match="invalid duration"):
        _flags.parse_duration(text, "dial-timeout")


def test_go_booleans() -> None:
    assert [_flags.parse_bool(t, "hex") for t in ("1", "t", "TRUE", "true", "True")] == [True] * 5
    assert [_flags.parse_bool(t, "hex") for t in ("0", "f", "F", "false", "False")] == [False] * 5
    with pytest.raises(FlagError, match='invalid argument "yes" for "--hex" flag'):
        _flags.parse_bool("yes", "hex")


def test_user_with_password_splits_and_repr_hides_it() -> None:
    s = _flags.settings(_flags.resolve({"user": "root:se:cret"}, {}))
    assert (s.user, s.password) == ("root", "se:cret")
    assert "se:cret" not in repr(s) and "root" in repr(s)


def test_user_without_password_prompts() -> None:
    asked: List[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "pw"

    s = _flags.settings(_flags.resolve({"user": "root"}, {}), prompt=prompt)
    assert (s.user, s.password, asked) == ("root", "pw", ["Password: "])


def test_password_twice_or_alone_is_an_error() -> None:
    with pytest.raises(FlagError, match="must not include a password"):
        _flags.settings(_flags.resolve({"user": "a:b", "password": "c"}, {}))
    with pytest.raises(FlagError, match="needs --user"):
        _flags.settings(_flags.resolve({"password": "c"}, {}))


def test_tls_settings_make_endpoints_https() -> None:
    s = _flags.settings(_flags.resolve({"endpoints": "h:1,http://g:2", "cacert": "ca"}, {}))
    assert s.urls() == ("https://h:1", "http://g:2")


# -- the command line ------------------------------------------------------------------------


def test_flags_before_and_after_the_verb() -> None:
    verb, rest, _ = find_verb(["-w", "json", "--endpoints", "h:1", "get", "k", "--prefix"])
    assert verb is not None and verb.name == "get"
    options, values, args, dash = parse(verb, rest, {})
    assert (options.prefix, args, dash) == (True, ["k"], None)
    assert (values["write_out"], values["endpoints"]) == ("json", "h:1")


def test_pflag_booleans_and_values() -> None:
    verb, rest, _ = find_verb(["get", "--prefix=false", "--limit=5", "--hex", "k", "--rev", "7"])
    assert verb is not None
    options, values, args, _ = parse(verb, rest, {})
    assert (options.prefix, options.limit, options.rev, args) == (False, 5, 7, ["k"])
    assert values["hex"] == "true"


def test_words_after_a_dash_are_positional() -> None:
    verb, rest, _ = find_verb(["watch", "k", "--", "echo", "--prefix"])
    assert verb is not None
    options, _, args, dash = parse(verb, rest, {})
    assert (options.prefix, args, dash) == (False, ["k", "echo", "--prefix"], 1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["get", "--bogus", "k"], "unknown flag: --bogus"),
        (["get", "-x", "k"], "unknown shorthand flag: 'x' in -x"),
        (["get", "k", "--limit"], "flag needs an argument: --limit"),
        (["get", "k", "--limit=x"], 'invalid argument "x" for "--limit" flag'),
        (["get", "k", "--prefix=maybe"], 'invalid argument "maybe" for "--prefix" flag'),
        (["get", "k", "--pre"], "unknown flag: --pre"),  # no abbreviations, as in pflag
    ],
)
def test_bad_command_lines(argv: List[str], message: str) -> None:
    verb, rest, _ = find_verb(argv)
    with pytest.raises(FlagError) as e:
        parse(verb, rest, {})
    assert message in str(e.value)


def test_unknown_and_prefix_verbs() -> None:
    assert find_verb(["nosuch", "k"])[0] is None and find_verb(["nosuch"])[2] == ["nosuch"]
    verb = find_verb(["comp", "5"])[0]
    assert verb is not None and verb.name == "compaction"


@pytest.mark.parametrize("text, value", [("10", 10), ("0x10", 16), ("010", 8), ("-3", -3)])
def test_go_int_flags(text: str, value: int) -> None:
    assert parse_int(text, "limit") == value


def test_go_int_flag_out_of_range() -> None:
    with pytest.raises(FlagError, match="value out of range"):
        parse_int(str(2**63), "rev")


# -- Go text ---------------------------------------------------------------------------------


def test_go_quote() -> None:
    assert go_quote(b'a"b\\c\n\t') == '"a\\"b\\\\c\\n\\t"'
    assert go_quote(b"\x00\x7f\xff") == '"\\x00\\x7f\\xff"'
    assert go_quote("é\u00a0😀".encode()) == '"é\\u00a0😀"'


def test_go_unquote_and_argify() -> None:
    assert unquote('"a\\x41\\101\\u00e9\\n"') == b"aAA\xc3\xa9\n"
    assert unquote("`raw\\n`") == b"raw\\n"
    with pytest.raises(GoSyntaxError):
        unquote('"bad\\q"')
    assert argify("put k \"v w\" 'x y' --prev-kv") == ["put", "k", "v w", "x y", "--prev-kv"]


# -- printers --------------------------------------------------------------------------------

HEADER = ResponseHeader(cluster_id=2**64 - 1, member_id=5, revision=9, raft_term=2)


def test_json_like_go() -> None:
    kv = KeyValue(b"k<&>", b"", 3, 4, 1, 0)
    assert kv_json(kv) == {
        "key": "azwmPg==",
        "create_revision": 3,
        "mod_revision": 4,
        "version": 1,
    }
    assert encode({"s": "<a&b>\u2028", "n": 2**64 - 1, "z": None, "l": [True, False]}) == (
        '{"s":"\\u003ca\\u0026b\\u003e\\u2028","n":18446744073709551615,"z":null,"l":[true,false]}'
    )


def test_simple_hex_and_value_only() -> None:
    stream = io.BytesIO()
    out = Output(stream, "simple", hex=True)
    result = RangeResult(HEADER, (KeyValue(b"ab", b"\x01", 1, 1, 1, 0),), False, 1)
    show_get(out, result)
    assert stream.getvalue() == b"\\x61\\x62\n\\x01\n"
    assert hex_bytes(b"") == b""
    stream = io.BytesIO()
    out = Output(stream, "simple")
    out.value_only = True
    show_get(out, result)
    assert stream.getvalue() == b"\x01\n"


def test_table_like_tablewriter() -> None:
    assert render_table(["ID", "Name"], [["1", "abc"]]) == (
        "+----+------+\n| ID | NAME |\n+----+------+\n|  1 |  abc |\n+----+------+\n"
    )


def test_unsupported_format() -> None:
    with pytest.raises(CommandError) as e:
        show_get(Output(io.BytesIO(), "table"), RangeResult(HEADER, (), False, 0))
    assert (e.value.code, e.value.message) == (4, "table not supported as output format")


# -- txn syntax and watch arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ('mod(a) > "0"', 'malformed comparison: mod(a) > "0"; got mod("")  ""'),
        ('zz("a") = "1"', 'malformed comparison: zz("a") = "1" (unknown target zz)'),
        ('ver("a") = "x"', 'invalid txn compare request: ver("a") = "x"'),
        ('m("a") >= "1"', "unknown operator >="),
        ("nothing", "malformed comparison: nothing"),
    ],
)
def test_bad_compares(line: str, message: str) -> None:
    with pytest.raises(CommandError) as e:
        parse_compare(line)
    assert e.value.code == 3 and message in e.value.message


def test_compares_and_operations() -> None:
    assert repr(parse_compare('value("k") = "v"')) == repr(__import__("txetcd").Value(b"k") == b"v")
    assert repr(parse_compare('lease("k") = "1f"')) == "LeaseId(b'k') == 31"  # hex
    assert "prev_kv=True" in repr(parse_operation('put k "a b" --prev-kv'))
    with pytest.raises(CommandError) as e:
        parse_operation("get k --bogus")
    assert (e.value.code, e.value.message) == (3, "invalid txn request: get k --bogus")


def test_txn_input_must_end_with_an_empty_line() -> None:
    compares, success, failure = read_txn(io.BytesIO(b'c("k") = "0"\n\nput k v\n\n\n'))
    assert (len(compares), len(success), len(failure)) == (1, 1, 0)
    with pytest.raises(CommandError) as e:
        read_txn(io.BytesIO(b"\nput k v\n"))
    assert (e.value.code, e.value.message) == (3, "EOF")


@pytest.mark.parametrize(
    "args, dash, env, expected",
    [
        (["k"], None, {}, (["k"], [])),
        (["k", "e", "x"], 1, {}, (["k"], ["e", "x"])),
        (["e"], 0, {"ETCDCTL_WATCH_KEY": "k", "ETCDCTL_WATCH_RANGE_END": "z"}, (["k", "z"], ["e"])),
        ([], None, {}, "bad number of arguments"),
        (["k"], 1, {}, "found separator --, but no commands"),
        (["k"], None, {"ETCDCTL_WATCH_KEY": "k"}, "found conflicting environment key"),
    ],
)
def test_watch_arguments(args: List[str], dash: Any, env: Any, expected: Any) -> None:
    if isinstance(expected, str):
        with pytest.raises(CommandError) as e:
            watch_arguments(args, dash, env)
        assert e.value.code == 128 and expected in e.value.message
    else:
        assert watch_arguments(args, dash, env) == expected
