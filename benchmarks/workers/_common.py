"""What every benchmark worker shares: the workload, the timed loops, CPU sampling, the result line.

A worker is run as ``python <client>_worker.py '<spec JSON>'`` with the Python of its client's venv
and prints exactly one JSON line on stdout. This module uses the standard library only, because it
is imported by interpreters that have nothing but one etcd client installed.

The spec (built by ``benchmarks/harness/workers.py``)::

    {"endpoint": "http://127.0.0.1:2379", "op": "put" | "get" | "populate" | "info",
     "concurrency": 32, "seconds": 3.0, "warmup": 0.5, "keys": 1000, "value_size": 64,
     "prefix": "bench/", "etcd_pid": 1234, "variant": null, "ca_cert": null}

``ca_cert`` (the tls suite): the CA's PEM file; the endpoint is then ``https://``.

The result line::

    {"ok": true, "ops": 9000, "elapsed": 3.001, "cpu": 1.2, "etcd_cpu": 0.9, "warmup_ops": 1500}
    {"ok": false, "error": "..."}

Checks, so that a broken client cannot look fast: every get must return the expected value of its
key; every put response is checked as far as the client's API returns one, and a put workload must
move the store's revision by at least the number of puts it counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CheckFailed",
    "Spec",
    "Workload",
    "check_revision",
    "check_value",
    "cpu_now",
    "emit",
    "etcd_cpu_now",
    "key_value",
    "main",
    "populate_async",
    "populate_threads",
    "run_async",
    "run_threads",
]


class CheckFailed(AssertionError):
    """A response did not say what it must (wrong value, missing header, revision not moved)."""


@dataclass(frozen=True)
class Spec:
    """The parsed worker spec; see the module docstring."""

    endpoint: str
    op: str
    concurrency: int
    seconds: float
    warmup: float
    keys: int
    value_size: int
    prefix: str
    etcd_pid: int | None
    variant: str | None
    ca_cert: str | None = None

    @classmethod
    def from_json(cls, text: str) -> Spec:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            endpoint=str(raw.get("endpoint", "http://127.0.0.1:2379")),
            op=str(raw["op"]),
            concurrency=int(raw.get("concurrency", 1)),
            seconds=float(raw.get("seconds", 3.0)),
            warmup=float(raw.get("warmup", 0.5)),
            keys=int(raw.get("keys", 1000)),
            value_size=int(raw.get("value_size", 64)),
            prefix=str(raw.get("prefix", "bench/")),
            etcd_pid=int(raw["etcd_pid"]) if raw.get("etcd_pid") else None,
            variant=raw.get("variant") or None,
            ca_cert=raw.get("ca_cert") or None,
        )

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 2379

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def ca_pem(self) -> bytes | None:
        """The CA certificate's PEM bytes (``None`` for a plain-text endpoint)."""
        if self.ca_cert is None:
            return None
        with open(self.ca_cert, "rb") as f:
            return f.read()


class Workload:
    """The fixed key set and the value each key holds (the same for every client and round).

    Keys are ``<prefix>00000`` ... and each value is derived from its key, so a get can be checked
    without any shared state, and a put (an overwrite with the same value) never invalidates it.
    """

    def __init__(self, spec: Spec) -> None:
        pairs = [key_value(i, spec.keys, spec.value_size, spec.prefix) for i in range(spec.keys)]
        self.key_strs: list[str] = [k for k, _ in pairs]
        self.value_strs: list[str] = [v for _, v in pairs]
        self.keys: list[bytes] = [k.encode() for k in self.key_strs]
        self.values: list[bytes] = [v.encode() for v in self.value_strs]
        self.size = spec.keys


def key_value(i: int, keys: int, value_size: int, prefix: str) -> tuple[str, str]:
    """Key number ``i`` of a set of ``keys`` and the value it holds (ASCII)."""
    width = max(5, len(str(keys - 1)))
    key = f"{prefix}{i:0{width}d}"
    return key, (f"value-of-{key}-".ljust(value_size, "x"))[:value_size]


def cpu_now() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    return time.process_time()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def etcd_cpu_now(pid: int | None) -> float | None:
    """CPU seconds (utime + stime) the etcd process has used, from ``/proc/<pid>/stat``."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def emit(result: dict[str, Any]) -> None:
    """Print the one result line and flush it."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Meter:
    """CPU and wall-clock sampling around the timed phase."""

    def __init__(self, etcd_pid: int | None) -> None:
        self.etcd_pid = etcd_pid
        self.t0 = self.cpu0 = 0.0
        self.etcd0: float | None = None
        self.elapsed = self.cpu = 0.0
        self.etcd_cpu: float | None = None

    def start(self) -> None:
        self.etcd0 = etcd_cpu_now(self.etcd_pid)
        self.cpu0 = cpu_now()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.cpu = cpu_now() - self.cpu0
        etcd1 = etcd_cpu_now(self.etcd_pid)
        if etcd1 is not None and self.etcd0 is not None:
            self.etcd_cpu = etcd1 - self.etcd0

    def result(self, ops: int, warmup_ops: int) -> dict[str, Any]:
        return {
            "ok": True,
            "ops": ops,
            "warmup_ops": warmup_ops,
            "elapsed": self.elapsed,
            "cpu": self.cpu,
            "etcd_cpu": self.etcd_cpu,
        }


