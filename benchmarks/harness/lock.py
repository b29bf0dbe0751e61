"""The lock suite: txetcd's Lock against the peers' locks on one etcd, in interleaved rounds.

Two workloads per client, each in a fresh worker process (``workers/lock_<client>.py`` on
``workers/_lock.py``):

- ``uncontended``: one lock object acquires and releases as fast as it can: cycles/s, client and
  etcd CPU per cycle;
- ``handoff``: ``--lock-contenders`` (8) lock objects of one client in one process loop on the
  same lock; a hand-off is the time from one holder sending its release to the next holder's
  acquisition firing (one monotonic clock); p50/p99 of those where the lock went to another
  contender, and apart from them the share of acquisitions where the releaser got the lock back
  first (unfair locks let it).

After each run the harness lists the leases the run left in etcd (through the JSON gateway),
reports their number and revokes them, so that one client's leftovers never cost the next
client's run. The bar: txetcd's uncontended cycles/s >= 1.5x the best peer's, and its hand-off
p50 lower than every peer's (medians over rounds).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from harness import report
from harness.clients import CLIENTS, TXETCD, ClientDef, select
from harness.documents import common_meta, git_commit, label
from harness.etcd import etcd_for
from harness.failover import percentile
from harness.rounds import Ready
from harness.workers import WorkerError, WorkerSpec, run_worker

__all__ = [
    "CYCLES_BAR",
    "LOCK_CLIENTS",
    "NO_LOCK",
    "SERVICE_ROW",
    "WORKLOADS",
    "Run",
    "from_result",
    "run_lock",
    "summarize",
    "verdicts",
]

CYCLES_BAR = 1.5
"""txetcd's uncontended cycles/s must be at least this many times the best peer's."""

WORKLOADS = ("uncontended", "handoff")

_LOCK_NOTES = {
    TXETCD: (
        "lock_txetcd.py",
        "txetcd.concurrency.Lock, one Session each, on one Client: fair queue, fenced release",
    ),
    "etcetra": (
        "lock_etcetra.py",
        "EtcdLockManager on one channel: etcd's own lock service (queue inside etcd)",
    ),
    "aetcd": (
        "lock_aetcd.py",
        "client.lock(name, ttl): a lease and a put-if-absent txn per attempt; no queue",
    ),
    "etcd3aio": (
        "lock_etcd3aio.py",
        "client.lock(name, ttl=...): lease, put, list; waits on the key ahead",
    ),
    "python3-etcd3": (
        "lock_python3_etcd3.py",
        "client.lock(name, ttl): as aetcd's, blocking; one thread per contender",
    ),
}

SERVICE_ROW = "txetcd-service"
"""etcd's own lock service called through txetcd (information: not txetcd's Lock, not a peer)."""

LOCK_CLIENTS: dict[str, ClientDef] = {
    name: replace(CLIENTS[name], worker=worker, note=note, ops=WORKLOADS, watch_worker=None)
    for name, (worker, note) in _LOCK_NOTES.items()
}
LOCK_CLIENTS = {
    TXETCD: LOCK_CLIENTS[TXETCD],
    SERVICE_ROW: replace(
        LOCK_CLIENTS[TXETCD],
        name=SERVICE_ROW,
        variant="service",
        note="client.lock(name, session) / client.unlock(key): etcd's lock service, as etcetra's "
        "row, through txetcd (information: not in the bar)",
    ),
    **{n: c for n, c in LOCK_CLIENTS.items() if n != TXETCD},
}
"""The rows: txetcd's Lock, etcd's lock service through txetcd, and the peers with a lock, in
their kv venvs (the same pins)."""

TXETCD_ROWS = (TXETCD, SERVICE_ROW)

NO_LOCK: dict[str, str] = {
    "etcd-sdk-python": "etcd-sdk-python 0.0.7's Lock is python3-etcd3's code (pyetcd is a fork): "
    "the python3-etcd3 row stands for it",
}
"""Peers of the kv suite left out of this one, and why."""


@dataclass
class Run:
    """One client's run of one workload in one round (times in ms)."""

    client: str
    workload: str
    round: int
    error: str | None = None
    acquisitions: int = 0
    per_s: float = 0.0
    client_ms: float | None = None
    etcd_ms: float | None = None
    handoffs: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    again: float | None = None
    again_p50: float | None = None
    fairness: float | None = None
    leases_left: int | None = None
    per_contender: list[int] = field(default_factory=list)


