"""What every lock worker shares: the two workloads, the hand-off record and the result line.

Standard library only (imported by interpreters that have one etcd client installed). A worker is
run as ``python lock_<client>.py '<spec JSON>'`` with the spec of ``workers/_common.py``; the
fields it uses:

    {"endpoint": "http://127.0.0.1:2379", "op": "uncontended" | "handoff" | "info",
     "concurrency": 8, "seconds": 3.0, "warmup": 0.5, "prefix": "lockbench/txetcd/1/handoff",
     "etcd_pid": 1234}

``prefix`` is the lock's name (each run its own); ``concurrency`` is the number of contenders
(``uncontended`` always runs one). Each contender is one lock object of the client's own API (its
own session where the API has one), all on one client in one process, and loops::

    acquire (no timeout); note the time; yield once to the loop; note the time; release

The first note is when the acquisition fired, the second when the release is sent; both come from
``time.monotonic()`` in this one process. The holder yields once (``sleep(0)``) while it holds the
lock, so that a second holder at the same time would be seen (an acquisition while another
contender holds the lock fails the run). A hand-off is the time from one holder's release being
sent to the next acquisition firing. When that is another contender, the lock changed hands
(``handoffs_ms``); when the releaser itself got it again first (a lock that is not fair lets it),
the time goes to ``again_ms`` instead.

Timeline: the contenders start together; after ``warmup`` seconds the measured window opens
(CPU sampled), after ``seconds`` more it closes and the loops stop after their next release, so
every waiter ends by getting the lock once more (nothing is cancelled). The result line::

    {"ok": true, "contenders": 8, "acquisitions": n, "elapsed": s, "cpu": s, "etcd_cpu": s,
     "handoffs_ms": [...], "again_ms": [...], "per_contender": [n, ...], "warmup_acquisitions": n}

(Both lists are empty for ``uncontended``: with one contender there is nobody to hand to.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import CheckFailed, Meter, Spec

__all__ = [
    "TTL",
    "AsyncLocker",
    "Record",
    "SyncLocker",
    "contenders",
    "drive_async",
    "drive_threads",
]

TTL = 10
"""Seconds of every lock's lease (session TTL for txetcd, ``ttl=`` for the peers that take one)."""

AsyncLocker = tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]
"""One contender's ``(acquire, release)`` coroutine functions."""

SyncLocker = tuple[Callable[[], Any], Callable[[], Any]]
"""One contender's blocking ``(acquire, release)``."""


def contenders(spec: Spec) -> int:
    """How many lock objects the workload needs: one for ``uncontended``."""
    if spec.op == "uncontended":
        return 1
    if spec.op == "handoff":
        if spec.concurrency < 2:
            raise ValueError("the handoff workload needs at least 2 contenders")
        return spec.concurrency
    raise ValueError(f"unknown op {spec.op!r}")


def _acquired(got: Any) -> None:
    if got is False:  # python3-etcd3 and aetcd answer False when they gave up
        raise CheckFailed("acquire() gave up without the lock (it was given no timeout)")


@dataclass
class Record:
    """Who holds the lock, when it was last released, and what the measured window saw.

    Called from one event loop, or from threads under :attr:`mutex`.
    """

    n: int
    holder: int | None = None
    last_release: float | None = None
    last_releaser: int | None = None
    measuring: bool = False
    stop: bool = False
    acquisitions: int = 0
    warmup_acquisitions: int = 0
    handoffs: list[float] = field(default_factory=list)
    again: list[float] = field(default_factory=list)
    per_contender: list[int] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.per_contender = [0] * self.n

    def acquired(self, i: int, now: float) -> None:
        """Contender ``i``'s acquisition fired at ``now``."""
        if self.holder is not None:
            raise CheckFailed(f"contender {i} got the lock while contender {self.holder} held it")
        self.holder = i
        if not self.measuring:
            if not self.stop:
                self.warmup_acquisitions += 1
            return
        self.acquisitions += 1
        self.per_contender[i] += 1
        if self.last_release is not None and self.n > 1:
            took = now - self.last_release
            (self.again if self.last_releaser == i else self.handoffs).append(took)

    def releasing(self, i: int, now: float) -> None:
        """Contender ``i`` sends its release at ``now``."""
        if self.holder != i:
            raise CheckFailed(f"contender {i} released a lock held by {self.holder}")
        self.holder = None
        self.last_release = now
        self.last_releaser = i

    def open(self, meter: Meter) -> None:
        meter.start()
        self.measuring = True

    def close(self, meter: Meter) -> None:
        self.measuring = False
        meter.stop()
        self.stop = True

    def result(self, meter: Meter) -> dict[str, Any]:
        if self.acquisitions == 0:
            raise CheckFailed("no acquisition in the measured window")
        return {
            "ok": True,
            "contenders": self.n,
            "acquisitions": self.acquisitions,
            "warmup_acquisitions": self.warmup_acquisitions,
            "elapsed": meter.elapsed,
            "cpu": meter.cpu,
            "etcd_cpu": meter.etcd_cpu,
            "handoffs_ms": [round(x * 1000.0, 4) for x in self.handoffs],
            "again_ms": [round(x * 1000.0, 4) for x in self.again],
            "per_contender": self.per_contender,
        }


Gather = Callable[[list[Coroutine[Any, Any, None]]], Awaitable[Any]]


async def drive_async(
    spec: Spec,
    lockers: Sequence[AsyncLocker],
    sleep: Callable[[float], Awaitable[Any]],
    gather: Gather,
) -> dict[str, Any]:
    """Run the workload on an event loop (asyncio or Twisted: ``sleep`` and ``gather`` are the
    loop's); the result line's dict."""
    rec = Record(len(lockers))
    meter = Meter(spec.etcd_pid)
    now = time.monotonic

    async def contender(i: int) -> None:
        acquire, release = lockers[i]
        while not rec.stop:
            _acquired(await acquire())
            rec.acquired(i, now())
            await sleep(0)  # hold it across a turn of the loop: a second holder would show
            rec.releasing(i, now())
            await release()

    async def window() -> None:
        await sleep(spec.warmup)
        rec.open(meter)
        await sleep(spec.seconds)
        rec.close(meter)

    await gather([*(contender(i) for i in range(len(lockers))), window()])
    return rec.result(meter)


def drive_threads(spec: Spec, lockers: Sequence[SyncLocker]) -> dict[str, Any]:
    """:func:`drive_async` for blocking clients: one thread per contender."""
    rec = Record(len(lockers))
    meter = Meter(spec.etcd_pid)
    crashed: list[BaseException] = []

    def contender(i: int) -> None:
        acquire, release = lockers[i]
        try:
            while not rec.stop:
                _acquired(acquire())
                with rec.mutex:
                    rec.acquired(i, time.monotonic())
                time.sleep(0)  # hold it while other threads run: a second holder would show
                with rec.mutex:
                    rec.releasing(i, time.monotonic())
                release()
        except BaseException as e:  # noqa: BLE001  (re-raised by the main thread)
            crashed.append(e)
            rec.stop = True

    threads = [
        threading.Thread(target=contender, args=(i,), daemon=True) for i in range(len(lockers))
    ]
    for t in threads:
        t.start()
    time.sleep(spec.warmup)
    with rec.mutex:
        rec.open(meter)
    time.sleep(spec.seconds)
    with rec.mutex:
        rec.close(meter)
    for t in threads:
        t.join()
    if crashed:
        raise crashed[0]
    return rec.result(meter)
