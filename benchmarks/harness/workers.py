"""Run worker subprocesses and read their JSON lines (one result; live workers: ready first)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TREE_ENV",
    "WORKERS_DIR",
    "LiveWorker",
    "WorkerError",
    "WorkerSpec",
    "run_json_worker",
    "run_worker",
]

WORKERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workers")


TREE_ENV = "TXETCD_BENCH_TREE"
"""Tells a txetcd worker which txetcd tree to import (``workers/_tx.py``; ``--baseline``)."""


_ENV = {k: v for k, v in os.environ.items() if k != TREE_ENV} | {"PYTHONUNBUFFERED": "1"}
"""The workers' environment (only ``tree=`` sets ``TREE_ENV``: every other row imports this
checkout whatever the caller's environment says)."""


class WorkerError(RuntimeError):
    """The worker failed, or printed no result line."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is told to do (see ``workers/_common.py`` for the protocol)."""

    endpoint: str
    op: str
    concurrency: int = 1
    seconds: float = 3.0
    warmup: float = 0.5
    keys: int = 1000
    value_size: int = 64
    prefix: str = "bench/"
    etcd_pid: int | None = None
    variant: str | None = None
    ca_cert: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def run_worker(
    python: str, worker: str, spec: WorkerSpec, timeout: float, tree: str | None = None
) -> dict[str, Any]:
    """Run ``python workers/<worker> '<spec>'``; its result, or :class:`WorkerError`.

    ``tree``: a txetcd worker imports txetcd from that directory instead of this checkout.
    """
    return run_json_worker(python, worker, spec.to_json(), timeout, what=spec.op, tree=tree)


def run_json_worker(
    python: str,
    worker: str,
    spec_json: str,
    timeout: float,
    what: str = "",
    tree: str | None = None,
) -> dict[str, Any]:
    """Run ``python workers/<worker> '<spec_json>'``; its last JSON line, or :class:`WorkerError`.

    A line with ``"ok": false`` (or none at all) raises; ``what`` names the run in errors.
    ``tree`` is passed to the worker as ``$TXETCD_BENCH_TREE``.
    """
    cmd = [python, os.path.join(WORKERS_DIR, worker), spec_json]
    name = f"{worker} {what}".strip()
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_ENV if tree is None else {**_ENV, TREE_ENV: tree},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise WorkerError(f"{name} timed out after {timeout:.0f} s") from e
    return _result(name, proc.stdout.splitlines(), proc.stderr, proc.returncode)


def _result(name: str, lines: list[str], stderr: str, returncode: int | None) -> dict[str, Any]:
    result: dict[str, Any] | None = None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            break
    if result is None or "ok" not in result:
        tail = "\n".join((stderr or "\n".join(lines)).strip().splitlines()[-6:])
        raise WorkerError(f"{name} exited {returncode} with no result:\n{tail}")
    if not result.get("ok"):
        raise WorkerError(f"{name}: {result.get('error')}")
    return result


class LiveWorker:
    """A worker that prints ``{"ready": true, ...}`` before its result line (watch, scale).

    Started at once; :meth:`wait_ready` blocks until the ready line, :meth:`result` until the
    process exits. Its stderr goes to a temporary file (shown when it fails). Use it as a
    context manager: leaving kills the process if it is still running.
    """

    def __init__(self, python: str, worker: str, spec_json: str, what: str = "") -> None:
        self.name = f"{worker} {what}".strip()
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [python, os.path.join(WORKERS_DIR, worker), spec_json],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_ENV,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, deadline: float) -> str | None:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise WorkerError(f"{self.name}: no answer in time") from None
        if line is not None:
            self._seen.append(line)
        return line

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """The ready line's contents; :class:`WorkerError` if the worker fails or is too slow."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._next_line(deadline)
            if line is None:
                self.proc.wait()
                raise self._failure()
            if line.startswith('{"ready"'):
                ready: dict[str, Any] = json.loads(line)
                return ready

    def result(self, timeout: float) -> dict[str, Any]:
        """The result line once the worker exits (within ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self._next_line(deadline) is not None:
            pass
        self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return _result(self.name, self._seen, self._stderr_text(), self.proc.returncode)

    def _failure(self) -> WorkerError:
        try:
            _result(self.name, self._seen, self._stderr_text(), self.proc.returncode)
        except WorkerError as e:
            return e
        return WorkerError(f"{self.name} exited {self.proc.returncode} before it was ready")

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def __enter__(self) -> LiveWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
