"""``txetcd lock`` and ``txetcd elect`` against etcdctl 3.5 on one real etcd: the same output
and exit codes, and the same keys, so that locks of both exclude each other and candidates
of both take turns in one election. Holding until Ctrl-C is tested on real processes
(``python -m txetcd``) given SIGINT or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Callable, Dict, Iterator, List, Optional

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client
from txetcd.test.helpers import (
    CliRun,
    client_of,
    etcdctl_binary,
    read_line,
    run_etcdctl,
    run_txetcd,
    until,
)
from txetcd.testing import EtcdServer


@pytest.fixture(scope="module")
def server() -> Iterator[EtcdServer]:
    """An etcd of this module's own (etcdctl's sessions leave their leases behind)."""
    with EtcdServer() as s:
        yield s


@pytest_twisted.async_yield_fixture
async def client(server: EtcdServer) -> AsyncIterator[Client]:
    """A client of ``server``; after the test, no lease and no key is left on it."""
    async with client_of(server.endpoint) as c:
        yield c
        for lease_id in await c.leases():
            await c.revoke(lease_id)
        await c.delete(b"\0", range_end=b"\0")


def _endpoint(server: EtcdServer) -> str:
    return f"127.0.0.1:{server.client_port}"


async def _both(server: EtcdServer, *args: str, env: Optional[Dict[str, str]] = None) -> List[str]:
    """``args`` run by etcdctl, then by txetcd: each one's output, stderr and exit code as
    one text, lock keys' lease IDs and revisions replaced by placeholders."""
    texts = []
    for tool in (run_etcdctl, run_txetcd):
        ran: CliRun = await tool("--endpoints", _endpoint(server), *args, env=env)
        text = (ran.out + ran.err).decode() + f"rc={ran.code}\n"
        text = re.sub(r"/[0-9a-f]{1,16}\b", "/<lease>", text)
        texts.append(re.sub(r"<lease> \d+", "<lease> <rev>", text))
    return texts


# -- lock with a command -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_lock_runs_a_command_as_etcdctl(server: EtcdServer, client: Client) -> None:
    script = 'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"; echo to-stderr >&2; exit 3'
    etcdctl, txetcd = await _both(server, "lock", "jobs", "--", "sh", "-c", script)
    assert txetcd == etcdctl == "jobs/<lease> <rev>\nto-stderr\nError: exit status 3\nrc=3\n"
    for args in (
        ["-w", "json", "lock", "jobs", "true"],
        ["lock", "jobs", "--", "sh", "-c", "kill -9 $$"],
        ["lock", "jobs", "nosuchcommand"],
        ["lock", "jobs", "./nosuch/command"],
        ["lock", "--ttl", "0", "jobs", "echo", "ttl 0 is the default"],
    ):
        etcdctl, txetcd = await _both(server, *args)
        assert txetcd == etcdctl
    # the environment wins over the lock's own variables, as with Go's exec
    mine = {"ETCD_LOCK_KEY": "mine"}
    etcdctl, txetcd = await _both(server, "lock", "jobs", "printenv", "ETCD_LOCK_KEY", env=mine)
    assert txetcd == etcdctl == "mine\nrc=0\n"
    assert not await client.get(b"jobs/", prefix=True)


@pytest_twisted.ensureDeferred
async def test_lock_revision_is_the_fencing_token(server: EtcdServer, client: Client) -> None:
    ran = await run_txetcd(
        "--endpoints", _endpoint(server), "lock", "fenced", "--", "sh", "-c", "echo $ETCD_LOCK_REV"
    )
    token = int(ran.out)
    history = await client.get(b"fenced/", prefix=True, revision=token)
    assert [kv.create_revision for kv in history] == [token]
    assert not await client.get(b"fenced/", prefix=True)  # released
    assert not await client.leases()  # and its session's lease revoked


async def _exclusive(holder: str, waiter: str, server: EtcdServer, tmp_path: Path) -> None:
    """``holder`` takes the lock and keeps it a while; ``waiter`` must run its command after."""
    runners = {"etcdctl": run_etcdctl, "txetcd": run_txetcd}
    taken, done = tmp_path / f"{holder}-taken", tmp_path / f"{holder}-done"
    hold = f"touch {taken}; sleep 0.5; touch {done}"
    holding = defer.ensureDeferred(
        runners[holder]("--endpoints", _endpoint(server), "lock", "shared", "--", "sh", "-c", hold)
    )
    await until(taken.exists, what=f"{holder} holds the lock")
    waited = await runners[waiter](
        "--endpoints", _endpoint(server), "lock", "shared", "--", "sh", "-c", f"test -e {done}"
    )
    assert (await holding).code == 0
    assert waited.code == 0, f"{waiter}'s command ran while {holder} held the lock"


