"""The watch suite: put-to-callback latency and delivered events/s, every client on one etcd.

Each run is three processes: the client's watcher (``workers/<client>_watch.py``, in its venv),
the writer (``workers/watch_writer.py``: txetcd, the same for every client), and etcd. The
watcher watches the prefix and proves the watch live; then the writer writes; the watcher
checks that every put arrived exactly once and reports what it measured (protocol in
``workers/_watch.py``). Two workloads:

- ``latency``: the writer puts one at a time at a fixed rate (default 200 puts/s); per event,
  the time from the put being issued to the client handing the event over. **The bar: txetcd's
  p50 <= the best peer's p50, measured side by side in one run.**
- ``throughput``: the writer puts as fast as it can with N in flight (default 32); events/s
  delivered to the watcher (measured events / from the first measured put being issued to the
  last event arriving), and the latency under that load.

Rounds interleave like the key-value suite: round by round, workload by workload, every client
in turn, the order rotating each round; every figure is the median over rounds.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import report
from harness.rounds import Ready
from harness.workers import WORKERS_DIR, LiveWorker, WorkerError, run_json_worker

if WORKERS_DIR not in sys.path:
    sys.path.append(WORKERS_DIR)
from _watch import WatchSpec  # the workers' spec, so that both sides agree on it

__all__ = [
    "WORKLOADS",
    "WatchBench",
    "WatchSample",
    "WatchSpec",
    "compare",
    "markdown",
    "medians",
    "run_watch_rounds",
    "text",
]

WRITER = "watch_writer.py"

WORKLOADS = ("latency", "throughput")

# per workload: (metric, column heading), in table order
_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "latency": (
        ("p50", "p50 ms"),
        ("p90", "p90 ms"),
        ("p99", "p99 ms"),
        ("max", "max ms"),
        ("writer_put_p50", "writer put p50 ms"),
        ("after_answer_p50", "after answer p50 ms"),
        ("after_answer_p99", "after answer p99 ms"),
        ("cpu_ms", "client CPU ms/event"),
    ),
    "throughput": (
        ("events_per_s", "events/s"),
        ("writer_puts_per_s", "writer puts/s"),
        ("p50", "p50 ms"),
        ("p99", "p99 ms"),
        ("lag_ms", "lag at end ms"),
        ("cpu_ms", "client CPU ms/event"),
    ),
}


@dataclass(frozen=True)
class WatchSample:
    """One watch run: what the watcher measured and what the writer achieved."""

    client: str
    workload: str
    round: int
    values: dict[str, float | None]
    events: int
    revisions: str


@dataclass
class WatchBench:
    """What every watch run needs: the clients, the spec to start from, the results so far."""

    ready: Sequence[Ready]
    base: WatchSpec
    concurrency: int
    rate: float
    samples: list[WatchSample] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def spec(self, workload: str) -> WatchSpec:
        if workload == "latency":
            return replace(self.base, mode="rate", rate=self.rate)
        return replace(self.base, mode="flood", concurrency=self.concurrency)

    def describe(self, workload: str) -> str:
        b = self.base
        timed = f"{b.seconds:g} s after {b.warmup:g} s warm-up"
        if workload == "latency":
            return f"writer: 1 put at a time at {self.rate:g} puts/s, {timed}"
        return f"writer: {self.concurrency} puts in flight, as fast as they go, {timed}"


def run_watch_rounds(
    bench: WatchBench,
    rounds: int,
    say: Callable[[str], None],
    check_server: Callable[[str], None],
) -> None:
    """Round by round, workload by workload, every client in turn (rotating each round)."""
    names = [r.name for r in bench.ready]
    for rnd in range(1, rounds + 1):
        shift = (rnd - 1) % max(1, len(names))
        order = names[shift:] + names[:shift]
        for workload in WORKLOADS:
            for name in order:
                r = next(r for r in bench.ready if r.name == name)
                sample = measure(bench, r, workload, rnd, say)
                if sample is not None:
                    bench.samples.append(sample)
                check_server(f"watch {workload} of {name}")


def measure(
    bench: WatchBench, r: Ready, workload: str, rnd: int, say: Callable[[str], None]
) -> WatchSample | None:
    """One watcher and one writer run; a sample, or None (the failure is in ``bench.errors``)."""
    head = f"round {rnd}  watch {workload:<10} {r.name:<10}"
    spec = bench.spec(workload)
    watcher_spec = replace(spec, timeout=spec.warmup + spec.seconds + 60)
    assert r.client.watch_worker is not None
    try:
        with LiveWorker(r.python, r.client.watch_worker, watcher_spec.to_json(), workload) as w:
            w.wait_ready(timeout=90)
            writer = run_json_worker(
                sys.executable,
                WRITER,
                spec.to_json(),
                timeout=spec.warmup + spec.seconds + 90,
                what=workload,
            )
            result = w.result(timeout=watcher_spec.timeout + 30)
        if result.get("count") != writer["count"]:
            raise WorkerError(
                f"the watcher saw an end marker for {result.get('count')} puts, "
                f"the writer wrote {writer['count']}"
            )
    except WorkerError as e:
        bench.errors.append({"round": rnd, "workload": workload, "client": r.name, "error": str(e)})
        say(f"{head} ERROR {str(e).splitlines()[0]}")
        return None
    latency = result.get("latency_ms", {})
    values: dict[str, float | None] = {
        "p50": latency.get("p50"),
        "p90": latency.get("p90"),
        "p99": latency.get("p99"),
        "max": latency.get("max"),
        "events_per_s": result.get("events_per_s"),
        "lag_ms": result.get("lag_ms"),
        "cpu_ms": result.get("cpu_ms_per_event"),
        "writer_puts_per_s": writer.get("puts_per_s"),
        "writer_put_p50": writer.get("put_ms", {}).get("p50"),
        **_after_answer(result.get("latency_us"), writer.get("rtt_us")),
    }
    sample = WatchSample(
        r.name, workload, rnd, values, int(result["events"]), str(result["revisions"])
    )
    say(
        f"{head} {_num(values['events_per_s']):>7} ev/s  p50 {_ms(values['p50'])}"
        f"  p99 {_ms(values['p99'])} ms  CPU {_ms(values['cpu_ms'])} ms/ev"
        f"  writer {_num(values['writer_puts_per_s'])} puts/s"
        f"  {sample.events} events exactly once (revisions {sample.revisions})"
    )
    return sample


def _after_answer(latency_us: list[int] | None, rtt_us: list[int] | None) -> dict[str, float]:
    """Per put: event arrival minus the writer's put answer (both from the put being issued).

    etcd answers the put and sends the watch event at about the same time, so this is the
    client's own delivery path with the writer's round trip (and its noise) taken out. It can be
    negative: the event may overtake the answer.
    """
    if not latency_us or not rtt_us or len(latency_us) != len(rtt_us):
        return {}
    deltas = sorted(
        (lat - rtt) / 1000.0 for lat, rtt in zip(latency_us, rtt_us, strict=False) if lat >= 0
    )
    if not deltas:
        return {}
    n = len(deltas)
    return {
        "after_answer_p50": deltas[(n - 1) // 2],
        "after_answer_p99": deltas[min(n - 1, -(-n * 99 // 100) - 1)],
    }


# --- medians, the bar, tables -----------------------------------------------------------------


def medians(samples: Sequence[WatchSample]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per client and workload: the median over rounds of every value (and ``rounds``)."""
    grouped: dict[str, dict[str, list[WatchSample]]] = {}
    for s in samples:
        grouped.setdefault(s.client, {}).setdefault(s.workload, []).append(s)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for client, by_workload in grouped.items():
        for workload, runs in by_workload.items():
            stat: dict[str, float | None] = {"rounds": float(len(runs))}
            for key in dict.fromkeys(k for s in runs for k in s.values):
                present = [v for s in runs if (v := s.values.get(key)) is not None]
                stat[key] = statistics.median(present) if present else None
            out.setdefault(client, {})[workload] = stat
    return out


