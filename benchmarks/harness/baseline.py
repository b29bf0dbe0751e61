"""``--baseline REV``: txetcd as it was at a git revision, as one more row of the put/get suites.

The tree is ``git archive <commit> txetcd`` unpacked into ``benchmarks/.venvs/txetcd-<commit>/``
(git-ignored) and kept while ``REV`` names the same commit (a commit's tree never changes), so a
rerun unpacks nothing; the git repository itself is not touched (no worktree to clean up).

The row (``txetcd@<short commit>``) runs the suite's own txetcd worker from this checkout's
``benchmarks/workers`` with the harness's interpreter, only with ``TXETCD_BENCH_TREE`` pointing at
that tree: ``workers/_tx.py`` puts it first on ``sys.path`` and fails unless ``txetcd`` is
imported from there. Same worker, same dependencies, same etcd, same interleaved rounds: the only
difference between the two rows is txetcd's own code.

The comparison divides txetcd's median by the baseline's, figure by figure (every figure, not only
the bar's), and lists the per-round ratios (each round's two runs sit next to each other in time)
so the noise is in view. A figure fails when txetcd is more than ``margin`` below the baseline.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness import report
from harness.clients import TXETCD, ClientDef
from harness.etcd import REPO
from harness.venvs import SetupError

__all__ = [
    "MARGIN",
    "Baseline",
    "baseline_row",
    "compare",
    "document",
    "markdown",
    "passed",
    "prepare_tree",
    "text",
]

MARGIN = 0.05
"""How far below the baseline a figure may be before it fails (``--baseline-margin``).

