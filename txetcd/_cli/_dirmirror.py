"""The ``etcd-mirror`` job's two halves that touch the machine: a directory that holds one file
per key, and a command run once changes have settled.

File names. A key is named by its bytes after the mirrored prefix, percent-encoded, in a flat
directory (no subdirectories: keys ``a`` and ``a/b`` can both exist in etcd, a file and a
directory of the same name cannot):

- the bytes ``A-Z a-z 0-9 - _ . ~`` stand for themselves, every other byte (``/``, ``%``, space,
  NUL, any byte >= 0x80, so UTF-8 and non-UTF-8 keys alike) becomes ``%XX`` in upper-case hex;
- a ``.`` that would start the name becomes ``%2E``, so no name is ``.``, ``..`` or hidden;
- the empty key (the prefix itself) is named ``%``, which no other key gives.

So ``/config/`` + ``db/primary url`` is the file ``db%2Fprimary%20url``. The mapping is one to
one, every name is a single path component inside the directory, and the names starting with
``.`` are left for the writer's temporary files (``.txetcd-*``). A key whose name would be longer
than the file system allows (255 bytes on most) is not written: an error is logged.

The writer owns only the names this escaping gives; other entries in the directory (a
``README``-like file is a valid name, so it is owned; ``.hidden`` files, ``a%zz``, directories)
are left alone.

File IO is blocking and runs in the reactor thread: fine for config-sized values.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "TEMP_PREFIX",
    "DirectoryWriter",
    "SettledCommand",
    "SyncCounts",
    "escape",
    "unescape",
]

#: what every temporary file of the writer starts with (no escaped key starts with ".")
TEMP_PREFIX = ".txetcd-"
#: the name of the empty key (escaping never gives a lone "%")
EMPTY_NAME = "%"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_HEX = "0123456789ABCDEF"
_DOT = ord(".")


def escape(key: bytes) -> str:
    """The file name of ``key`` (bytes after the prefix); see the module's docstring."""
    if not key:
        return EMPTY_NAME
    out: List[str] = []
    for index, byte in enumerate(key):
        if byte in _SAFE and not (index == 0 and byte == _DOT):
            out.append(chr(byte))
        else:
            out.append("%" + _HEX[byte >> 4] + _HEX[byte & 15])
    return "".join(out)


def unescape(name: str) -> Optional[bytes]:
    """The key whose file name is ``name``, or None if :func:`escape` never gives ``name``."""
    if name == EMPTY_NAME:
        return b""
    key = bytearray()
    index = 0
    try:
        while index < len(name):
            char = name[index]
            if char == "%":
                key.append(int(name[index + 1 : index + 3], 16))
                index += 3
            else:
                key.append(ord(char))
                index += 1
    except ValueError:  # a bad %XX, or a character beyond a byte
        return None
    found = bytes(key)
    return found if escape(found) == name else None


class SyncCounts(NamedTuple):
    """What :meth:`DirectoryWriter.sync` did."""

    written: int
    removed: int
    unchanged: int
    failed: int

    @property
    def changes(self) -> int:
        """Files written or removed."""
        return self.written + self.removed


