"""What :class:`~txetcd.testing.EtcdServer` needs around its child process.

The start-up error (with the end of etcd's output), the parent-death signal that keeps etcd from
outliving the process that started it, and the two ``/health`` probes: a blocking one for plain
scripts and one that runs on a reactor.
"""

from __future__ import annotations

import ctypes
import functools
import http.client
import os
import signal
import sys
from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure

__all__ = ["EtcdStartError", "output_tail", "die_with_parent", "healthy", "healthy_async"]

#: how many of etcd's last output lines a start-up error shows (its usage text after a bad flag
#: is 21 lines, below the line that names the flag)
TAIL_LINES = 25

_HEALTH_REQUEST = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
_HEALTHY = b'"health":"true"'


class EtcdStartError(RuntimeError):
    """etcd did not start: it exited, could not be run, or was not healthy in time.

    The message ends with the last lines etcd wrote (its output goes to ``etcd.log`` in the data
    directory, which a failed first start removes).

    :ivar output: those last lines of etcd's output (``""`` when it wrote nothing).
    :ivar returncode: etcd's exit status when it exited, else ``None``.
    """

    def __init__(self, message: str, output: str = "", returncode: Optional[int] = None) -> None:
        self.output = output
        self.returncode = returncode
        if output:
            message = f"{message}; the last lines etcd wrote:\n{output}"
        else:
            message = f"{message} (etcd wrote nothing)"
        super().__init__(message)


def output_tail(path: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path`` (``""`` if there is none)."""
    try:
        with open(path, "rb") as f:
            last = deque(f, maxlen=lines)
    except OSError:
        return ""
    return b"".join(last).decode("utf-8", "replace").rstrip("\n")


@functools.cache
def _prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux).

    ``None`` where the platform has no such signal. The kernel sends it when the *thread* that
    started the child ends, so start etcd from a thread that lives as long as the process (the
    main thread or the reactor's). If the parent is already gone when the child runs the
    function, the child exits at once.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    return preexec


def healthy(port: int, timeout: float = 1.0) -> bool:
    """Whether the etcd on ``127.0.0.1:port`` answers ``/health`` with healthy (blocking)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        body = conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return _HEALTHY in body


class _HealthProbe(Protocol):
    """One ``GET /health`` over HTTP/1.0: the answer is everything read until etcd closes."""

    def __init__(self) -> None:
        self.answer = bytearray()
        self.done: Deferred[bytes] = Deferred(self._abort)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(_HEALTH_REQUEST)

    def dataReceived(self, data: bytes) -> None:
        self.answer += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.answer))

    def _abort(self, _: object) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


class _ProbeFactory(ClientFactory):
    def __init__(self, probe: _HealthProbe) -> None:
        self.probe = probe

    def buildProtocol(self, addr: object) -> _HealthProbe:
        return self.probe


async def healthy_async(reactor: Any, port: int, timeout: float = 1.0) -> bool:
    """Like :func:`healthy`, on ``reactor`` (TCP and time); ``timeout`` bounds each step."""
    from twisted.internet.endpoints import TCP4ClientEndpoint

    probe = _HealthProbe()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=max(1, round(timeout)))
    try:
        await endpoint.connect(_ProbeFactory(probe)).addTimeout(timeout, reactor)
        answer = await probe.done.addTimeout(timeout, reactor)
    except CancelledError:
        raise
    except Exception:
        return False
    return _HEALTHY in answer
