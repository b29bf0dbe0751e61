"""Medians, ratios and the tables (plain text for the terminal, Markdown for docs)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BAR",
    "KV_BAR",
    "Bar",
    "ClientInfo",
    "Table",
    "Figure",
    "Sample",
    "compare",
    "figures_for",
    "fmt_ms",
    "markdown",
    "markdown_tables",
    "medians",
    "text",
    "text_tables",
]

BAR = 1.3
"""txetcd must reach this multiple of the fastest peer on each figure of the bar."""

BAR_CONCURRENCY = (1, 32)
"""The figures the bar is about: put and get, sequential and 32 in flight."""


@dataclass(frozen=True)
class Figure:
    """One measured figure: an operation at a number of requests in flight."""

    op: str
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.op}/{self.concurrency}"

    @property
    def label(self) -> str:
        return f"{self.op} " + ("seq" if self.concurrency == 1 else f"c{self.concurrency}")

    @property
    def in_bar(self) -> bool:
        return self.concurrency in BAR_CONCURRENCY


def figures_for(concurrencies: Sequence[int]) -> list[Figure]:
    return [Figure(op, c) for c in concurrencies for op in ("put", "get")]


@dataclass(frozen=True)
class Bar:
    """What txetcd must reach, figure by figure.

    :param minimum: requests in flight -> the least ratio that passes; those figures (put and get)
        make the bar. Other figures are compared too, as extras, against the minimum of the
        highest concurrency in the bar.
    :param against: ``peer`` (the ratio is to the fastest peer) or ``wire`` (to the wire limit).
    :param what: how the verdict line states the bar.
    :param show_wire: with ``against="peer"``, add txetcd / wire limit to the ratio table.
    """

    minimum: dict[int, float]
    against: str = "peer"
    what: str = ""
    show_wire: bool = False

    def for_figure(self, fig: Figure) -> tuple[float, bool]:
        """The least passing ratio for ``fig``, and whether ``fig`` is part of the bar."""
        if fig.concurrency in self.minimum:
            return self.minimum[fig.concurrency], True
        return self.minimum[max(self.minimum)], False

    @property
    def uniform(self) -> float | None:
        """The one minimum when every figure of the bar has the same, else ``None``."""
        values = set(self.minimum.values())
        return values.pop() if len(values) == 1 else None


KV_BAR = Bar(
    {c: BAR for c in BAR_CONCURRENCY},
    what=f"txetcd >= {BAR}x the fastest peer",
)
"""The kv suite's bar: 1.3x the fastest peer on put and get, sequential and 32 in flight."""


@dataclass(frozen=True)
class ClientInfo:
    """What the report needs to know about a row.

    ``kind``: ``txetcd``, ``peer``, ``wire`` or ``baseline`` (txetcd at another commit: shown in
    the tables, compared by :mod:`harness.baseline`, never a peer).
    """

    name: str
    label: str
    kind: str
    linearizable: bool = True
    note: str = ""


@dataclass(frozen=True)
class Sample:
    """One workload run: ops/s and CPU milliseconds per op (client process, etcd process)."""

    client: str
    figure: str
    round: int
    ops_per_s: float
    client_ms: float | None
    etcd_ms: float | None


Stat = dict[str, float | None]

Table = tuple[str, list[str], list[list[str]]]
"""A titled table: title, column heads, rows of cells (first column left-aligned)."""


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(samples: Sequence[Sample]) -> dict[str, dict[str, Stat]]:
    """Per client and figure: the medians over rounds of ops/s, client and etcd CPU ms per op."""
    grouped: dict[str, dict[str, list[Sample]]] = {}
    for s in samples:
        grouped.setdefault(s.client, {}).setdefault(s.figure, []).append(s)
    return {
        client: {
            fig: {
                "ops_per_s": _median([s.ops_per_s for s in runs]),
                "client_ms": _median([s.client_ms for s in runs]),
                "etcd_ms": _median([s.etcd_ms for s in runs]),
                "rounds": float(len(runs)),
            }
            for fig, runs in figs.items()
        }
        for client, figs in grouped.items()
    }


