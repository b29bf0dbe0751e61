"""python-etcd worker (module ``etcd``; v2 keys API over blocking urllib3, N threads)."""

from __future__ import annotations

import logging
from typing import Any

import etcd  # type: ignore[import-not-found]
from _common import Spec, Workload, main
from _v2_style import run_with

# urllib3 warns "Connection pool is full, discarding connection" for every request past the
# client's 10 pooled connections (32 threads); the warning is noise here, the churn is measured.
logging.getLogger("urllib3").setLevel(logging.ERROR)


def run(spec: Spec, wl: Workload) -> dict[str, Any]:
    return run_with(etcd, spec, wl)


if __name__ == "__main__":
    main(run, ("python-etcd", "urllib3"))
