"""The etcd-mirror job's directory writer and its --exec runner, without etcd.

Escaping is checked with hypothesis (one to one, always one name inside the directory); the
writer on a real temporary directory; the runner's timing on a task.Clock with fake processes,
and once with a real process.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Dict, List, Mapping, cast

import pytest
import pytest_twisted
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet import error, task
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from txetcd._cli._dirmirror import (
    TEMP_PREFIX,
    DirectoryWriter,
    SettledCommand,
    escape,
    unescape,
)
from txetcd.test.helpers import reactor, until

# -- escaping -----------------------------------------------------------------------------------


@given(st.binary(max_size=64))
@example(b"")
@example(b".")
@example(b"..")
@example(b"../etc/passwd")
@example(b"/")
@example(b"a//b/")
@example(b"\x00")
@example(b"%")
@example(b"%41")
@example(b".hidden")
@example(b"\xff\xfe not utf-8")
@example("caf\u00e9".encode())
def test_escape_is_one_name_inside_the_directory(key: bytes) -> None:
    name = escape(key)
    assert unescape(name) == key
    assert name and name not in (".", "..")
    assert "/" not in name and "\x00" not in name
    assert not name.startswith(".")  # the writer's temporary files start with "."
    assert name.isascii() and name.isprintable() and " " not in name
    root = "/srv/mirror"
    assert os.path.dirname(os.path.normpath(os.path.join(root, name))) == root


@given(st.binary(max_size=32), st.binary(max_size=32))
def test_escape_is_one_to_one(a: bytes, b: bytes) -> None:
    assert (escape(a) == escape(b)) == (a == b)


@given(st.text(max_size=24))
def test_unescape_takes_only_what_escape_gives(name: str) -> None:
    key = unescape(name)
    if key is not None:
        assert escape(key) == name


def test_escape_examples() -> None:
    assert escape(b"db/primary url") == "db%2Fprimary%20url"
    assert escape(b"app.conf") == "app.conf"
    assert escape(b".env") == "%2Eenv"
    assert escape(b"a.") == "a."
    assert escape(b"") == "%"
    assert escape(b"100%") == "100%25"
    assert escape("caf\u00e9".encode()) == "caf%C3%A9"
    assert escape(b"\xff") == "%FF"
    assert unescape("%") == b""
    for foreign in ["%2f", "%41", "%G0", "%2", "%%", ".hidden", "a b", "caf\u00e9", ".", ".."]:
        assert unescape(foreign) is None, foreign


# -- the writer ---------------------------------------------------------------------------------


def files(directory: Any) -> Dict[str, bytes]:
    """Every regular file in ``directory`` by name, with its content."""
    out = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


@pytest.fixture
def logged() -> Any:
    """The log events at warning level and above while the test runs."""
    events: List[Dict[str, Any]] = []

    def observe(event: Dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            events.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def test_writer_writes_replaces_removes(tmp_path: Any) -> None:
    target = tmp_path / "made" / "here"
    writer = DirectoryWriter(str(target), mode=0o640)
    assert target.is_dir()
    assert writer.write(b"a/b", b"one")
    assert writer.write(b"", b"the prefix itself")
    assert writer.write(b"../../escape", b"stays inside")
    assert files(target) == {
        "a%2Fb": b"one",
        "%": b"the prefix itself",
        "%2E.%2F..%2Fescape": b"stays inside",
    }
    assert stat.S_IMODE(os.stat(target / "a%2Fb").st_mode) == 0o640
    inode = os.stat(target / "a%2Fb").st_ino
    assert writer.write(b"a/b", b"two")
    assert (target / "a%2Fb").read_bytes() == b"two"
    assert os.stat(target / "a%2Fb").st_ino != inode  # a new file renamed over the old one
    assert writer.remove(b"a/b")
    assert writer.remove(b"a/b")  # gone already: fine
    assert "a%2Fb" not in files(target)
    assert not tmp_path.joinpath("escape").exists()
    assert writer.failures == 0
    assert not [n for n in os.listdir(target) if n.startswith(".")]


def test_writer_default_mode_follows_the_umask(tmp_path: Any) -> None:
    mask = os.umask(0o027)
    try:
        writer = DirectoryWriter(str(tmp_path))
    finally:
        os.umask(mask)
    assert writer.mode == 0o640
    writer.write(b"k", b"v")
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o640


def test_writer_fsync(tmp_path: Any) -> None:
    writer = DirectoryWriter(str(tmp_path), fsync=True)
    assert writer.write(b"k", b"v") and writer.remove(b"k")
    assert os.listdir(tmp_path) == []


def test_sync_removes_vanished_keys_and_stale_temporaries_only(tmp_path: Any) -> None:
    (tmp_path / "old").write_bytes(b"gone from etcd")
    (tmp_path / "same").write_bytes(b"unchanged")
    os.chmod(tmp_path / "same", 0o644)
    (tmp_path / "differs").write_bytes(b"before")
    (tmp_path / (TEMP_PREFIX + "left-by-a-kill")).write_bytes(b"partial")
    (tmp_path / ".hidden").write_bytes(b"not ours")
    (tmp_path / "a%zz").write_bytes(b"not an escaped key either")
    (tmp_path / "subdir").mkdir()
    (tmp_path / "subdir" / "x").write_bytes(b"not touched")
    os.symlink("/etc/hostname", tmp_path / "link")
    same_inode = os.stat(tmp_path / "same").st_ino
    writer = DirectoryWriter(str(tmp_path), mode=0o644)
    counts = writer.sync({b"same": b"unchanged", b"differs": b"after", b"link": b"a file now"})
    assert counts == (2, 1, 1, 0) and counts.changes == 3
    assert files(tmp_path) == {
        "same": b"unchanged",
        "differs": b"after",
        "link": b"a file now",
        ".hidden": b"not ours",
        "a%zz": b"not an escaped key either",
    }
    assert os.stat(tmp_path / "same").st_ino == same_inode  # not rewritten
    assert not os.path.islink(tmp_path / "link")  # replaced, not followed
    assert (tmp_path / "subdir" / "x").read_bytes() == b"not touched"
    assert writer.sync({}) == (0, 3, 0, 0)
    assert sorted(os.listdir(tmp_path)) == [".hidden", "a%zz", "subdir"]


def test_writer_logs_what_it_cannot_write_and_goes_on(tmp_path: Any, logged: Any) -> None:
    writer = DirectoryWriter(str(tmp_path))
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "x").write_bytes(b"")
    assert not writer.write(b"k" * 300, b"name too long")
    assert not writer.write(b"adir", b"a directory is in the way")
    assert writer.sync({b"ok": b"fine", b"k" * 300: b"too long"}) == (1, 0, 0, 1)
    assert writer.failures == 3
    assert files(tmp_path) == {"ok": b"fine"}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)]
    texts = [formatEvent(e) for e in logged]
    assert len(texts) == 3 and all(t.startswith("could not write the file of key") for t in texts)
    assert logged[0]["why"] == "the key's file name is too long"


# -- the settled command, on a clock ------------------------------------------------------------


class FakeProcess:
    """A spawned process the test ends."""

    def __init__(self, protocol: Any, args: List[str], env: Mapping[str, str]) -> None:
        self.protocol, self.args, self.env = protocol, args, env
        self.signals: List[str] = []
        self.ended = False

    def signalProcess(self, name: str) -> None:  # noqa: N802
        if self.ended:
            raise error.ProcessExitedAlready()
        self.signals.append(name)

    def end(self, code: int = 0, output: bytes = b"") -> None:
        if output:
            self.protocol.childDataReceived(1, output)
        self.ended = True
        exc: Exception = error.ProcessDone(0) if code == 0 else error.ProcessTerminated(code)
        self.protocol.processEnded(Failure(exc))


class ProcessClock(task.Clock):
    """A task.Clock that also spawns fake processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[FakeProcess] = []

    def spawnProcess(  # noqa: N802
        self, protocol: Any, executable: str, args: List[str], env: Mapping[str, str]
    ) -> FakeProcess:
        process = FakeProcess(protocol, args, env)
        self.spawned.append(process)
        return process


