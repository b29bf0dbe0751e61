"""Tests for ``--baseline``: the unpacked tree, the import guard, pairing and the comparison.

No etcd and no measurement: ``python -m pytest -q -p no:cacheprovider benchmarks/test_baseline.py``
(outside the suite's ``testpaths``, like the rest of the harness).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from harness import baseline, report
from harness.clients import CLIENTS, TXETCD
from harness.rounds import _back_to_back
from harness.venvs import SetupError
from harness.workers import TREE_ENV, WORKERS_DIR

BASE = "txetcd@abc1234"


def _git(repo: str, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    out = subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True, env=env
    )
    return out.stdout.strip()


def _commit(repo: str, text: str) -> str:
    os.makedirs(os.path.join(repo, "txetcd"), exist_ok=True)
    with open(os.path.join(repo, "txetcd", "__init__.py"), "w") as f:
        f.write(text)
    _git(repo, "add", "txetcd/__init__.py")
    _git(repo, "commit", "-q", "-m", text)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: object) -> str:
    path = os.path.join(str(tmp_path), "repo")
    os.makedirs(path)
    _git(path, "init", "-q")
    return path


def _quiet(message: str) -> None:
    pass


def test_tree_is_the_package_at_that_commit(repo: str, tmp_path: object) -> None:
    first = _commit(repo, "VERSION = 1\n")
    _commit(repo, "VERSION = 2\n")
    root = os.path.join(str(tmp_path), "venvs")
    b = baseline.prepare_tree("HEAD~1", root, repo=repo, say=_quiet)
    assert b.commit == first
    assert b.name == f"txetcd@{first[:7]}"
    assert b.title == f"txetcd@{first[:7]} (HEAD~1)"
    assert not b.same_as_head
    with open(os.path.join(b.tree, "txetcd", "__init__.py")) as f:
        assert f.read() == "VERSION = 1\n"
    assert os.listdir(root) == [os.path.basename(b.tree)]  # no half-unpacked leftovers


def test_tree_is_reused_while_the_commit_is_the_same(repo: str, tmp_path: object) -> None:
    _commit(repo, "VERSION = 1\n")
    root = os.path.join(str(tmp_path), "venvs")
    said: list[str] = []
    b = baseline.prepare_tree("HEAD", root, repo=repo, say=said.append)
    stamp = os.path.join(b.tree, "txetcd", "stamp")
    open(stamp, "w").close()
    again = baseline.prepare_tree(b.commit, root, repo=repo, say=said.append)
    assert again.tree == b.tree and os.path.exists(stamp)
    assert "unpacking" in said[0] and "unpacking" not in said[1]


def test_same_as_head_only_for_a_clean_head(repo: str, tmp_path: object) -> None:
    _commit(repo, "VERSION = 1\n")
    root = os.path.join(str(tmp_path), "venvs")
    assert baseline.prepare_tree("HEAD", root, repo=repo, say=_quiet).same_as_head
    with open(os.path.join(repo, "txetcd", "__init__.py"), "a") as f:
        f.write("# edited\n")
    assert not baseline.prepare_tree("HEAD", root, repo=repo, say=_quiet).same_as_head


@pytest.mark.parametrize("rev", ["no-such-rev", "-h", ""])
def test_a_bad_revision_is_a_setup_error(repo: str, tmp_path: object, rev: str) -> None:
    _commit(repo, "VERSION = 1\n")
    with pytest.raises(SetupError):
        baseline.prepare_tree(rev, str(tmp_path), repo=repo, say=_quiet)


def test_a_commit_without_txetcd_is_a_setup_error(repo: str, tmp_path: object) -> None:
    with open(os.path.join(repo, "README"), "w") as f:
        f.write("x\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "no package")
    with pytest.raises(SetupError):
        baseline.prepare_tree("HEAD", os.path.join(str(tmp_path), "v"), repo=repo, say=_quiet)


def _import_txetcd(tree: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TREE_ENV}
    if tree is not None:
        env[TREE_ENV] = tree
    code = "import _tx, txetcd; print(txetcd.__file__)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=WORKERS_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_worker_imports_txetcd_from_the_tree(repo: str, tmp_path: object) -> None:
    _commit(repo, "VERSION = 1\n")
    b = baseline.prepare_tree("HEAD", str(tmp_path), repo=repo, say=_quiet)
    out = _import_txetcd(b.tree)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.join(b.tree, "txetcd", "__init__.py")
    checkout = os.path.dirname(BENCH_DIR)
    assert _import_txetcd(None).stdout.strip() == os.path.join(checkout, "txetcd", "__init__.py")


def test_worker_refuses_a_tree_without_txetcd(tmp_path: object) -> None:
    out = _import_txetcd(str(tmp_path))
    assert out.returncode != 0
    assert f"{TREE_ENV}=" in out.stderr and "not imported from there" in out.stderr


def test_baseline_row_is_txetcd_with_the_tree() -> None:
    b = baseline.Baseline("HEAD~1", "abc1234" + "0" * 33, BASE, "/t")
    row = baseline.baseline_row(CLIENTS, b)
    assert row is not None
    assert (row.name, row.worker, row.venv, row.tree) == (BASE, "txetcd_worker.py", None, "/t")
    assert row.watch_worker is None
    assert baseline.baseline_row({}, b) is None


@pytest.mark.parametrize("rnd", [1, 2, 3, 4])
def test_pair_runs_back_to_back_taking_turns(rnd: int) -> None:
    names = [TXETCD, BASE, "etcetra", "aetcd", "h2load"]
    shift = (rnd - 1) % len(names)
    order = _back_to_back(names[shift:] + names[:shift], (TXETCD, BASE), rnd)
    assert sorted(order) == sorted(names)
    at = order.index(TXETCD)
    if rnd % 2:
        assert order[at + 1] == BASE
    else:
        assert order[at - 1] == BASE


def _sample(client: str, rnd: int, ops: float, fig: str = "put/1") -> report.Sample:
    return report.Sample(client, fig, rnd, ops, 0.1 if client == TXETCD else 0.2, 0.3)


def test_compare_ratios_and_margin() -> None:
    b = baseline.Baseline("HEAD~1", "abc1234" + "0" * 33, BASE, "/t")
    figures = report.figures_for([1])
    samples = [
        _sample(TXETCD, 1, 960.0),
        _sample(BASE, 1, 1000.0),
        _sample(TXETCD, 2, 950.0),
        _sample(BASE, 2, 1000.0),
        _sample(TXETCD, 1, 2000.0, "get/1"),
        _sample(BASE, 1, 1000.0, "get/1"),
    ]
    meds = report.medians(samples)
    rows = baseline.compare(samples, meds, figures, b, margin=0.05)
    put, get = rows
    assert put["ratio"] == pytest.approx(0.955)
    assert put["round_ratios"] == pytest.approx([0.96, 0.95])
    assert put["client_ms_ratio"] == pytest.approx(0.5)
    assert (put["verdict"], get["verdict"]) == ("PASS", "PASS")
    assert baseline.passed(rows)
    strict = baseline.compare(samples, meds, figures, b, margin=0.04)
    assert [r["verdict"] for r in strict] == ["FAIL", "PASS"]
    assert not baseline.passed(strict)
    assert "FAIL" in baseline.text(strict, b, 0.04)


def test_a_missing_figure_is_incomplete() -> None:
    b = baseline.Baseline("HEAD~1", "abc1234" + "0" * 33, BASE, "/t")
    samples = [_sample(TXETCD, 1, 1000.0)]
    rows = baseline.compare(samples, report.medians(samples), report.figures_for([1]), b)
    assert [r["verdict"] for r in rows] == [None, None]
    assert not baseline.passed(rows)
    assert "INCOMPLETE" in baseline.text(rows, b)
    assert baseline.document(rows, b)["passed"] is False
