"""txetcd against the fastest Python etcd clients and the wire limit, side by side on one etcd.

    python benchmarks/run.py [--rounds 3] [--seconds 3] [--clients txetcd,aetcd,...]
                             [--skip-setup] [--json out.json] [--markdown out.md]

Makes the peers' venvs on first use (``benchmarks/.venvs/<peer>/``), starts one etcd on free
loopback ports, runs every client's workloads in interleaved rounds (each workload in its own
worker process) and h2load when it is installed, then prints medians, CPU per op and txetcd's
ratio to the fastest peer on each figure. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, NoReturn

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from harness import report
from harness.clients import CLIENTS, TXETCD, ClientDef, select
from harness.etcd import REPO, EtcdCpu, etcdctl_for, start_etcd
from harness.h2load import find_h2load
from harness.rounds import H2LOAD, Bench, Ready, run_rounds
from harness.venvs import SetupError, ensure_venv
from harness.workers import WorkerError, WorkerSpec, run_worker


def say(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    add("--seconds", type=float, default=3.0, help="timed s per workload (default 3)")
    add("--warmup", type=float, default=0.5, help="warm-up s per workload (default 0.5)")
    add(
        "--clients",
        default="",
        help=f"comma-separated, from: {', '.join([*CLIENTS, H2LOAD])} (default: all)",
    )
    add(
        "--concurrency",
        default="1,32,128",
        help="requests in flight, comma-separated (default 1,32,128; 1 = sequential)",
    )
    add("--keys", type=int, default=1000, help="size of the key set (default 1000)")
    add("--value-size", type=int, default=64, help="value bytes (default 64)")
    add("--skip-setup", action="store_true", help="use existing venvs, install nothing")
    add("--no-h2load", action="store_true", help="do not run the h2load wire limit")
    add("--venv-dir", default=os.path.join(BENCH_DIR, ".venvs"), help=argparse.SUPPRESS)
    add("--json", metavar="PATH", help="write samples, medians and ratios as JSON")
    add("--markdown", metavar="PATH", help="write the tables as Markdown ('-': stdout)")
    add("--strict", action="store_true", help="exit 1 unless the bar passes")
    args = p.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        p.error("--concurrency takes integers, e.g. 1,32,128")
    if args.rounds < 1 or args.seconds <= 0 or min(args.concurrency, default=0) < 1:
        p.error("--rounds, --seconds and --concurrency must be positive")
    return args


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
            info = run_worker(python, c.worker, WorkerSpec(endpoint="", op="info"), timeout=180)
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
            run_worker(r.python, r.client.worker, spec, timeout=300)
        except WorkerError as e:
            say(f"populate with {r.name} failed: {e}")
            continue
        return r.name
    raise SystemExit("no client could write the key set; nothing to measure")


def label(r: Ready) -> str:
    """The row title: name and installed version (txetcd: the repository's commit)."""
    if r.name == TXETCD:
        return f"txetcd ({git_commit()})"
    version = r.versions.get(r.client.requirements[0].split("==")[0], "?")
    if r.client.variant:
        return f"{r.client.venv} {version} ({r.client.variant})"
    return f"{r.name} {version}"


def git_commit() -> str:
    return first_line(["git", "-C", REPO, "describe", "--always", "--dirty"])


def first_line(cmd: Sequence[str]) -> str:
    """The first line a command prints (``?`` if it cannot run)."""
    try:
        out = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def client_infos(ready: Sequence[Ready], h2load: str | None) -> list[report.ClientInfo]:
    infos = [
        report.ClientInfo(
            r.name,
            label(r),
            "txetcd" if r.name == TXETCD else "peer",
            r.client.linearizable,
            r.client.note,
        )
        for r in ready
    ]
    if h2load:
        infos.append(report.ClientInfo(H2LOAD, "h2load, raw gRPC (wire limit)", "wire"))
    return infos


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)  # so that `finally` stops etcd
    figures = report.figures_for(args.concurrency)
    named = [n.strip() for n in args.clients.split(",") if n.strip()]
    skipped: dict[str, str] = {}
    ready = prepare(select(args.clients, extra=(H2LOAD,)), args, skipped)
    want_h2load = not args.no_h2load and (not named or H2LOAD in named)
    h2load = find_h2load() if want_h2load else None
    if want_h2load and h2load is None:
        say("h2load not on PATH: no wire limit (apt-get install nghttp2-client adds it)")
    if not ready and h2load is None:
        say("nothing to run")
        return 1
    runs = sum(len([f for f in figures if f.op in r.client.ops]) for r in ready)
    runs += len(figures) if h2load else 0
    minutes = args.rounds * runs * (args.seconds + args.warmup + 0.4) / 60
    say(
        f"{len(ready)} clients{' + h2load' if h2load else ''}, {runs} runs per round, "
        f"{args.rounds} rounds: about {minutes:.1f} min"
    )

    server = start_etcd()
    workdir = tempfile.mkdtemp(prefix="txetcd-bench-")
    try:
        say(f"etcd {server.endpoint} (pid {server.pid}, {server.binary})")
        etcd_version = first_line([server.binary, "--version"])
        base = WorkerSpec(
            endpoint=server.endpoint,
            op="get",
            seconds=args.seconds,
            warmup=args.warmup,
            keys=args.keys,
            value_size=args.value_size,
            etcd_pid=server.pid,
        )
        bench = Bench(
            ready=ready,
            base=base,
            etcd_cpu=EtcdCpu(server.pid),
            workdir=workdir,
            h2load=h2load,
            etcdctl=etcdctl_for(server.binary),
        )
        if ready:
            say(f"key set written by {populate(ready, base)}")

        def check_server(what: str) -> None:
            if not server.running:
                raise SystemExit(f"etcd died during {what}:\n{etcd_log_tail(server)}")

        run_rounds(bench, figures, args.rounds, say, check_server)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    meds = report.medians(bench.samples)
    infos = client_infos(ready, h2load)
    comparison = report.compare(meds, infos, figures)
    say("")
    say(report.text(meds, infos, figures, comparison))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    for e in bench.errors:
        where = f"round {e['round']} {e['figure']} {e['client']}"
        say(f"error: {where}: {e['error'].splitlines()[0]}")
    meta = run_meta(args, etcd_version, h2load)
    if args.json:
        write_json(args.json, meta, ready, skipped, bench, meds, comparison)
        say(f"wrote {args.json}")
    if args.markdown:
        md = report.markdown(meds, infos, figures, comparison, preamble(meta))
        if args.markdown == "-":
            say(md)
        else:
            with open(args.markdown, "w") as f:
                f.write(md)
            say(f"wrote {args.markdown}")
    bar = [c for c in comparison if c["in_bar"]]
    passed = bool(bar) and all(c["verdict"] == "PASS" for c in bar)
    return 0 if passed or not args.strict else 1


