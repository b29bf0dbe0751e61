"""The failover suite: a 3-member cluster whose leader is SIGKILLed under load, client by client.

Each client (in its own worker process, given all three endpoints) keeps ``--failover-writers``
writers and ``--failover-readers`` readers running (``workers/_failover.py``) while the harness
kills the leader ``--failover-kills`` times (each time: find the leader, SIGKILL it, keep it down
``--failover-down`` seconds, start it again with its data and wait until it is healthy). Then it
stops the worker and checks the cluster itself, over the JSON gateway of a running member: every
acknowledged write must be there (else *lost*), and each key holds one put (version > 1: a
*duplicate*). Every worker is bounded in time: one that does not answer is killed and reported.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import report
from harness.clients import TXETCD, ClientDef, select
from harness.documents import client_documents, common_meta, first_line
from harness.etcd import REPO
from harness.rounds import Ready
from harness.workers import LiveWorker, WorkerError

__all__ = [
    "FAILOVER_CLIENTS",
    "NO_MULTI_ENDPOINT",
    "Run",
    "percentile",
    "run_failover",
    "summarize",
    "verdicts",
]

GATEWAY_ROW = "txetcd-gateway"

FAILOVER_CLIENTS: dict[str, ClientDef] = {
    c.name: c
    for c in (
        ClientDef(
            TXETCD,
            "failover_txetcd.py",
            None,
            variant="grpc",
            note="Client(every endpoint): gRPC, one connection, endpoint failover",
        ),
        ClientDef(
            GATEWAY_ROW,
            "failover_txetcd.py",
            None,
            variant="gateway",
            note="Client(every endpoint, transport='gateway')",
        ),
        ClientDef(
            "python3-etcd3",
            "failover_python3_etcd3.py",
            "python3-etcd3",
            ("python3-etcd3==0.13.0",),
            note="MultiEndpointEtcd3Client(failover=True); threads",
        ),
        ClientDef(
            "etcd3aio",
            "failover_etcd3aio.py",
            "etcd3aio",
            ("etcd3aio==0.3.0",),
            note="Etcd3Client([every endpoint]): grpc round-robin, 3 attempts",
        ),
    )
}
"""The rows: txetcd over both transports and the peers that take several endpoints."""

NO_MULTI_ENDPOINT: dict[str, str] = {
    "aetcd": "aetcd 1.0.0 takes one host and port (Client(host, port)): no multi-endpoint client",
    "etcetra": "etcetra 0.1.19 takes one HostPortPair: no multi-endpoint client",
}
"""Peers of the kv suite that cannot be given several endpoints (reported, not run)."""

TXETCD_ROWS = (TXETCD, GATEWAY_ROW)


@dataclass
class Run:
    """One client's run: what its worker said and what the cluster holds afterwards."""

    client: str
    round: int
    error: str | None = None
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    applied_unacked: int = 0
    writes_per_s: float = 0.0
    reads_per_s: float = 0.0
    failed: dict[str, int] = field(default_factory=dict)
    recoveries: list[float | None] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; ``None`` for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Per client over its rounds: totals, pooled recovery p50/p95, median rates, survival.

    A client *survived* when every run finished (no crash, no hang) and every kill was followed
    by an acknowledged write before the next one.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r.client for r in runs):
        mine = [r for r in runs if r.client == name]
        ok = [r for r in mine if r.error is None]
        rec = [x for r in ok for x in r.recoveries]
        times = [x for x in rec if x is not None]
        failed: dict[str, int] = {}
        for r in ok:
            for k, v in r.failed.items():
                failed[k] = failed.get(k, 0) + v
        out[name] = {
            "runs": len(mine),
            "errors": [r.error for r in mine if r.error is not None],
            "acked": sum(r.acked for r in ok),
            "lost": sum(r.lost for r in ok),
            "duplicates": sum(r.duplicates for r in ok),
            "applied_unacked": sum(r.applied_unacked for r in ok),
            "kills": len(rec),
            "unrecovered": len(rec) - len(times),
            "recovery_p50": percentile(times, 0.5),
            "recovery_p95": percentile(times, 0.95),
            "writes_per_s": statistics.median([r.writes_per_s for r in ok]) if ok else None,
            "reads_per_s": statistics.median([r.reads_per_s for r in ok]) if ok else None,
            "failed": failed,
            "survived": bool(mine)
            and len(ok) == len(mine)
            and bool(rec)
            and len(times) == len(rec),
        }
    return out


