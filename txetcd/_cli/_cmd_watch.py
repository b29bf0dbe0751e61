"""``watch``: stream the changes of a key, a range or a prefix until Ctrl-C, as etcdctl does;
``watch KEY -- COMMAND ARGS...`` runs COMMAND for each event with etcdctl's ``ETCD_WATCH_*``
variables; ``-i`` reads ``watch ...`` and ``progress`` lines from stdin.

The events of one etcd answer are printed together (one JSON line, one header in ``fields``),
as etcdctl does. A progress notification (``--progress-notify``, or ``progress`` in ``-i``) is
etcdctl's ``progress notify: N`` line, then the answer in the chosen format, in order with the
events.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from twisted.internet import defer, protocol, threads
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    Bool,
    CommandError,
    Context,
    Int,
    Verb,
    parse,
    register,
)
from txetcd._cli._flags import FlagError
from txetcd._cli._gotext import GoSyntaxError, argify
from txetcd._cli._printer import go_quote, show_watch, show_watch_progress
from txetcd._errors import RevisionCompacted, ServerError, WatchCancelled
from txetcd._types import ResponseHeader, WatchBatch

__all__ = ["WatchPrinter", "watch_arguments"]

WATCH_FLAGS = (
    Bool("interactive", "Interactive mode", short="i"),
    Bool("prefix", "Watch on a prefix if prefix is set"),
    Int("rev", "Revision to start watching"),
    Bool("prev-kv", "get the previous key-value pair before the event happens"),
    Bool("progress-notify", "get periodic watch progress notification from server"),
)

BAD_ARGS_NUM = "bad number of arguments"
BAD_ARGS_CONFLICT_ENV = "bad number of arguments (found conflicting environment key)"
BAD_ARGS_SEPARATOR = "bad number of arguments (found separator --, but no commands)"


def watch_arguments(
    args: Sequence[str], dash: Optional[int], environ: Mapping[str, str]
) -> Tuple[List[str], List[str]]:
    """The watch's words (key, range end) and the command to run, from the positional words
    (``dash``: how many came before ``--``) and ``ETCDCTL_WATCH_KEY``/``_RANGE_END``."""
    env_key = environ.get("ETCDCTL_WATCH_KEY", "")
    env_range = environ.get("ETCDCTL_WATCH_RANGE_END", "")
    words = list(args if dash is None else args[:dash])
    command = [] if dash is None else list(args[dash:])
    if dash is not None and not command:
        raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_SEPARATOR)
    if dash is None and not words and not env_key:
        raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_NUM)
    if env_key and words:
        raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_CONFLICT_ENV)
    if env_key:
        words = [env_key] + ([env_range] if env_range else [])
    return words, command


class WatchPrinter:
    """Prints a watch's batches, those of one etcd answer together, and runs the command
    of ``watch -- COMMAND`` for each event. ``failed`` fires if the command fails."""

    def __init__(self, ctx: Context, command: Sequence[str]) -> None:
        self.ctx = ctx
        self.command = list(command)
        self.pending: List[WatchBatch] = []
        self.timer: Any = None
        self.chain: Deferred[None] = defer.succeed(None)
        self.failed: Deferred[None] = Deferred()
        self.watch: Any = None  # the watch it prints (for its progress notifications' header)

    def __call__(self, batch: WatchBatch) -> None:
        if self.pending and batch.header is not self.pending[-1].header:
            self._emit()
        self.pending.append(batch)
        if self.timer is None:
            self.timer = self.ctx.reactor.callLater(0, self._tick)

    def progress(self, revision: int) -> None:
        """The watch's ``on_progress``: after the events before it, etcdctl's lines for it."""
        header = self.watch.progress_header if self.watch is not None else None
        if header is None:
            return
        if self.pending:
            self._emit()
        self.chain.addCallback(lambda _: self._show_progress(header))
        self.chain.addErrback(self._failed)

    def _show_progress(self, header: ResponseHeader) -> None:
        show_watch_progress(self.ctx.out, header)
        self.ctx.out.flush()

    def _tick(self) -> None:
        self.timer = None
        if self.pending:
            self._emit()

    def flush(self) -> "Deferred[None]":
        """Print what is held now; fires when its commands have run."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.pending:
            self._emit()
        return self.chain

    def _emit(self) -> None:
        group, self.pending = self.pending, []
        self.chain.addCallback(lambda _: self._show(group))
        self.chain.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        if not self.failed.called:
            self.failed.errback(failure)

    def _show(self, group: List[WatchBatch]) -> Optional["Deferred[None]"]:
        header: ResponseHeader = group[0].header
        show_watch(self.ctx.out, header, group)
        self.ctx.out.flush()
        if not self.command:
            return None
        return defer.ensureDeferred(self._run_commands(header, group))

    async def _run_commands(self, header: ResponseHeader, group: List[WatchBatch]) -> None:
        for batch in group:
            for event in batch.events:
                env = dict(self.ctx.environ)
                env["ETCD_WATCH_REVISION"] = str(header.revision)
                env["ETCD_WATCH_EVENT_TYPE"] = go_quote(event.type.name)
                env["ETCD_WATCH_KEY"] = go_quote(event.kv.key)
                env["ETCD_WATCH_VALUE"] = go_quote(event.kv.value)
                await run_command(self.ctx, self.command, env)


