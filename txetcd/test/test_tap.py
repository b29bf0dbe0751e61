"""The etcd-mirror job: its options, its service in-process against real etcd (plain, TLS,
auth), ``twistd -n etcd-mirror`` as a real process (puts, deletes, a compaction it has to
resync after, an etcd restart, SIGTERM), and ``run_foreground`` for the CLI."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, cast

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage

from txetcd import Client, ConnectionFailed
from txetcd._cli._dirmirror import TEMP_PREFIX, escape
from txetcd._cli._tap import DirectoryMirrorService, Options, makeService, run_foreground
from txetcd.test.helpers import client_of, reactor, sleep, txetcd_timers, until, within
from txetcd.testing import EtcdServer, TCPProxy

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "twisted" / "plugins" / "txetcd_plugin.py"


def parsed(argv: List[str], environ: Optional[Dict[str, str]] = None, **kw: Any) -> Options:
    options = Options(environ=environ or {}, **kw)
    options.parseOptions(argv)
    return options


def files(directory: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


async def in_step(client: Client, prefix: bytes, directory: Path) -> bool:
    """Whether ``directory`` holds exactly the keys under ``prefix``, one file each."""
    listing = await client.get_prefix(prefix)
    wanted = {escape(kv.key[len(prefix) :]): kv.value for kv in listing.kvs}
    return files(directory) == wanted


# -- options ------------------------------------------------------------------------------------


def test_options(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir"
    options = parsed(
        [
            "--prefix=/config/",
            f"--directory={target}",
            "--exec=reload",
            "--settle=250ms",
            "--mode=0640",
            "--fsync",
            "--endpoints=127.0.0.1:2379,http://10.0.0.2:2379",
            "--command-timeout=3s",
        ]
    )
    assert options.prefix == b"/config/" and options.settle == 0.25 and options.mode == 0o640
    assert options["exec"] == "reload" and options["fsync"]
    assert target.is_dir()  # made while checking the options
    connection = options.connection
    assert connection is not None
    assert connection.urls() == ("http://127.0.0.1:2379", "http://10.0.0.2:2379")
    assert connection.command_timeout == 3.0
    service = makeService(options, reactor())
    assert isinstance(service, DirectoryMirrorService)
    assert service.command is not None and service.command.quiet == 0.25
    assert service.writer.fsync and service.writer.mode == 0o640
    assert not service.running


def test_options_from_the_environment_as_etcdctl(tmp_path: Path) -> None:
    env = {"ETCDCTL_ENDPOINTS": "https://a:2379", "ETCDCTL_USER": "bob:secret"}
    options = parsed(["--prefix", "p/", "--directory", str(tmp_path)], env)
    assert options.connection is not None
    assert options.connection.urls() == ("https://a:2379",)
    assert options.connection.user == "bob" and options.connection.password == "secret"
    with pytest.raises(usage.UsageError, match="conflicting environment variable"):
        parsed(["--prefix=p/", f"--directory={tmp_path}", "--endpoints=b:1"], env)
    asked: List[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    options = parsed(["--prefix=p/", f"--directory={tmp_path}", "--user=carol"], prompt=prompt)
    assert asked == ["Password: "]
    assert options.connection is not None and options.connection.password == "typed"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--directory=D"], "--prefix is required"),
        (["--prefix=p/"], "--directory is required"),
        (["--prefix=p/", "--directory=D", "--settle=soon"], 'invalid argument "soon"'),
        (["--prefix=p/", "--directory=D", "--mode=rw"], "--mode must be octal"),
        (["--prefix=p/", "--directory=D", "--mode=17777"], "--mode out of range"),
        (["--prefix=p/", "--directory=D", "--cacert=/nonexistent/ca.pem"], "cannot read"),
        (["--prefix=p/", "--directory=D", "--password=x"], "--password needs --user"),
        (["--prefix=p/", "--directory=/proc/no/such/dir"], "--directory: cannot make"),
        (["--prefix=p/", "--directory=D", "--nope"], "nope"),
    ],
)
def test_bad_options(tmp_path: Path, argv: List[str], message: str) -> None:
    argv = [a.replace("=D", f"={tmp_path}") for a in argv]
    with pytest.raises(usage.UsageError, match=message):
        parsed(argv)


# -- the service in-process ---------------------------------------------------------------------


def synced(service: DirectoryMirrorService, times: int) -> Callable[[], bool]:
    return lambda: service.syncs == times


async def follow(
    service: DirectoryMirrorService, client: Client, prefix: bytes, directory: Path
) -> None:
    """Puts and deletes under ``prefix`` reach ``directory``."""
    await client.put(prefix + b"b/c", b"two")
    await client.delete(prefix + b"a")
    await client.put(prefix + b".dot", b"three")
    await client.put(prefix[:-1] + b"-outside", b"not under the prefix")
    last = await client.put(prefix + b"\xff", b"four")
    await until(lambda: service.revision >= last.header.revision, what="the last change")
    assert files(directory) == {"b%2Fc": b"two", "%2Edot": b"three", "%FF": b"four"}


@pytest_twisted.ensureDeferred
async def test_service_follows_the_prefix_and_runs_the_command(
    etcd_server: EtcdServer, etcd_prefix: bytes, tmp_path: Path, no_logged_errors: Any
) -> None:
    directory, out = tmp_path / "mirror", tmp_path / "exec.out"
    directory.mkdir()
    (directory / "a").write_bytes(b"stale content from an earlier run")
    (directory / "gone").write_bytes(b"its key was deleted while we were away")
    (directory / (TEMP_PREFIX + "x")).write_bytes(b"left by a kill")
    async with client_of(etcd_server.endpoint) as client:
        await client.put(etcd_prefix + b"a", b"one")
        options = parsed(
            [
                f"--prefix={os.fsdecode(etcd_prefix)}",
                f"--directory={directory}",
                f"--endpoints={etcd_server.endpoint}",
                "--settle=50ms",
                f"--exec=echo $ETCD_MIRROR_REVISION $ETCD_MIRROR_KEYS $ETCD_MIRROR_PREFIX >> {out}",
            ]
        )
        service = makeService(options, reactor())
        assert isinstance(service, DirectoryMirrorService)
        service.startService()
        try:
            await until(lambda: service.syncs == 1, what="the first sync")
            assert files(directory) == {"a": b"one"}
            await until(lambda: out.exists() and out.read_text().count("\n") == 1)
            assert out.read_text() == f"{service.revision} 1 {os.fsdecode(etcd_prefix)}\n"
            await follow(service, client, etcd_prefix, directory)
            await until(lambda: out.read_text().count("\n") == 2, what="one run for the burst")
            assert out.read_text().splitlines()[1] == f"{service.revision} 3 {etcd_prefix.decode()}"
            mirrors = service.mirrors
            assert mirrors is not None and mirrors.running
        finally:
            await within(service.stopService(), 10)
        assert service.client is None and service.mirrors is None
        assert not mirrors.running and mirrors.mirror is None
        await client.put(etcd_prefix + b"late", b"after the stop")
        await sleep(0.1)
        assert "late" not in files(directory)
    assert txetcd_timers(reactor()) == []  # the service's client left none either


@pytest_twisted.ensureDeferred
async def test_service_over_tls_and_auth(
    etcd_tls_server: EtcdServer, etcd_auth_server: EtcdServer, etcd_prefix: bytes, tmp_path: Path
) -> None:
    secured = [
        (etcd_tls_server, [f"--cacert={etcd_tls_server.ca_cert}"]),
        (etcd_auth_server, [f"--user=root:{etcd_auth_server.root_password}"]),
    ]
    for number, (server, flags) in enumerate(secured):
        directory = tmp_path / str(number)
        async with client_of(server.endpoint, **server.client_options()) as client:
            await client.put(etcd_prefix + b"a", b"v%d" % number)
            options = parsed(
                [
                    f"--prefix={etcd_prefix.decode()}",
                    f"--directory={directory}",
                    # host:port, as etcdctl takes it: https because of the TLS flags
                    f"--endpoints={server.endpoint.split('://')[1]}",
                    *flags,
                ]
            )
            service = makeService(options, reactor())
            assert isinstance(service, DirectoryMirrorService)
            service.startService()
            try:
                await until(synced(service, 1), what=f"the sync from {server}")
                await follow(service, client, etcd_prefix, directory)
            finally:
                await within(service.stopService(), 10)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_service_keeps_trying_until_etcd_is_there(
    etcd_server_private: EtcdServer, tmp_path: Path
) -> None:
    server = etcd_server_private
    server.kill()
    warnings: List[str] = []

    def observe(event: Dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.warn:
            warnings.append(formatEvent(event))

    attempts = []

    def connect() -> "Deferred[Client]":
        attempts.append(1)
        if len(attempts) == 1:  # e.g. no SRV record yet
            return fail(ConnectionFailed("no endpoint found"))
        return succeed(Client(server.endpoint, reactor=reactor(), timeout=0.2))

    fatal: List[Any] = []
    service = DirectoryMirrorService(
        connect, b"p/", str(tmp_path), reactor=reactor(), on_fatal=fatal.append
    )
    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    service.startService()
    try:
        await until(lambda: len(warnings) >= 3, what="a failed connection and two mirrors")
        assert warnings[0].startswith("connecting to etcd failed: no endpoint found")
        assert all("could not start" in w for w in warnings[1:]), warnings
        assert service.syncs == 0 and len(attempts) == 2
        await within(server.start_async(reactor()), 30)
        await until(synced(service, 1), 30, what="the sync once etcd is there")
        assert fatal == []
    finally:
        globalLogPublisher.removeObserver(observer)
        await within(service.stopService(), 10)
    assert txetcd_timers(reactor()) == []


class StoppingClock(task.Clock):
    """A clock with the reactor calls a fatal error makes: callWhenRunning and stop."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = 0

    def callWhenRunning(self, f: Callable[[], None]) -> None:  # noqa: N802
        self.callLater(0, f)

    def stop(self) -> None:
        self.stopped += 1