def verdicts(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The bar for each txetcd row: nothing lost, nothing duplicated, recovery p95 below every
    surviving peer's. ``overall``: PASS, FAIL, or INCOMPLETE (no txetcd row finished)."""
    peers = {n: s for n, s in summary.items() if n not in TXETCD_ROWS and s["survived"]}
    rows: dict[str, Any] = {}
    for name in TXETCD_ROWS:
        s = summary.get(name)
        if s is None:
            continue
        p95 = s["recovery_p95"]
        beaten = {n: p["recovery_p95"] for n, p in peers.items()}
        faster = s["survived"] and p95 is not None and all(p95 < v for v in beaten.values())
        rows[name] = {
            "lost": "PASS" if s["survived"] and s["lost"] == 0 else "FAIL",
            "duplicates": "PASS" if s["survived"] and s["duplicates"] == 0 else "FAIL",
            "recovery": "PASS" if faster else "FAIL",
            "against": beaten,
        }
    checks = [v for r in rows.values() for k, v in r.items() if k != "against"]
    overall = "INCOMPLETE" if not rows else "PASS" if all(v == "PASS" for v in checks) else "FAIL"
    return {"rows": rows, "overall": overall, "surviving_peers": sorted(peers)}


# --- the cluster ------------------------------------------------------------------------------


def _start_cluster() -> Any:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from txetcd.testing import EtcdCluster

    cluster = EtcdCluster(3)
    cluster.start()
    return cluster


def _prefix_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    end[-1] += 1
    return bytes(end)


def cluster_versions(cluster: Any, prefix: str, timeout: float = 30.0) -> dict[str, int]:
    """key -> version of every key under ``prefix``, read (linearizably) through the JSON
    gateway of a running member."""
    body = {
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(_prefix_end(prefix.encode())).decode(),
    }
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in cluster.members:
            if not m.running:
                continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", m.client_port, timeout=10)
                conn.request("POST", "/v3/kv/range", json.dumps(body))
                answer = json.loads(conn.getresponse().read())
                conn.close()
            except (OSError, ValueError, http.client.HTTPException) as e:
                last = e
                continue
            if "kvs" not in answer and "header" not in answer:
                last = RuntimeError(str(answer)[:200])
                continue
            return {
                base64.b64decode(kv["key"]).decode(): int(kv.get("version", 0))
                for kv in answer.get("kvs", [])
            }
        time.sleep(0.2)
    raise RuntimeError(f"could not read the cluster's keys: {last}")


def _ensure_whole(cluster: Any) -> None:
    for i, m in enumerate(cluster.members):
        if not m.running:
            cluster.start_member(i)
    cluster.leader(timeout=30)


# --- one run ----------------------------------------------------------------------------------


def one_run(
    cluster: Any,
    r: Ready,
    rnd: int,
    args: argparse.Namespace,
    workdir: str,
    say: Callable[[str], None],
) -> Run:
    """Run one client's worker through ``--failover-kills`` leader kills; check the cluster."""
    prefix = f"fo/{r.name}/{rnd}/"
    stop_file = os.path.join(workdir, f"stop-{r.name}-{rnd}")
    spec = {
        "op": "run",
        "endpoints": cluster.endpoints,
        "prefix": prefix,
        "writers": args.failover_writers,
        "readers": args.failover_readers,
        "timeout": args.failover_timeout,
        "stop_file": stop_file,
        "variant": r.client.variant,
    }
    run = Run(r.name, rnd)
    _ensure_whole(cluster)
    kills: list[float] = []
    with LiveWorker(r.python, r.client.worker, json.dumps(spec), what="failover") as w:
        try:
            w.wait_ready(timeout=60)
            for _ in range(args.failover_kills):
                time.sleep(args.failover_interval)
                leader = cluster.leader(timeout=30)
                kills.append(time.time())
                cluster.kill(leader)
                say(f"round {rnd}  failover  {r.name:<16} killed member {leader} (leader)")
                time.sleep(args.failover_down)
                cluster.start_member(leader)
            time.sleep(args.failover_interval)
            tmp = stop_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"kills": kills}, f)
            os.replace(tmp, stop_file)
            result = w.result(timeout=2 * args.failover_timeout + 30)
        except WorkerError as e:
            run.error = str(e)  # a hang is killed by the context manager on the way out
            say(f"round {rnd}  failover  {r.name:<16} ERROR {run.error.splitlines()[0]}")
            return run
    _ensure_whole(cluster)
    versions = cluster_versions(cluster, prefix)
    versions.pop(f"{prefix}r", None)
    acked = set(result["acked"])
    run.acked = len(acked)
    run.lost = len(acked - set(versions))
    run.duplicates = sum(1 for v in versions.values() if v > 1)
    run.applied_unacked = len(set(versions) - acked)
    elapsed = float(result["elapsed"]) or 1.0
    run.writes_per_s = run.acked / elapsed
    run.reads_per_s = int(result["reads"]) / elapsed
    run.failed = dict(result["failed"])
    run.recoveries = list(result["recoveries"])
    rec = ", ".join("none" if x is None else f"{x:.2f}" for x in run.recoveries)
    say(
        f"round {rnd}  failover  {r.name:<16} {run.acked} acked, {run.lost} lost, "
        f"{run.duplicates} duplicated; recovery {rec} s; {run.writes_per_s:,.0f} writes/s, "
        f"{run.reads_per_s:,.0f} reads/s"
    )
    return run