def from_result(client: str, workload: str, rnd: int, result: Mapping[str, Any]) -> Run:
    """A :class:`Run` from a worker's result line."""
    n = int(result["acquisitions"])
    elapsed = float(result["elapsed"]) or 1.0
    moved = [float(x) for x in result.get("handoffs_ms", ())]
    again = [float(x) for x in result.get("again_ms", ())]
    per = [int(x) for x in result.get("per_contender", ())]
    cpu, etcd = result.get("cpu"), result.get("etcd_cpu")
    return Run(
        client,
        workload,
        rnd,
        acquisitions=n,
        per_s=n / elapsed,
        client_ms=1000.0 * float(cpu) / n if cpu is not None and n else None,
        etcd_ms=1000.0 * float(etcd) / n if etcd is not None and n else None,
        handoffs=len(moved),
        p50=percentile(moved, 0.5),
        p90=percentile(moved, 0.9),
        p99=percentile(moved, 0.99),
        max=max(moved) if moved else None,
        again=len(again) / (len(again) + len(moved)) if again or moved else None,
        again_p50=percentile(again, 0.5),
        fairness=min(per) / max(per) if len(per) > 1 and max(per) else None,
        per_contender=per,
    )


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


_FIGURES = ("per_s", "client_ms", "etcd_ms", "p50", "p90", "p99", "max", "again", "again_p50")


