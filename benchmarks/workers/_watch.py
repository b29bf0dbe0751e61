"""What the watch and scale workers share: the spec, the event log, the checks, the statistics.

Standard library only: it is imported by interpreters that have one etcd client and nothing else.

The watch suite runs three processes against one etcd: a **watcher** (one client's worker, e.g.
``aetcd_watch.py``), and the **writer** (``watch_writer.py``, txetcd, the same for every client),
started by the harness once the watcher said it is ready. The protocol:

1. The harness starts ``python <client>_watch.py '<spec JSON>'``. The watcher connects, watches
   ``<prefix>`` (every key under it), then proves the watch is live: it puts ``<prefix>ctl`` =
   ``ready:<nonce>`` (again, every 0.2 s) until that event comes back through the watch. Then
   it prints the line ``{"ready": true}``.
2. The harness runs the writer. Each data put writes ``<prefix>k/<n>`` (cycling over ``keys``)
   with the value ``<seq>:<time.time_ns()>:`` padded to ``value_size``; the timestamp is taken
   just before the put is issued. When every put has been answered the writer puts
   ``<prefix>ctl`` = ``end:<count>:<measure_from_ns>``: ``count`` puts were written, those issued
   before ``measure_from_ns`` were warm-up.
3. The watcher notes ``time.time_ns()`` for every event as the client hands it over (in the
   callback or the iterator), stops at the end marker, checks that each of the ``count`` puts
   arrived exactly once (and, where the client exposes revisions, that the revisions are
   contiguous), and prints one JSON result line (see :func:`analyse`).

Wall-clock ``time.time_ns()`` is shared by every process on the machine, so ``arrival - stamp`` is
the put-to-callback latency: the writer's put, etcd's commit and watch fan-out, and the client's
delivery. Only the last part differs between clients.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from traceback import format_exc
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONTROL_KEY",
    "Recorder",
    "WatchSpec",
    "analyse",
    "data_key",
    "drive",
    "drive_asyncio",
    "emit",
    "emit_ready",
    "percentiles",
    "proc_status_kb",
    "prove_ready",
    "run_main",
]

CONTROL_KEY = "ctl"
"""Under the prefix: the watcher's readiness probe and the writer's end marker."""

_CONTROL_FIRST = frozenset((b"r", b"e", "r", "e"))  # ready:..., end:... (data values start 0-9)


@dataclass(frozen=True)
class WatchSpec:
    """What a watch, writer or scale worker is told (one JSON argument; unknown keys ignored).

    :param endpoint: etcd's client URL.
    :param prefix: every key of the run is under it.
    :param keys: the writer cycles over this many keys (``<prefix>k/00000`` ...).
    :param value_size: bytes per value (at least the sequence number and timestamp).
    :param mode: writer only: ``rate`` (one put at a time at ``rate`` puts/s) or ``flood``
        (``concurrency`` puts in flight, as fast as they go).
    :param seconds: timed seconds (writer: after ``warmup``; scale: the measured window).
    :param warmup: writer only: seconds written before the timed part.
    :param timeout: a watcher gives up waiting for the end marker after this many seconds.
    :param watches, leases, ttl, grant_concurrency, settle, sample_interval: the scale worker.
    """

    endpoint: str = "http://127.0.0.1:2379"
    prefix: str = "watchbench/"
    keys: int = 100
    value_size: int = 64
    mode: str = "rate"
    rate: float = 200.0
    concurrency: int = 32
    seconds: float = 5.0
    warmup: float = 0.5
    timeout: float = 120.0
    etcd_pid: int | None = None
    watches: int = 1000
    leases: int = 10000
    ttl: int = 30
    grant_concurrency: int = 128
    settle: float = 3.0
    sample_interval: float = 1.0

    @classmethod
    def from_json(cls, text: str) -> WatchSpec:
        raw: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 2379

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def control_key(self) -> str:
        return self.prefix + CONTROL_KEY


def data_key(prefix: str, i: int) -> str:
    """The ``i``-th data key under ``prefix`` (the writer cycles ``i`` over ``keys``)."""
    return f"{prefix}k/{i:05d}"


class Recorder:
    """The event log of one watcher: per event, its arrival time, value and revision.

    :meth:`add` is the only thing a client's callback or iterator calls per event, so it is the
    same (small) cost for every client: a clock read and a list append. Values may be ``bytes``
    or ``str`` (etcetra decodes them); revisions are ``None`` where the client does not expose
    them. Everything else happens after the run, in :func:`analyse`.
    """

    def __init__(self) -> None:
        self.log: list[tuple[int, Any, int | None]] = []
        self.nonce = f"{os.getpid()}-{time.time_ns()}"
        self.ready = False
        self.ended = False
        self.end_ns = 0
        self.cpu_end = 0.0
        self.on_end: Callable[[], None] = lambda: None

    def add(self, value: Any, revision: int | None = None) -> None:
        """Record one event as it is handed to the application."""
        self.log.append((time.time_ns(), value, revision))
        if value[:1] in _CONTROL_FIRST:
            self._control(value)

    def _control(self, value: Any) -> None:
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text == f"ready:{self.nonce}":
            self.ready = True
        elif text.startswith("end:") and self.ready and not self.ended:
            self.ended = True
            self.end_ns = time.time_ns()
            self.cpu_end = time.process_time()
            self.on_end()


def emit(result: dict[str, Any]) -> None:
    """Print one JSON line and flush it."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run_main(run: Callable[[WatchSpec], dict[str, Any]]) -> None:
    """Parse ``argv[1]``, run, print the result line, and exit at once (0, or 1 on failure).

    Any exception becomes ``{"ok": false, "error": ...}``. Exiting with ``os._exit`` means that
    channels or threads a client leaves behind cannot hold the process.
    """
    try:
        result = run(WatchSpec.from_json(sys.argv[1]))
    except BaseException as e:  # noqa: BLE001  (any failure becomes the result line)
        emit({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": format_exc()})
        sys.stderr.flush()
        os._exit(1)
    emit(result)
    sys.stderr.flush()
    os._exit(0 if result.get("ok") else 1)


def emit_ready(**extra: Any) -> None:
    """Tell the harness that the watch is live (it starts the writer on this line)."""
    emit({"ready": True, **extra})


async def prove_ready(
    spec: WatchSpec,
    rec: Recorder,
    put: Callable[[str, str], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[Any]],
    attempts: int = 100,
) -> None:
    """Put the readiness probe until it comes back through the watch (the watch is then live).

    A watch request may still be on its way to etcd when the client says it was sent, so the
    probe is put again every 0.2 s until it is seen.
    """
    for _ in range(attempts):
        await put(spec.control_key, f"ready:{rec.nonce}")
        for _ in range(40):
            if rec.ready:
                return
            await sleep(0.005)
    raise RuntimeError(f"the watch never delivered the readiness probe ({attempts} puts)")


async def drive(
    spec: WatchSpec,
    rec: Recorder,
    put: Callable[[str, str], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[Any]],
    wait_end: Callable[[float], Awaitable[bool]],
) -> dict[str, Any]:
    """A watcher's life after its watch was opened: prove it live, say ready, wait, analyse.

    ``put(key, value)`` writes with the watcher's own client (only the readiness probe);
    ``sleep(s)`` and ``wait_end(timeout)`` (true once ``rec.ended``) come from its event loop.
    """
    await prove_ready(spec, rec, put, sleep)
    cpu0 = time.process_time()
    emit_ready()
    ended = await wait_end(spec.timeout)
    if not ended:
        rec.cpu_end = time.process_time()
    result = analyse(rec.log, per_seq=spec.mode == "rate")
    result["cpu"] = rec.cpu_end - cpu0
    events = int(result.get("events", 0))
    result["cpu_ms_per_event"] = 1000.0 * result["cpu"] / events if events else None
    return result


async def drive_asyncio(
    spec: WatchSpec,
    rec: Recorder,
    put: Callable[[str, str], Awaitable[Any]],
    consume: Coroutine[Any, Any, None],
) -> dict[str, Any]:
    """:func:`drive` for asyncio clients: ``consume`` feeds the watch's events to ``rec.add``.

    It runs as a task from now on (the watch must already be requested); it is cancelled once
    the run is over. A consumer that fails ends the run with its error.
    """
    import asyncio

    ended = asyncio.Event()
    rec.on_end = ended.set
    consumer = asyncio.ensure_future(consume)

    async def wait_end(timeout: float) -> bool:
        done, _ = await asyncio.wait(
            [consumer, asyncio.ensure_future(ended.wait())],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if consumer in done and not ended.is_set():
            consumer.result()  # raises the consumer's error
            raise RuntimeError("the watch iterator ended before the end marker")
        return ended.is_set()

    try:
        return await drive(spec, rec, put, asyncio.sleep, wait_end)
    finally:
        consumer.cancel()
        await asyncio.wait([consumer], timeout=2.0)


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (``p50`` ...), ``max`` and ``mean`` of ``values``."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    out = {f"p{p:g}": ordered[min(n - 1, max(0, math.ceil(n * p / 100) - 1))] for p in points}
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / n
    return out


def analyse(log: list[tuple[int, Any, int | None]], per_seq: bool = False) -> dict[str, Any]:
    """Check the event log of one run and compute what it measured.

    Result keys: ``ok`` (false with ``error`` when an event was lost, repeated, out of place, or
    the end marker never came), ``count`` (puts written), ``events`` (data events received),
    ``duplicates``, ``missing``, ``revisions`` (``contiguous``, ``broken`` or ``not exposed``),
    ``measured`` (events issued after the warm-up), ``latency_ms`` (``p50``, ``p90``, ``p99``,
    ``max``, ``mean`` over the measured events), ``events_per_s`` (measured events / from the
    first measured put being issued to the last event arriving) and ``lag_ms`` (the last put
    being issued to its event arriving). With ``per_seq``: ``latency_us``, each measured event's
    latency in microseconds indexed by sequence number (-1: warm-up or missing), so that the
    harness can subtract the writer's own round trip for the same put.
    """
    count: int | None = None
    measure_from = 0
    data: list[tuple[int, int, int, int | None]] = []  # arrival, seq, stamp, revision
    revisions: list[int] = []
    seen_ready = False
    for arrival, raw, revision in log:
        value = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        if value.startswith("ready:"):
            seen_ready = True
            continue
        if not seen_ready:
            continue
        if value.startswith("end:"):
            parts = value.split(":")
            count, measure_from = int(parts[1]), int(parts[2])
            if revision is not None:
                revisions.append(revision)
            break
        seq_text, stamp_text, _ = value.split(":", 2)
        data.append((arrival, int(seq_text), int(stamp_text), revision))
        if revision is not None:
            revisions.append(revision)

    result: dict[str, Any] = {"ok": True, "events": len(data)}
    seqs = [d[1] for d in data]
    unique = set(seqs)
    result["duplicates"] = len(seqs) - len(unique)
    errors: list[str] = []
    if count is None:
        errors.append(f"no end marker within the timeout ({len(data)} events seen)")
        result["count"] = None
        result["missing"] = None
    else:
        result["count"] = count
        stray = [s for s in unique if not 0 <= s < count]
        result["missing"] = count - (len(unique) - len(stray))
        if stray:
            errors.append(f"{len(stray)} events with sequence numbers nobody wrote")
        if result["missing"]:
            errors.append(f"{result['missing']} of {count} events never arrived")
    if result["duplicates"]:
        errors.append(f"{result['duplicates']} events arrived twice")
    if not revisions:
        result["revisions"] = "not exposed"
    elif all(b == a + 1 for a, b in zip(revisions, revisions[1:], strict=False)) and len(
        revisions
    ) == len(data) + (1 if count is not None else 0):
        result["revisions"] = "contiguous"
    else:
        result["revisions"] = "broken"
        errors.append("event revisions are not contiguous (an event lost, repeated or reordered)")
    if errors:
        result["ok"] = False
        result["error"] = "; ".join(errors)

    measured = [d for d in data if d[2] >= measure_from]
    result["measured"] = len(measured)
    if measured:
        result["latency_ms"] = percentiles([(a - s) / 1e6 for a, _, s, _ in measured])
        first_stamp = min(s for _, _, s, _ in measured)
        last_arrival = max(a for a, _, _, _ in data)
        span = (last_arrival - first_stamp) / 1e9
        result["events_per_s"] = len(measured) / span if span > 0 else None
        last = max(data, key=lambda d: d[2])
        result["lag_ms"] = (last_arrival - last[2]) / 1e6
    if per_seq and count is not None:
        by_seq = [-1] * count
        for arrival, seq, stamp, _ in measured:
            if 0 <= seq < count:
                by_seq[seq] = (arrival - stamp) // 1000
        result["latency_us"] = by_seq
    return result


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (e.g. ``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