class _Forward(protocol.ProcessProtocol):
    """A command's stdout and stderr to ours; ``ended`` fires with its exit status text."""

    def __init__(self, out: Any, err: Any) -> None:
        self.out, self.err = out, err
        self.ended: Deferred[Optional[str]] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:  # noqa: N802
        stream = self.out if fd == 1 else self.err
        if stream is not None:
            stream.write(data)
            stream.flush()

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        status = getattr(reason.value, "exitCode", 0)
        signal = getattr(reason.value, "signal", None)
        if signal is not None:
            self.ended.callback(f"signal: {_signal_name(signal)}")
        elif status:
            self.ended.callback(f"exit status {status}")
        else:
            self.ended.callback(None)


def _signal_name(number: int) -> str:
    names = {9: "killed", 15: "terminated", 2: "interrupt", 13: "broken pipe"}
    return names.get(number, f"signal {number}")


async def run_command(ctx: Context, command: List[str], env: Dict[str, str]) -> None:
    """Run ``command`` (etcdctl's exec: stdin empty, output ours); a failure is etcdctl's
    ``command [...] error (...)`` and exit 1."""
    shown = "[" + " ".join(go_quote(word) for word in command) + "]"
    name = command[0]
    path = name if os.sep in name else shutil.which(name, path=env.get("PATH", os.defpath))
    if path is None:
        _command_failed(ctx, shown, f"exec: {go_quote(name)}: executable file not found in $PATH")
    forward = _Forward(ctx.out.stream, ctx.stderr)
    try:
        ctx.reactor.spawnProcess(
            forward,
            path,
            command,
            env={k.encode(): v.encode("utf-8", "surrogateescape") for k, v in env.items()},
            childFDs={0: "w", 1: "r", 2: "r"},
        )
    except OSError as e:
        _command_failed(ctx, shown, f"fork/exec {path}: {e.strerror}")
    problem = await forward.ended
    if problem is not None:
        _command_failed(ctx, shown, problem)


def _command_failed(ctx: Context, shown: str, problem: str) -> None:
    if ctx.stderr is not None:
        ctx.stderr.write(f"command {shown} error ({problem})\n".encode("utf-8", "replace"))
        ctx.stderr.flush()
    raise CommandError(EXIT_ERROR, "")  # etcdctl exits at once, nothing more said


def _start(ctx: Context, client: Any, words: List[str], options: Any, printer: Any) -> Any:
    """The watch for ``words`` (key, and range end) and the flags (CommandError for bad
    arguments)."""
    if not words:
        raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_NUM)
    key = words[0].encode("utf-8", "surrogateescape")
    kwargs: Dict[str, Any] = {}
    if len(words) == 2:
        if options.prefix:
            raise CommandError(EXIT_BAD_ARGS, "`range_end` and `--prefix` are mutually exclusive")
        kwargs["range_end"] = words[1].encode("utf-8", "surrogateescape")
    if options.prefix:
        if key:
            kwargs["prefix"] = True
        else:
            key, kwargs["range_end"] = b"\0", b"\0"
    if options.rev > 0:
        kwargs["start_revision"] = options.rev
    watch = client.watch(
        key,
        prev_kv=options.prev_kv,
        progress_notify=options.progress_notify,
        require_leader=True,
        callback=printer,
        on_progress=printer.progress,
        timeout=None,
        **kwargs,
    )
    printer.watch = watch
    return watch