def summarize(runs: Sequence[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """client -> workload -> the median over rounds of each figure, the runs that failed, and
    the most leases a run left behind."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        out.setdefault(r.client, {}).setdefault(r.workload, {})
    for name, workloads in out.items():
        for workload in workloads:
            mine = [r for r in runs if r.client == name and r.workload == workload]
            ok = [r for r in mine if r.error is None]
            stat: dict[str, Any] = {f: _median([getattr(r, f) for r in ok]) for f in _FIGURES}
            left = [r.leases_left for r in mine if r.leases_left is not None]
            stat["fairness"] = min((r.fairness for r in ok if r.fairness is not None), default=None)
            stat["leases_left"] = max(left) if left else None
            stat["rounds"] = len(ok)
            stat["errors"] = [r.error for r in mine if r.error is not None]
            workloads[workload] = stat
    return out


def verdicts(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The bar: txetcd's cycles/s >= :data:`CYCLES_BAR` x the best peer's, and its hand-off p50
    below every peer's. ``overall`` is PASS, FAIL or INCOMPLETE (a txetcd figure is missing, or
    no peer has one)."""

    def figure(name: str, workload: str, key: str) -> float | None:
        value: float | None = summary.get(name, {}).get(workload, {}).get(key)
        return value

    peers = [n for n in summary if n not in TXETCD_ROWS]
    cycles: dict[str, float] = {}
    handoff: dict[str, float] = {}
    for n in peers:
        c, h = figure(n, "uncontended", "per_s"), figure(n, "handoff", "p50")
        if c is not None:
            cycles[n] = c
        if h is not None:
            handoff[n] = h
    ours_cycles = figure(TXETCD, "uncontended", "per_s")
    ours_p50 = figure(TXETCD, "handoff", "p50")
    best = max(cycles, key=lambda n: cycles[n]) if cycles else None
    ratio = ours_cycles / cycles[best] if ours_cycles is not None and best else None
    cycles_verdict = None if ratio is None else "PASS" if ratio >= CYCLES_BAR else "FAIL"
    p50_ratios: dict[str, float] = {}
    handoff_verdict = None
    if ours_p50 is not None and handoff:
        p50_ratios = {n: ours_p50 / v for n, v in handoff.items() if v > 0}
        handoff_verdict = "PASS" if all(ours_p50 < v for v in handoff.values()) else "FAIL"
    checks = [cycles_verdict, handoff_verdict]
    if None in checks:
        overall = "INCOMPLETE"
    else:
        overall = "PASS" if all(c == "PASS" for c in checks) else "FAIL"
    return {
        "cycles": {
            "txetcd": ours_cycles,
            "best_peer": best,
            "best_peer_value": cycles.get(best) if best else None,
            "ratio": ratio,
            "minimum": CYCLES_BAR,
            "verdict": cycles_verdict,
        },
        "handoff_p50": {
            "txetcd": ours_p50,
            "peers": handoff,
            "ratios": p50_ratios,
            "verdict": handoff_verdict,
        },
        "overall": overall,
    }


# --- leases left behind -----------------------------------------------------------------------


def _post(endpoint: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    host, _, port = endpoint.split("://", 1)[-1].rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, json.dumps(body))
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return answer


def clear_leases(endpoint: str) -> int:
    """Revoke every lease etcd holds (through the JSON gateway); how many there were."""
    ids = [int(x["ID"]) for x in _post(endpoint, "/v3/lease/leases", {}).get("leases", [])]

    def revoke(lease: int) -> None:
        _post(endpoint, "/v3/lease/revoke", {"ID": str(lease)})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(revoke, ids))
    return len(ids)


def count_keys(endpoint: str) -> int:
    """How many keys etcd holds (all of them: the suite's etcd is its own)."""
    zero = base64.b64encode(b"\0").decode()
    body = {"key": zero, "range_end": zero, "count_only": True}
    return int(_post(endpoint, "/v3/kv/range", body).get("count", 0))


# --- one run ----------------------------------------------------------------------------------


def one_run(r: Ready, workload: str, rnd: int, args: argparse.Namespace, base: WorkerSpec) -> Run:
    """Run one client's workload in a fresh worker; then count and revoke the leases it left."""
    spec = replace(
        base,
        op=workload,
        prefix=f"lockbench/{r.name}/{rnd}/{workload}",
        variant=r.client.variant,
    )
    timeout = args.warmup + args.seconds + 90
    try:
        result = run_worker(r.python, r.client.worker, spec, timeout=timeout, tree=r.client.tree)
        run = from_result(r.name, workload, rnd, result)
    except WorkerError as e:
        run = Run(r.name, workload, rnd, error=str(e))
    try:
        run.leases_left = clear_leases(base.endpoint)
    except (OSError, ValueError, http.client.HTTPException) as e:
        run.error = run.error or f"could not list or revoke the leases left: {e}"
    return run


def _line(run: Run) -> str:
    if run.error is not None:
        return f"ERROR {run.error.splitlines()[0]}"
    left = f"; {run.leases_left} leases left" if run.leases_left else ""
    if run.workload == "uncontended":
        cpu = "" if run.client_ms is None else f" ({run.client_ms:.3f} ms client CPU per cycle)"
        return f"{run.per_s:,.0f} cycles/s{cpu}{left}"
    again = "" if run.again is None else f", {run.again:.0%} back to the releaser"
    return (
        f"hand-off p50 {report.fmt_ms(run.p50)} ms, p99 {report.fmt_ms(run.p99)} ms "
        f"({run.handoffs} hand-offs{again}); {run.per_s:,.0f} acquisitions/s{left}"
    )


# --- the suite --------------------------------------------------------------------------------

Prepare = Callable[[Sequence[ClientDef], argparse.Namespace, dict[str, str]], list[Ready]]


def run_lock(
    args: argparse.Namespace, prepare: Prepare, say: Callable[[str], None]
) -> tuple[dict[str, Any], str, bool] | None:
    """Run the suite; its JSON document, Markdown and whether the bar passed (``None``: nothing
    to run). ``prepare`` is ``run.py``'s (venvs and versions)."""
    contenders = args.lock_contenders
    skipped = dict(NO_LOCK)
    names = [n.strip() for n in args.clients.split(",") if n.strip()]
    for name, why in NO_LOCK.items():
        if not names or name in names:
            say(f"lock: skip {name}: {why}")
    if TXETCD in names and SERVICE_ROW not in names:
        names.append(SERVICE_ROW)
    extra = tuple(n for n in names if n not in LOCK_CLIENTS)
    ready = prepare(select(",".join(names), extra=extra, clients=LOCK_CLIENTS), args, skipped)
    if args.baseline_tree is not None:
        say("lock: no baseline row (--baseline adds one to the kv, v2 and gateway suites)")
    if not ready:
        say("lock: nothing to run")
        return None
    per_run = args.warmup + args.seconds + 2.5
    minutes = args.rounds * len(ready) * len(WORKLOADS) * per_run / 60
    say(
        f"lock: {len(ready)} clients x {len(WORKLOADS)} workloads ({contenders} contenders for "
        f"hand-offs), {args.rounds} rounds: about {minutes:.1f} min"
    )
    runs: list[Run] = []
    with etcd_for("lock", say) as (server, check_server, etcd_version):
        base = WorkerSpec(
            endpoint=server.endpoint,
            op="uncontended",
            concurrency=contenders,
            seconds=args.seconds,
            warmup=args.warmup,
            etcd_pid=server.pid,
        )
        for rnd in range(1, args.rounds + 1):
            shift = (rnd - 1) % len(ready)
            order = [*ready[shift:], *ready[:shift]]
            for workload in WORKLOADS:
                for r in order:
                    run = one_run(r, workload, rnd, args, base)
                    runs.append(run)
                    say(f"round {rnd}  {workload:<11}  {r.name:<14} {_line(run)}")
                    check_server(f"the {workload} run of {r.name}")
            keys = count_keys(server.endpoint)
            if keys:
                say(f"round {rnd}: {keys} keys left in etcd with every lease revoked")
    summary = summarize(runs)
    v = verdicts(summary)
    labels = {r.name: _label(r) for r in ready}
    notes = {r.name: r.client.note for r in ready}
    say("")
    say(text(summary, v, labels, notes, contenders))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    meta = {
        **common_meta(args, etcd_version),
        "seconds": args.seconds,
        "contenders": contenders,
        "bar": f"txetcd uncontended cycles/s >= {CYCLES_BAR:g}x the best peer's; txetcd hand-off "
        "p50 < every peer's",
    }
    head = (
        f"{etcd_version}, single member on loopback; {meta['cpus']} CPUs; {contenders} "
        f"contenders for hand-offs; medians of {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s; txetcd {meta['txetcd_commit']}; {meta['date']}."
    )
    document = {
        "meta": meta,
        "clients": {
            r.name: {"label": labels[r.name], "versions": r.versions, "note": r.client.note}
            for r in ready
        },
        "skipped": skipped,
        "runs": [r.__dict__ for r in runs],
        "summary": summary,
        "verdicts": v,
    }
    md = markdown(summary, v, labels, notes, contenders, head)
    return document, md, v["overall"] == "PASS"


# --- the report -------------------------------------------------------------------------------


def _label(r: Ready) -> str:
    if r.name == SERVICE_ROW:
        return f"{SERVICE_ROW} ({git_commit()})"
    return label(r)


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _table(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    labels: Mapping[str, str],
    contenders: int,
) -> report.Table:
    heads = [
        "client",
        "cycles/s",
        "client ms/cycle",
        "etcd ms/cycle",
        "hand-off p50 ms",
        "p90 ms",
        "p99 ms",
        "acquisitions/s",
        "back to releaser",
        "fairness",
        "leases left",
    ]
    rows = []
    for name, workloads in summary.items():
        u, h = workloads.get("uncontended", {}), workloads.get("handoff", {})
        left = [w["leases_left"] for w in (u, h) if w.get("leases_left") is not None]
        errors = [e for w in (u, h) for e in w.get("errors", [])]
        row = [
            labels.get(name, name) + (" (errors)" if errors else ""),
            _num(u.get("per_s"), ",.0f"),
            _num(u.get("client_ms"), ".3f"),
            _num(u.get("etcd_ms"), ".3f"),
            report.fmt_ms(h.get("p50")),
            report.fmt_ms(h.get("p90")),
            report.fmt_ms(h.get("p99")),
            _num(h.get("per_s"), ",.0f"),
            "–" if h.get("again") is None else f"{h['again']:.0%}",
            _num(h.get("fairness"), ".2f"),
            str(max(left)) if left else "–",
        ]
        rows.append(row)
    title = (
        f"lock: uncontended acquire+release, and hand-offs among {contenders} contenders "
        "(medians over rounds)"
    )
    return (title, heads, rows)


def _verdict_lines(v: Mapping[str, Any]) -> list[str]:
    c, h = v["cycles"], v["handoff_p50"]
    if c["ratio"] is None:
        cycles = "cycles/s: n/a"
    else:
        cycles = (
            f"cycles/s: txetcd {c['txetcd']:,.0f} / {c['best_peer']} {c['best_peer_value']:,.0f} "
            f"= {c['ratio']:.2f}x (bar >= {c['minimum']:g}x) {c['verdict']}"
        )
    if h["verdict"] is None:
        handoff = "hand-off p50: n/a"
    else:
        peers = ", ".join(f"{n} {report.fmt_ms(x)}" for n, x in sorted(h["peers"].items()))
        handoff = (
            f"hand-off p50: txetcd {report.fmt_ms(h['txetcd'])} ms vs {peers} (bar: lower than "
            f"every peer) {h['verdict']}"
        )
    return [cycles, handoff, f"bar: {v['overall']}"]


_EXPLAIN = (
    "cycles/s: one lock object, acquire then release at once, in a loop. Hand-off: from the "
    "holder sending its release to another contender's acquisition firing (one clock in one "
    "process). back to releaser: share of acquisitions where the releaser got the lock again "
    "before any waiter (not hand-offs). fairness: fewest / most acquisitions of one contender "
    "(1.00 = equal turns). leases left: leases in etcd after a run (revoked by the harness)."
)


def text(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    v: Mapping[str, Any],
    labels: Mapping[str, str],
    notes: Mapping[str, str],
    contenders: int,
) -> str:
    """The table, the notes and the verdict lines, as plain text."""
    out = report.text_tables([_table(summary, labels, contenders)])
    out.extend(f"  {labels.get(n, n)}: {note}" for n, note in notes.items())
    out.extend(["", _EXPLAIN, "", *_verdict_lines(v)])
    return "\n".join(out)


def markdown(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    v: Mapping[str, Any],
    labels: Mapping[str, str],
    notes: Mapping[str, str],
    contenders: int,
    head: str,
) -> str:
    """The table, the notes and the verdict lines, as Markdown under ``head``."""
    out = [head, "", *report.markdown_tables([_table(summary, labels, contenders)])]
    out.extend(f"- {labels.get(n, n)}: {note}" for n, note in notes.items())
    out.extend(["", _EXPLAIN, ""])
    out.extend(f"- {line}" for line in _verdict_lines(v))
    out.append("")
    return "\n".join(out)
