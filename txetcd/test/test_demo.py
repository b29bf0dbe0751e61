"""The README's demo command works on its own, from a fresh process, and cleans up when stopped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from txetcd.test.helpers import adopting_orphans, process_gone, read_line, wait_gone


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
    # a mirrored prefix, a fenced write refused after the lock changed hands, an election hand-over
    assert (
        "demo/mirror/colour -> 'blue'; demo/mirror/size -> '10'; demo/mirror/colour -> (deleted);"
        " local copy: demo/mirror/size=10" in text
    )
    assert "a's fenced write applied: False; b's: True" in text
    assert "node-1 resigned; leader now 'node-2'" in text
    assert "observed leaders                      -> node-1, node-2" in text
    assert "Traceback" not in out.stderr and "Unhandled" not in out.stderr
    assert "etcd stopped and its data removed" in text


# The demo with a tour that waits until a signal stops it (the rest is the real demo).
_DEMO_HELD = """
import signal
from twisted.internet import defer
import txetcd._demo as demo

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if ignored here

async def tour(client, say):
    say("the tour is under way")
    await defer.Deferred()

demo.tour = tour
demo.run()
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: signal.Signals(s).name
)
def test_the_demo_takes_its_etcd_along_when_stopped(sig: int) -> None:
    with adopting_orphans():
        demo = subprocess.Popen(
            [sys.executable, "-u", "-c", _DEMO_HELD],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        pid, data_dir = 0, ""
        try:
            while True:
                line = read_line(demo, timeout=60)
                up = re.match(r"etcd is up at http://\S+ \(pid (\d+), data in (.+)\)$", line)
                if up:
                    pid, data_dir = int(up.group(1)), up.group(2)
                    break
            assert read_line(demo, timeout=60) == "the tour is under way\n"
            demo.send_signal(sig)
            rest = demo.communicate(timeout=60)[0].decode()  # bounded: nothing may hang
            wait_gone(pid, timeout=30)
            if sig == signal.SIGKILL:
                assert os.path.isdir(data_dir)  # no process can clean up after SIGKILL
            else:
                assert rest == "interrupted: etcd stopped and its data removed\n"
                assert not os.path.exists(data_dir)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
            if pid and not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, timeout=30)
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
