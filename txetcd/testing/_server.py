"""Real etcd processes for tests: free loopback ports, a temporary data dir, killed at teardown."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO, Any, Dict, List, Optional, Protocol, Sequence, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

# The binary finders live in _binaries; every name stays importable from here (``as``: re-exported).
from txetcd.testing._binaries import _ETCD34_MISSING as _ETCD34_MISSING
from txetcd.testing._binaries import _ETCD35_MISSING as _ETCD35_MISSING
from txetcd.testing._binaries import CLIENT_HTTP_FLAG, has_client_http_urls
from txetcd.testing._binaries import EtcdNotFound as EtcdNotFound
from txetcd.testing._binaries import _etcd_version as _etcd_version
from txetcd.testing._binaries import _log_flags as _log_flags
from txetcd.testing._binaries import etcd34_binary as etcd34_binary
from txetcd.testing._binaries import etcd35_binary as etcd35_binary
from txetcd.testing._binaries import etcd_binary as etcd_binary
from txetcd.testing._cluster import ClusterControl
from txetcd.testing._process import (
    TAIL_LINES,
    EtcdStartError,
    die_with_parent,
    healthy,
    healthy_async,
    output_tail,
)
from txetcd.testing._secure import (
    TestCertificates,
    TLSFiles,
    check_security,
    client_options,
    enable_auth,
    enable_auth_async,
    etcd_security_args,
)

__all__ = [
    "EtcdServer",
    "EtcdCluster",
    "EtcdNotFound",
    "EtcdStartError",
    "etcd_binary",
    "etcd34_binary",
    "etcd35_binary",
    "free_port",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_T = TypeVar("_T")

#: how many times a first start picks new ports when etcd finds its ports taken
_PORT_ATTEMPTS = 5


class EtcdServer:
    """One single-member etcd on 127.0.0.1, run as a child process.

    ``start()`` blocks until the member answers ``/health``; ``start_async(reactor)`` does the
    same without blocking a running reactor; ``stop()`` kills it and removes its data dir.
    ``kill()`` followed by ``start()`` (or ``restart(reactor)``) restarts it on the same ports
    with the same data (a server restart, as a fault test needs it). A start that fails raises
    :class:`EtcdStartError` with the end of etcd's output. On Linux etcd gets SIGKILL when the
    process (the thread) that started it dies. Usable as a context manager.

    :param extra_args: more command-line flags for etcd (e.g. ``["--enable-v2=true"]``); they
        come last, so they override the defaults.
    :param binary: the etcd binary; :func:`etcd_binary` by default (:func:`etcd34_binary` for
        etcd 3.4). The logging flags are chosen by its ``--version`` (3.4 is asked for zap).
    :param startup_timeout: seconds to wait for the member to become healthy.

    Secured servers (see :ref:`the testing docs <secured-etcd>`):

    :param tls: serve ``https://`` client URLs, with certificates made for this server (a CA, a
        server certificate for ``127.0.0.1`` and ``localhost``, a client certificate whose
        common name is ``root``) with ``trustme``. Their files are :attr:`ca_cert`,
        :attr:`client_cert` and :attr:`client_key` once started. ``/health`` is then polled on
        a plain-HTTP metrics URL (``--listen-metrics-urls``).
    :param client_cert_auth: with ``tls``: etcd only takes clients presenting a certificate
        from the CA (``--client-cert-auth --trusted-ca-file``).
    :param auth: switch etcd's auth on after the first start: a ``root`` user with
        ``root_password`` (a random one, in :attr:`root_password`, when not given) holding the
        ``root`` role, then AuthEnable.
    :param root_password: root's password, with ``auth``.
    :param auth_token_ttl: ``--auth-token-ttl``: seconds an unused simple token lives (etcd's
        default: 300).

    gRPC alone on the client port (etcd's recommended production set-up):

    :param separate_http: pass ``--listen-client-http-urls`` with a port of its own
        (:attr:`http_port`; ``https`` with ``tls``): :attr:`endpoint` then serves gRPC alone,
        through grpc-go's own HTTP/2 server also over TLS, and the JSON gateway, ``/health``,
        ``/version`` and v2 move to :attr:`http_endpoint`. It needs a ``binary`` with that flag
        (:func:`etcd35_binary`; etcd 3.5.1 has none): else ``ValueError`` before any launch.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        binary: Optional[str] = None,
        startup_timeout: float = 30.0,
        name: str = "txetcd-test",
        tls: bool = False,
        client_cert_auth: bool = False,
        auth: bool = False,
        root_password: Optional[str] = None,
        auth_token_ttl: Optional[int] = None,
        separate_http: bool = False,
    ) -> None:
        check_security(tls, client_cert_auth, auth, root_password, auth_token_ttl)
        self.extra_args = list(extra_args)
        self.binary = binary or etcd_binary()
        _check_separate_http(separate_http, self.binary)
        #: whether the client URL serves gRPC alone (HTTP on :attr:`http_endpoint`)
        self.separate_http = separate_http
        self.startup_timeout = startup_timeout
        self.name = name
        self.tls = tls
        self.client_cert_auth = client_cert_auth
        self.auth = auth
        #: root's password when ``auth`` is on (given, or made up)
        self.root_password: Optional[str] = None
        if auth:
            self.root_password = root_password or secrets.token_urlsafe(18)
        self.auth_token_ttl = auth_token_ttl
        #: the certificates of a ``tls`` server (shared by the members of a cluster)
        self.certificates: Optional[TestCertificates] = TestCertificates() if tls else None
        self._tls_files: Optional[TLSFiles] = None
        #: the PEM files of a ``tls`` server once started: the CA (give it to clients as
        #: ``ca_cert``), the client certificate (common name ``root``) and its key
        self.ca_cert: Optional[str] = None
        self.client_cert: Optional[str] = None
        self.client_key: Optional[str] = None
        self.client_port = 0
        self.peer_port = 0
        #: the plain-HTTP metrics URL's port (``/health``) of a ``tls`` server, else 0
        self.metrics_port = 0
        #: the HTTP port (gateway, ``/health``, v2) with ``separate_http``, else 0
        self.http_port = 0
        self.data_dir: Optional[str] = None
        #: ``--initial-cluster`` when this member is one of an :class:`EtcdCluster`
        self.initial_cluster: Optional[str] = None
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://127.0.0.1:PORT`` (``https://`` with ``tls``)."""
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def http_endpoint(self) -> str:
        """Where etcd serves HTTP: the JSON gateway, ``/health``, ``/version``, v2.

        With ``separate_http``, ``http://127.0.0.1:HTTP_PORT`` (``https://`` with ``tls``);
        otherwise :attr:`endpoint` (one port serves gRPC and HTTP)."""
        if not self.separate_http:
            return self.endpoint
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def gateway_port(self) -> int:
        """The port of :attr:`http_endpoint` (the JSON gateway's)."""
        return self.http_port if self.separate_http else self.client_port

    @property
    def scheme(self) -> str:
        """``"https"`` with ``tls``, else ``"http"``."""
        return "https" if self.tls else "http"

    def client_options(self) -> Dict[str, Any]:
        """Keyword arguments for a :class:`txetcd.Client` of this server: ``ca_cert`` (and
        ``cert``/``key`` with ``client_cert_auth``) for ``tls``; ``user="root"``,
        ``password`` for ``auth`` (and ``allow_insecure_credentials`` without ``tls``)."""
        return client_options(self)

    @property
    def _health_port(self) -> int:
        """Where ``/health`` answers in plain HTTP: the metrics URL with ``tls``, else the HTTP
        URL (the client URL, or the separate one)."""
        return self.metrics_port if self.tls else self.gateway_port

    @property
    def pid(self) -> Optional[int]:
        """The etcd process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the etcd process is alive."""
        return self._process is not None and self._process.poll() is None

    def output(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines etcd wrote (its ``etcd.log``; ``""`` once stopped)."""
        if self.data_dir is None:
            return ""
        return output_tail(os.path.join(self.data_dir, "etcd.log"), lines)

    def start(self) -> "EtcdServer":
        """Start etcd and wait (blocking) until it is healthy; return the server.

        After :meth:`kill` this restarts it on the same ports with the same data. A failure
        raises :class:`EtcdStartError`; a failed first start leaves no process and no data dir.
        Inside a running reactor use :meth:`start_async`, which does not block it.
        """
        first = self._begin()
        return _fired(Deferred.fromCoroutine(self._start(first, _Blocking(), 0.05)))

    def start_async(self, reactor: Any, *, poll_interval: float = 0.05) -> "Deferred[EtcdServer]":
        """Start etcd without blocking ``reactor``; the Deferred fires with the server once healthy.

        The same as :meth:`start` (first start or restart after :meth:`kill`), but the health
        checks run on ``reactor`` (it provides TCP and time), every ``poll_interval`` seconds, for
        at most ``startup_timeout`` seconds of its time; then the Deferred fails with
        :class:`EtcdStartError`. Cancelling it kills etcd (and, on a first start, removes the data
        dir). Only launching the process happens before this returns.
        """
        first = self._begin()
        return Deferred.fromCoroutine(self._start(first, _OnReactor(reactor), poll_interval))

    def restart(self, reactor: Any, *, sig: int = signal.SIGKILL) -> "Deferred[EtcdServer]":
        """:meth:`kill` etcd (with ``sig``), then :meth:`start_async` it: same ports, same data."""
        self.kill(sig)
        return self.start_async(reactor)

    async def _start(self, first: bool, waiter: "_Waiter", poll_interval: float) -> "EtcdServer":
        """Launch etcd and wait until it is healthy; on a first start, new ports while they were
        taken (up to :data:`_PORT_ATTEMPTS` times); after a failure, :meth:`_abandon`."""
        try:
            attempt = 1
            while True:
                try:
                    self._launch()
                    await self._wait_healthy(waiter, poll_interval)
                    if first and self.auth:
                        await waiter.enable_auth(self)
                    return self
                except _PortTaken:
                    if not first or attempt == _PORT_ATTEMPTS:
                        raise
                attempt += 1
                self._pick_ports()
        except BaseException:
            self._abandon(first)
            raise

    async def _wait_healthy(self, waiter: "_Waiter", poll_interval: float) -> None:
        """Poll ``/health`` until etcd answers healthy, exits, or ``startup_timeout`` is over."""
        deadline = waiter.seconds() + self.startup_timeout
        while True:
            self._check_alive()
            if await waiter.healthy(self._health_port):
                return
            if waiter.seconds() >= deadline:
                raise self._not_healthy()
            await waiter.pause(poll_interval)

    def _begin(self) -> bool:
        """Get ready to launch: a data dir and ports on the first start (returns whether it is)."""
        if self.running:
            raise RuntimeError("etcd is already running")
        if self.data_dir is not None:
            return False
        self.data_dir = tempfile.mkdtemp(prefix="txetcd-etcd-")
        self._write_tls_files()
        self._pick_ports()
        return True

    def _pick_ports(self) -> None:
        self.client_port, self.peer_port = free_port(), free_port()
        if self.tls:
            self.metrics_port = free_port()
        if self.separate_http:
            self.http_port = free_port()

    def _write_tls_files(self) -> None:
        """The certificates as files in the data dir (``tls``)."""
        if self.certificates is not None:
            assert self.data_dir is not None
            files = self.certificates.write(os.path.join(self.data_dir, "tls"))
            self._tls_files = files
            self.ca_cert, self.client_cert, self.client_key = (
                files.ca_cert,
                files.client_cert,
                files.client_key,
            )

    def _abandon(self, first: bool) -> None:
        """After a failed start: no process; no data dir either if it was the first start."""
        self.kill()
        if first:
            self._remove_data()

    def _launch(self) -> None:
        assert self.data_dir is not None
        client = self.endpoint
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            os.path.join(self.data_dir, "data"),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer}",
            *_log_flags(self.binary),
            *etcd_security_args(self),
            *([CLIENT_HTTP_FLAG, self.http_endpoint] if self.separate_http else []),
            *self.extra_args,
        ]
        self._close_log()
        self._log = open(os.path.join(self.data_dir, "etcd.log"), "ab")
        try:
            self._process = subprocess.Popen(
                args,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
        except (OSError, subprocess.SubprocessError) as e:
            self._close_log()
            raise EtcdStartError(f"could not run {self.binary!r}: {e}") from e

    def _check_alive(self) -> None:
        """Raise :class:`EtcdStartError` (with etcd's last words) if the process is gone."""
        if self._process is None:
            raise EtcdStartError("etcd was killed while it was starting", self.output())
        code = self._process.poll()
        if code is None:
            return
        self._process = None
        self._close_log()
        output = self.output()
        if "address already in use" in output:
            raise _PortTaken(f"etcd's ports were taken (status {code})", output, code)
        raise EtcdStartError(f"etcd exited with status {code} while starting", output, code)

    def _not_healthy(self) -> EtcdStartError:
        self.kill()
        return EtcdStartError(
            f"etcd did not become healthy within {self.startup_timeout} s", self.output()
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the process (default SIGKILL) and wait for it; the data dir stays."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(sig)
            self._process.wait()
            self._process = None
        self._close_log()

    def stop(self) -> None:
        """Kill etcd and remove its data dir."""
        self.kill()
        self._remove_data()

    def _remove_data(self) -> None:
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self._tls_files = self.ca_cert = self.client_cert = self.client_key = None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EtcdCluster(ClusterControl):
    """A cluster of ``size`` etcd members on 127.0.0.1, each a child process.

    ``start()`` launches every member and waits until each is healthy (has a leader);
    ``members[i].kill()`` and ``members[i].start()`` (or ``members[i].restart(reactor)``, which
    does not block the reactor) take one member down and bring it back; ``stop()`` kills them all
    and removes their data. A failed ``start()`` stops every member and raises
    :class:`EtcdStartError`. Usable as a context manager.

    ``tls``, ``client_cert_auth``, ``auth``, ``root_password``, ``auth_token_ttl`` and
    ``separate_http`` are as for :class:`EtcdServer` (the members share one set of
    certificates; auth is switched on once, through the first member). Members talk to each
    other over plain HTTP.
    """

    def __init__(
        self,
        size: int = 3,
        extra_args: Sequence[str] = (),
        *,
        binary: Optional[str] = None,
        startup_timeout: float = 30.0,
        tls: bool = False,
        client_cert_auth: bool = False,
        auth: bool = False,
        root_password: Optional[str] = None,
        auth_token_ttl: Optional[int] = None,
        separate_http: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        check_security(tls, client_cert_auth, auth, root_password, auth_token_ttl)
        if auth and root_password is None:
            root_password = secrets.token_urlsafe(18)
        self.members = [
            EtcdServer(
                extra_args,
                binary=binary,
                startup_timeout=startup_timeout,
                name=f"m{i}",
                tls=tls,
                client_cert_auth=client_cert_auth,
                auth=auth,
                root_password=root_password,
                auth_token_ttl=auth_token_ttl,
                separate_http=separate_http,
            )
            for i in range(size)
        ]
        for m in self.members[1:]:
            m.certificates = self.members[0].certificates
        self.auth = auth
        #: root's password when ``auth`` is on
        self.root_password = root_password

    def client_options(self) -> Dict[str, Any]:
        """Keyword arguments for a :class:`txetcd.Client` of the cluster (see
        :meth:`EtcdServer.client_options`)."""
        return self.members[0].client_options()

    @property
    def endpoints(self) -> List[str]:
        """Every member's client URL."""
        return [m.endpoint for m in self.members]

    def start(self) -> "EtcdCluster":
        """Start every member together, then wait until each is healthy."""
        for m in self.members:
            m.data_dir = tempfile.mkdtemp(prefix=f"txetcd-{m.name}-")
            m._write_tls_files()
            m._pick_ports()
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        try:
            for m in self.members:
                m.initial_cluster = initial
                m._launch()
            for m in self.members:
                _fired(Deferred.fromCoroutine(m._wait_healthy(_Blocking(), 0.05)))
            if self.auth:
                _fired(_Blocking().enable_auth(self.members[0]))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every member and remove their data."""
        for m in self.members:
            m.stop()

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _PortTaken(EtcdStartError):
    """etcd exited because one of its ports was taken (a first start tries other ports)."""


class _Waiter(Protocol):
    """Time and health checks for a start-up: on a reactor, or blocking."""

    def seconds(self) -> float: ...

    def healthy(self, port: int) -> "Deferred[bool]": ...

    def pause(self, seconds: float) -> "Deferred[None]": ...

    def enable_auth(self, server: EtcdServer) -> "Deferred[None]": ...


class _OnReactor:
    """Health checks and pauses on a reactor: :meth:`EtcdServer.start_async`."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def seconds(self) -> float:
        return float(self.reactor.seconds())

    def healthy(self, port: int) -> "Deferred[bool]":
        return Deferred.fromCoroutine(healthy_async(self.reactor, port))

    def pause(self, seconds: float) -> "Deferred[None]":
        return deferLater(self.reactor, seconds, lambda: None)

    def enable_auth(self, server: EtcdServer) -> "Deferred[None]":
        assert server.root_password is not None
        return Deferred.fromCoroutine(
            enable_auth_async(server, server.root_password, self.reactor, server.startup_timeout)
        )


class _Blocking:
    """Health checks and pauses that block, for :meth:`EtcdServer.start`: every Deferred they
    return has fired, so the start-up coroutine runs to its end before ``start()`` returns."""

    def seconds(self) -> float:
        return time.monotonic()

    def healthy(self, port: int) -> "Deferred[bool]":
        return succeed(healthy(port))

    def pause(self, seconds: float) -> "Deferred[None]":
        time.sleep(seconds)
        return succeed(None)

    def enable_auth(self, server: EtcdServer) -> "Deferred[None]":
        assert server.root_password is not None
        enable_auth(server, server.root_password, server.startup_timeout)
        return succeed(None)


def _check_separate_http(separate_http: object, binary: str) -> None:
    """Clear errors for ``separate_http``, before anything is launched."""
    if not isinstance(separate_http, bool):
        raise TypeError(f"separate_http must be a bool, not {type(separate_http).__name__}")
    if separate_http and not has_client_http_urls(binary):
        raise ValueError(
            f"separate_http=True needs an etcd with {CLIENT_HTTP_FLAG}, which {binary!r} "
            "does not have (etcd 3.5.1 has none): pass binary=etcd35_binary() "
            "(txetcd.testing; .ci/fetch-etcd35 unpacks Debian's etcd 3.5.16)"
        )


def _fired(d: "Deferred[_T]") -> _T:
    """The result of a Deferred that has fired (its failure raised)."""
    out: List[Any] = []
    d.addBoth(out.append)
    assert out, "a blocking start-up left a Deferred unfired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    result: _T = out[0]
    return result
