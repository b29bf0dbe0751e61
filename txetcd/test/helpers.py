"""Helpers shared by the test modules (the one place for them: no test module imports another)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from typing import Any, Iterator

from txetcd._channel import Channel
from txetcd._transport import Method


def reactor() -> Any:
    """The global reactor (imported when first asked for, after pytest-twisted installed it)."""
    from twisted.internet import reactor as r

    return r


def grpc_channel(client: Any) -> Channel:
    """The gRPC channel under a client (for tests that reach the connection itself)."""
    channel = client._channel
    assert isinstance(channel, Channel), f"not a gRPC client: {channel!r}"
    return channel


class Raw(bytes):
    """A 'message' that is its own bytes, for calls to test servers that echo raw payloads."""

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return bytes(self)

    @classmethod
    def FromString(cls, data: bytes) -> bytes:  # noqa: N802
        return data


def raw_method(path: bytes) -> Method:
    """A method of a test server whose requests and answers are raw bytes (see :class:`Raw`)."""
    return Method.of(path, Raw, Raw, None)


# -- child processes ----------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> None:
    """Wait (blocking) until process ``pid`` has ended, reaping it if it is our child (adopted
    ones included, see :func:`adopting_orphans`); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child
            if process_gone(pid):
                return
        assert time.monotonic() < deadline, f"process {pid} still runs after {timeout} s"
        time.sleep(0.01)


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Within the block, processes orphaned below this one become its children (Linux), so a
    test can reap them (:func:`wait_gone`) instead of leaving zombies to an init that may not."""
    from txetcd.testing._process import _prctl

    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def read_line(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    """The next line ``process`` writes to its stdout pipe; fail after ``timeout`` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no line from process {process.pid} in {timeout} s (so far {line!r})"
        if select.select([fd], [], [], left)[0]:
            byte = os.read(fd, 1)
            assert byte, f"process {process.pid} closed its output (so far {line!r})"
            line += byte
    return line.decode()
