"""k3etcd worker (v2 keys API over blocking ``http.client``, a new connection per request)."""

from __future__ import annotations

from typing import Any

import k3etcd  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _v2_style import run_with


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return run_with(k3etcd, spec, wl)


if __name__ == "__main__":
    main(run, ("k3etcd", "k3http"))