# (label, workload, metric, lower is better, in the bar)
_COMPARED = (
    ("latency p50", "latency", "p50", True, True),
    ("latency p99", "latency", "p99", True, False),
    ("latency after put answer p50", "latency", "after_answer_p50", True, False),
    ("latency client CPU/event", "latency", "cpu_ms", True, False),
    ("throughput events/s", "throughput", "events_per_s", False, False),
    ("throughput p50", "throughput", "p50", True, False),
    ("throughput client CPU/event", "throughput", "cpu_ms", True, False),
)


def compare(
    meds: dict[str, dict[str, dict[str, float | None]]], infos: Sequence[report.ClientInfo]
) -> list[dict[str, Any]]:
    """txetcd against the best peer on each compared figure; only latency p50 is the bar."""
    rows: list[dict[str, Any]] = []
    peers = [i.name for i in infos if i.kind == "peer"]
    for label, workload, metric, lower, in_bar in _COMPARED:
        ours = meds.get("txetcd", {}).get(workload, {}).get(metric)
        best: str | None = None
        best_value: float | None = None
        for name in peers:
            value = meds.get(name, {}).get(workload, {}).get(metric)
            if value is None:
                continue
            if best_value is None or (value < best_value if lower else value > best_value):
                best, best_value = name, value
        ratio = None
        if ours is not None and best_value is not None and ours > 0 and best_value > 0:
            ratio = ours / best_value
        verdict = None
        if in_bar and ours is not None and best_value is not None:
            verdict = "PASS" if ours <= best_value else "FAIL"
        rows.append(
            {
                "figure": label,
                "workload": workload,
                "metric": metric,
                "lower_is_better": lower,
                "in_bar": in_bar,
                "txetcd": ours,
                "best_peer": best,
                "best_peer_value": best_value,
                "ratio": ratio,
                "verdict": verdict,
            }
        )
    return rows


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.2f}" if v < 100 else f"{v:,.0f}")


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _fmt(metric: str, v: float | None) -> str:
    if metric in ("events_per_s", "writer_puts_per_s"):
        return _num(v)
    if metric == "cpu_ms":
        return "–" if v is None else f"{v:.3f}"
    return _ms(v)