class DirectoryWriter:
    """One file per key in ``directory`` (created if missing), each replaced atomically.

    A value is written to a temporary file in the same directory and renamed over the key's
    file (``os.replace``), so a reader sees the old content or the new, never a part. With
    ``fsync``, the file and then the directory are flushed to disk too. ``mode`` is the files'
    permission bits (by default ``0o666`` less the process's umask, as for any new file).

    Failures (a full disk, a name too long) are logged with the key and counted in
    :attr:`failures`; they never raise: the mirror goes on with the other keys.
    """

    log = Logger()

    def __init__(self, directory: str, *, fsync: bool = False, mode: Optional[int] = None) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.fsync = fsync
        self.mode = _default_mode() if mode is None else mode
        self.failures = 0

    def path(self, key: bytes) -> str:
        """The file of ``key``."""
        return os.path.join(self.directory, escape(key))

    def write(self, key: bytes, value: bytes) -> bool:
        """Replace ``key``'s file by one holding ``value``; False (logged) if it failed."""
        target = self.path(key)
        temp: Optional[str] = None
        try:
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), self.mode)
                f.write(value)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(temp, target)
            temp = None
            if self.fsync:
                self._sync_directory()
        except OSError as e:
            self._failed("write", key, target, e)
            return False
        finally:
            if temp is not None:
                _unlink_quietly(temp)
        return True

    def remove(self, key: bytes) -> bool:
        """Remove ``key``'s file (gone already is fine); False (logged) if it failed."""
        target = self.path(key)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return True
        except OSError as e:
            self._failed("remove", key, target, e)
            return False
        if self.fsync:
            try:
                self._sync_directory()
            except OSError as e:
                self._failed("remove", key, target, e)
                return False
        return True

    def clean(self) -> int:
        """Remove temporary files a killed process left behind; how many there were."""
        removed = 0
        for entry in _entries(self.directory):
            if entry.name.startswith(TEMP_PREFIX) and not entry.is_dir(follow_symlinks=False):
                _unlink_quietly(entry.path)
                removed += 1
        return removed

    def sync(self, entries: Mapping[bytes, bytes]) -> SyncCounts:
        """Make the directory hold exactly ``entries`` (key after the prefix -> value).

        Files of keys not in ``entries`` are removed, files whose content differs are
        rewritten, identical ones are not touched (their mtime stays). Temporary files left by
        a killed process go too. Entries whose names are not an escaped key are left alone.
        """
        self.clean()
        written = removed = unchanged = failed = 0
        for entry in _entries(self.directory):
            key = unescape(entry.name)
            if key is None or key in entries or entry.is_dir(follow_symlinks=False):
                continue
            if self.remove(key):
                removed += 1
            else:
                failed += 1
        for key, value in entries.items():
            if self._holds(key, value):
                unchanged += 1
            elif self.write(key, value):
                written += 1
            else:
                failed += 1
        return SyncCounts(written, removed, unchanged, failed)

    def _holds(self, key: bytes, value: bytes) -> bool:
        """Whether ``key``'s file is a regular file holding ``value``."""
        target = self.path(key)
        try:
            info = os.lstat(target)
            if not stat.S_ISREG(info.st_mode) or info.st_size != len(value):
                return False
            if stat.S_IMODE(info.st_mode) != self.mode:
                return False
            with open(target, "rb") as f:
                return f.read() == value
        except OSError:
            return False

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _failed(self, action: str, key: bytes, path: str, error: OSError) -> None:
        self.failures += 1
        why = "the key's file name is too long" if error.errno == errno.ENAMETOOLONG else error
        self.log.error(
            "could not {action} the file of key {key!r} ({path}): {why}",
            action=action,
            key=key,
            path=path,
            why=str(why),
            error=error,
        )


def _default_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _entries(directory: str) -> List["os.DirEntry[str]"]:
    with os.scandir(directory) as it:
        return list(it)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _CommandOutput(ProcessProtocol):
    """Logs what the command prints, line by line; tells its runner when it ended."""

    def __init__(self, runner: "SettledCommand") -> None:
        self.runner = runner
        self.buffers: Dict[int, bytes] = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802
        lines = (self.buffers.get(childFD, b"") + data).split(b"\n")
        self.buffers[childFD] = lines.pop()
        for line in lines:
            self.runner.said(childFD, line)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        for fd, rest in self.buffers.items():
            if rest:
                self.runner.said(fd, rest)
        self.buffers.clear()
        self.runner.ended(reason)