# --- the suite --------------------------------------------------------------------------------

Prepare = Callable[[Sequence[ClientDef], argparse.Namespace, dict[str, str]], list[Ready]]


def run_failover(
    args: argparse.Namespace, prepare: Prepare, say: Callable[[str], None]
) -> tuple[dict[str, Any], str, bool] | None:
    """Run the suite; its JSON document, Markdown and whether the bar passed (``None``: nothing
    to run)."""
    skipped = dict(NO_MULTI_ENDPOINT)
    for name, why in NO_MULTI_ENDPOINT.items():
        say(f"failover: skip {name}: {why}")
    names = [n.strip() for n in args.clients.split(",") if n.strip()]
    if TXETCD in names and GATEWAY_ROW not in names:
        names.append(GATEWAY_ROW)
    extra = tuple(n for n in names if n not in FAILOVER_CLIENTS)
    ready = prepare(select(",".join(names), extra=extra, clients=FAILOVER_CLIENTS), args, skipped)
    if not ready:
        say("failover: nothing to run")
        return None
    per_run = args.failover_kills * (args.failover_interval + args.failover_down + 2)
    minutes = args.rounds * len(ready) * (per_run + args.failover_interval + 5) / 60
    say(
        f"failover: {len(ready)} clients, {args.failover_kills} leader kills each, "
        f"{args.rounds} rounds: about {minutes:.1f} min"
    )
    runs: list[Run] = []
    workdir = tempfile.mkdtemp(prefix="txetcd-bench-failover-")
    cluster = _start_cluster()
    try:
        binary = cluster.members[0].binary
        say(f"failover: 3-member etcd {', '.join(cluster.endpoints)} ({binary})")
        etcd_version = first_line([binary, "--version"])
        for rnd in range(1, args.rounds + 1):
            shift = (rnd - 1) % len(ready)
            for r in [*ready[shift:], *ready[:shift]]:
                runs.append(one_run(cluster, r, rnd, args, workdir, say))
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(runs)
    v = verdicts(summary)
    labels = {r.name: _label(r) for r in ready}
    say("")
    say(text(summary, v, labels))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    meta = {
        **common_meta(args, etcd_version),
        "members": 3,
        "writers": args.failover_writers,
        "readers": args.failover_readers,
        "kills": args.failover_kills,
        "interval_s": args.failover_interval,
        "down_s": args.failover_down,
        "call_timeout_s": args.failover_timeout,
        "bar": "txetcd loses nothing, duplicates nothing, recovery p95 < every surviving peer's",
    }
    head = (
        f"{etcd_version}, 3 members on loopback; {meta['cpus']} CPUs; {args.failover_writers} "
        f"writers + {args.failover_readers} readers per client; leader SIGKILLed "
        f"{args.failover_kills} times per run (down {args.failover_down:g} s, "
        f"{args.failover_interval:g} s apart); {args.rounds} rounds; txetcd "
        f"{meta['txetcd_commit']}; {meta['date']}."
    )
    document = {
        "meta": meta,
        "clients": client_documents([r for r in ready if r.client.venv is not None]),
        "skipped": skipped,
        "runs": [r.__dict__ for r in runs],
        "summary": summary,
        "verdicts": v,
    }
    return document, markdown(summary, v, labels, head), v["overall"] == "PASS"