def test_fatal_options_stop_twistd(tmp_path: Path) -> None:
    clock = StoppingClock()

    def connect() -> "Deferred[Client]":
        raise ValueError("ca_cert: 'x.pem' holds no PEM block")

    service = DirectoryMirrorService(connect, b"p/", str(tmp_path), reactor=clock)
    service.startService()
    assert clock.stopped == 0  # not from within startService: twistd calls it before run()
    clock.advance(0)
    assert clock.stopped == 1
    d = service.stopService()
    assert d.called and clock.getDelayedCalls() == []


def test_stop_while_connecting(tmp_path: Path) -> None:
    clock = StoppingClock()
    pending: "Deferred[Client]" = Deferred()
    service = DirectoryMirrorService(lambda: pending, b"p/", str(tmp_path), reactor=clock)
    service.startService()
    d = service.stopService()
    assert d.called and pending.called  # cancelled, its failure dropped
    assert clock.getDelayedCalls() == [] and clock.stopped == 0


# -- twistd -n etcd-mirror, a real process ------------------------------------------------------


def plugin_path(tmp_path: Path) -> Path:
    """A directory holding twisted/plugins/txetcd_plugin.py as in this checkout, to put on
    PYTHONPATH (twistd would write its dropin.cache into the checkout otherwise)."""
    root = tmp_path / "plugin-path"
    (root / "twisted" / "plugins").mkdir(parents=True)
    shutil.copy(PLUGIN, root / "twisted" / "plugins")
    return root


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest_twisted.ensureDeferred
async def test_twistd_etcd_mirror(
    etcd_server_private: EtcdServer, etcd_prefix: bytes, tmp_path: Path
) -> None:
    server = etcd_server_private
    directory, log, out = tmp_path / "config", tmp_path / "twistd.log", tmp_path / "exec.out"
    env = dict(os.environ, PYTHONPATH=str(plugin_path(tmp_path)))
    twistd = Path(sys.executable).with_name("twistd")
    async with TCPProxy("127.0.0.1", server.client_port, reactor=reactor()) as proxy:
        async with client_of(server.endpoint) as client:
            await client.put(etcd_prefix + b"a", b"one")
            await client.put(etcd_prefix + b"doomed", b"deleted during the outage")
            argv = [
                str(twistd),
                "-n",
                "--pidfile=",
                f"--logfile={log}",
                "etcd-mirror",
                f"--prefix={etcd_prefix.decode()}",
                f"--directory={directory}",
                f"--endpoints={proxy.endpoint}",
                "--settle=50ms",
                f'--exec=echo "$ETCD_MIRROR_REVISION" >> {out}',
            ]
            process = subprocess.Popen(argv, env=env, cwd=tmp_path)
            try:
                await until(lambda: "in step with" in log_text(log), 30, what=log_text(log))
                assert await in_step(client, etcd_prefix, directory)
                # puts and deletes
                await client.put(etcd_prefix + b"a", b"one, again")
                await client.put(etcd_prefix + b"b/c", b"two")
                await client.delete(etcd_prefix + b"a")
                await until(lambda: in_step(client, etcd_prefix, directory), what="live changes")
                # a compaction past what it saw, while it cannot reach etcd: it lists again
                await proxy.refuse(how="reset")
                proxy.reset()
                await client.delete(etcd_prefix + b"doomed")
                await client.put(etcd_prefix + b"born", b"during the outage")
                done = await client.put(etcd_prefix + b"b/c", b"two, changed")
                await client.compact(done.header.revision)
                await proxy.refuse(False)
                await until(lambda: in_step(client, etcd_prefix, directory), 30, what="resync")
                assert "(resync)" in log_text(log)
                revision = done.header.revision
                await until(lambda: str(revision) in out.read_text(), what="--exec after it")
                # an etcd restart
                await within(server.restart(reactor()), 30)
                await client.put(etcd_prefix + b"after", b"the restart")
                await until(lambda: in_step(client, etcd_prefix, directory), 30, what="restart")
                # SIGTERM while keys keep changing: no partial file is left
                writes = [
                    client.put(etcd_prefix + b"big%d" % (i % 5), b"%06d" % i * 20000)
                    for i in range(40)
                ]
                await sleep(0.05)
                process.send_signal(signal.SIGTERM)
                await until(lambda: process.poll() is not None, 30, what="twistd to exit")
                for write in writes:
                    await write
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    text = log_text(log)
    assert "etcd-mirror stopped:" in text, text
    assert "Server Shut Down." in text
    assert "Traceback" not in text and "Unhandled" not in text, text
    names = os.listdir(directory)
    assert not [n for n in names if n.startswith(".")], names
    for name, content in files(directory).items():
        if name.startswith("big"):  # whole values only: one 6-digit number, 20000 times
            assert len(content) == 120000 and content == content[:6] * 20000, name


