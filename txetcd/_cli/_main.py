"""``txetcd`` (and ``python -m txetcd``): etcdctl's verbs, flags, output and exit codes.

:func:`main` is the console script; :func:`run` does the work on a running reactor and gives
the exit code, so tests can run a command in-process with its output captured.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import IO, Any, Callable, List, Mapping, Optional

from twisted.internet.defer import ensureDeferred

from txetcd._cli import _command as command
from txetcd._cli._exit import (
    EXIT_BAD_CONNECTION,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_SUCCESS,
    CommandError,
)
from txetcd._cli._flags import FlagError
from txetcd._cli._printer import Output
from txetcd._cli._printer_admin import go_error
from txetcd._errors import AuthFailed, EtcdError

__all__ = ["main", "run"]

#: the exit code when the reactor is stopped (Ctrl-C, SIGTERM) before the command ends, as a
#: shell reports a process killed by SIGINT
EXIT_SIGNALLED = 130

#: the exit code when stdout is closed under us, as a shell reports a death by SIGPIPE
EXIT_BROKEN_PIPE = 141

_FORMATS = ("simple", "json", "fields", "table", "protobuf")


async def run(
    argv: List[str],
    *,
    reactor: Any,
    stdin: IO[bytes],
    stdout: IO[bytes],
    stderr: IO[bytes],
    environ: Mapping[str, str],
    prompt: Optional[Callable[[str], str]] = None,
) -> int:
    """Run the command line ``argv`` (without the program name); its exit code."""
    command.load_verbs()
    verb, rest, unknown = command.find_verb(argv)
    try:
        if verb is None:
            return _no_verb(rest, unknown, stdout, environ)
        if verb.raw:
            options, values, args, dash = _raw(rest)
        else:
            options, values, args, dash = command.parse(verb, rest, environ)
        if options.help:
            stdout.write(command.verb_help(verb).encode())
            return EXIT_SUCCESS
        fmt = values.get("write_out", "simple")
        out = Output(stdout, fmt, hex=_flag_true(values.get("hex", "false"), "hex"))
        if fmt not in _FORMATS:
            raise CommandError(EXIT_BAD_FEATURE, "unsupported output format")
        ctx = command.Context(
            verb=verb,
            args=args,
            dash=dash,
            options=options,
            globals=values,
            out=out,
            reactor=reactor,
            stdin=stdin,
            environ=environ,
            argv=list(argv),
            stderr=stderr,
            prompt=prompt,
        )
        try:
            code = await verb.run(ctx)
        finally:
            out.flush()
            await ctx.close()
        return EXIT_SUCCESS if code is None else code
    except CommandError as e:
        command.fail(stderr, e)
        return e.code
    except FlagError as e:
        command.fail(stderr, e)
        return EXIT_ERROR
    except AuthFailed as e:
        # etcdctl logs in when it makes its client, and a client it cannot make is exit 2
        command.fail(stderr, str(e))
        return EXIT_BAD_CONNECTION
    except EtcdError as e:  # one text for a failed call, whatever the verb (Timeout included)
        command.fail(stderr, go_error(e))
        return EXIT_ERROR
    except BrokenPipeError:
        # `txetcd get --prefix "" | head`: quietly, as a Go program dies of its SIGPIPE
        return EXIT_BROKEN_PIPE
    except (OSError, ValueError, TypeError) as e:
        # a bad file name for --cacert, a value the client refuses: the user's, not a bug
        if isinstance(e, OSError) or _from_arguments(e):
            command.fail(stderr, str(e))
            return EXIT_ERROR
        raise


def _from_arguments(error: BaseException) -> bool:
    """Whether ``error`` was raised checking arguments (txetcd._args, the TLS options)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module in ("txetcd._args", "txetcd._tls", "txetcd._connect", "txetcd._kv")


def _flag_true(text: str, name: str) -> bool:
    from txetcd._cli._flags import parse_bool

    return parse_bool(text, name)


def _raw(rest: List[str]) -> Any:
    import argparse

    return argparse.Namespace(help=False), {}, rest, None


def _no_verb(
    rest: List[str], unknown: List[str], stdout: IO[bytes], environ: Mapping[str, str]
) -> int:
    if unknown:
        groups = command.group_words()
        words = tuple(w for w in rest if not w.startswith("-"))
        for size in range(len(words), 0, -1):
            members = groups.get(words[:size])
            if members:
                stdout.write(command.group_help(words[:size], members).encode())
                return EXIT_SUCCESS
        raise_unknown = CommandError(
            EXIT_ERROR,
            f'unknown command "{unknown[0]}" for "{command.PROG}"'
            f" (run '{command.PROG} --help' for usage)",
        )
        raise raise_unknown
    command.parse(None, rest, environ)  # bad flags are errors even here
    stdout.write(command.root_help().encode())
    return EXIT_SUCCESS


def main(argv: Optional[List[str]] = None) -> None:
    """The ``txetcd`` console script: run ``argv`` (``sys.argv[1:]``) and exit with its code."""
    from twisted.internet import reactor

    words = sys.argv[1:] if argv is None else list(argv)
    stdin, stdout, stderr = command.stdio()
    result = {"code": EXIT_SIGNALLED}

    def finished(code: Any) -> None:
        result["code"] = code
        if reactor.running:
            reactor.stop()

    def failed(failure: Any) -> None:
        stderr.write(
            b"".join(
                line.encode()
                for line in traceback.format_exception(
                    failure.type, failure.value, failure.getTracebackObject()
                )
            )
        )
        finished(EXIT_ERROR)

    def start() -> None:
        d = ensureDeferred(_guarded(words, reactor, stdin, stdout, stderr))
        d.addCallbacks(finished, failed)

    reactor.callWhenRunning(start)
    reactor.run()
    try:
        stdout.flush()
        sys.stdout.flush()
    except BrokenPipeError:
        result["code"] = EXIT_BROKEN_PIPE
    if result["code"] == EXIT_BROKEN_PIPE:  # nothing more may reach the closed pipe at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(result["code"])


async def _guarded(
    words: List[str], reactor: Any, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes]
) -> int:
    try:
        return await run(
            words,
            reactor=reactor,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            environ=os.environ,
        )
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