def _tables(
    bench: WatchBench,
    meds: dict[str, dict[str, dict[str, float | None]]],
    infos: Sequence[report.ClientInfo],
    comparison: Sequence[dict[str, Any]],
) -> list[report.Table]:
    tables: list[report.Table] = []
    for workload in WORKLOADS:
        metrics = _METRICS[workload]
        heads = ["client", *(h for _, h in metrics), "rounds"]
        rows = []
        for info in infos:
            stat = meds.get(info.name, {}).get(workload, {})
            rounds = stat.get("rounds")
            rows.append(
                [info.label]
                + [_fmt(m, stat.get(m)) for m, _ in metrics]
                + ["–" if rounds is None else f"{rounds:.0f}"]
            )
        what = "put issued -> event handed over" if workload == "latency" else "delivered"
        tables.append(
            (f"watch {workload} ({what}; {bench.describe(workload)}; medians)", heads, rows)
        )
    rows = []
    for c in comparison:
        better = "lower" if c["lower_is_better"] else "higher"
        verdict = c["verdict"] or ("n/a" if c["in_bar"] else "(info)")
        rows.append(
            [
                c["figure"] + (" (bar)" if c["in_bar"] else ""),
                _fmt(c["metric"], c["txetcd"]),
                f"{c['best_peer'] or '–'} {_fmt(c['metric'], c['best_peer_value'])}",
                "–" if c["ratio"] is None else f"{c['ratio']:.2f}x",
                better,
                verdict,
            ]
        )
    tables.append(
        (
            "txetcd / best peer (bar: latency p50 <= the best peer's)",
            ["figure", "txetcd", "best peer", "ratio", "better", "verdict"],
            rows,
        )
    )
    return tables


def verdict_line(comparison: Sequence[dict[str, Any]]) -> str:
    """``bar (...): PASS|FAIL|INCOMPLETE [...]``."""
    bar = [c for c in comparison if c["in_bar"]]
    if not bar or any(c["verdict"] is None for c in bar):
        return "bar (txetcd watch p50 <= the best peer's p50): INCOMPLETE (a figure is missing)"
    c = bar[0]
    return (
        f"bar (txetcd watch p50 <= the best peer's p50): {c['verdict']}  "
        f"[txetcd {_ms(c['txetcd'])} ms, {c['best_peer']} {_ms(c['best_peer_value'])} ms]"
    )


_FOOTNOTE = (
    "Every event is checked: each put arrived exactly once (sequence numbers; revisions "
    "contiguous where the client exposes them, i.e. all but etcetra); a failed check is an error, "
    "not a number. Latency includes the writer's put round trip (same writer for every client)."
)


def text(
    bench: WatchBench,
    meds: dict[str, dict[str, dict[str, float | None]]],
    infos: Sequence[report.ClientInfo],
    comparison: Sequence[dict[str, Any]],
) -> str:
    """The plain-text tables and the verdict line."""
    out = report.text_tables(_tables(bench, meds, infos, comparison))
    out.append(_FOOTNOTE)
    out.append(verdict_line(comparison))
    return "\n".join(out)


def markdown(
    bench: WatchBench,
    meds: dict[str, dict[str, dict[str, float | None]]],
    infos: Sequence[report.ClientInfo],
    comparison: Sequence[dict[str, Any]],
    preamble: str = "",
) -> str:
    """The same as Markdown."""
    out: list[str] = [preamble.rstrip(), ""] if preamble else []
    out.extend(report.markdown_tables(_tables(bench, meds, infos, comparison)))
    out.extend([_FOOTNOTE, "", verdict_line(comparison), ""])
    return "\n".join(out)
