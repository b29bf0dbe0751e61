"""What every failover worker shares: the spec, the load loops, the record and the result line.

Standard library only (imported by interpreters that have one etcd client installed). A worker is
run as ``python failover_<client>.py '<spec JSON>'`` and keeps ``writers`` + ``readers`` loops
running on one client given every endpoint of the cluster, until the harness writes the stop file:

    {"op": "run" | "info", "endpoints": ["http://127.0.0.1:2379", ...], "prefix": "fo/x/1/",
     "writers": 8, "readers": 8, "timeout": 10.0, "stop_file": "/tmp/.../stop", "variant": null}

- each put writes a key of its own (``<prefix>w<writer>-<n>``), so a put applied twice shows as
  version 2; a put is *acknowledged* when the client returned without an error;
- each get reads ``<prefix>r``, written before the loops start, and checks its value;
- a failed call is counted by its exception type, then the loop waits 50 ms and goes on;
- once the load runs (one put acknowledged) it prints ``{"ready": true}``;
- the stop file holds ``{"kills": [t, ...]}``: the wall-clock times (``time.time()``) at which the
  harness killed the leader. The loops stop; the worker waits for their last calls (each bounded
  by ``timeout``) and prints the result line::

    {"ok": true, "acked": [keys], "writes": n, "reads": n, "failed": {"Type": n}, "elapsed": s,
     "kills": [t, ...], "recoveries": [s or null, ...]}

Recovery after a kill at ``t``: the first acknowledged write that completed after ``t + GRACE``
(an answer already on its way when the leader died does not count), minus ``t``; ``null`` when
none completed before the next kill (or the end).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "GRACE",
    "FailoverSpec",
    "Record",
    "drive_async",
    "drive_threads",
    "main",
    "recoveries",
]

GRACE = 0.05
"""Seconds after a kill before a completed write counts as recovered (test_failover.py's)."""

VALUE = b"v"
READ_VALUE = b"read-me"


@dataclass(frozen=True)
class FailoverSpec:
    """The parsed spec; see the module docstring."""

    op: str
    endpoints: tuple[str, ...] = ()
    prefix: str = "fo/"
    writers: int = 8
    readers: int = 8
    timeout: float = 10.0
    stop_file: str = ""
    variant: str | None = None

    @classmethod
    def from_json(cls, text: str) -> FailoverSpec:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            op=str(raw["op"]),
            endpoints=tuple(raw.get("endpoints", ())),
            prefix=str(raw.get("prefix", "fo/")),
            writers=int(raw.get("writers", 8)),
            readers=int(raw.get("readers", 8)),
            timeout=float(raw.get("timeout", 10.0)),
            stop_file=str(raw.get("stop_file", "")),
            variant=raw.get("variant") or None,
        )

    @property
    def hostports(self) -> list[tuple[str, int]]:
        out = []
        for e in self.endpoints:
            u = urlsplit(e)
            out.append((u.hostname or "127.0.0.1", u.port or 2379))
        return out

    def key(self, writer: int, n: int) -> bytes:
        return f"{self.prefix}w{writer:02d}-{n:08d}".encode()

    @property
    def read_key(self) -> bytes:
        return f"{self.prefix}r".encode()


@dataclass
class Record:
    """What the loops saw (appended from one thread or one event loop at a time)."""

    acked: list[str] = field(default_factory=list)
    write_times: list[float] = field(default_factory=list)
    reads: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    stop: bool = False
    kills: list[float] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        name = type(error).__name__
        self.failed[name] = self.failed.get(name, 0) + 1

    def poll_stop(self, path: str) -> bool:
        """Read the stop file if it is there (the kill times); true once it was."""
        if not self.stop and os.path.exists(path):
            with open(path) as f:
                self.kills = [float(t) for t in json.load(f)["kills"]]
            self.stop = True
        return self.stop


def recoveries(
    kills: Sequence[float], write_times: Sequence[float], end: float, grace: float = GRACE
) -> list[float | None]:
    """Per kill, seconds to the first write completed after ``kill + grace`` and before the
    next kill (or ``end``); ``None`` when there was none."""
    times = sorted(write_times)
    out: list[float | None] = []
    bounds = [*kills[1:], end][: len(kills)]
    for kill, until in zip(kills, bounds, strict=True):
        i = bisect.bisect_right(times, kill + grace)
        out.append(times[i] - kill if i < len(times) and times[i] < until else None)
    return out


def _result(spec: FailoverSpec, rec: Record, elapsed: float) -> dict[str, Any]:
    end = time.time()
    return {
        "ok": True,
        "acked": rec.acked,
        "writes": len(rec.acked),
        "reads": rec.reads,
        "failed": rec.failed,
        "elapsed": elapsed,
        "kills": rec.kills,
        "recoveries": recoveries(rec.kills, rec.write_times, end),
    }