def runner(clock: ProcessClock, **kw: Any) -> SettledCommand:
    kw.setdefault("quiet", 0.5)
    kw.setdefault("longest", 5.0)
    kw.setdefault("grace", 3.0)
    revision = [0]

    def environment() -> Dict[str, str]:
        revision[0] += 1
        return {"ETCD_MIRROR_REVISION": str(revision[0])}

    return SettledCommand("reload it", reactor=clock, environment=environment, **kw)


def test_command_runs_once_changes_pause() -> None:
    clock = ProcessClock()
    cmd = runner(clock)
    for _ in range(4):
        cmd.changed()
        clock.advance(0.4)  # never a full quiet period
    assert clock.spawned == []
    clock.advance(0.1)
    assert len(clock.spawned) == 1 and cmd.runs == 1 and cmd.running
    process = clock.spawned[0]
    assert process.args == ["/bin/sh", "-c", "reload it"]
    assert process.env["ETCD_MIRROR_REVISION"] == "1"
    assert process.env["PATH"] == os.environ["PATH"]  # the process's environment, plus ours
    process.end(0, b"reloaded\n")
    assert not cmd.running and cmd.pending == 0
    assert clock.getDelayedCalls() == []


def test_command_never_runs_twice_at_once() -> None:
    clock = ProcessClock()
    cmd = runner(clock)
    cmd.changed()
    clock.advance(0.5)
    first = clock.spawned[0]
    cmd.changed(3)  # while it runs
    clock.advance(10)
    assert len(clock.spawned) == 1 and cmd.pending == 3
    first.end(1)  # a failed run does not stop later ones
    assert len(clock.spawned) == 1
    clock.advance(0.5)
    assert len(clock.spawned) == 2
    assert clock.spawned[1].env["ETCD_MIRROR_REVISION"] == "2"
    clock.spawned[1].end(0)
    assert clock.getDelayedCalls() == []