@pytest_twisted.ensureDeferred
async def test_txetcd_and_etcdctl_locks_exclude_each_other(
    server: EtcdServer, client: Client, tmp_path: Path
) -> None:
    await _exclusive("etcdctl", "txetcd", server, tmp_path)
    await _exclusive("txetcd", "etcdctl", server, tmp_path)
    assert not await client.get(b"shared/", prefix=True)


# -- holding until Ctrl-C (real processes) -----------------------------------------------------


def _start(tool: str, server: EtcdServer, *args: str) -> "subprocess.Popen[bytes]":
    if tool == "etcdctl":
        command = [etcdctl_binary()]
    else:
        command = [sys.executable, "-m", "txetcd"]
    return subprocess.Popen(
        command + ["--endpoints", _endpoint(server), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", os.defpath)},
    )


def _stop(process: "subprocess.Popen[bytes]", sig: int) -> CliRun:
    """Send ``sig``; the exit code, the rest of stdout and stderr without etcdctl's logs."""
    process.send_signal(sig)
    out, err = process.communicate(timeout=15)
    lines = [line for line in err.splitlines(True) if not line.startswith(b'{"level":')]
    return CliRun(process.returncode, out, b"".join(lines))


def _keys(server: EtcdServer, prefix: str) -> List[str]:
    got = subprocess.run(
        [etcdctl_binary(), "--endpoints", _endpoint(server), "get", "--prefix", "--keys-only"]
        + [prefix],
        capture_output=True,
        timeout=15,
        check=True,
    )
    return got.stdout.decode().split()


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("tool", ["etcdctl", "txetcd"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_lock_without_a_command_is_held_until_stopped(
    server: EtcdServer, tool: str, sig: int
) -> None:
    holder = _start(tool, server, "lock", "held")
    try:
        key = read_line(holder, 15)
        assert re.fullmatch(r"held/[0-9a-f]+\n", key) and read_line(holder, 5) == "\n"
        assert _keys(server, "held/") == [key.strip()]
        waiter = _start(tool, server, "lock", "held")
        _wait_for(lambda: len(_keys(server, "held/")) == 2, "the waiter to queue")
        stopped = _stop(waiter, signal.SIGINT)
        assert stopped == CliRun(1, b"", b"Error: context canceled\n")
        assert _keys(server, "held/") == [key.strip()]  # the waiter's key is gone
    finally:
        ended = _stop(holder, sig)
    assert ended == CliRun(0, b"", b"")
    assert _keys(server, "held/") == []


def test_lock_holder_whose_session_is_lost_fails(server: EtcdServer) -> None:
    holder = _start("txetcd", server, "lock", "lost")
    try:
        lease = read_line(holder, 15).strip().split("/")[1]
        subprocess.run(
            [etcdctl_binary(), "--endpoints", _endpoint(server), "lease", "revoke", lease],
            capture_output=True,
            timeout=15,
            check=True,
        )
        out, err = holder.communicate(timeout=15)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert (holder.returncode, out, err) == (1, b"\n", b"Error: session expired\n")


# -- elect -------------------------------------------------------------------------------------


def test_candidates_and_observers_of_both_take_turns(server: EtcdServer) -> None:
    observers = [_start(tool, server, "elect", "-l", "leader") for tool in ("etcdctl", "txetcd")]
    first = _start("txetcd", server, "elect", "leader", "p1")
    try:
        key1 = read_line(first, 15)
        assert read_line(first, 5) == "p1\n"
        second = _start("etcdctl", server, "elect", "leader", "p2")
        try:
            for observer in observers:
                assert [read_line(observer, 15), read_line(observer, 5)] == [key1, "p1\n"]
            assert _stop(first, signal.SIGINT) == CliRun(0, b"", b"")  # resigns
            key2 = read_line(second, 15)
            assert read_line(second, 5) == "p2\n" and key2 != key1
        finally:
            second_ended = _stop(second, signal.SIGINT)
        assert second_ended == CliRun(0, b"", b"")
        for observer in observers:
            assert [read_line(observer, 15), read_line(observer, 5)] == [key2, "p2\n"]
    finally:
        for process in [first] + observers:
            if process.poll() is None:
                ended = _stop(process, signal.SIGINT)
                assert ended.code == 0 and ended.err == b"", ended
    assert _keys(server, "leader/") == []


@pytest_twisted.ensureDeferred
async def test_elect_mistakes_as_etcdctl(server: EtcdServer) -> None:
    for args in (["elect"], ["elect", "x"], ["elect", "-l", "x", "y"], ["elect", "a", "b", "c"]):
        etcdctl, txetcd = await _both(server, *args)
        assert txetcd == etcdctl
