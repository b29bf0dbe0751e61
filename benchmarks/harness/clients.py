"""The clients the harness knows: where their worker is, what to pip install, how they read."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLIENTS", "TXETCD", "ClientDef", "select"]

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


def select(names: str | None, extra: tuple[str, ...] = ()) -> tuple[ClientDef, ...]:
    """The clients named in a comma-separated list (all when ``names`` is empty), in table order.

    Names in ``extra`` (e.g. ``h2load``, which is no client) are accepted and left out.
    """
    if not names:
        return tuple(CLIENTS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in CLIENTS and n not in extra]
    if unknown:
        known = ", ".join([*CLIENTS, *extra])
        raise SystemExit(f"unknown client(s): {', '.join(unknown)}; known: {known}")
    return tuple(c for name, c in CLIENTS.items() if name in wanted)
