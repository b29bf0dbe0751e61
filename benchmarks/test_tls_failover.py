"""Tests for the tls and failover suites' logic: verdicts, recovery times, per-row overrides.

No etcd and no measurement:
``python -m pytest -q -p no:cacheprovider benchmarks/test_tls_failover.py``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import pytest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from harness import failover, report, tls
from harness.workers import WORKERS_DIR, WorkerSpec

if WORKERS_DIR not in sys.path:
    sys.path.append(WORKERS_DIR)
from _common import Spec
from _failover import FailoverSpec, Record, recoveries


def _meds(values: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float | None]]]:
    return {c: {f: {"ops_per_s": v} for f, v in figs.items()} for c, figs in values.items()}


def test_plain_bar_is_judged_at_c32_only() -> None:
    figs = tls.figures([1, 32, 128])
    assert [f.key for f in figs] == ["put/1", "get/1", "put/32", "get/32"]
    meds = _meds(
        {
            "txetcd": {"put/1": 100.0, "get/1": 100.0, "put/32": 760.0, "get/32": 740.0},
            tls.PLAIN: {"put/1": 1000.0, "get/1": 1000.0, "put/32": 1000.0, "get/32": 1000.0},
        }
    )
    rows = tls.plain_ratios(meds, figs)
    assert [r["verdict"] for r in rows] == ["FAIL", "FAIL", "PASS", "FAIL"]
    assert [r["in_bar"] for r in rows] == [False, False, True, True]
    assert not tls.plain_passed(rows)
    assert "FAIL  [put c32 PASS, get c32 FAIL]" in tls.plain_text(rows)
    rows[3] = {**rows[3], "verdict": "PASS"}
    assert tls.plain_passed(rows)


def test_plain_bar_without_the_plain_row_is_incomplete() -> None:
    rows = tls.plain_ratios(_meds({"txetcd": {"put/32": 5.0}}), tls.figures([32]))
    assert rows[0]["verdict"] is None
    assert not tls.plain_passed(rows)
    assert "INCOMPLETE" in tls.plain_text(rows)


def test_the_plain_row_is_no_peer() -> None:
    figs = tls.figures([32])
    infos = [
        report.ClientInfo("txetcd", "txetcd", "txetcd"),
        report.ClientInfo(tls.PLAIN, "plain", "plain"),
        report.ClientInfo("etcd3aio", "etcd3aio", "peer"),
    ]
    meds = _meds(
        {
            "txetcd": {"put/32": 130.0, "get/32": 120.0},
            tls.PLAIN: {"put/32": 1000.0, "get/32": 1000.0},
            "etcd3aio": {"put/32": 100.0, "get/32": 100.0},
        }
    )
    rows = report.compare(meds, infos, figs, tls.TLS_BAR)
    assert [(r["best_peer"], r["verdict"]) for r in rows] == [
        ("etcd3aio", "PASS"),
        ("etcd3aio", "FAIL"),
    ]


def test_tls_rows_and_the_ca_reach_the_worker_spec() -> None:
    assert "aetcd" not in tls.TLS_CLIENTS and "aetcd" in tls.NO_TLS
    assert tls.TLS_CLIENTS[tls.PLAIN].worker == tls.TLS_CLIENTS["txetcd"].worker
    base = WorkerSpec(endpoint="https://127.0.0.1:1", op="get", ca_cert="/ca.pem", etcd_pid=7)
    plain = replace(base, endpoint="http://127.0.0.1:2", etcd_pid=8, ca_cert=None)
    assert Spec.from_json(base.to_json()).ca_cert == "/ca.pem"
    parsed = Spec.from_json(plain.to_json())
    assert (parsed.endpoint, parsed.etcd_pid, parsed.ca_cert) == ("http://127.0.0.1:2", 8, None)


def test_recovery_is_the_first_write_after_the_grace_and_before_the_next_kill() -> None:
    writes = [9.0, 10.01, 10.04, 10.9, 11.2, 20.5, 31.0]
    # 10.01 and 10.04 are answers already on their way when the leader died: not recovery
    got = recoveries([10.0, 20.0, 30.0], writes, end=40.0)
    assert got == pytest.approx([0.9, 0.5, 1.0])
    assert recoveries([10.0, 20.0], [9.0, 21.0], end=30.0) == [None, pytest.approx(1.0)]
    assert recoveries([10.0], [9.0, 12.0], end=11.0) == [None]  # after the end: not counted
    assert recoveries([], [1.0], end=2.0) == []


def test_the_stop_file_carries_the_kill_times(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "stop")
    rec = Record()
    assert not rec.poll_stop(path)
    with open(path, "w") as f:
        json.dump({"kills": [1, 2.5]}, f)
    assert rec.poll_stop(path) and rec.kills == [1.0, 2.5]
    spec = FailoverSpec.from_json(json.dumps({"op": "run", "prefix": "p/", "writers": 2}))
    assert spec.key(1, 7) == b"p/w01-00000007" and spec.read_key == b"p/r"


def _run(client: str, recs: list[float | None], lost: int = 0, dup: int = 0) -> failover.Run:
    return failover.Run(client, 1, acked=10, lost=lost, duplicates=dup, recoveries=recs)


def test_percentile() -> None:
    assert failover.percentile([], 0.5) is None
    assert failover.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert failover.percentile([1.0, 2.0], 0.95) == pytest.approx(1.95)


def test_failover_bar_against_surviving_peers_only() -> None:
    runs = [
        _run("txetcd", [1.0, 1.2]),
        _run("txetcd-gateway", [1.1, 1.3]),
        _run("etcd3aio", [1.5, 2.0], dup=4),
        _run("python3-etcd3", [None, 0.5]),  # did not recover after a kill: not surviving
        failover.Run("hung", 1, error="failover_x.py failover: no answer in time"),
    ]
    summary = failover.summarize(runs)
    assert summary["etcd3aio"]["survived"] and summary["etcd3aio"]["duplicates"] == 4
    assert not summary["python3-etcd3"]["survived"]
    assert summary["python3-etcd3"]["unrecovered"] == 1
    assert not summary["hung"]["survived"] and summary["hung"]["errors"]
    v = failover.verdicts(summary)
    assert v["surviving_peers"] == ["etcd3aio"]
    assert v["overall"] == "PASS"
    assert v["rows"]["txetcd"]["against"] == {"etcd3aio": pytest.approx(1.975)}


@pytest.mark.parametrize(
    ("txetcd", "failed"),
    [
        (_run("txetcd", [1.0], lost=1), "lost"),
        (_run("txetcd", [1.0], dup=1), "duplicates"),
        (_run("txetcd", [3.0]), "recovery"),
        (_run("txetcd", [None]), "recovery"),
    ],
)
def test_failover_bar_fails(txetcd: failover.Run, failed: str) -> None:
    v = failover.verdicts(failover.summarize([txetcd, _run("etcd3aio", [2.0])]))
    assert v["overall"] == "FAIL"
    assert v["rows"]["txetcd"][failed] == "FAIL"


def test_failover_bar_without_txetcd_is_incomplete() -> None:
    assert failover.verdicts(failover.summarize([_run("etcd3aio", [2.0])]))["overall"] == (
        "INCOMPLETE"
    )


def test_ceiling_puts_the_wire_limit_beside_the_fastest_linearizable_peer() -> None:
    figs = tls.figures([1, 32])
    infos = [
        report.ClientInfo("txetcd", "txetcd", "txetcd"),
        report.ClientInfo("fast", "fast", "peer", linearizable=False),
        report.ClientInfo("slow", "slow", "peer"),
        report.ClientInfo(tls.WIRE_TLS, "h2load", "wire"),
        report.ClientInfo(tls.WIRE_PLAIN, "h2load plain", "plain"),
    ]
    meds = _meds(
        {
            "txetcd": {"get/32": 900.0, "put/1": 100.0},
            "fast": {"get/32": 950.0, "put/1": 80.0},
            "slow": {"get/32": 500.0, "put/1": 90.0},
            tls.WIRE_TLS: {"get/32": 1000.0, "put/1": 110.0},
            tls.WIRE_PLAIN: {"get/32": 4000.0, "put/1": 220.0},
        }
    )
    rows = {r["key"]: r for r in tls.ceiling(meds, infos, figs)}
    # gets: the serializable peer is no bar peer; puts: every peer counts
    assert rows["get/32"]["peer"] == "slow" and rows["get/32"]["headroom"] == 2.0
    assert rows["put/1"]["peer"] == "slow" and abs(rows["put/1"]["headroom"] - 110 / 90) < 1e-9
    assert rows["get/32"]["txetcd_share"] == 0.9
    assert rows["get/32"]["wire_tls_vs_plain"] == 0.25
    assert rows["get/1"]["headroom"] is None
    text = tls.ceiling_text(list(rows.values()))
    assert "slow 500" in text and "90%" in text and "0.25x" in text
