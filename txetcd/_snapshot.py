"""Saving etcd's snapshot stream to a file, checked against the SHA-256 etcd sends after it.

etcd's Maintenance/Snapshot is a server stream of ``blob`` chunks (32 KiB each); the last message
carries the SHA-256 of everything before it. The saved file is every blob, the checksum
included, the layout ``etcdctl snapshot save`` writes and ``etcdutl snapshot restore`` checks.
Given a path, the data goes to a temporary file in the same directory, renamed to the path only
once the checksum matched: the path never holds a partial or corrupt snapshot.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from twisted.internet.defer import CancelledError, Deferred

from txetcd._errors import ConnectionFailed, EtcdError, SnapshotChecksumMismatch, Timeout
from txetcd._methods import SNAPSHOT
from txetcd._proto import rpc_pb2
from txetcd._types import _new, _Record

if TYPE_CHECKING:
    from txetcd._transport import Stream, Transport

__all__ = ["SnapshotResult", "ProgressCallback", "start_snapshot", "SHA256_SIZE"]

#: the checksum etcd appends to the snapshot's data
SHA256_SIZE = 32

#: ``progress(received, total)``: bytes saved so far, and the snapshot's size as etcd announced
#: it (checksum included)
ProgressCallback = Callable[[int, int], object]


class SnapshotResult(_Record):
    """A snapshot saved by :meth:`~txetcd.Client.snapshot`.

    ``path``: where it is (``None`` for a file object without a name); ``size``: its bytes, the
    trailing 32-byte checksum included; ``sha256``: that checksum (verified); ``revision``: the
    store revision it holds when the server said so (etcd 3.5 does not: ``None``).
    """

    __slots__ = ()
    __match_args__ = _fields = ("path", "size", "sha256", "revision")
    if TYPE_CHECKING:
        path: Optional[str]
        size: int
        sha256: bytes
        revision: Optional[int]

    def __new__(
        cls, path: Optional[str], size: int, sha256: bytes, revision: Optional[int]
    ) -> "SnapshotResult":
        return _new(cls, (path, size, sha256, revision))


class _Download:
    """One snapshot stream being written out; ``deferred`` fires with the result."""

    def __init__(
        self,
        channel: "Transport",
        clock: Any,
        out: Any,
        path: Optional[str],
        temp_path: Optional[str],
        progress: Optional[ProgressCallback],
        idle_timeout: Optional[float],
    ) -> None:
        self.clock = clock
        self.out = out
        self.path = path
        self.temp_path = temp_path
        self.progress = progress
        self.idle_timeout = idle_timeout
        self.hasher = hashlib.sha256()
        self.tail = b""  # the last <= 32 bytes: the checksum, once the stream has ended
        self.size = 0
        self.total = 0
        self.revision: Optional[int] = None
        self.done = False
        self.deferred: Deferred[SnapshotResult] = Deferred(self._cancelled)
        self.timer: Any = None
        self.stream: Stream = channel.stream(SNAPSHOT, self._message, self._closed)
        self.stream.send(rpc_pb2.SnapshotRequest(), end=True)
        if idle_timeout is not None:
            self.timer = clock.callLater(idle_timeout, self._idle)

    def _message(self, message: Any) -> None:
        if self.done:
            return
        if self.timer is not None:
            self.timer.reset(self.idle_timeout)
        blob: bytes = message.blob
        if not self.total:
            self.total = len(blob) + message.remaining_bytes + SHA256_SIZE
        if self.revision is None and message.header.revision:
            self.revision = message.header.revision
        try:
            self.out.write(blob)
        except Exception as e:
            self._abort(e)
            return
        data = self.tail + blob
        if len(data) > SHA256_SIZE:
            self.hasher.update(data[:-SHA256_SIZE])
            data = data[-SHA256_SIZE:]
        self.tail = data
        self.size += len(blob)
        if self.progress is not None:
            try:
                self.progress(self.size, max(self.total, self.size))
            except Exception as e:  # the caller's error ends the snapshot, as it is
                self._abort(e)

    def _closed(self, error: Optional[BaseException]) -> None:
        if self.done:
            return
        if error is not None:
            if not isinstance(error, (EtcdError, CancelledError)):
                error = ConnectionFailed(f"the snapshot stream broke: {error!r}", maybe_sent=True)
            self._fail(error)
            return
        if self.size < SHA256_SIZE or self.hasher.digest() != self.tail:
            self._fail(
                SnapshotChecksumMismatch(
                    f"the snapshot's {self.size} bytes do not match the SHA-256 etcd sent after "
                    "them: nothing was saved"
                    if self.size >= SHA256_SIZE
                    else f"the snapshot stream ended after {self.size} bytes, before its "
                    "SHA-256: nothing was saved"
                )
            )
            return
        try:
            self._finish_file()
        except Exception as e:
            self._fail(e)
            return
        self._stop()
        self.deferred.callback(SnapshotResult(self.path, self.size, self.tail, self.revision))

    def _finish_file(self) -> None:
        """Flush (and for a path: sync, close and rename the temporary file into place)."""
        flush = getattr(self.out, "flush", None)
        if flush is not None:
            flush()
        if self.temp_path is not None and self.path is not None:
            os.fsync(self.out.fileno())
            self.out.close()
            os.replace(self.temp_path, self.path)
            self.temp_path = None

    def _idle(self) -> None:
        self.timer = None
        self._abort(Timeout(f"no snapshot data came for {self.idle_timeout} s"))

    def _abort(self, error: BaseException) -> None:
        """Fail and stop the stream."""
        self._fail(error)
        self.stream.cancel()

    def _stop(self) -> None:
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _fail(self, error: BaseException) -> None:
        if self.done:
            return
        self._stop()
        self._discard()
        self.deferred.errback(error)

    def _discard(self) -> None:
        """Close and remove the temporary file, if there is one."""
        if self.temp_path is None:
            return
        try:
            self.out.close()
        finally:
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass
            self.temp_path = None

    def _cancelled(self, _: object) -> None:
        if self.done:
            return
        self._stop()
        self._discard()
        self.stream.cancel()


def start_snapshot(
    channel: "Transport",
    clock: Any,
    file_or_path: Union[str, "os.PathLike[str]", Any],
    progress: Optional[ProgressCallback],
    idle_timeout: Optional[float],
) -> "Deferred[SnapshotResult]":
    """Stream the snapshot over ``channel`` into ``file_or_path`` (see the module docstring).

    Checks its arguments (and makes the temporary file) before anything is sent.
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    if isinstance(file_or_path, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(file_or_path))
        if os.path.isdir(path):
            raise IsADirectoryError(f"the snapshot path is a directory: {path!r}")
        directory, name = os.path.split(path)
        fd, temp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        out: Any = os.fdopen(fd, "wb")
        try:
            download = _Download(channel, clock, out, path, temp_path, progress, idle_timeout)
        except BaseException:
            out.close()
            os.unlink(temp_path)
            raise
        return download.deferred
    if isinstance(file_or_path, (bytes, bytearray)):
        raise TypeError("file_or_path must be a str path, an os.PathLike or a binary file")
    if not callable(getattr(file_or_path, "write", None)):
        raise TypeError(
            "file_or_path must be a path or a binary file object (with write), "
            f"not {type(file_or_path).__name__}"
        )
    file_name = getattr(file_or_path, "name", None)
    shown = file_name if isinstance(file_name, str) else None
    return _Download(channel, clock, file_or_path, shown, None, progress, idle_timeout).deferred
