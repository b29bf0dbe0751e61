"""``python -m txetcd``: command-line entry points (``demo`` for now)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(
        prog="python -m txetcd", description="txetcd, the etcd client for Twisted"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="a short tour against a throwaway local etcd it starts itself"
    )
    demo.add_argument(
        "--endpoint",
        help=(
            "use this running etcd (http://host:port) instead of starting one; careful: the demo"
            " writes and deletes keys under demo/ and compacts that etcd's history"
        ),
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from txetcd._demo import run

        run(args.endpoint)


if __name__ == "__main__":
    main(sys.argv[1:])