@pytest_twisted.ensureDeferred
async def test_the_docs_own_plugin_example(
    etcd_server: EtcdServer, etcd_prefix: bytes, tmp_path: Path
) -> None:
    """docs/twistd.rst's plugin (docs/examples/twistd_plugin) runs under twistd as shown."""
    example = tmp_path / "example"
    shutil.copytree(ROOT / "docs" / "examples" / "twistd_plugin", example)
    log = tmp_path / "twistd.log"
    env = dict(os.environ, PYTHONPATH=str(example))
    twistd = Path(sys.executable).with_name("twistd")
    async with client_of(etcd_server.endpoint) as client:
        await client.put(etcd_prefix + b"colour", b"blue")
        argv = [str(twistd), "-n", "--pidfile=", f"--logfile={log}", "myapp"]
        argv += [f"--endpoints={etcd_server.endpoint}", f"--prefix={etcd_prefix.decode()}"]
        process = subprocess.Popen(argv, env=env, cwd=example)
        try:
            await until(lambda: "config loaded" in log_text(log), 30, what=log_text(log))
            assert "config loaded: {'colour': 'blue'}" in log_text(log)
            await client.put(etcd_prefix + b"colour", b"green")
            await client.delete(etcd_prefix + b"colour")
            await until(lambda: "config: colour removed" in log_text(log), what=log_text(log))
            assert "config: colour = green" in log_text(log)
        finally:
            process.send_signal(signal.SIGTERM)
            await until(lambda: process.poll() is not None, 30, what="twistd to exit")
    assert "Server Shut Down." in log_text(log)
    assert "Traceback" not in log_text(log), log_text(log)


