"""txetcd.testing.EtcdServer: failed starts say why and leave nothing behind; etcd never outlives
its parent; a restart that does not block the reactor."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from txetcd import Client
from txetcd.test.helpers import adopting_orphans, process_gone, reactor, read_line, wait_gone
from txetcd.testing import EtcdCluster, EtcdServer, EtcdStartError


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory that temporary files (etcd's data dirs among them) go to during the test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path


def fake_etcd(where: Path, script: str) -> str:
    """An executable shell script that stands in for the etcd binary."""
    path = where / "fake-etcd"
    version = 'if [ "$1" = --version ]; then echo "etcd Version: 3.5.1"; exit 0; fi\n'
    path.write_text("#!/bin/sh\n" + version + script)
    path.chmod(0o755)
    return str(path)


def until_written(server: EtcdServer) -> None:
    """Wait (real time, bounded) until the fake etcd has written its first line."""
    deadline = time.monotonic() + 30
    while not server.output():
        assert time.monotonic() < deadline, "the fake etcd wrote nothing"
        time.sleep(0.01)


def data_dirs(where: Path) -> list[str]:
    return [p.name for p in where.iterdir() if p.name.startswith("txetcd-")]


def test_a_bad_flag_is_reported_with_etcds_words_and_leaves_no_data_dir(tmp: Path) -> None:
    server = EtcdServer(["--no-such-flag"])
    with pytest.raises(EtcdStartError) as e:
        server.start()
    assert e.value.returncode == 2
    assert "exited with status 2" in str(e.value)
    assert "flag provided but not defined: -no-such-flag" in str(e.value)
    assert e.value.output in str(e.value)
    assert server.data_dir is None and data_dirs(tmp) == []
    assert not server.running


def test_a_cluster_that_fails_to_start_stops_every_member(tmp: Path) -> None:
    cluster = EtcdCluster(2, ["--no-such-flag"])
    with pytest.raises(EtcdStartError, match="flag provided but not defined"):
        cluster.start()
    assert not any(m.running for m in cluster.members) and data_dirs(tmp) == []


def test_a_crash_shows_the_last_lines_of_output(tmp: Path) -> None:
    binary = fake_etcd(tmp, "for i in $(seq 1 40); do echo line-$i; done\nexit 3\n")
    with pytest.raises(EtcdStartError) as e:
        EtcdServer(binary=binary).start()
    assert e.value.returncode == 3
    lines = e.value.output.splitlines()
    assert lines == [f"line-{i}" for i in range(16, 41)]  # the last 25 lines
    assert "line-40" in str(e.value) and "line-15\n" not in str(e.value)
    assert data_dirs(tmp) == []


def test_a_binary_that_cannot_run_is_an_etcd_start_error(tmp: Path) -> None:
    path = tmp / "not-executable"
    path.write_text("")
    with pytest.raises(EtcdStartError, match="could not run"):
        EtcdServer(binary=str(path)).start()
    assert data_dirs(tmp) == []


def test_not_healthy_in_time_kills_etcd_and_removes_the_data_dir(tmp: Path) -> None:
    binary = fake_etcd(tmp, "echo still getting ready\nexec sleep 60\n")
    server = EtcdServer(binary=binary, startup_timeout=0.3)
    pids: list[int] = []
    real_launch = server._launch

    def launch() -> None:
        real_launch()
        assert server.pid is not None
        pids.append(server.pid)

    server._launch = launch  # type: ignore[method-assign]
    with pytest.raises(EtcdStartError) as e:
        server.start()
    assert "did not become healthy within 0.3 s" in str(e.value)
    assert "still getting ready" in e.value.output
    assert e.value.returncode is None
    assert len(pids) == 1 and process_gone(pids[0])
    assert data_dirs(tmp) == []


def test_start_async_gives_up_at_the_deadline_on_the_reactors_clock(tmp: Path) -> None:
    binary = fake_etcd(tmp, "echo still getting ready\nexec sleep 60\n")
    clock = MemoryReactorClock()
    server = EtcdServer(binary=binary, startup_timeout=5.0)
    d = server.start_async(clock)
    pid = server.pid
    assert pid is not None and not d.called
    until_written(server)
    assert clock.tcpClients and clock.tcpClients[0][:2] == ("127.0.0.1", server.client_port)
    while clock.seconds() < 4.9:
        clock.advance(0.05)
        assert not d.called, clock.seconds()
    for _ in range(40):
        clock.advance(0.05)
    failures: list[Any] = []
    d.addErrback(failures.append)
    (failure,) = failures
    assert failure.check(EtcdStartError)
    assert "did not become healthy within 5.0 s" in str(failure.value)
    assert "still getting ready" in failure.value.output
    assert process_gone(pid) and data_dirs(tmp) == []
    assert clock.getDelayedCalls() == []
    for connector in clock.connectors:  # every probe that could not connect was given up
        assert connector.stoppedConnecting


def test_cancelling_start_async_kills_etcd_and_removes_the_data_dir(tmp: Path) -> None:
    binary = fake_etcd(tmp, "exec sleep 60\n")
    clock = MemoryReactorClock()
    server = EtcdServer(binary=binary)
    d = server.start_async(clock)
    pid = server.pid
    assert pid is not None
    clock.advance(1.5)
    d.cancel()
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(defer.CancelledError)
    assert process_gone(pid) and data_dirs(tmp) == [] and not server.running
    assert clock.getDelayedCalls() == []


def test_start_async_of_a_running_server_is_refused_synchronously() -> None:
    clock = MemoryReactorClock()
    server = EtcdServer()
    server._process = subprocess.Popen(["sleep", "60"])  # stands in for a running etcd
    try:
        with pytest.raises(RuntimeError, match="already running"):
            server.start_async(clock)
    finally:
        server.kill()


@pytest_twisted.ensureDeferred
async def test_start_async_reports_a_crash(tmp: Path) -> None:
    binary = fake_etcd(tmp, "echo cannot go on\nexit 4\n")
    with pytest.raises(EtcdStartError) as e:
        await EtcdServer(binary=binary).start_async(reactor())
    assert e.value.returncode == 4 and "cannot go on" in str(e.value)
    assert data_dirs(tmp) == []


@pytest_twisted.ensureDeferred
async def test_restart_inside_the_reactor_does_not_block_it(
    etcd_server_private: EtcdServer,
) -> None:
    server = etcd_server_private
    client = Client(server.endpoint, reactor=reactor(), timeout=10)
    try:
        await client.put(b"restart/k", b"before")
        old = server.pid
        assert old is not None
        d = server.restart(reactor())
        assert not d.called  # the reactor runs on while etcd comes up
        assert await d is server
        assert server.running and server.pid != old and process_gone(old)
        # the next write goes through: etcd answers by the time the Deferred fires
        assert (await client.put(b"restart/k", b"after")).header.revision > 0
        assert (await client.get(b"restart/k")).value == b"after"
        # a restart after kill(): the same ports, the same data
        server.kill()
        assert await server.start_async(reactor()) is server
        assert (await client.get(b"restart/k")).value == b"after"
    finally:
        await client.close()


def test_a_restart_on_a_taken_port_fails_and_keeps_the_data(
    etcd_server_private: EtcdServer,
) -> None:
    server = etcd_server_private
    server.kill()
    data_dir = server.data_dir
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", server.client_port))
        squatter.listen()
        with pytest.raises(EtcdStartError) as e:
            server.start()
    assert "address already in use" in str(e.value)
    assert server.data_dir == data_dir and data_dir is not None and os.path.isdir(data_dir)
    assert not server.running
    server.start()  # the port is free again: the same member comes back
    assert server.running


_HOLD_ETCD = """
import sys, time
from txetcd.testing import EtcdServer
server = EtcdServer().start()
print(server.pid, server.data_dir, flush=True)
time.sleep(600)
"""


def test_etcd_dies_with_a_parent_that_is_killed_outright() -> None:
    with adopting_orphans():
        parent = subprocess.Popen(
            [sys.executable, "-c", _HOLD_ETCD], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        _parent_killed_then_etcd_gone(parent)


def _parent_killed_then_etcd_gone(parent: "subprocess.Popen[bytes]") -> None:
    pid, data_dir = 0, ""
    try:
        pid_text, data_dir = read_line(parent, timeout=60).split()
        pid = int(pid_text)
        assert not process_gone(pid)
        parent.kill()
        parent.wait()
        wait_gone(pid, timeout=30)  # bounded so that a failure cannot hang; it takes ~ms
        assert os.path.isdir(data_dir)  # nothing could remove it: SIGKILL cannot be handled
    finally:
        parent.kill()
        parent.wait()
        if pid and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)  # the test failed: leave no etcd behind
            wait_gone(pid, timeout=30)
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