class SettledCommand:
    """Run ``command`` (with ``/bin/sh -c``) once changes have settled, never two at once.

    Each :meth:`changed` (re)starts a quiet period of ``quiet`` seconds; the command runs when
    one passes with no change, or ``longest`` seconds after the first change it covers if
    changes never pause. Changes made while it runs make it run again after it ended (and a
    quiet period). Its environment is the process's plus ``environment()`` at the time it
    starts; what it prints is logged line by line, its exit status too.

    :meth:`stop` drops a run not yet started and waits for a running command: after
    ``grace`` seconds it gets SIGTERM, after as many again SIGKILL.

    :param reactor: an ``IReactorProcess``; its time too, unless ``clock`` is given.
    """

    log = Logger()

    def __init__(
        self,
        command: str,
        *,
        reactor: Any,
        clock: Any = None,
        quiet: float = 0.5,
        longest: float = 10.0,
        grace: float = 10.0,
        environment: Callable[[], Mapping[str, str]] = dict,
        shell: str = "/bin/sh",
    ) -> None:
        if quiet < 0 or longest < quiet:
            raise ValueError(f"need 0 <= quiet <= longest, not quiet={quiet}, longest={longest}")
        self.command = command
        self.reactor = reactor
        self.clock = reactor if clock is None else clock
        self.quiet = quiet
        self.longest = longest
        self.grace = grace
        self.environment = environment
        self.shell = shell
        #: how many times the command was started
        self.runs = 0
        #: changes seen since the command last started
        self.pending = 0
        self._first: Optional[float] = None  # when the first pending change came
        self._timer: Optional[IDelayedCall] = None
        self._process: Any = None
        self._stopped = False
        self._stop_waiters: List[Deferred[None]] = []
        self._kill_timer: Optional[IDelayedCall] = None

    @property
    def running(self) -> bool:
        """Whether the command runs now."""
        return self._process is not None

    def changed(self, count: int = 1) -> None:
        """Note ``count`` changes: the command runs once they have settled."""
        if self._stopped:
            return
        now = self.clock.seconds()
        if self._first is None:
            self._first = now
        self.pending += count
        if self._process is None:
            self._arm(now)

    def stop(self) -> "Deferred[None]":
        """Run no more; fires once a running command has ended."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._stopped = True
        if self._process is None:
            return succeed(None)
        if self._kill_timer is None:
            self._kill_timer = self.clock.callLater(self.grace, self._signal, "TERM")
        done: Deferred[None] = Deferred()
        self._stop_waiters.append(done)
        return done

    def _arm(self, now: float) -> None:
        assert self._first is not None
        due = max(min(now + self.quiet, self._first + self.longest), now)
        if self._timer is not None and self._timer.active():
            self._timer.reset(due - now)
        else:
            self._timer = self.clock.callLater(due - now, self._run)

    def _run(self) -> None:
        self._timer = None
        if self._process is not None or self._stopped:
            return
        env = dict(os.environ)
        env.update(self.environment())
        changes, self.pending, self._first = self.pending, 0, None
        self.runs += 1
        self.log.info(
            "--exec: running {command!r} after {changes} change(s)",
            command=self.command,
            changes=changes,
        )
        try:
            self._process = self.reactor.spawnProcess(
                _CommandOutput(self), self.shell, [self.shell, "-c", self.command], env=env
            )
        except OSError as e:
            self.log.error(
                "--exec: could not run {command!r}: {error}", command=self.command, error=e
            )
            self._process = None

    def said(self, fd: int, line: bytes) -> None:
        """A line the command printed (``fd`` 1: stdout, 2: stderr)."""
        self.log.info(
            "--exec {stream}: {line}",
            command=self.command,
            stream="stdout" if fd == 1 else "stderr",
            line=line.decode("utf-8", "replace").rstrip("\r"),
        )

    def ended(self, reason: Failure) -> None:
        """The command ended (``reason`` holds its exit code or signal)."""
        self._process = None
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        if code == 0:
            self.log.info("--exec: exited with status 0", command=self.command, status=0)
        elif sig is not None:
            self.log.warn(
                "--exec: {command!r} was killed by signal {signal}",
                command=self.command,
                signal=sig,
            )
        else:
            self.log.warn(
                "--exec: {command!r} exited with status {status}",
                command=self.command,
                status=code,
            )
        if self._stopped:
            if self._kill_timer is not None and self._kill_timer.active():
                self._kill_timer.cancel()
            self._kill_timer = None
            waiters, self._stop_waiters = self._stop_waiters, []
            for waiter in waiters:
                waiter.callback(None)
            return
        if self.pending:
            self._arm(self.clock.seconds())

    def _signal(self, name: str) -> None:
        self._kill_timer = None
        if self._process is None:
            return
        self.log.warn(
            "--exec: {command!r} still runs at shutdown: sending SIG{signal}",
            command=self.command,
            signal=name,
        )
        try:
            self._process.signalProcess(name)
        except (OSError, ProcessExitedAlready):
            pass
        if name == "TERM":
            self._kill_timer = self.clock.callLater(self.grace, self._signal, "KILL")
