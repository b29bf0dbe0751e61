"""etcd-sdk-python worker (module ``pyetcd``; blocking grpcio, N threads for N in flight)."""

from __future__ import annotations

from typing import Any

import pyetcd  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _etcd3_style import run_with


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return run_with(pyetcd, spec, wl)


if __name__ == "__main__":
    main(run, ("etcd-sdk-python", "grpcio", "protobuf"))