def compare(
    meds: dict[str, dict[str, Stat]],
    infos: Sequence[ClientInfo],
    figures: Sequence[Figure],
    bar: Bar = KV_BAR,
) -> list[dict[str, Any]]:
    """txetcd against the fastest peer (and the wire limit, when there is one), figure by figure.

    Puts are compared with every peer; gets only with peers whose reads are linearizable (the
    fastest serializable peer is reported beside it, for information). Wire limits are no peers.
    The verdict is about the ratio ``bar.against`` names.
    """
    rows: list[dict[str, Any]] = []
    wire = next((i.name for i in infos if i.kind == "wire"), None)
    for fig in figures:
        ours = meds.get("txetcd", {}).get(fig.key, {}).get("ops_per_s")
        best: str | None = None
        best_any: str | None = None
        for info in infos:
            if info.kind != "peer":
                continue
            value = meds.get(info.name, {}).get(fig.key, {}).get("ops_per_s")
            if value is None:
                continue
            if best_any is None or value > (meds[best_any][fig.key]["ops_per_s"] or 0):
                best_any = info.name
            if fig.op == "get" and not info.linearizable:
                continue
            if best is None or value > (meds[best][fig.key]["ops_per_s"] or 0):
                best = info.name
        peer_value = meds[best][fig.key]["ops_per_s"] if best else None
        ratio = ours / peer_value if ours and peer_value else None
        wire_value = meds.get(wire, {}).get(fig.key, {}).get("ops_per_s") if wire else None
        wire_ratio = ours / wire_value if ours and wire_value else None
        minimum, in_bar = bar.for_figure(fig)
        judged = wire_ratio if bar.against == "wire" else ratio
        row: dict[str, Any] = {
            "figure": fig.label,
            "key": fig.key,
            "in_bar": in_bar,
            "minimum": minimum,
            "against": bar.against,
            "txetcd": ours,
            "best_peer": best,
            "best_peer_ops_per_s": peer_value,
            "ratio": ratio,
            "wire": wire,
            "wire_ops_per_s": wire_value,
            "wire_ratio": wire_ratio,
            "verdict": None if judged is None else ("PASS" if judged >= minimum else "FAIL"),
        }
        if fig.op == "get" and best_any is not None and best_any != best:
            any_value = meds[best_any][fig.key]["ops_per_s"]
            row["fastest_serializable_peer"] = best_any
            row["fastest_serializable_ops_per_s"] = any_value
            row["ratio_vs_serializable"] = ours / any_value if ours and any_value else None
        rows.append(row)
    return rows


# --- formatting -------------------------------------------------------------------------------


