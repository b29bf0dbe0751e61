"""The coordination verbs: ``lock`` and ``elect``, on :class:`txetcd.concurrency.Lock`,
:class:`~txetcd.concurrency.Election` and :class:`~txetcd.concurrency.Session`.

Their keys are laid out as etcdctl's (Go's ``concurrency`` recipes): ``<name>/<lease in hex>``,
the owner being the key created first, so a ``txetcd lock`` and an ``etcdctl lock`` on one
name exclude each other, and candidates of both take turns in one election.

``lock NAME CMD...`` runs CMD while it holds the lock, with ``ETCD_LOCK_KEY`` and
``ETCD_LOCK_REV`` (the lock key's create revision, its fencing token) in its environment, and
exits with CMD's exit code. Without CMD, and for ``elect``, the key is written and held until
SIGINT or SIGTERM (Ctrl-C), then given up: exit 0. ``elect -l NAME`` writes each new leader
(and each new value of it) until stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    Bool,
    CommandError,
    Context,
    Int,
    register,
)
from txetcd._cli._printer import show_get
from txetcd._cli._printer_admin import call_failed
from txetcd._errors import EtcdError, LockLost
from txetcd._signal import Signal
from txetcd._types import KeyValue, RangeResult, ResponseHeader
from txetcd.concurrency import Election, Lock, Observer, Session

__all__ = ["Interrupt", "run_command"]

#: what Go's exec reports as the exit status of a command killed by a signal (-1, as a
#: process exit code)
EXIT_SIGNALLED_CHILD = 255

#: Go's names of signals (``signal: killed``)
_SIGNAL_NAMES = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGQUIT: "quit",
    signal.SIGILL: "illegal instruction",
    signal.SIGTRAP: "trace/breakpoint trap",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGKILL: "killed",
    signal.SIGUSR1: "user defined signal 1",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGUSR2: "user defined signal 2",
    signal.SIGPIPE: "broken pipe",
    signal.SIGALRM: "alarm clock",
    signal.SIGTERM: "terminated",
}


class Interrupt:
    """SIGINT and SIGTERM, caught while installed (in the main thread only), as a Signal on
    the reactor: :meth:`wait` fires once either arrived."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._signal: Signal[None] = Signal()
        self._previous: Dict[int, Any] = {}

    def install(self) -> None:
        """Catch SIGINT and SIGTERM from now on (until :meth:`restore`)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._caught)

    def restore(self) -> None:
        """Put back the handlers there were before :meth:`install`."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _caught(self, signum: int, frame: Any) -> None:
        self._reactor.callFromThread(self._signal.fire, None)

    def wait(self) -> "Deferred[None]":
        """A new Deferred that fires once a signal arrived."""
        return self._signal.wait()


async def _until(d: "Deferred[Any]", interrupt: Interrupt) -> Tuple[bool, Any]:
    """``d``'s result, or ``(True, None)`` if a signal came first (then ``d`` is cancelled).
    ``(False, result)`` otherwise; ``d``'s failure is raised."""
    race: Deferred[Tuple[str, Any]] = Deferred()

    def won(result: Any, which: str) -> None:
        if not race.called:
            race.callback((which, result))

    d.addBoth(won, "done")
    interrupt.wait().addBoth(won, "signal")
    which, result = await race
    if which == "signal":
        d.cancel()
        return True, None
    if isinstance(result, Failure):
        result.raiseException()
    return False, result