# --- asyncio (and any awaitable-based) loops --------------------------------------------------

AsyncOp = Callable[[int], Awaitable[None]]


Gather = Callable[[list[Coroutine[Any, Any, None]]], Awaitable[Any]]


def _asyncio_gather(coros: list[Coroutine[Any, Any, None]]) -> Awaitable[Any]:
    return asyncio.gather(*coros)


async def _async_phase(op: AsyncOp, concurrency: int, seconds: float, gather: Gather) -> int:
    """Run ``concurrency`` loops of ``await op(i)`` until ``seconds`` pass; return ops completed."""
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    done = [0]

    async def loop() -> None:
        n = 0
        now = time.monotonic
        while now() < deadline:
            await op(next(counter))
            n += 1
        done[0] += n

    await gather([loop() for _ in range(concurrency)])
    return done[0]


async def run_async(
    spec: Spec,
    op: AsyncOp,
    revision: Callable[[], Awaitable[int]] | None = None,
    gather: Gather = _asyncio_gather,
) -> dict[str, Any]:
    """Warm up, then time ``op`` at ``spec.concurrency`` in flight; check the revision for puts.

    ``gather`` runs the loop coroutines together: ``asyncio.gather`` by default; a Twisted worker
    passes one built on ``Deferred``s (the loops themselves only await what ``op`` awaits).
    """
    rev0 = await revision() if revision is not None else None
    warmup_ops = (
        await _async_phase(op, spec.concurrency, spec.warmup, gather) if spec.warmup > 0 else 0
    )
    meter = Meter(spec.etcd_pid)
    meter.start()
    ops = await _async_phase(op, spec.concurrency, spec.seconds, gather)
    meter.stop()
    if revision is not None and rev0 is not None:
        check_revision(rev0, await revision(), warmup_ops + ops)
    return meter.result(ops, warmup_ops)


# --- thread loops (sync clients) --------------------------------------------------------------

SyncOp = Callable[[int], None]


def _thread_phase(op: SyncOp, concurrency: int, seconds: float) -> int:
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def loop() -> None:
        n = 0
        now = time.monotonic
        try:
            while now() < deadline:
                op(next(counter))
                n += 1
        except BaseException as e:  # noqa: BLE001  (re-raised by the main thread)
            with lock:
                errors.append(e)
        with lock:
            counts.append(n)

    if concurrency == 1:
        loop()
    else:
        threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return sum(counts)


def run_threads(
    spec: Spec, op: SyncOp, revision: Callable[[], int] | None = None
) -> dict[str, Any]:
    """Like :func:`run_async` for blocking clients: N threads (or the main thread for N = 1)."""
    rev0 = revision() if revision is not None else None
    warmup_ops = _thread_phase(op, spec.concurrency, spec.warmup) if spec.warmup > 0 else 0
    meter = Meter(spec.etcd_pid)
    meter.start()
    ops = _thread_phase(op, spec.concurrency, spec.seconds)
    meter.stop()
    if revision is not None and rev0 is not None:
        check_revision(rev0, revision(), warmup_ops + ops)
    return meter.result(ops, warmup_ops)


def check_revision(before: int, after: int, puts: int) -> None:
    """Each put bumps the store revision by one: the revision must have moved at least ``puts``."""
    if after - before < puts:
        raise CheckFailed(
            f"store revision moved {after - before} (from {before} to {after}) "
            f"but the client counted {puts} puts"
        )


def check_value(got: Any, want: Any, key: Any) -> None:
    if got != want:
        raise CheckFailed(f"get {key!r} returned {got!r}, expected {want!r}")


# --- entry point ------------------------------------------------------------------------------

Runner = Callable[[Spec, Workload], dict[str, Any]]


def main(run: Runner, version_of: tuple[str, ...] = ()) -> None:
    """Parse argv, run the workload, print the result line (exit status 1 on failure).

    ``run(spec, workload)`` does the work for ``op`` in ``put``/``get``/``populate``;
    ``op == "info"`` reports the installed versions of the distributions in ``version_of``.
    """
    try:
        spec = Spec.from_json(sys.argv[1])
        if spec.op == "info":
            emit(
                {
                    "ok": True,
                    "versions": _versions(version_of),
                    "python": sys.version.split()[0],
                }
            )
            return
        result = run(spec, Workload(spec))
    except BaseException as e:  # noqa: BLE001  (any failure becomes the result line)
        emit(
            {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        )
        sys.stdout.flush()
        os._exit(1)
    emit(result)
    # Some clients leave non-daemon threads or channels behind; do not wait for them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _versions(dists: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for dist in dists:
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _populated(count: int) -> dict[str, Any]:
    return {
        "ok": True,
        "ops": count,
        "warmup_ops": 0,
        "elapsed": 0.0,
        "cpu": 0.0,
        "etcd_cpu": None,
    }


async def populate_async(wl: Workload, put: AsyncOp, get: AsyncOp) -> dict[str, Any]:
    """Write every key once, then read every key back (each get checks its value)."""
    for i in range(wl.size):
        await put(i)
    for i in range(wl.size):
        await get(i)
    return _populated(wl.size)


def populate_threads(wl: Workload, put: SyncOp, get: SyncOp) -> dict[str, Any]:
    """:func:`populate_async` for blocking clients."""
    for i in range(wl.size):
        put(i)
    for i in range(wl.size):
        get(i)
    return _populated(wl.size)
