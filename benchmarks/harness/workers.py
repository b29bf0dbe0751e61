"""Run one worker subprocess and read its one JSON result line."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

__all__ = ["WORKERS_DIR", "WorkerError", "WorkerSpec", "run_worker"]

WORKERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workers")


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

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def run_worker(python: str, worker: str, spec: WorkerSpec, timeout: float) -> dict[str, Any]:
    """Run ``python workers/<worker> '<spec>'``; its result, or :class:`WorkerError`."""
    cmd = [python, os.path.join(WORKERS_DIR, worker), spec.to_json()]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise WorkerError(f"{worker} {spec.op} timed out after {timeout:.0f} s") from e
    result: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            break
    if result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise WorkerError(f"{worker} {spec.op} exited {proc.returncode} with no result:\n{tail}")
    if not result.get("ok"):
        raise WorkerError(f"{worker} {spec.op}: {result.get('error')}")
    return result
