"""Interleaved rounds: every client's workloads, one worker process each, against one etcd."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import report
from harness.clients import ClientDef
from harness.etcd import EtcdCpu
from harness.h2load import run_h2load
from harness.workers import WORKERS_DIR, WorkerError, WorkerSpec, run_worker

if WORKERS_DIR not in sys.path:
    sys.path.append(WORKERS_DIR)
from _common import key_value  # the workers' key set, so that h2load writes the same

__all__ = ["H2LOAD", "Bench", "Ready", "WireLimit", "key_set", "run_rounds"]

H2LOAD = "h2load"


@dataclass
class Ready:
    """A client that installed and imported: its interpreter and reported versions."""

    client: ClientDef
    python: str
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.client.name


@dataclass(frozen=True)
class WireLimit:
    """A wire-limit row that is no worker (wrk): its name and how it runs one figure.

    ``run(fig)`` returns a result like a worker's (``ops``, ``elapsed``, ``cpu``, ``etcd_cpu``) or
    raises :class:`WorkerError`. (h2load, the kv suite's, keeps its own fields on :class:`Bench`.)
    """

    name: str
    run: Callable[[report.Figure], dict[str, Any]]


@dataclass
class Bench:
    """What every run of a round needs.

    ``paired``: two rows compared with each other (txetcd and ``--baseline``): in every round they
    run back to back, and which goes first alternates.
    ``overrides``: per row name, spec fields that differ from ``base`` for that row (the tls
    suite's ``txetcd-plain`` row: another etcd's endpoint and pid, no CA).
    """

    ready: Sequence[Ready]
    base: WorkerSpec
    etcd_cpu: EtcdCpu
    workdir: str
    h2load: str | None = None
    etcdctl: str | None = None
    wire: WireLimit | None = None
    paired: tuple[str, str] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[report.Sample] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        names = [r.name for r in self.ready] + ([H2LOAD] if self.h2load else [])
        return names + ([self.wire.name] if self.wire else [])

    @property
    def timeout(self) -> float:
        return self.base.warmup + self.base.seconds + 120


def run_rounds(
    bench: Bench,
    figures: Sequence[report.Figure],
    rounds: int,
    say: Callable[[str], None],
    check_server: Callable[[str], None],
) -> None:
    """Round by round, figure by figure, every client in turn (the order rotates each round).

    Runs of one figure sit next to each other in time, so slow drift on a shared machine hits all
    clients alike; rotating the order means no client always goes first or last.
    ``check_server(what)`` raises if etcd died during ``what``.
    """
    names = bench.names
    for rnd in range(1, rounds + 1):
        shift = (rnd - 1) % len(names)
        order = names[shift:] + names[:shift]
        if bench.paired is not None:
            order = _back_to_back(order, bench.paired, rnd)
        for fig in figures:
            for name in order:
                sample = measure(bench, name, fig, rnd, say)
                if sample is not None:
                    bench.samples.append(sample)
                check_server(f"{fig.label} of {name}")


def _back_to_back(order: list[str], pair: tuple[str, str], rnd: int) -> list[str]:
    """``order`` with ``pair[1]`` moved next to ``pair[0]``: after it in odd rounds, before in even.

    So each round's two runs of a figure sit next to each other in time (drift cancels in their
    ratio) and neither always runs first.
    """
    first, second = pair
    if first not in order or second not in order:
        return order
    rest = [n for n in order if n != second]
    at = rest.index(first)
    rest[at : at + 1] = [first, second] if rnd % 2 else [second, first]
    return rest


def measure(
    bench: Bench, name: str, fig: report.Figure, rnd: int, say: Callable[[str], None]
) -> report.Sample | None:
    """Run one workload for one client; a sample, or None (skipped, or failed: see errors)."""
    head = f"round {rnd}  {fig.label:<9} {name:<16}"
    try:
        if name == H2LOAD:
            result = _h2load(bench, fig)
        elif bench.wire is not None and name == bench.wire.name:
            result = bench.wire.run(fig)
        else:
            r = next(r for r in bench.ready if r.name == name)
            if fig.op not in r.client.ops:
                return None
            spec = replace(
                bench.base,
                op=fig.op,
                concurrency=fig.concurrency,
                variant=r.client.variant,
                **bench.overrides.get(name, {}),
            )
            result = run_worker(
                r.python, r.client.worker, spec, timeout=bench.timeout, tree=r.client.tree
            )
    except WorkerError as e:
        bench.errors.append({"round": rnd, "figure": fig.label, "client": name, "error": str(e)})
        say(f"{head} ERROR {str(e).splitlines()[0]}")
        return None
    ops = int(result["ops"])
    sample = report.Sample(
        client=name,
        figure=fig.key,
        round=rnd,
        ops_per_s=ops / float(result["elapsed"]),
        client_ms=_per_op_ms(result.get("cpu"), ops),
        etcd_ms=_per_op_ms(result.get("etcd_cpu"), ops),
    )
    say(
        f"{head} {sample.ops_per_s:>9,.0f} ops/s"
        f"  client {report.fmt_ms(sample.client_ms)} ms/op"
        f"  etcd {report.fmt_ms(sample.etcd_ms)} ms/op"
    )
    return sample


def _h2load(bench: Bench, fig: report.Figure) -> dict[str, Any]:
    assert bench.h2load is not None
    base = bench.base
    key, value = key_value(0, base.keys, base.value_size, base.prefix)
    return run_h2load(
        bench.h2load,
        base.endpoint,
        fig.op,
        fig.concurrency,
        base.seconds,
        key.encode(),
        value.encode(),
        bench.workdir,
        bench.etcd_cpu,
        bench.etcdctl,
    )


def key_set(base: WorkerSpec) -> list[tuple[str, str]]:
    """The workers' (key, value) pairs for this spec, for the wire limits to write the same."""
    return [key_value(i, base.keys, base.value_size, base.prefix) for i in range(base.keys)]


def _per_op_ms(seconds: float | None, ops: int) -> float | None:
    return None if seconds is None or ops <= 0 else 1000.0 * seconds / ops