# -- run_foreground (the CLI's `txetcd mirror`) -------------------------------------------------


def test_run_foreground_usage_errors(tmp_path: Path) -> None:
    err = io.StringIO()
    d = run_foreground(reactor(), ["--prefix=p/"], stderr=err, environ={})
    assert d.result == 1
    assert err.getvalue() == "Error: --directory is required (where to write the files)\n"


def test_run_foreground_fatal_options(tmp_path: Path) -> None:
    not_a_cert = tmp_path / "ca.pem"
    not_a_cert.write_text("not a certificate\n")
    err = io.StringIO()
    d = run_foreground(
        reactor(),
        ["--prefix=p/", f"--directory={tmp_path / 'd'}", f"--cacert={not_a_cert}"],
        stderr=err,
        environ={},
    )
    assert d.result == 1
    assert "etcd-mirror cannot start" in err.getvalue()


@pytest_twisted.ensureDeferred
async def test_run_foreground_until_sigint(
    etcd_server: EtcdServer, etcd_prefix: bytes, tmp_path: Path
) -> None:
    directory = tmp_path / "d"
    code = (
        "import sys\n"
        "from twisted.internet import task\n"
        "from txetcd._cli._tap import run_foreground\n"
        "def main(reactor):\n"
        "    return run_foreground(reactor, sys.argv[1:]).addCallback(sys.exit)\n"
        "task.react(main)\n"
    )
    argv = [f"--prefix={etcd_prefix.decode()}", f"--directory={directory}"]
    env = dict(os.environ, ETCDCTL_ENDPOINTS=etcd_server.endpoint)
    async with client_of(etcd_server.endpoint) as client:
        await client.put(etcd_prefix + b"k", b"v")
        process = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await until(lambda: (directory / "k").exists(), 30, what="the first sync")
            await client.put(etcd_prefix + b"k", b"v2")
            await until(lambda: (directory / "k").read_bytes() == b"v2", what="the change")
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "in step with" in stderr and "etcd-mirror stopped:" in stderr