5%: alternating A/B runs of one change on this 2-core machine resolved a 4% throughput gain
(docs/benchmarks.rst, the v2 round), while runs of the same figure a few minutes apart move by
10-15%. The two rows of a round run back to back, so drift mostly cancels in the ratio, and the
median of 3 rounds drops one bad round. An A/A run (``--baseline HEAD`` on a clean tree: the same
code in both rows) shows the ratio's noise on the day; widen the margin if it moves more.
"""

_MARKER = ".bench-commit"


@dataclass(frozen=True)
class Baseline:
    """txetcd at one commit, unpacked.

    :param rev: the revision as given (``HEAD~3``, a tag, a commit).
    :param commit: the full commit it names.
    :param name: the row's name, ``txetcd@<short commit>``.
    :param tree: the directory holding ``txetcd/`` as it was at ``commit``.
    :param same_as_head: the commit is HEAD and this checkout's txetcd has no uncommitted changes
        (an A/A run: the same code in both rows).
    """

    rev: str
    commit: str
    name: str
    tree: str
    same_as_head: bool = False

    @property
    def title(self) -> str:
        """How the tables name it: ``txetcd@abc1234`` plus the revision as given, if different."""
        if self.commit.startswith(self.rev) or self.rev == self.name:
            return self.name
        return f"{self.name} ({self.rev})"


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-C", repo, *args],
            check=False,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SetupError(f"git {args[0]}: {e}") from e


def _git_line(repo: str, *args: str) -> str:
    out = _git(repo, *args)
    if out.returncode != 0:
        why = out.stderr.decode("utf-8", "replace").strip() or f"exit {out.returncode}"
        raise SetupError(f"git {' '.join(args)}: {why}")
    return out.stdout.decode().strip()


def prepare_tree(
    rev: str, root: str, repo: str = REPO, say: Callable[[str], None] = print
) -> Baseline:
    """Resolve ``rev`` and unpack txetcd as it was there under ``root`` (reused if it is there).

    Raises :class:`SetupError` when ``rev`` names no commit or has no ``txetcd`` package.
    """
    if not rev or rev.startswith("-"):
        raise SetupError(f"--baseline {rev!r}: not a git revision")
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise SetupError(f"{rev!r} names no commit in {repo}")
    commit = found.stdout.decode().strip()
    short = _git_line(repo, "rev-parse", "--short", commit)
    head = _git_line(repo, "rev-parse", "HEAD")
    clean = _git_line(repo, "status", "--porcelain", "--", "txetcd") == ""
    tree = os.path.join(root, f"txetcd-{commit[:12]}")
    baseline = Baseline(rev, commit, f"{TXETCD}@{short}", tree, commit == head and clean)
    if _read(os.path.join(tree, _MARKER)) == commit:
        say(f"baseline: {baseline.title}, txetcd from {tree}")
        return baseline
    say(f"baseline: unpacking txetcd at {rev} ({commit[:12]}) into {tree}")
    archive = _git(repo, "archive", "--format=tar", commit, "--", "txetcd")
    if archive.returncode != 0:
        why = archive.stderr.decode("utf-8", "replace").strip()
        raise SetupError(f"git archive {commit[:12]} txetcd: {why}")
    os.makedirs(root, exist_ok=True)
    unpacking = tempfile.mkdtemp(prefix=".txetcd-", dir=root)
    try:
        os.chmod(unpacking, 0o755)  # mkdtemp makes it private; the tree is plain source
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(unpacking, filter="data")
        if not os.path.isfile(os.path.join(unpacking, "txetcd", "__init__.py")):
            raise SetupError(f"{rev} ({commit[:12]}) has no txetcd package")
        with open(os.path.join(unpacking, _MARKER), "w") as f:
            f.write(commit)
        shutil.rmtree(tree, ignore_errors=True)
        os.rename(unpacking, tree)
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)  # gone already when it was renamed
    return baseline


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def baseline_row(clients: dict[str, ClientDef], baseline: Baseline) -> ClientDef | None:
    """The suite's txetcd row, importing txetcd from the baseline's tree (``None``: no txetcd)."""
    ours = clients.get(TXETCD)
    if ours is None:
        return None
    return replace(
        ours,
        name=baseline.name,
        tree=baseline.tree,
        note=f"txetcd at {baseline.rev} ({baseline.commit[:12]}): the baseline",
        watch_worker=None,
    )


def _stat(
    meds: dict[str, dict[str, report.Stat]], name: str, fig: report.Figure, field: str
) -> Any:
    return meds.get(name, {}).get(fig.key, {}).get(field)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def compare(
    samples: Sequence[report.Sample],
    meds: dict[str, dict[str, report.Stat]],
    figures: Sequence[report.Figure],
    baseline: Baseline,
    margin: float = MARGIN,
) -> list[dict[str, Any]]:
    """txetcd / the baseline on every figure: medians, per-round ratios, CPU per op, verdict."""
    rows: list[dict[str, Any]] = []
    for fig in figures:
        ours = _stat(meds, TXETCD, fig, "ops_per_s")
        theirs = _stat(meds, baseline.name, fig, "ops_per_s")
        ratio = _ratio(ours, theirs)
        by_round: dict[str, dict[int, float]] = {TXETCD: {}, baseline.name: {}}
        for s in samples:
            if s.figure == fig.key and s.client in by_round:
                by_round[s.client][s.round] = s.ops_per_s
        mine, base = by_round[TXETCD], by_round[baseline.name]
        rows.append(
            {
                "figure": fig.label,
                "key": fig.key,
                "txetcd": ours,
                "baseline": theirs,
                "ratio": ratio,
                "round_ratios": [mine[r] / base[r] for r in sorted(mine) if base.get(r)],
                "client_ms_ratio": _ratio(
                    _stat(meds, TXETCD, fig, "client_ms"),
                    _stat(meds, baseline.name, fig, "client_ms"),
                ),
                "etcd_ms_ratio": _ratio(
                    _stat(meds, TXETCD, fig, "etcd_ms"),
                    _stat(meds, baseline.name, fig, "etcd_ms"),
                ),
                "minimum": 1.0 - margin,
                "verdict": None if ratio is None else ("PASS" if ratio >= 1.0 - margin else "FAIL"),
            }
        )
    return rows


def passed(rows: Sequence[dict[str, Any]]) -> bool:
    """Every figure was measured for both rows and none is more than the margin below."""
    return bool(rows) and all(r["verdict"] == "PASS" for r in rows)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _table(rows: Sequence[dict[str, Any]], baseline: Baseline, margin: float) -> report.Table:
    minimum = 1.0 - margin
    heads = [
        "figure",
        "txetcd",
        baseline.name,
        "ratio",
        "per round",
        "client CPU/op",
        "etcd CPU/op",
        f">= {minimum:.2f}x",
    ]
    cells = [
        [
            r["figure"],
            "–" if r["txetcd"] is None else f"{r['txetcd']:,.0f}",
            "–" if r["baseline"] is None else f"{r['baseline']:,.0f}",
            _x(r["ratio"]),
            " ".join(f"{x:.2f}" for x in r["round_ratios"]) or "–",
            _x(r["client_ms_ratio"]),
            _x(r["etcd_ms_ratio"]),
            r["verdict"] or "n/a",
        ]
        for r in rows
    ]
    aa = "; A/A: the same code in both rows" if baseline.same_as_head else ""
    title = (
        f"txetcd / {baseline.title}, the baseline (ops/s medians, same run{aa}; "
        f"CPU per op: txetcd's / the baseline's, lower is better)"
    )
    return (title, heads, cells)


def _verdict_line(rows: Sequence[dict[str, Any]], baseline: Baseline, margin: float) -> str:
    if not rows or any(r["verdict"] is None for r in rows):
        overall = "INCOMPLETE (a figure is missing)"
    else:
        overall = "PASS" if passed(rows) else "FAIL"
    parts = ", ".join(f"{r['figure']} {_x(r['ratio'])}" for r in rows)
    return (
        f"baseline (no figure more than {margin:.0%} below {baseline.name}): {overall}  [{parts}]"
    )


def text(rows: Sequence[dict[str, Any]], baseline: Baseline, margin: float = MARGIN) -> str:
    """The comparison as an aligned plain-text table and its verdict line."""
    out = report.text_tables([_table(rows, baseline, margin)])
    out.append(_verdict_line(rows, baseline, margin))
    return "\n".join(out)


def markdown(rows: Sequence[dict[str, Any]], baseline: Baseline, margin: float = MARGIN) -> str:
    """The comparison as a Markdown table and its verdict line."""
    out = report.markdown_tables([_table(rows, baseline, margin)])
    out.extend([_verdict_line(rows, baseline, margin), ""])
    return "\n".join(out)


def document(
    rows: Sequence[dict[str, Any]], baseline: Baseline, margin: float = MARGIN
) -> dict[str, Any]:
    """The comparison for the JSON output."""
    return {
        "rev": baseline.rev,
        "commit": baseline.commit,
        "name": baseline.name,
        "same_as_head": baseline.same_as_head,
        "margin": margin,
        "comparison": list(rows),
        "passed": passed(rows),
    }
