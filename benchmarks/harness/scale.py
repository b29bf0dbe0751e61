"""The scale suite: txetcd holding many watches and many kept-alive leases in one process.

``workers/txetcd_scale.py`` opens the watches (default 1,000, one per key) and keeps the leases
alive (default 10,000, TTL 30 s) on one ``Client``; once it is ready, ``workers/watch_writer.py``
touches the watched keys at a modest rate (default 500 puts/s) for the whole window. The worker
measures its own RSS and CPU share (CPU seconds / wall seconds) over a steady-state window
(default 40 s, after 3 s of settling) and checks that nothing was lost.

**The bar: at most 150 MB RSS (the peak, setup included) and under 50% of one core.**
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from harness import report
from harness.workers import WORKERS_DIR, LiveWorker, WorkerError, run_json_worker

if WORKERS_DIR not in sys.path:
    sys.path.append(WORKERS_DIR)
from _watch import WatchSpec

__all__ = ["CPU_BAR", "RSS_BAR_MB", "markdown", "run_scale", "text", "verdicts"]

RSS_BAR_MB = 150.0
CPU_BAR = 0.5
WORKER = "txetcd_scale.py"
WRITER = "watch_writer.py"


def run_scale(spec: WatchSpec, rate: float, say: Callable[[str], None]) -> dict[str, Any]:
    """One scale run; the worker's result with the writer's under ``writer`` (or WorkerError)."""
    writer_spec = replace(
        spec,
        mode="rate",
        rate=rate,
        keys=spec.watches,
        warmup=0.0,
        seconds=spec.settle + spec.seconds + 1.0,
    )
    with LiveWorker(sys.executable, WORKER, spec.to_json(), "scale") as worker:
        ready = worker.wait_ready(timeout=600)
        say(
            f"scale: {ready.get('watches')} watches and {ready.get('leases')} kept-alive leases "
            f"ready; writer at {rate:g} puts/s, window {spec.seconds:g} s"
        )
        writer = run_json_worker(
            sys.executable, WRITER, writer_spec.to_json(), timeout=writer_spec.seconds + 120
        )
        result = worker.result(timeout=spec.settle + spec.seconds + spec.timeout + 60)
    if result.get("count") != writer["count"]:
        raise WorkerError(
            f"the worker counted {result.get('count')} puts, the writer wrote {writer['count']}"
        )
    result["writer"] = {k: v for k, v in writer.items() if k != "rtt_us"}  # per-put detail
    return result


def verdicts(result: dict[str, Any], spec: WatchSpec) -> dict[str, str]:
    """PASS/FAIL for RSS and CPU; INCOMPLETE when the leases could not be part of the run."""
    peak = result["rss_mb"].get("peak")
    share = result.get("cpu_share")
    full = bool(result.get("lease_api")) and result.get("leases") == spec.leases
    out = {
        "rss": "n/a" if peak is None else ("PASS" if peak <= RSS_BAR_MB else "FAIL"),
        "cpu": "n/a" if share is None else ("PASS" if share < CPU_BAR else "FAIL"),
    }
    failed = "FAIL" in out.values()
    out["overall"] = "FAIL" if failed else ("PASS" if full else "INCOMPLETE")
    return out


def _mb(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _tables(result: dict[str, Any], spec: WatchSpec, rate: float) -> list[report.Table]:
    rss = result["rss_mb"]
    v = verdicts(result, spec)
    leases = f"{result.get('leases', 0):,}" if result.get("lease_api") else "no lease API"
    setup = [
        ["watches, one per key (and 1 on the end-marker key)", f"{spec.watches:,}"],
        ["kept-alive leases (TTL, refreshed every TTL/3)", f"{leases} (TTL {spec.ttl} s)"],
        ["writer on the watched keys", f"{rate:g} puts/s"],
        ["setup: watches created", f"{result.get('watch_setup_s', 0):.2f} s"],
    ]
    if result.get("lease_api"):
        setup.append(
            [
                f"setup: leases granted ({spec.grant_concurrency} in flight) and kept",
                f"{result.get('lease_setup_s', 0):.2f} s",
            ]
        )
    window = result.get("window_s", 0.0)
    events = result.get("window_events", 0)
    measured = [
        ["RSS at start (imports) MB", _mb(rss.get("start"))],
        ["RSS with the watches MB", _mb(rss.get("watches"))],
        ["RSS with the leases MB", _mb(rss.get("leases"))],
        ["RSS peak (VmHWM, setup included) MB", f"{_mb(rss.get('peak'))}  {v['rss']}"],
        ["RSS max in window / at end MB", f"{_mb(rss.get('window_max'))} / {_mb(rss.get('end'))}"],
        [
            "CPU share over the window (1.0 = one core)",
            f"{result.get('cpu_share', 0):.3f}  {v['cpu']}",
        ],
        [
            "window: wall s, CPU s, events",
            f"{window:.1f}, {result.get('cpu_s', 0):.2f}, {events:,}",
        ],
    ]
    if result.get("lease_api"):
        measured.append(
            [
                "leases lost / refreshed in the window",
                f"{result.get('leases_lost')} / {result.get('refreshed_in_window'):,}",
            ]
        )
    return [
        ("scale: the run", ["", "value"], setup),
        (
            f"scale: txetcd in one process over a {spec.seconds:g} s window "
            f"(bar: <= {RSS_BAR_MB:g} MB RSS, < {CPU_BAR:.0%} of one core)",
            ["figure", "value"],
            measured,
        ),
    ]


def verdict_line(result: dict[str, Any], spec: WatchSpec) -> str:
    v = verdicts(result, spec)
    line = (
        f"bar (<= {RSS_BAR_MB:g} MB peak RSS and < {CPU_BAR:.0%} of one core, "
        f"{spec.watches:,} watches + {spec.leases:,} leases): {v['overall']}  "
        f"[RSS {v['rss']}, CPU {v['cpu']}]"
    )
    if v["overall"] == "INCOMPLETE":
        line += " - this txetcd has no client.grant/keepalive: watches only"
    return line


def text(result: dict[str, Any], spec: WatchSpec, rate: float) -> str:
    out = report.text_tables(_tables(result, spec, rate))
    out.append("checks: " + "; ".join(result.get("checks", [])))
    out.append(verdict_line(result, spec))
    return "\n".join(out)


def markdown(result: dict[str, Any], spec: WatchSpec, rate: float, preamble: str = "") -> str:
    out: list[str] = [preamble.rstrip(), ""] if preamble else []
    out.extend(report.markdown_tables(_tables(result, spec, rate)))
    out.extend(["checks: " + "; ".join(result.get("checks", [])), ""])
    out.extend([verdict_line(result, spec), ""])
    return "\n".join(out)