def _ops(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def fmt_ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _cell(meds: dict[str, dict[str, Stat]], info: ClientInfo, fig: Figure, field: str) -> str:
    value = meds.get(info.name, {}).get(fig.key, {}).get(field)
    cell = _ops(value) if field == "ops_per_s" else fmt_ms(value)
    if value is not None and fig.op == "get" and not info.linearizable:
        cell += "*"
    return cell


def _tables(
    meds: dict[str, dict[str, Stat]],
    infos: Sequence[ClientInfo],
    figures: Sequence[Figure],
    comparison: Sequence[dict[str, Any]],
    bar: Bar = KV_BAR,
) -> list[Table]:
    heads = ["client"] + [f.label for f in figures]
    tables = []
    for title, field in (
        ("ops/s (median of rounds; higher is better)", "ops_per_s"),
        ("client CPU ms per op (the client's process; lower is better)", "client_ms"),
        ("etcd CPU ms per op (lower is better)", "etcd_ms"),
    ):
        rows = [[i.label] + [_cell(meds, i, f, field) for f in figures] for i in infos]
        tables.append((title, heads, rows))
    tables.append(_ratio_table(comparison, bar))
    return tables


def _x(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def _bar_text(bar: Bar) -> str:
    if bar.uniform is not None:
        return f">= {bar.uniform:g}x"
    return ", ".join(
        f">= {m:g}x " + ("seq" if c == 1 else f"c{c}") for c, m in sorted(bar.minimum.items())
    )


def _ratio_table(comparison: Sequence[dict[str, Any]], bar: Bar) -> Table:
    """The ratio table: to the fastest peer (kv, v2) or to the wire limit first (gateway)."""
    uniform = bar.uniform
    serializable = any(c.get("fastest_serializable_peer") for c in comparison)
    wire = next((c["wire"] for c in comparison if c.get("wire")), None)
    show_wire = wire is not None and (bar.against == "wire" or bar.show_wire)
    rows = []
    for c in comparison:
        verdict = c["verdict"] or "n/a"
        if uniform is None:
            verdict += f" (>= {c['minimum']:g}x)"
        figure = c["figure"] + ("" if c["in_bar"] else " (extra)")
        peer = f"{c['best_peer'] or '–'} {_ops(c['best_peer_ops_per_s'])}"
        wire_cell = f"{wire} {_ops(c['wire_ops_per_s'])}"
        if bar.against == "wire":
            row = [figure, _ops(c["txetcd"]), wire_cell, _x(c["wire_ratio"]), verdict]
            rows.append([*row, peer, _x(c["ratio"])])
            continue
        row = [figure, _ops(c["txetcd"]), peer, _x(c["ratio"]), verdict]
        if serializable:
            extra = ""
            if c.get("fastest_serializable_peer"):
                r = c.get("ratio_vs_serializable")
                extra = (
                    f"{c['fastest_serializable_peer']}* {_ops(c['fastest_serializable_ops_per_s'])}"
                    + ("" if r is None else f" ({r:.2f}x)")
                )
            row.append(extra)
        if show_wire:
            row.append(f"{wire_cell} ({_x(c['wire_ratio'])})")
        rows.append(row)
    bar_head = f">= {uniform:g}x" if uniform is not None else "bar"
    if bar.against == "wire":
        heads = ["figure", "txetcd", "wire limit", "ratio", bar_head, "fastest peer", "to peer"]
        title = f"txetcd / wire limit (bar: {_bar_text(bar)}), and txetcd / fastest peer"
        return (title, heads, rows)
    heads = ["figure", "txetcd", "fastest peer", "ratio", bar_head]
    heads += ["serializable peer"] if serializable else []
    heads += ["wire limit (txetcd / wire)"] if show_wire else []
    note = "; gets against linearizable peers only" if serializable else ""
    return (f"txetcd / fastest peer (bar: {_bar_text(bar)}{note})", heads, rows)


def _verdict_line(comparison: Sequence[dict[str, Any]], bar: Bar = KV_BAR) -> str:
    in_bar = [c for c in comparison if c["in_bar"]]
    verdicts = [c["verdict"] for c in in_bar]
    if not in_bar or any(v is None for v in verdicts):
        overall = "INCOMPLETE (a figure is missing)"
    else:
        overall = "PASS" if all(v == "PASS" for v in verdicts) else "FAIL"
    parts = ", ".join(f"{c['figure']} {c['verdict'] or 'n/a'}" for c in in_bar)
    return f"bar ({bar.what} on {len(in_bar)} figures): {overall}  [{parts}]"


_FOOTNOTE = (
    "(*) serializable reads (may be stale; cheaper for etcd): not compared with txetcd's gets."
)


def _footnotes(infos: Sequence[ClientInfo]) -> list[str]:
    """The ``(*)`` note, when a row reads serializably."""
    return [_FOOTNOTE] if any(not i.linearizable for i in infos) else []


def text_tables(tables: Sequence[Table]) -> list[str]:
    """Aligned plain-text tables, each followed by a blank line."""
    out: list[str] = []
    for title, heads, rows in tables:
        widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
        out.append(title)
        for n, row in enumerate([heads, *rows]):
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=False)
            ]
            out.append("  " + "  ".join(cells).rstrip())
            if n == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
        out.append("")
    return out


def markdown_tables(tables: Sequence[Table]) -> list[str]:
    """GitHub-flavoured Markdown tables, each under its bold title and followed by a blank line."""
    out: list[str] = []
    for title, heads, rows in tables:
        out.append(f"**{title}**")
        out.append("")
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|")
        for row in rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        out.append("")
    return out


def text(
    meds: dict[str, dict[str, Stat]],
    infos: Sequence[ClientInfo],
    figures: Sequence[Figure],
    comparison: Sequence[dict[str, Any]],
    bar: Bar = KV_BAR,
) -> str:
    """Aligned plain-text tables and the verdict line."""
    out = text_tables(_tables(meds, infos, figures, comparison, bar))
    out.extend(_footnotes(infos))
    out.append(_verdict_line(comparison, bar))
    return "\n".join(out)


def markdown(
    meds: dict[str, dict[str, Stat]],
    infos: Sequence[ClientInfo],
    figures: Sequence[Figure],
    comparison: Sequence[dict[str, Any]],
    preamble: str = "",
    bar: Bar = KV_BAR,
) -> str:
    """The same tables as GitHub-flavoured Markdown, ready to paste into docs."""
    out: list[str] = [preamble.rstrip(), ""] if preamble else []
    out.extend(markdown_tables(_tables(meds, infos, figures, comparison, bar)))
    for note in _footnotes(infos):
        out.extend([note, ""])
    out.append(_verdict_line(comparison, bar))
    out.append("")
    return "\n".join(out)