def test_command_runs_within_longest_when_changes_never_pause() -> None:
    clock = ProcessClock()
    cmd = runner(clock, quiet=0.5, longest=2.0)
    for _ in range(9):
        cmd.changed()
        clock.advance(0.25)
    assert len(clock.spawned) == 1  # at 2.0 s, though the changes went on
    assert cmd.pending == 1  # the one after it started
    clock.spawned[0].end(0)
    clock.advance(0.5)
    assert len(clock.spawned) == 2
    clock.spawned[1].end(0)
    assert clock.getDelayedCalls() == []


def test_stop_drops_a_pending_run() -> None:
    clock = ProcessClock()
    cmd = runner(clock)
    cmd.changed()
    d = cmd.stop()
    assert d.called and clock.getDelayedCalls() == []
    cmd.changed()
    clock.advance(10)
    assert clock.spawned == []


def test_stop_waits_for_a_running_command_then_signals_it() -> None:
    clock = ProcessClock()
    cmd = runner(clock, grace=3.0)
    cmd.changed()
    clock.advance(0.5)
    process = clock.spawned[0]
    d = cmd.stop()
    assert not d.called
    clock.advance(2.9)
    assert process.signals == []
    clock.advance(0.1)
    assert process.signals == ["TERM"]
    clock.advance(3.0)
    assert process.signals == ["TERM", "KILL"]
    assert not d.called
    process.end(-9)
    assert d.called and clock.getDelayedCalls() == []


def test_stop_while_a_command_ends_in_time() -> None:
    clock = ProcessClock()
    cmd = runner(clock)
    cmd.changed()
    clock.advance(0.5)
    d = cmd.stop()
    clock.advance(1.0)
    clock.spawned[0].end(0)
    assert d.called and clock.spawned[0].signals == []
    assert clock.getDelayedCalls() == []


def test_runner_arguments() -> None:
    with pytest.raises(ValueError):
        SettledCommand("x", reactor=task.Clock(), quiet=2.0, longest=1.0)


@pytest_twisted.ensureDeferred
async def test_a_real_command_gets_the_environment_and_its_output_is_logged(
    tmp_path: Any,
) -> None:
    lines: List[Dict[str, Any]] = []

    def observe(event: Dict[str, Any]) -> None:
        if "line" in event:
            lines.append(event)

    out = tmp_path / "out"
    command = f'echo "rev=$ETCD_MIRROR_REVISION" > {out}; echo said; echo oops >&2; exit 3'
    cmd = SettledCommand(
        command,
        reactor=reactor(),
        quiet=0.01,
        environment=lambda: {"ETCD_MIRROR_REVISION": "42"},
    )
    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        cmd.changed()
        await until(lambda: cmd.runs == 1 and not cmd.running, what="the command to end")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert out.read_text() == "rev=42\n"
    assert {(e["stream"], e["line"]) for e in lines} == {("stdout", "said"), ("stderr", "oops")}
    await cmd.stop()
