"""The README's demo command works on its own, from a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_command_runs_its_own_etcd() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-m", "txetcd", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "etcd is up at http://127.0.0.1:" in text
    assert "get demo/config/colour                  -> demo/config/colour = 'blue'" in text
    assert "succeeded=True" in text and "succeeded=False" in text
    assert "create-if-absent twice                  -> first True, second False" in text
    assert "RevisionCompacted" in text
    assert "3 keys deleted" in text
    # the watch saw every change exactly once across a connection reset
    assert "PUT demo/live/a=1@" in text and "PUT demo/live/a=2@" in text
    assert "DELETE demo/live/a=@" in text and text.count("demo/live/a=2@") == 1
    assert "lease revoked, key gone: True" in text
    assert "etcd stopped and its data removed" in text
