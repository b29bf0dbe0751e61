"""The clients the harness knows: where their worker is, what to pip install, how they read."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLIENTS", "GATEWAY_CLIENTS", "TXETCD", "V2_CLIENTS", "ClientDef", "select"]

TXETCD = "txetcd"


@dataclass(frozen=True)
class ClientDef:
    """One client under test.

    :param name: the name used on the command line (``--clients``) and in the results.
    :param worker: the worker script in ``benchmarks/workers/``.
    :param venv: the venv (under ``benchmarks/.venvs/``) whose Python runs the worker; ``None``
        runs it with the harness's own interpreter (txetcd, imported from the repository).
    :param requirements: what ``pip install`` puts into that venv (exact pins: a rerun measures
        the same code).
    :param linearizable: whether its gets are linearizable reads (only those are compared with
        txetcd's gets; serializable reads may be stale and cost etcd less).
    :param ops: the operations measured for it.
    :param variant: passed to the worker (e.g. etcetra's linearizable read path).
    :param note: one line for the report.
    :param watch_worker: its worker for the watch suite (``None``: not in that suite).
    :param tree: for a txetcd row only: the txetcd source tree its worker imports instead of this
        checkout (``--baseline``: txetcd as it was at another commit).
    """

    name: str
    worker: str
    venv: str | None
    requirements: tuple[str, ...] = ()
    linearizable: bool = True
    ops: tuple[str, ...] = ("put", "get")
    variant: str | None = None
    note: str = ""
    watch_worker: str | None = None
    tree: str | None = None


_ETCETRA_REQS = ("etcetra==0.1.19",)

CLIENTS: dict[str, ClientDef] = {
    c.name: c
    for c in (
        ClientDef(
            TXETCD,
            "txetcd_worker.py",
            None,
            note="Twisted; gRPC on txetcd's own HTTP/2 layer; 1 connection",
            watch_worker="txetcd_watch.py",
        ),
        ClientDef(
            "etcetra",
            "etcetra_worker.py",
            "etcetra",
            _ETCETRA_REQS,
            linearizable=False,
            note="grpc.aio; get() always reads serializably (may be stale)",
            watch_worker="etcetra_watch.py",
        ),
        ClientDef(
            "etcetra-lin",
            "etcetra_worker.py",
            "etcetra",
            _ETCETRA_REQS,
            ops=("get",),
            variant="linearizable",
            note="etcetra's linearizable read: read-only txn with get(serializable=False)",
        ),
        ClientDef(
            "aetcd",
            "aetcd_worker.py",
            "aetcd",
            ("aetcd==1.0.0",),
            note="grpc.aio",
            watch_worker="aetcd_watch.py",
        ),
        ClientDef(
            "etcd3aio",
            "etcd3aio_worker.py",
            "etcd3aio",
            ("etcd3aio==0.3.0",),
            note="grpc.aio",
            watch_worker="etcd3aio_watch.py",
        ),
        ClientDef(
            "python3-etcd3",
            "python3_etcd3_worker.py",
            "python3-etcd3",
            ("python3-etcd3==0.13.0",),
            note="blocking grpcio; N threads for N in flight",
        ),
        ClientDef(
            "etcd-sdk-python",
            "etcd_sdk_python_worker.py",
            "etcd-sdk-python",
            # It imports google.protobuf but does not declare it.
            ("etcd-sdk-python==0.0.7", "protobuf>=4.21,<8"),
            note="blocking grpcio; N threads for N in flight",
        ),
    )
}


V2_CLIENTS: dict[str, ClientDef] = {
    c.name: c
    for c in (
        ClientDef(
            TXETCD,
            "txetcd_v2_worker.py",
            None,
            note="Twisted; txetcd.v2.Client over txetcd's HTTP/1.1 keep-alive pool",
        ),
        ClientDef(
            "python-etcd",
            "python_etcd_worker.py",
            "python-etcd",
            ("python-etcd==0.4.5",),
            note="blocking urllib3; N threads for N in flight",
        ),
        ClientDef(
            "k3etcd",
            "k3etcd_worker.py",
            "k3etcd",
            ("k3etcd==0.2.3",),
            note="blocking http.client, a new connection per request; N threads",
        ),
    )
}
"""The ``v2`` suite's rows (etcd's v2 keys API, ``--enable-v2=true``)."""

GATEWAY_CLIENTS: dict[str, ClientDef] = {
    c.name: c
    for c in (
        ClientDef(
            TXETCD,
            "txetcd_gateway_worker.py",
            None,
            note="Twisted; Client(transport='gateway'): the v3 JSON gateway over HTTP/1.1",
        ),
        ClientDef(
            "txaioetcd",
            "txaioetcd_worker.py",
            "txaioetcd",
            ("txaioetcd==18.10.2",),
            note="Twisted/treq; its /v3alpha/ paths patched to /v3/ at run time",
        ),
        ClientDef(
            "etcd3gw",
            "etcd3gw_worker.py",
            "etcd3gw",
            ("etcd3gw==2.7.0",),
            note="blocking requests; N threads for N in flight",
        ),
    )
}
"""The ``gateway`` suite's rows (the v3 JSON gateway: ``/v3/kv/put``, ``/v3/kv/range``)."""


def select(
    names: str | None,
    extra: tuple[str, ...] = (),
    clients: dict[str, ClientDef] | None = None,
) -> tuple[ClientDef, ...]:
    """The clients named in a comma-separated list (all when ``names`` is empty), in table order.

    ``clients`` is the suite's table (:data:`CLIENTS` by default). Names in ``extra`` (e.g.
    ``h2load``, which is no client) are accepted and left out.
    """
    table = CLIENTS if clients is None else clients
    if not names:
        return tuple(table.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in table and n not in extra]
    if unknown:
        known = ", ".join([*table, *extra])
        raise SystemExit(f"unknown client(s): {', '.join(unknown)}; known: {known}")
    return tuple(c for name, c in table.items() if name in wanted)
