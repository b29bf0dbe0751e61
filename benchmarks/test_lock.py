"""Tests for the lock suite: the hand-off record, the drivers on in-process locks, the summary and
the bar, and one tiny run of txetcd's rows against a real etcd.

``python -m pytest -q -p no:cacheprovider benchmarks/test_lock.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import pytest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import run as bench_run
from harness import lock
from harness.workers import WORKERS_DIR

if WORKERS_DIR not in sys.path:
    sys.path.append(WORKERS_DIR)
from _common import CheckFailed, Meter, Spec
from _lock import Record, contenders, drive_async, drive_threads


def _spec(op: str = "handoff", n: int = 4, seconds: float = 0.2) -> Spec:
    raw = {"op": op, "concurrency": n, "seconds": seconds, "warmup": 0.05, "prefix": "l"}
    return Spec.from_json(json.dumps(raw))


# --- the record -------------------------------------------------------------------------------


def test_a_hand_off_is_release_sent_to_the_next_acquisition() -> None:
    rec = Record(3)
    rec.acquired(0, 1.0)  # before the window: warm-up, not measured
    rec.releasing(0, 1.5)
    rec.measuring = True
    rec.acquired(1, 1.502)  # to another contender: a hand-off
    rec.releasing(1, 2.0)
    rec.acquired(1, 2.004)  # the releaser again: counted apart
    rec.releasing(1, 2.5)
    rec.acquired(2, 2.51)
    assert rec.handoffs == pytest.approx([0.002, 0.01])
    assert rec.again == pytest.approx([0.004])
    assert rec.acquisitions == 3 and rec.warmup_acquisitions == 1
    assert rec.per_contender == [0, 2, 1]


def test_two_holders_at_once_fail_the_run() -> None:
    rec = Record(2)
    rec.acquired(0, 1.0)
    with pytest.raises(CheckFailed, match="contender 1 got the lock while contender 0 held it"):
        rec.acquired(1, 1.1)
    with pytest.raises(CheckFailed, match="released a lock held by 0"):
        Record(2, holder=0).releasing(1, 1.0)


def test_one_contender_has_no_hand_offs() -> None:
    rec = Record(1, measuring=True)
    for t in (1.0, 2.0, 3.0):
        rec.acquired(0, t)
        rec.releasing(0, t + 0.1)
    assert rec.acquisitions == 3 and rec.handoffs == [] and rec.again == []
    assert contenders(_spec("uncontended", 8)) == 1 and contenders(_spec("handoff", 8)) == 8
    with pytest.raises(ValueError):
        contenders(_spec("handoff", 1))


def test_a_window_with_no_acquisition_is_an_error() -> None:
    with pytest.raises(CheckFailed, match="no acquisition"):
        Record(2).result(Meter(None))


# --- the drivers, on in-process locks ---------------------------------------------------------


def test_async_driver_on_a_fair_lock() -> None:
    async def main() -> dict[str, Any]:
        mutex = asyncio.Lock()  # FIFO: every acquisition after a release is a hand-off

        async def release() -> None:
            await asyncio.sleep(0.001)
            mutex.release()

        lockers = [(mutex.acquire, release) for _ in range(4)]
        return await drive_async(_spec(), lockers, asyncio.sleep, _gather)

    result = asyncio.run(main())
    assert result["ok"] and result["contenders"] == 4
    assert result["acquisitions"] == sum(result["per_contender"]) > 10
    assert len(result["handoffs_ms"]) >= result["acquisitions"] - 1
    assert all(x >= 1.0 for x in result["handoffs_ms"])  # the release takes 1 ms
    assert result["again_ms"] == []
    assert min(result["per_contender"]) > 0


async def _gather(coros: list[Any]) -> None:
    await asyncio.gather(*coros)


def test_async_driver_refuses_a_lock_that_is_not_exclusive() -> None:
    async def acquire() -> None:
        await asyncio.sleep(0.001)

    async def release() -> None:
        await asyncio.sleep(0.002)

    with pytest.raises(CheckFailed, match="held it"):
        asyncio.run(drive_async(_spec(), [(acquire, release)] * 2, asyncio.sleep, _gather))


def test_async_driver_refuses_an_acquire_that_gave_up() -> None:
    async def acquire() -> bool:
        return False

    async def release() -> None:
        pass

    with pytest.raises(CheckFailed, match="gave up"):
        asyncio.run(drive_async(_spec(), [(acquire, release)] * 2, asyncio.sleep, _gather))


def test_thread_driver_on_a_lock() -> None:
    mutex = threading.Lock()
    result = drive_threads(_spec(n=3), [(mutex.acquire, mutex.release)] * 3)
    assert result["ok"] and result["acquisitions"] > 10
    moved, again = len(result["handoffs_ms"]), len(result["again_ms"])
    assert moved + again >= result["acquisitions"] - 1


def test_thread_driver_refuses_a_lock_that_is_not_exclusive() -> None:
    def acquire() -> None:
        time.sleep(0.0005)

    with pytest.raises(CheckFailed, match="held it"):
        drive_threads(_spec(n=3), [(acquire, lambda: None)] * 3)


# --- summary and bar --------------------------------------------------------------------------


def _runs(name: str, cycles: float, p50: float, rnd: int = 1) -> list[lock.Run]:
    moved = [p50 - 0.5, p50, p50 + 0.5]
    handoff = {"acquisitions": 9, "elapsed": 1.0, "handoffs_ms": moved, "again_ms": [0.1]}
    return [
        lock.from_result(
            name, "uncontended", rnd, {"acquisitions": cycles, "elapsed": 1.0, "cpu": 0.5}
        ),
        lock.from_result(name, "handoff", rnd, {**handoff, "per_contender": [3, 6]}),
    ]


def test_from_result() -> None:
    u, h = _runs("x", 500, 2.0)
    assert u.per_s == 500 and u.client_ms == pytest.approx(1.0) and u.etcd_ms is None
    assert u.p50 is None and u.handoffs == 0
    assert h.handoffs == 3 and h.p50 == 2.0 and h.max == 2.5
    assert h.again == pytest.approx(0.25) and h.again_p50 == 0.1 and h.fairness == 0.5


def test_bar_passes() -> None:
    runs = [
        *_runs("txetcd", 900, 1.0),
        *_runs("txetcd", 1100, 1.2, rnd=2),
        *_runs(lock.SERVICE_ROW, 5000, 0.1),  # information only: never a peer
        *_runs("etcetra", 600, 1.5),
        *_runs("aetcd", 400, 3.0),
        lock.Run("aetcd", "handoff", 2, error="lock_aetcd.py handoff timed out after 90 s"),
    ]
    summary = lock.summarize(runs)
    assert summary["txetcd"]["uncontended"]["per_s"] == 1000  # median over rounds
    assert summary["aetcd"]["handoff"]["errors"] and summary["aetcd"]["handoff"]["rounds"] == 1
    v = lock.verdicts(summary)
    assert v["cycles"]["best_peer"] == "etcetra"
    assert v["cycles"]["ratio"] == pytest.approx(1000 / 600)
    assert set(v["handoff_p50"]["peers"]) == {"etcetra", "aetcd"}
    assert v["overall"] == "PASS"
    out = lock.text(summary, v, {}, {}, 8)
    assert "= 1.67x (bar >= 1.5x) PASS" in out and out.endswith("bar: PASS")
    assert "| etcetra | 600 |" in lock.markdown(summary, v, {}, {}, 8, "head")


@pytest.mark.parametrize(
    ("cycles", "p50", "failed"),
    [(800.0, 1.0, "cycles"), (1000.0, 1.5, "handoff_p50"), (1000.0, 2.0, "handoff_p50")],
)
def test_bar_fails(cycles: float, p50: float, failed: str) -> None:
    summary = lock.summarize([*_runs("txetcd", cycles, p50), *_runs("etcetra", 600, 1.5)])
    v = lock.verdicts(summary)
    assert v[failed]["verdict"] == "FAIL" and v["overall"] == "FAIL"


def test_bar_without_a_peer_or_txetcd_is_incomplete() -> None:
    assert lock.verdicts(lock.summarize(_runs("txetcd", 900, 1.0)))["overall"] == "INCOMPLETE"
    assert lock.verdicts(lock.summarize(_runs("aetcd", 900, 1.0)))["overall"] == "INCOMPLETE"
    failed = [lock.Run("txetcd", w, 1, error="boom") for w in lock.WORKLOADS]
    summary = lock.summarize([*failed, *_runs("aetcd", 900, 1.0)])
    assert lock.verdicts(summary)["overall"] == "INCOMPLETE"


# --- a tiny run against a real etcd -----------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_run_of_txetcd_rows(tmp_path: Any) -> None:
    """run.py's --suite lock, end to end for txetcd's two rows (no venv needed)."""
    args = bench_run.parse_args(
        ["--suite", "lock", "--clients", "txetcd", "--rounds", "1", "--seconds", "0.3"]
        + ["--warmup", "0.1", "--lock-contenders", "3", "--skip-setup"]
    )
    said: list[str] = []
    done = lock.run_lock(args, bench_run.prepare, said.append)
    assert done is not None
    document, md, passed = done
    assert not passed  # no peer ran: INCOMPLETE
    assert document["verdicts"]["overall"] == "INCOMPLETE"
    runs = document["runs"]
    assert {(r["client"], r["workload"]) for r in runs} == {
        (c, w) for c in ("txetcd", lock.SERVICE_ROW) for w in lock.WORKLOADS
    }
    assert all(r["error"] is None for r in runs), runs
    assert all(r["acquisitions"] > 0 for r in runs)
    for r in runs:
        if r["workload"] == "handoff":
            assert r["handoffs"] > 0 and len(r["per_contender"]) == 3
    txetcd_left = [r["leases_left"] for r in runs if r["client"] == "txetcd"]
    assert txetcd_left == [0, 0]  # every session revoked its lease
    assert "lock: uncontended acquire+release" in md
    assert not any("keys left" in line for line in said)


def test_each_row_runs_its_own_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The txetcd-service row must reach the worker as variant "service" (it measured txetcd's
    Lock while the spec lost it)."""
    from argparse import Namespace

    from harness.rounds import Ready
    from harness.workers import WorkerSpec

    seen: list[Any] = []

    def fake_run_worker(python: str, worker: str, spec: Any, **kw: Any) -> dict[str, Any]:
        seen.append(spec)
        raise RuntimeError("stop here")

    monkeypatch.setattr(lock, "run_worker", fake_run_worker)
    base = WorkerSpec(endpoint="http://127.0.0.1:1", op="cycle", seconds=0.1, warmup=0.0)
    args = Namespace(warmup=0.0, seconds=0.1)
    for name in (lock.TXETCD, lock.SERVICE_ROW):
        try:
            lock.one_run(Ready(lock.LOCK_CLIENTS[name], sys.executable), "cycle", 0, args, base)
        except Exception:
            pass
    assert [s.variant for s in seen] == [None, "service"]