def _ready() -> None:
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()


# --- coroutine loops (asyncio and Twisted) -----------------------------------------------------

AsyncPut = Callable[[bytes, bytes], Awaitable[None]]
AsyncGet = Callable[[bytes], Awaitable[bytes | None]]


async def drive_async(
    spec: FailoverSpec,
    put: AsyncPut,
    get: AsyncGet,
    sleep: Callable[[float], Awaitable[Any]],
    gather: Callable[[list[Coroutine[Any, Any, None]]], Awaitable[Any]],
) -> dict[str, Any]:
    """Run the loops on an event loop until the stop file appears; the result line's dict."""
    rec = Record()
    await put(spec.read_key, READ_VALUE)
    t0 = time.monotonic()

    async def writer(w: int) -> None:
        n = 0
        while not rec.stop:
            key = spec.key(w, n)
            n += 1
            try:
                await put(key, VALUE)
            except Exception as e:  # noqa: BLE001  (counted by type; the run goes on)
                rec.fail(e)
                await sleep(0.05)
            else:
                rec.write_times.append(time.time())
                rec.acked.append(key.decode())

    async def reader() -> None:
        while not rec.stop:
            try:
                value = await get(spec.read_key)
            except Exception as e:  # noqa: BLE001
                rec.fail(e)
                await sleep(0.05)
                continue
            if value != READ_VALUE:
                raise AssertionError(f"get {spec.read_key!r} returned {value!r}")
            rec.reads += 1

    async def watch_stop() -> None:
        told = False
        while not rec.poll_stop(spec.stop_file):
            if not told and rec.acked:
                _ready()
                told = True
            await sleep(0.05)

    loops = [writer(w) for w in range(spec.writers)] + [reader() for _ in range(spec.readers)]
    await gather([*loops, watch_stop()])
    return _result(spec, rec, time.monotonic() - t0)


def asyncio_gather(coros: list[Coroutine[Any, Any, None]]) -> Awaitable[Any]:
    return asyncio.gather(*coros)


# --- thread loops (blocking clients) -----------------------------------------------------------


def drive_threads(
    spec: FailoverSpec, put: Callable[[bytes, bytes], None], get: Callable[[bytes], Any]
) -> dict[str, Any]:
    """:func:`drive_async` for blocking clients: one thread per loop."""
    rec = Record()
    lock = threading.Lock()
    put(spec.read_key, READ_VALUE)
    t0 = time.monotonic()
    crashed: list[BaseException] = []

    def writer(w: int) -> None:
        n = 0
        while not rec.stop:
            key = spec.key(w, n)
            n += 1
            try:
                put(key, VALUE)
            except Exception as e:  # noqa: BLE001
                with lock:
                    rec.fail(e)
                time.sleep(0.05)
            else:
                with lock:
                    rec.write_times.append(time.time())
                    rec.acked.append(key.decode())

    def reader() -> None:
        while not rec.stop:
            try:
                value = get(spec.read_key)
            except Exception as e:  # noqa: BLE001
                with lock:
                    rec.fail(e)
                time.sleep(0.05)
                continue
            if value != READ_VALUE:
                crashed.append(AssertionError(f"get {spec.read_key!r} returned {value!r}"))
                return
            with lock:
                rec.reads += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(spec.writers)]
    threads += [threading.Thread(target=reader, daemon=True) for _ in range(spec.readers)]
    for t in threads:
        t.start()
    told = False
    while not rec.poll_stop(spec.stop_file):
        if not told and rec.acked:
            _ready()
            told = True
        time.sleep(0.05)
    for t in threads:
        t.join()
    if crashed:
        raise crashed[0]
    return _result(spec, rec, time.monotonic() - t0)


# --- entry point -------------------------------------------------------------------------------


def main(run: Callable[[FailoverSpec], dict[str, Any]], version_of: tuple[str, ...] = ()) -> None:
    """Parse argv, run (or report versions for ``op == "info"``), print the result line."""
    try:
        spec = FailoverSpec.from_json(sys.argv[1])
        if spec.op == "info":
            from importlib.metadata import PackageNotFoundError, version

            versions = {}
            for dist in version_of:
                try:
                    versions[dist] = version(dist)
                except PackageNotFoundError:
                    versions[dist] = "not installed"
            result: dict[str, Any] = {"ok": True, "versions": versions}
        else:
            result = run(spec)
    except BaseException as e:  # noqa: BLE001  (any failure becomes the result line)
        out = {
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