def _arg(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


async def _start_session(client: Any, ttl: int) -> Session:
    session = Session(client, ttl=ttl)
    await session.ready
    return session


async def _close_session(session: Session) -> None:
    try:
        await session.close()
    except Exception:  # the lease is gone already, or etcd is: it expires by itself
        pass


# -- running a command -----------------------------------------------------------------------


class _Child(ProcessProtocol):
    """A command whose output goes to ours; ``ended`` fires once it ended, ``reason`` says
    how."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ended: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.ctx.out.write(data)
        self.ctx.out.flush()

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        if self.ctx.stderr is not None:
            self.ctx.stderr.write(data)
            self.ctx.stderr.flush()

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.reason = reason
        self.ended.callback(None)


def _executable(name: str, environ: Any) -> str:
    """Go's ``exec.Command`` lookup of ``name`` (CommandError with Go's message)."""
    if "/" in name:
        if not os.path.exists(name):
            raise CommandError(EXIT_ERROR, f"fork/exec {name}: no such file or directory")
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CommandError(EXIT_ERROR, f"fork/exec {name}: permission denied")
        return name
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is None:
        raise CommandError(EXIT_ERROR, f'exec: "{name}": executable file not found in $PATH')
    return found


async def run_command(ctx: Context, argv: List[str], extra_env: Dict[str, str]) -> int:
    """Run ``argv`` with our stdout and stderr, stdin closed, our environment after
    ``extra_env`` (ours wins, as with Go's exec); its exit code. Not zero: CommandError with
    Go's ``exit status N`` / ``signal: NAME`` (a signal is exit 255)."""
    path = _executable(argv[0], ctx.environ)
    env = dict(extra_env)
    env.update(ctx.environ)
    child = _Child(ctx)
    ctx.out.flush()
    ctx.reactor.spawnProcess(child, path, argv, env=env)
    await child.ended
    reason = child.reason
    assert reason is not None
    if reason.check(ProcessDone):  # type: ignore[no-untyped-call]
        return 0
    error = reason.value
    assert isinstance(error, ProcessTerminated)
    if error.signal is not None:
        name = _SIGNAL_NAMES.get(error.signal, f"signal {error.signal}")
        raise CommandError(EXIT_SIGNALLED_CHILD, f"signal: {name}")
    code = error.exitCode or 0
    raise CommandError(code, f"exit status {code}")


# -- lock ------------------------------------------------------------------------------------


async def _lock(ctx: Context) -> int:
    if not ctx.args:
        raise CommandError(
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        )
    name, command = ctx.args[0], ctx.args[1:]
    client = await ctx.client()
    interrupt = Interrupt(ctx.reactor)
    interrupt.install()
    try:
        ttl = ctx.options.ttl if ctx.options.ttl > 0 else 60
        session = await _start_session(client, ttl)
        try:
            return await _hold_lock(ctx, client, session, _arg(name), command, interrupt)
        finally:
            await _close_session(session)
    finally:
        interrupt.restore()


async def _hold_lock(
    ctx: Context,
    client: Any,
    session: Session,
    name: bytes,
    command: List[str],
    interrupt: Interrupt,
) -> int:
    lock = Lock(session, name)
    stopped, _ = await _until(lock.acquire(), interrupt)
    if stopped:
        raise CommandError(EXIT_ERROR, "context canceled")
    assert lock.key is not None and lock.revision is not None
    if command:
        env = {
            "ETCD_LOCK_KEY": lock.key.decode("utf-8", "surrogateescape"),
            "ETCD_LOCK_REV": str(lock.revision),
        }
        try:
            code = await run_command(ctx, command, env)
        finally:
            await _release(lock, quiet=True)
        return code
    held = await client.get(lock.key)
    if not held.kvs:
        raise CommandError(EXIT_ERROR, "lock lost on init")
    show_get(ctx.out, held)
    ctx.out.flush()
    stopped, _ = await _until(lock.lost, interrupt)
    if stopped:
        await _release(lock, quiet=False)
        return 0
    raise CommandError(EXIT_ERROR, "session expired")


async def _release(lock: Lock, *, quiet: bool) -> None:
    """Give the lock up; a lost lock is an error unless ``quiet`` (the command's outcome
    comes first)."""
    try:
        await lock.release()
    except (LockLost, EtcdError) as e:
        if not quiet:
            raise call_failed(e) from None


# -- elect -----------------------------------------------------------------------------------


async def _elect(ctx: Context) -> None:
    if len(ctx.args) not in (1, 2):
        raise CommandError(
            EXIT_BAD_ARGS,
            "elect takes one election name argument and an optional proposal argument",
        )
    if len(ctx.args) == 1 and not ctx.options.listen:
        raise CommandError(EXIT_BAD_ARGS, "no proposal argument but -l not set")
    if len(ctx.args) == 2 and ctx.options.listen:
        raise CommandError(EXIT_BAD_ARGS, "proposal given but -l is set")
    client = await ctx.client()
    interrupt = Interrupt(ctx.reactor)
    interrupt.install()
    try:
        if ctx.options.listen:
            await _observe(ctx, client, _arg(ctx.args[0]), interrupt)
        else:
            await _campaign(ctx, client, _arg(ctx.args[0]), _arg(ctx.args[1]), interrupt)
    finally:
        interrupt.restore()


async def _campaign(
    ctx: Context, client: Any, name: bytes, proposal: bytes, interrupt: Interrupt
) -> None:
    session = await _start_session(client, 60)
    try:
        election = Election(session, name)
        stopped, _ = await _until(election.campaign(proposal), interrupt)
        if stopped:
            raise CommandError(EXIT_ERROR, "context canceled")
        assert election.key is not None
        show_get(ctx.out, await client.get(election.key))
        ctx.out.flush()
        stopped, _ = await _until(election.lost, interrupt)
        if not stopped:
            raise CommandError(EXIT_ERROR, "elect: session expired")
        await election.resign()
    finally:
        await _close_session(session)


async def _observe(ctx: Context, client: Any, name: bytes, interrupt: Interrupt) -> None:
    header: Optional[ResponseHeader] = None
    if ctx.out.format != "simple":
        try:  # the header the leaders are shown with (each with its own revision)
            header = (await client.get(name + b"/", prefix=True, count_only=True)).header
        except EtcdError as e:
            raise call_failed(e) from None

    def leader(kv: KeyValue) -> None:
        shown = header or ResponseHeader(0, 0, 0, 0)
        show_get(ctx.out, RangeResult(shown._replace(revision=kv.mod_revision), (kv,), False, 0))
        ctx.out.flush()

    observer = Observer(client, name + b"/", leader)
    try:
        stopped, _ = await _until(observer.done, interrupt)
    except (EtcdError, CancelledError):
        stopped = False
    if stopped:
        observer.cancel()
        return
    raise CommandError(EXIT_ERROR, "elect: observer lost")


register(
    "lock",
    _lock,
    summary="Acquires a named lock",
    usage="<lockname> [exec-command arg1 arg2 ...]",
    flags=[Int("ttl", "timeout for session", 10)],
    description=(
        "Give the command after -- when it has flags of its own:\n"
        "  txetcd lock mylock -- sh -c 'echo $ETCD_LOCK_KEY'"
    ),
)
register(
    "elect",
    _elect,
    summary="Observes and participates in leader election",
    usage="<election-name> [proposal]",
    flags=[Bool("listen", "observation mode", short="l")],
)