def _label(r: Ready) -> str:
    if r.client.venv is None:
        return r.name
    dist = r.client.requirements[0].split("==")[0]
    return f"{r.name} {r.versions.get(dist, '?')}"


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _table(summary: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> report.Table:
    heads = [
        "client",
        "acked writes",
        "lost",
        "duplicates",
        "recovery p50 s",
        "recovery p95 s",
        "not recovered",
        "writes/s",
        "reads/s",
        "failed calls",
        "finished",
    ]
    rows = []
    for name, s in summary.items():
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "0"
        rows.append(
            [
                labels.get(name, name),
                f"{s['acked']:,}",
                str(s["lost"]),
                str(s["duplicates"]),
                _s(s["recovery_p50"]),
                _s(s["recovery_p95"]),
                f"{s['unrecovered']}/{s['kills']}",
                "–" if s["writes_per_s"] is None else f"{s['writes_per_s']:,.0f}",
                "–" if s["reads_per_s"] is None else f"{s['reads_per_s']:,.0f}",
                failed,
                "yes" if not s["errors"] else f"no: {s['errors'][0].splitlines()[0][:60]}",
            ]
        )
    return ("failover (leader SIGKILLed under load; per client, over its rounds)", heads, rows)


def _verdict_line(v: Mapping[str, Any]) -> str:
    parts = []
    for name, r in v["rows"].items():
        parts.append(
            f"{name}: lost {r['lost']}, duplicates {r['duplicates']}, recovery {r['recovery']}"
        )
    peers = ", ".join(v["surviving_peers"]) or "none"
    return (
        "bar (txetcd loses nothing, duplicates nothing, recovery p95 below every surviving "
        f"peer's; surviving peers: {peers}): {v['overall']}  [{'; '.join(parts)}]"
    )


def text(
    summary: Mapping[str, Mapping[str, Any]], v: Mapping[str, Any], labels: Mapping[str, str]
) -> str:
    """The table and the verdict line, as plain text."""
    return "\n".join([*report.text_tables([_table(summary, labels)]), _verdict_line(v)])


def markdown(
    summary: Mapping[str, Mapping[str, Any]],
    v: Mapping[str, Any],
    labels: Mapping[str, str],
    head: str,
) -> str:
    """The table and the verdict line, as Markdown under ``head``."""
    lines = [head, "", *report.markdown_tables([_table(summary, labels)]), _verdict_line(v), ""]
    return "\n".join(lines)
