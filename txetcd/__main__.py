"""``python -m txetcd``: the ``txetcd`` command line (etcdctl's verbs, and ``demo``)."""

from __future__ import annotations

from txetcd._cli._main import main

if __name__ == "__main__":
    main()
