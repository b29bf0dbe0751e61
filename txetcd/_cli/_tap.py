"""The ``etcd-mirror`` job: keep a directory in step with an etcd prefix.

Run by twistd (``twistd -n etcd-mirror --prefix /config/ --directory DIR``: the plugin file
``twisted/plugins/txetcd_plugin.py`` points at :class:`Options` and :func:`makeService` here)
and by the CLI in the foreground (``txetcd mirror ...`` calls :func:`run_foreground`), with
the same options. The connection flags are etcdctl's, shared with the CLI
(:mod:`txetcd._cli._flags`), each also read from its ``ETCDCTL_*`` environment variable.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable, Dict, List, Mapping, Optional

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure

from txetcd._cli._dirmirror import DirectoryWriter, SettledCommand, escape
from txetcd._cli._flags import (
    CONNECTION_FLAGS,
    ConnectionSettings,
    FlagError,
    connect,
    parse_duration,
    resolve,
    settings,
    usage_parameters,
)
from txetcd._client import Client
from txetcd._retry import backoff_policy
from txetcd.concurrency._mirror import Mirror, MirrorChange
from txetcd.service import MirrorService

__all__ = ["DirectoryMirrorService", "Options", "makeService", "run_foreground"]

#: the wait before connecting again after it failed (failures in a row, from 0)
RETRY_BACKOFF = backoff_policy(initial=0.5, maximum=30.0)
#: the longest an --exec waits for changes to pause (or 20 quiet periods if that is longer)
LONGEST_SETTLE = 10.0


class Options(usage.Options):
    """``etcd-mirror``'s options: what to mirror where, and etcdctl's connection flags."""

    synopsis = "--prefix PREFIX --directory DIR [--exec COMMAND] [--endpoints URL[,URL]] ..."
    longdesc = (
        "Keep DIR in step with the keys under PREFIX: one file per key, named by the key after"
        " the prefix, percent-encoded (see the txetcd docs, 'twistd'); written atomically,"
        " removed when the key is deleted. With --exec, COMMAND runs (through /bin/sh) once"
        " the directory is in step at start and after each settled change, with"
        " ETCD_MIRROR_REVISION, ETCD_MIRROR_PREFIX, ETCD_MIRROR_DIRECTORY and ETCD_MIRROR_KEYS"
        " in its environment. Connection flags are etcdctl's and may come from ETCDCTL_*"
        " environment variables."
    )
    optParameters = [
        ["prefix", None, None, "the key prefix to mirror (required)"],
        ["directory", None, None, "the directory to keep in step (required; made if missing)"],
        ["exec", None, None, "a shell command to run after each settled change"],
        ["settle", None, "500ms", "quiet period before --exec runs (a Go duration)"],
        ["mode", None, None, "octal permission bits of the files [0666 less the umask]"],
    ] + usage_parameters()
    optFlags = [["fsync", None, "fsync each file and the directory after each change"]]

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        prompt: Optional[Callable[[str], str]] = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.prompt = prompt
        #: the connection flags, checked (set by :meth:`postOptions`)
        self.connection: Optional[ConnectionSettings] = None
        #: the prefix as bytes (as given on the command line: UTF-8, or the raw bytes)
        self.prefix = b""
        #: the quiet period of --exec, in seconds
        self.settle = 0.5
        #: the files' permission bits, or None for the umask's
        self.mode: Optional[int] = None

    def postOptions(self) -> None:  # noqa: N802 (usage.Options' name)
        """Check the options; a bad one is a ``usage.UsageError`` with etcdctl's message."""
        if not self["prefix"]:
            raise usage.UsageError("--prefix is required (the key prefix to mirror)")
        if not self["directory"]:
            raise usage.UsageError("--directory is required (where to write the files)")
        self.prefix = os.fsencode(self["prefix"])
        given = {flag.dest: self[flag.name] for flag in CONNECTION_FLAGS}
        try:
            self.settle = parse_duration(self["settle"], "settle")
            self.connection = settings(resolve(given, self.environ), prompt=self.prompt)
        except FlagError as e:
            raise usage.UsageError(str(e)) from None
        if self["mode"] is not None:
            try:
                self.mode = int(self["mode"], 8)
            except ValueError:
                raise usage.UsageError(
                    f"--mode must be octal, like 0640, not {self['mode']!r}"
                ) from None
            if not 0 <= self.mode <= 0o7777:
                raise usage.UsageError(f"--mode out of range: {self['mode']!r}")
        directory = self["directory"]
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise usage.UsageError(
                f"--directory: cannot make {directory!r}: {e.strerror}"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise usage.UsageError(f"--directory: cannot write in {directory!r}")
        for name in ("cacert", "cert", "key"):
            path = getattr(self.connection, name)
            if path is not None and not os.access(path, os.R_OK):
                raise usage.UsageError(f"--{name}: cannot read {path!r}")


class DirectoryMirrorService(MultiService):
    """Keeps ``directory`` in step with the keys under ``prefix`` while running.

    On start it connects (``connect()`` gives the client, which the service owns and closes
    on stop) and follows the prefix with a :class:`txetcd.service.MirrorService` (its child).
    Once the prefix is listed it writes every key
    (:meth:`~txetcd._cli._dirmirror.DirectoryWriter.sync`: files of vanished keys go,
    unchanged ones are not touched), then each change as it comes; after a compaction, or a
    mirror made again after a failure, the keys that changed meanwhile are reported as a
    resync, so the directory catches up too. With ``command``, it runs once the directory is
    in step at start and after each settled change
    (:class:`~txetcd._cli._dirmirror.SettledCommand`).

    A failed connection (no endpoint from DNS discovery) or mirror (etcd out of reach for
    longer than the client's timeout at start, a watch refused) is logged and tried again with
    backoff; an outage after the start is followed through by the mirror. Options that cannot
    work (a certificate file that holds no certificate) are fatal: ``on_fatal`` gets the
    failure (by default the reactor stops).
    """

    log = Logger()

    def __init__(
        self,
        connect: Callable[[], "Deferred[Client]"],
        prefix: bytes,
        directory: str,
        *,
        reactor: Any,
        command: Optional[str] = None,
        settle: float = 0.5,
        fsync: bool = False,
        mode: Optional[int] = None,
        on_fatal: Optional[Callable[[Failure], None]] = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(prefix, bytes) or not prefix:
            raise TypeError(f"prefix must be non-empty bytes, not {prefix!r}")
        self.connect = connect
        self.prefix = prefix
        self.reactor = reactor
        self.writer = DirectoryWriter(directory, fsync=fsync, mode=mode)
        self.directory = self.writer.directory
        self.on_fatal = on_fatal if on_fatal is not None else self._stop_reactor
        self.command: Optional[SettledCommand] = None
        if command:
            self.command = SettledCommand(
                command,
                reactor=reactor,
                quiet=settle,
                longest=max(LONGEST_SETTLE, 20 * settle),
                environment=self._environment,
            )
        #: the client, once connected
        self.client: Optional[Client] = None
        #: the mirror service (a child of this one), once connected
        self.mirrors: Optional[MirrorService] = None
        #: the revision of the last change written (:attr:`current_revision` is the mirror's)
        self.revision = 0
        #: how many times the directory was brought in step from a full listing
        self.syncs = 0
        self._failures = 0
        self._retry: Optional[IDelayedCall] = None
        self._connecting: Optional[Deferred[Client]] = None

    # -- IService ------------------------------------------------------------------------------
    def startService(self) -> None:  # noqa: N802
        """Connect and start mirroring (returns at once; progress is logged)."""
        super().startService()  # type: ignore[no-untyped-call]
        self.log.info(
            "etcd-mirror: mirroring {prefix} into {directory}",
            directory=self.directory,
            prefix=os.fsdecode(self.prefix),
        )
        self._connect()

    def stopService(self) -> "Deferred[None]":  # noqa: N802
        """Stop mirroring, wait for a running --exec, close the client; the files stay."""
        self.revision = self.current_revision
        stopping: List[Deferred[Any]] = [super().stopService()]  # type: ignore[no-untyped-call]
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()  # not running any more: its failure is dropped
        if self.command is not None:
            stopping.append(self.command.stop())

        def close(_: object) -> "Deferred[None]":
            if self.mirrors is not None:
                self.removeService(self.mirrors)  # type: ignore[no-untyped-call]
                self.mirrors = None
            client, self.client = self.client, None
            return client.close() if client is not None else succeed(None)

        def stopped(_: object) -> None:
            self.log.info(
                "etcd-mirror stopped: {directory} holds {prefix} as of revision {revision}",
                directory=self.directory,
                prefix=os.fsdecode(self.prefix),
                revision=self.revision,
            )

        waiting: Deferred[Any] = gatherResults(stopping, consumeErrors=True)
        waiting.addCallback(close)
        waiting.addCallback(stopped)
        return waiting

    @property
    def current_revision(self) -> int:
        """The revision of etcd the directory is in step with (0: not listed yet)."""
        mirror = self.mirrors.mirror if self.mirrors is not None else None
        if mirror is not None:
            self.revision = max(self.revision, mirror.revision)
        return self.revision

    # -- connecting and mirroring --------------------------------------------------------------
    def _connect(self) -> None:
        self._retry = None
        try:
            d = self._connecting = self.connect()
        except (OSError, ValueError, TypeError) as e:
            self.log.critical("etcd-mirror cannot start: {error}", error=e)
            self.on_fatal(Failure(e))  # type: ignore[no-untyped-call]
            return
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, client: Client) -> None:
        self._connecting = None
        if not self.running:
            client.close()
            return
        self._failures = 0
        self.client = client
        self.mirrors = MirrorService(client, self.prefix, self._changed)
        self.mirrors.whenReady().addCallbacks(self._ready, lambda _: None)  # None: stopped
        self.mirrors.setServiceParent(self)  # type: ignore[no-untyped-call]

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._failures += 1
        delay = RETRY_BACKOFF(self._failures - 1)
        self.log.warn(
            "connecting to etcd failed: {error}; trying again in {delay:.1f} s",
            error=failure.getErrorMessage(),
            delay=delay,
            failures=self._failures,
        )
        self._retry = self.reactor.callLater(delay, self._connect)

    def _ready(self, mirror: Mirror) -> None:
        """The first listing: write it all (later ones come as resync changes)."""
        entries = {key[len(self.prefix) :]: value for key, value in mirror.items()}
        counts = self.writer.sync(entries)
        self.syncs += 1
        self.revision = mirror.revision
        self.log.info(
            "{directory} in step with {prefix} at revision {revision}: {written} written,"
            " {removed} removed, {unchanged} unchanged",
            directory=self.directory,
            prefix=os.fsdecode(self.prefix),
            revision=mirror.revision,
            written=counts.written,
            removed=counts.removed,
            unchanged=counts.unchanged,
            failed=counts.failed,
        )
        if self.command is not None:
            self.command.changed(max(counts.changes, 1))

    def _changed(self, change: MirrorChange) -> None:
        """One key changed: its file follows (never raises: that would end the mirror)."""
        try:
            key = change.key[len(self.prefix) :]
            if change.new is None:
                action, ok = "removed", self.writer.remove(key)
            else:
                action, ok = "wrote", self.writer.write(key, change.new.value)
            self.revision = change.revision
            if ok:
                self.log.info(
                    "{action} {name} for {key!r} at revision {revision}{how}",
                    action=action,
                    name=escape(key),
                    key=change.key,
                    revision=change.revision,
                    how=" (resync)" if change.resync else "",
                    resync=change.resync,
                )
            if self.command is not None:
                self.command.changed()
        except Exception:
            self.log.failure("applying the change of {key!r} failed", key=change.key)

    def _environment(self) -> Dict[str, str]:
        mirror = self.mirrors.mirror if self.mirrors is not None else None
        return {
            "ETCD_MIRROR_REVISION": str(self.current_revision),
            "ETCD_MIRROR_PREFIX": os.fsdecode(self.prefix),
            "ETCD_MIRROR_DIRECTORY": self.directory,
            "ETCD_MIRROR_KEYS": str(len(mirror) if mirror is not None else 0),
        }

    def _stop_reactor(self, failure: Failure) -> None:
        """twistd's end: stop the reactor (twistd starts services before it runs)."""

        def stop() -> None:
            try:
                self.reactor.stop()
            except ReactorNotRunning:
                pass

        self.reactor.callWhenRunning(stop)


def makeService(  # noqa: N802 (twistd's name)
    options: Options,
    reactor: Any = None,
    on_fatal: Optional[Callable[[Failure], None]] = None,
) -> IService:
    """The ``etcd-mirror`` service for parsed ``options`` (what twistd calls)."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    connection = options.connection
    assert connection is not None, "options were not parsed"

    def connect_client() -> "Deferred[Client]":
        return connect(connection, reactor)

    return DirectoryMirrorService(
        connect_client,
        options.prefix,
        options["directory"],
        reactor=reactor,
        command=options["exec"],
        settle=options.settle,
        fsync=bool(options["fsync"]),
        mode=options.mode,
        on_fatal=on_fatal,
    )


def run_foreground(
    reactor: Any,
    argv: "list[str]",
    *,
    stdout: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> "Deferred[int]":
    """Run the ``etcd-mirror`` job in the foreground (``txetcd mirror ARGS``) until the
    reactor shuts down (SIGINT, SIGTERM); fires with the exit status.

    ``argv`` is parsed with the plugin's :class:`Options`; a mistake in it is one ``Error:``
    line on ``stderr`` and status 1; ``--help`` prints the usage on ``stdout`` (status 0). The
    log goes to ``stderr`` (info and above) while it runs. A fatal problem (a certificate file
    that holds no certificate) ends it with status 1.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    options = Options(environ=environ)
    try:
        options.parseOptions(argv)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        err.write(f"Error: {e}\n")
        return succeed(1)
    except SystemExit as e:  # --help, --version: usage.Options printed them
        out.flush()
        return succeed(e.code if isinstance(e.code, int) else 0)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    observer: ILogObserver = FilteringLogObserver(textFileLogObserver(err), [predicate])
    globalLogPublisher.addObserver(observer)
    finished: Deferred[int] = Deferred()
    status = [0]

    def fatal(failure: Failure) -> None:
        status[0] = 1
        reactor.removeSystemEventTrigger(trigger)
        stop()

    def stop() -> "Deferred[None]":
        d = service.stopService() if service.running else succeed(None)  # type: ignore[no-untyped-call]

        def done(_: object) -> None:
            globalLogPublisher.removeObserver(observer)
            if not finished.called:
                finished.callback(status[0])

        d.addBoth(done)
        return d

    try:
        service = makeService(options, reactor, on_fatal=fatal)
    except OSError as e:
        globalLogPublisher.removeObserver(observer)
        err.write(f"Error: {e}\n")
        return succeed(1)
    trigger = reactor.addSystemEventTrigger("before", "shutdown", stop)
    service.startService()  # type: ignore[no-untyped-call]
    return finished
