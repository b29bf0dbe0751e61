"""What a run reports besides the tables: row titles, run metadata and the JSON documents."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from harness import report
from harness.clients import TXETCD
from harness.etcd import REPO
from harness.rounds import Bench, Ready
from harness.suites import KvSuite

__all__ = [
    "client_documents",
    "client_infos",
    "common_meta",
    "first_line",
    "git_commit",
    "kv_document",
    "label",
    "preamble",
    "run_meta",
]


def label(r: Ready) -> str:
    """The row title: name and installed version (txetcd: the repository's commit)."""
    if r.name == TXETCD:
        return f"txetcd ({git_commit()})"
    if r.client.tree is not None:  # --baseline: the name says the commit
        return r.name
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


def client_infos(ready: Sequence[Ready], wire: tuple[str, str] | None) -> list[report.ClientInfo]:
    """The rows' report entries; ``wire`` is the wire limit's (name, row title), if it ran."""
    infos = [
        report.ClientInfo(
            r.name,
            label(r),
            "txetcd" if r.name == TXETCD else "baseline" if r.client.tree else "peer",
            r.client.linearizable,
            r.client.note,
        )
        for r in ready
    ]
    if wire:
        infos.append(report.ClientInfo(wire[0], wire[1], "wire"))
    return infos


def common_meta(args: argparse.Namespace, etcd_version: str) -> dict[str, Any]:
    """What every suite's JSON says about the run: when, which txetcd, etcd and machine."""
    return {
        "suite": args.suite,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "txetcd_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "etcd": etcd_version,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "value_size": args.value_size,
    }


def run_meta(
    args: argparse.Namespace, etcd_version: str, suite: KvSuite, wire: str | None
) -> dict[str, Any]:
    meta = common_meta(args, etcd_version)
    if suite.name == "kv":
        del meta["suite"]
    else:
        meta["suite"] = suite.name
    version = first_line([wire, "--version"]) if wire else None
    return {
        **meta,
        suite.wire: version,
        "seconds": args.seconds,
        "keys": args.keys,
        "concurrency": args.concurrency,
        "etcd_args": list(suite.etcd_args),
        "bar": report.BAR if suite.name == "kv" else suite.bar.what,
        "baseline": _baseline_meta(args),
    }


def _baseline_meta(args: argparse.Namespace) -> dict[str, Any] | None:
    b = getattr(args, "baseline_tree", None)
    if b is None:
        return None
    return {"rev": b.rev, "commit": b.commit, "name": b.name, "margin": args.baseline_margin}


def preamble(meta: dict[str, Any], suite: KvSuite) -> str:
    flags = f" ({' '.join(suite.etcd_args)})" if suite.etcd_args else ""
    return (
        f"{meta['etcd']}{flags}, single member on loopback; {meta['cpus']} CPUs; "
        f"{meta['keys']} keys, {meta['value_size']}-byte values; medians of "
        f"{meta['rounds']} interleaved rounds of {meta['seconds']:g} s; "
        f"txetcd {meta['txetcd_commit']}"
        + (f" against {meta['baseline']['name']}" if meta.get("baseline") else "")
        + f"; {meta['date']}."
    )


def client_documents(ready: Sequence[Ready]) -> dict[str, dict[str, Any]]:
    return {
        r.name: {
            "label": label(r),
            "versions": r.versions,
            "linearizable": r.client.linearizable,
            "note": r.client.note,
        }
        for r in ready
    }


def kv_document(
    meta: dict[str, Any],
    ready: Sequence[Ready],
    skipped: dict[str, str],
    bench: Bench,
    meds: dict[str, Any],
    comparison: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "meta": meta,
        "clients": client_documents(ready),
        "skipped": skipped,
        "errors": bench.errors,
        "samples": [s.__dict__ for s in bench.samples],
        "medians": meds,
        "comparison": comparison,
    }