async def _watch(ctx: Context) -> int:
    env_key = ctx.environ.get("ETCDCTL_WATCH_KEY", "")
    env_range = ctx.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not env_key and env_range:
        raise CommandError(
            EXIT_BAD_ARGS,
            f"ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={go_quote(env_range)}",
        )
    if ctx.options.interactive:
        return await _interactive(ctx, env_key, env_range)
    words, command = watch_arguments(ctx.args, ctx.dash, ctx.environ)
    if not words:
        raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_NUM)
    client = await ctx.client()
    printer = WatchPrinter(ctx, command)
    watch = _start(ctx, client, words, ctx.options, printer)
    try:
        await _until_end(watch, printer)
    finally:
        watch.cancel()
    raise CommandError(EXIT_INTERRUPTED, "watch is canceled by the server")


async def _until_end(watch: Any, printer: WatchPrinter) -> None:
    """Until the watch ends (then what it printed is out) or a command fails."""
    ended: Deferred[Tuple[str, Any]] = Deferred()

    def settle(what: str, result: Any) -> None:
        if not ended.called:
            ended.callback((what, result))

    watch.done.addBoth(lambda result: settle("done", result))
    printer.failed.addErrback(lambda failure: settle("command", failure))
    what, result = await ended
    if what == "command":
        result.raiseException()
    await printer.flush()
    if isinstance(result, Failure):
        error = result.value
        if not isinstance(error, (ServerError, WatchCancelled)):
            result.raiseException()
        stderr = printer.ctx.stderr
        reason = str(error)
        if isinstance(error, RevisionCompacted):  # etcd's words, as etcdctl shows them
            reason = "etcdserver: mvcc: required revision has been compacted"
        if stderr is not None:
            stderr.write(f"watch was canceled ({reason})\n".encode("utf-8", "replace"))
            stderr.flush()


# -- interactive -----------------------------------------------------------------------------

_WATCH_VERB = Verb(("watch",), lambda ctx: defer.succeed(None), "", flags=WATCH_FLAGS)


async def _interactive(ctx: Context, env_key: str, env_range: str) -> int:
    client = await ctx.client()
    watches: List[Any] = []
    err = ctx.stderr

    def say(text: str) -> None:
        if err is not None:
            err.write(text.encode("utf-8", "surrogateescape") + b"\n")
            err.flush()

    try:
        while True:
            raw = await threads.deferToThreadPool(
                ctx.reactor, ctx.reactor.getThreadPool(), ctx.stdin.readline
            )
            if not raw.endswith(b"\n"):
                raise CommandError(EXIT_INVALID_INPUT, "error reading watch request line: EOF")
            line = raw[:-1].decode("utf-8", "surrogateescape")
            try:
                words = argify(line)
            except GoSyntaxError as e:
                raise CommandError(EXIT_INVALID_INPUT, str(e)) from None
            if not words:
                say(f"Invalid command: {line} (watch and progress supported)")
                continue
            if words[0] == "progress":
                client.request_progress()
                continue
            if words[0] != "watch":
                say(f"Invalid command {line} (only support watch)")
                continue
            if len(words) < 2 and not env_key:
                say(f"Invalid command {line} (command type or key is not provided)")
                continue
            try:
                options, _, args, dash = parse(_WATCH_VERB, words[1:], {}, global_flags=())
            except FlagError as e:
                raise CommandError(EXIT_BAD_ARGS, str(e)) from None
            keys = list(args if dash is None else args[:dash])
            command = [] if dash is None else list(args[dash:])
            if dash is not None and not command:
                raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_SEPARATOR)
            if dash is None and not keys and not env_key:
                raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_NUM)
            if dash is None and keys and env_key:
                raise CommandError(EXIT_BAD_ARGS, BAD_ARGS_CONFLICT_ENV)
            if env_key:
                keys = [env_key] + ([env_range] if env_range else []) + keys
            try:
                printer = WatchPrinter(ctx, command)
                watches.append(_start(ctx, client, keys, options, printer))
            except CommandError as e:
                say(f"Invalid command {line} ({e.message})")
    finally:
        for watch in watches:
            watch.cancel()


register(
    "watch",
    _watch,
    summary="Watches events stream on keys or prefixes",
    usage="[key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
    flags=WATCH_FLAGS,
)