def etcd_log_tail(server: Any, size: int = 3000) -> str:
    try:
        with open(os.path.join(server.data_dir, "etcd.log"), "rb") as f:
            return f.read()[-size:].decode("utf-8", "replace")
    except (OSError, TypeError):
        return "(no etcd log)"


def run_meta(args: argparse.Namespace, etcd_version: str, h2load: str | None) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "txetcd_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "etcd": etcd_version,
        "h2load": first_line([h2load, "--version"]) if h2load else None,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "keys": args.keys,
        "value_size": args.value_size,
        "concurrency": args.concurrency,
        "bar": report.BAR,
    }


def preamble(meta: dict[str, Any]) -> str:
    return (
        f"{meta['etcd']}, single member on loopback; {meta['cpus']} CPUs; "
        f"{meta['keys']} keys, {meta['value_size']}-byte values; medians of "
        f"{meta['rounds']} interleaved rounds of {meta['seconds']:g} s; "
        f"txetcd {meta['txetcd_commit']}; {meta['date']}."
    )


def write_json(
    path: str,
    meta: dict[str, Any],
    ready: Sequence[Ready],
    skipped: dict[str, str],
    bench: Bench,
    meds: dict[str, Any],
    comparison: list[dict[str, Any]],
) -> None:
    clients = {
        r.name: {
            "label": label(r),
            "versions": r.versions,
            "linearizable": r.client.linearizable,
            "note": r.client.note,
        }
        for r in ready
    }
    document = {
        "meta": meta,
        "clients": clients,
        "skipped": skipped,
        "errors": bench.errors,
        "samples": [s.__dict__ for s in bench.samples],
        "medians": meds,
        "comparison": comparison,
    }
    with open(path, "w") as f:
        json.dump(document, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
