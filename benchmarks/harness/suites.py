"""The put/get suites: the same rounds and tables over three APIs (gRPC, v2 keys, JSON gateway).

``kv`` is txetcd's gRPC client against the gRPC peers with h2load as the wire limit; ``v2`` and
``gateway`` run the same machinery (workers, interleaved rounds, medians, ratios) against etcd's
HTTP/1.1 APIs, with wrk as their wire limit. Each names its rows, its etcd flags, its key prefix
and its bar.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import report
from harness.clients import CLIENTS, GATEWAY_CLIENTS, V2_CLIENTS, ClientDef
from harness.rounds import H2LOAD
from harness.wrk import WRK

__all__ = ["GATEWAY", "KV", "KV_SUITES", "V2", "KvSuite"]


@dataclass(frozen=True)
class KvSuite:
    """One put/get suite.

    :param name: ``--suite`` name.
    :param clients: its rows (``txetcd`` first), from :mod:`harness.clients`.
    :param bar: what txetcd must reach.
    :param wire: the wire-limit tool (``h2load`` or ``wrk``).
    :param wire_label: the wire limit's row title.
    :param api: what the wire limit speaks (``grpc``, ``v2`` or ``gateway``).
    :param etcd_args: more etcd flags.
    :param prefix: the key prefix (v2 keys are paths: ``/bench/00000``).
    """

    name: str
    clients: dict[str, ClientDef]
    bar: report.Bar
    wire: str
    wire_label: str
    api: str
    etcd_args: tuple[str, ...] = ()
    prefix: str = "bench/"


KV = KvSuite(
    "kv",
    CLIENTS,
    report.KV_BAR,
    H2LOAD,
    "h2load, raw gRPC (wire limit)",
    "grpc",
)

V2 = KvSuite(
    "v2",
    V2_CLIENTS,
    report.Bar(
        {1: 1.5, 32: 3.0},
        what="txetcd >= the faster of python-etcd/k3etcd x1.5 (seq), x3 (c32)",
        show_wire=True,
    ),
    WRK,
    "wrk, v2 keys API (wire limit)",
    "v2",
    etcd_args=("--enable-v2=true",),
    prefix="/bench/",
)

GATEWAY = KvSuite(
    "gateway",
    GATEWAY_CLIENTS,
    report.Bar(
        {32: 0.6},
        against="wire",
        what="txetcd >= 0.6x wrk, the wire limit (c32)",
    ),
    WRK,
    "wrk, v3 JSON gateway (wire limit)",
    "gateway",
)

KV_SUITES = {s.name: s for s in (KV, V2, GATEWAY)}
