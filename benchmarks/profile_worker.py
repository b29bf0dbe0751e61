"""Profile one worker's timed loop in-process with cProfile (``python -m cProfile`` sees nothing:
a worker ends with ``os._exit``).

    python benchmarks/profile_worker.py txetcd_v2_worker /tmp/v2-put.prof \\
        '{"endpoint": "http://127.0.0.1:2379", "op": "put", "concurrency": 32, "prefix": "/bench/"}'
    python -m pstats /tmp/v2-put.prof      # then: sort tottime, stats 25

The spec is a worker spec (``workers/_common.py``); the key set must exist (``"op": "populate"``
first). Run it with the interpreter of the worker's venv for a peer.
"""

from __future__ import annotations

import cProfile
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers"))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    module_name, out, spec_json = argv
    worker = importlib.import_module(module_name.removesuffix(".py"))
    from _common import Spec, Workload

    spec = Spec.from_json(spec_json)
    profile = cProfile.Profile()
    profile.enable()
    result = worker.run(spec, Workload(spec))
    profile.disable()
    profile.dump_stats(out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
