"""HTTP/1.1 transports (:mod:`txetcd._http1.interface`): the same tests for the httptools pool and
treq.

Against real etcd's JSON gateway (unary calls, keep-alive reuse, the connection bound, a watch
stream), against small in-test servers (chunks split at every byte, a server that hangs up after
reading the request, one that never answers), and, for treq, against an in-memory resource
through ``treq.testing.RequestTraversalAgent``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import socket
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

import pytest
import pytest_twisted
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from txetcd import ClientClosed, ConnectionFailed, OutcomeUnknown, Timeout, WriteTimeout
from txetcd._errors import HTTPStatusError
from txetcd._http1.interface import HTTP1Client, HTTPResponse, maybe_sent
from txetcd._http1.pool import PoolClient
from txetcd._http1.treq import TreqClient
from txetcd.test.helpers import module_timers, outcome, reactor, sleep, until
from txetcd.testing import EtcdServer, TCPProxy, free_port

# httptools is an install requirement; if an environment lacks it, say so instead of erroring.
needs_httptools = pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Clients:
    """Makes clients of either kind and closes them (and treq's pools) after the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.made: List[Any] = []
        self.pools: List[HTTPConnectionPool] = []

    def __call__(self, max_connections: int = 32) -> HTTP1Client:
        client: HTTP1Client
        if self.kind == "pool":
            client = PoolClient(reactor(), max_connections_per_endpoint=max_connections)
        else:
            pool = HTTPConnectionPool(reactor(), persistent=True)
            pool.retryAutomatically = False
            pool.maxPersistentPerHost = max_connections
            self.pools.append(pool)
            agent = Agent(reactor(), pool=pool)
            client = TreqClient(
                HTTPClient(agent), reactor(), max_connections_per_endpoint=max_connections
            )
        self.made.append(client)
        return client

    async def close(self) -> None:
        for client in self.made:
            await client.close()
        for pool in self.pools:
            await pool.closeCachedConnections()


@pytest.fixture(params=[pytest.param("pool", marks=needs_httptools), "treq"])
def kind(request: Any) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def clients(kind: str) -> AsyncIterator[Clients]:
    made = Clients(kind)
    try:
        yield made
    finally:
        await made.close()
        assert module_timers(reactor(), "txetcd._http1.interface") == []


def put_body(key: bytes, value: bytes) -> bytes:
    return json.dumps({"key": b64(key), "value": b64(value)}).encode()


def range_body(key: bytes) -> bytes:
    return json.dumps({"key": b64(key)}).encode()


# -- against real etcd -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_put_and_range(clients: Clients, etcd_server: EtcdServer, etcd_prefix: bytes) -> None:
    http = clients()
    key = etcd_prefix + b"k"
    put = await http.request(
        b"POST", etcd_server.endpoint + "/v3/kv/put", body=put_body(key, b"v1"), timeout=5
    )
    assert isinstance(put, HTTPResponse)
    assert put.status == 200
    assert put.headers[b"content-type"] == b"application/json"
    revision = int(json.loads(put.body)["header"]["revision"])
    got = await http.request(
        b"POST",
        etcd_server.endpoint + "/v3/kv/range",
        headers={b"Content-Type": b"application/json"},
        body=range_body(key),
        timeout=5,
        idempotent=True,
    )
    answer = json.loads(got.body)
    assert answer["kvs"][0]["value"] == b64(b"v1")
    assert int(answer["kvs"][0]["mod_revision"]) == revision
    # An error answer is still an answer: the gateway layer translates it.
    bad = await http.request(b"POST", etcd_server.endpoint + "/v3/kv/range", body=b"{")
    assert bad.status == 400 and json.loads(bad.body)["code"] == 3


@pytest_twisted.ensureDeferred
async def test_keep_alive_reuses_one_connection(
    clients: Clients, etcd_proxy: TCPProxy, etcd_prefix: bytes
) -> None:
    http = clients()
    for i in range(6):
        r = await http.request(
            b"POST",
            etcd_proxy.endpoint + "/v3/kv/put",
            body=put_body(etcd_prefix + b"%d" % i, b"x"),
        )
        assert r.status == 200
    assert etcd_proxy.connections_total == 1


@needs_httptools
@pytest_twisted.ensureDeferred
async def test_pool_connections_send_without_nagle(
    etcd_server: EtcdServer, etcd_prefix: bytes
) -> None:
    pool = PoolClient(reactor())
    try:
        url = etcd_server.endpoint + "/v3/kv/put"
        r = await pool.request(b"POST", url, body=put_body(etcd_prefix + b"n", b"x" * 200_000))
        assert r.status == 200
        [conn] = list(pool._all)
        sock = conn.transport.getHandle()  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_connections_are_bounded(
    clients: Clients, etcd_proxy: TCPProxy, etcd_prefix: bytes
) -> None:
    http = clients(max_connections=8)
    url = etcd_proxy.endpoint + "/v3/kv/range"
    most = [0]

    def seen(r: HTTPResponse) -> HTTPResponse:
        most[0] = max(most[0], etcd_proxy.active_connections)
        return r

    ds = [
        http.request(b"POST", url, body=range_body(etcd_prefix + b"%d" % i), idempotent=True)
        for i in range(64)
    ]
    for d in ds:
        d.addCallback(seen)
    answers = await defer.gatherResults(ds, consumeErrors=True)
    assert [r.status for r in answers] == [200] * 64
    assert 1 <= etcd_proxy.connections_total <= 8
    assert most[0] <= 8
    if isinstance(http, PoolClient):
        assert http.connection_count(url) <= 8


@pytest_twisted.ensureDeferred
async def test_watch_stream_delivers_lines_and_cancel_closes(
    clients: Clients, etcd_proxy: TCPProxy, etcd_prefix: bytes
) -> None:
    http = clients()
    key = etcd_prefix + b"w"
    lines: List[Dict[str, Any]] = []
    body = json.dumps({"create_request": {"key": b64(key)}}).encode()
    handle = http.stream(
        b"POST",
        etcd_proxy.endpoint + "/v3/watch",
        body=body,
        on_line=lambda line: lines.append(json.loads(line)),
    )
    response = await handle.response
    assert response.status == 200 and response.body == b""
    await until(lambda: len(lines) >= 1)
    assert lines[0]["result"]["created"] is True
    for i in range(3):
        await http.request(
            b"POST", etcd_proxy.endpoint + "/v3/kv/put", body=put_body(key, b"v%d" % i)
        )
    await until(lambda: len(lines) >= 4)
    values = [
        base64.b64decode(ev["kv"]["value"]) for line in lines[1:] for ev in line["result"]["events"]
    ]
    assert values == [b"v0", b"v1", b"v2"]
    assert etcd_proxy.connections_total == 2  # the stream did not share the unary connection
    handle.cancel()
    with pytest.raises(defer.CancelledError):
        await handle.done
    await until(lambda: etcd_proxy.active_connections == 1)


@pytest_twisted.ensureDeferred
async def test_stream_error_status_delivers_the_body_as_error(
    clients: Clients, etcd_server: EtcdServer
) -> None:
    http = clients()
    lines: List[bytes] = []
    handle = http.stream(
        b"POST", etcd_server.endpoint + "/v3/watch", body=b"{nope", on_line=lines.append
    )
    with pytest.raises(HTTPStatusError) as e:
        await handle.done
    assert e.value.response.status >= 400
    assert b"error" in e.value.response.body
    assert lines == []


@pytest_twisted.ensureDeferred
async def test_refused_port_is_connection_failed(clients: Clients) -> None:
    http = clients()
    url = f"http://127.0.0.1:{free_port()}/v3/kv/put"
    with pytest.raises(ConnectionFailed) as e:
        await http.request(b"POST", url, body=b"{}", timeout=5)
    assert not isinstance(e.value, OutcomeUnknown)
    assert maybe_sent(e.value) is False
    handle = http.stream(b"POST", url, on_line=lambda line: None)
    with pytest.raises(ConnectionFailed):
        await handle.done
    with pytest.raises(ConnectionFailed):
        await handle.response


# -- against small in-test servers -------------------------------------------------------------


class _Scripted(Protocol):
    """Reads one request (headers and Content-Length body), then does what ``action`` says."""

    def __init__(self, action: Callable[["_Scripted"], None]) -> None:
        self.action = action
        self.buf = b""
        self.done = False

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        if self.done or b"\r\n\r\n" not in self.buf:
            return
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) >= length:
            self.done = True
            self.action(self)


@pytest_twisted.async_yield_fixture
async def serve() -> AsyncIterator[Callable[[Callable[[_Scripted], None]], str]]:
    ports: List[Any] = []
    protocols: List[_Scripted] = []

    def start(action: Callable[[_Scripted], None]) -> str:
        def build() -> _Scripted:
            p = _Scripted(action)
            protocols.append(p)
            return p

        port = reactor().listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
        ports.append(port)
        return f"http://127.0.0.1:{port.getHost().port}/x"

    yield start
    for p in protocols:
        if p.transport is not None:
            p.transport.abortConnection()  # type: ignore[attr-defined]
    for port in ports:
        await port.stopListening()


LINES = [b'{"result":{"n":%d,"pad":"%s"}}' % (i, b"x" * (i * 7 % 23)) for i in range(12)]


def chunked(pieces: List[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def send_slowly(p: _Scripted, data: bytes, step: int) -> None:
    """Write ``data`` ``step`` bytes at a time, one reactor turn apart (so reads split too)."""
    if not data or p.transport is None:
        return
    p.transport.write(data[:step])
    reactor().callLater(0, send_slowly, p, data[step:], step)


@pytest.mark.parametrize("split", ["every-byte", "several-lines-per-chunk"])
@pytest_twisted.ensureDeferred
async def test_stream_lines_survive_any_chunking(
    clients: Clients, serve: Callable[..., str], split: str
) -> None:
    body = b"".join(line + b"\n" for line in LINES)
    if split == "every-byte":
        pieces = [body[i : i + 1] for i in range(len(body))]
        step = 5
    else:
        pieces = [body[:100], body[100:101], body[101:400], body[400:]]
        step = 64
    url = serve(lambda p: send_slowly(p, HEAD + chunked(pieces), step))
    http = clients()
    got: List[bytes] = []
    handle = http.stream(b"POST", url, body=b"{}", on_line=got.append)
    assert await handle.done == 200
    assert got == LINES


@pytest_twisted.ensureDeferred
async def test_last_line_without_newline_and_content_length(
    clients: Clients, serve: Callable[..., str]
) -> None:
    body = b"a\nbb\n\nccc"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    url = serve(lambda p: send_slowly(p, head + body, 3))
    http = clients()
    got: List[bytes] = []
    assert await http.stream(b"GET", url, on_line=got.append).done == 200
    assert got == [b"a", b"bb", b"", b"ccc"]


@pytest_twisted.ensureDeferred
async def test_on_line_error_ends_the_stream_with_it(
    clients: Clients, serve: Callable[..., str]
) -> None:
    url = serve(lambda p: send_slowly(p, HEAD + chunked([b"one\ntwo\n", b"three\n"]), 1000))
    http = clients()
    got: List[bytes] = []

    def on_line(line: bytes) -> None:
        got.append(line)
        if line == b"two":
            raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        await http.stream(b"POST", url, on_line=on_line).done
    assert got == [b"one", b"two"]


def hang_up(p: _Scripted) -> None:
    assert p.transport is not None
    p.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_lost_after_sending(clients: Clients, serve: Callable[..., str]) -> None:
    url = serve(hang_up)
    http = clients()
    with pytest.raises(OutcomeUnknown) as e:
        await http.request(b"POST", url, body=b'{"key":"YQ=="}', timeout=5)
    assert isinstance(e.value.cause, ConnectionFailed)
    with pytest.raises(ConnectionFailed) as e2:
        await http.request(b"POST", url, body=b"{}", timeout=5, idempotent=True)
    assert not isinstance(e2.value, OutcomeUnknown)
    assert maybe_sent(e2.value) is True


class _AnswerOnceThenHangUp(Protocol):
    """Answers the first request on the connection, hangs up on the second (after reading it)."""

    seen: List[bytes] = []

    def __init__(self) -> None:
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.seen.append(head.split(b"\r\n")[0])
            assert self.transport is not None
            if len(self.seen) == 1:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_no_hidden_retry_on_a_reused_connection(clients: Clients) -> None:
    seen: List[bytes] = []
    _AnswerOnceThenHangUp.seen = seen
    port = reactor().listenTCP(0, Factory.forProtocol(_AnswerOnceThenHangUp), interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/v2/keys/a"
        http = clients()
        assert (await http.request(b"GET", url, timeout=5, idempotent=True)).body == b"ok"
        # Twisted's pool would re-send this body-less GET on a new connection by itself.
        with pytest.raises(ConnectionFailed) as e:
            await http.request(b"GET", url, timeout=5, idempotent=True)
        assert maybe_sent(e.value) is True
        await sleep(0.05)
        assert seen == [b"GET /v2/keys/a HTTP/1.1"] * 2
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_deadline(clients: Clients, serve: Callable[..., str]) -> None:
    url = serve(lambda p: None)  # reads the request, never answers
    http = clients()
    with pytest.raises(WriteTimeout):
        await http.request(b"POST", url, body=b"{}", timeout=0.2)
    with pytest.raises(Timeout) as e:
        await http.request(b"POST", url, body=b"{}", timeout=0.2, idempotent=True)
    assert not isinstance(e.value, WriteTimeout)


@pytest_twisted.ensureDeferred
async def test_deadline_while_waiting_for_a_connection(
    clients: Clients, serve: Callable[..., str]
) -> None:
    url = serve(lambda p: None)
    http = clients(max_connections=1)
    busy = http.request(b"POST", url, body=b"{}", idempotent=True)
    with pytest.raises(Timeout) as e:  # never sent: not a WriteTimeout even for a write
        await http.request(b"POST", url, body=b"{}", timeout=0.2)
    assert not isinstance(e.value, WriteTimeout)
    busy.cancel()
    with pytest.raises(defer.CancelledError):
        await busy


@pytest_twisted.ensureDeferred
async def test_body_until_eof(clients: Clients, serve: Callable[..., str]) -> None:
    def answer(p: _Scripted) -> None:
        assert p.transport is not None
        p.transport.write(b"HTTP/1.0 200 OK\r\nX-A: 1\r\nX-A: 2\r\n\r\nuntil the end")
        p.transport.loseConnection()

    http = clients()
    r = await http.request(b"GET", serve(answer), timeout=5, idempotent=True)
    assert (r.status, r.body, r.headers[b"x-a"]) == (200, b"until the end", b"1, 2")


@pytest_twisted.ensureDeferred
async def test_closed_client(clients: Clients, serve: Callable[..., str]) -> None:
    url = serve(lambda p: None)
    http = clients()
    pending = http.request(b"POST", url, body=b"{}", idempotent=True)
    await sleep(0.05)
    await http.close()
    with pytest.raises(ClientClosed):
        await pending
    with pytest.raises(ClientClosed):
        await http.request(b"POST", url)


@needs_httptools
def test_misuse_raises_type_error() -> None:
    http = PoolClient(task.Clock())
    with pytest.raises(TypeError, match="method must be bytes"):
        http.request("POST", "http://127.0.0.1:1/")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body must be bytes"):
        http.request(b"POST", "http://127.0.0.1:1/", body="{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="header names and values must be bytes"):
        http.request(b"POST", "http://127.0.0.1:1/", headers={"a": "b"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="invalid header"):
        http.request(b"POST", "http://127.0.0.1:1/", headers={b"a": b"b\r\nc: d"})


# -- the pool alone ----------------------------------------------------------------------------


class SplitReactor:
    """Real TCP, fake time: the pool's timers run on ``clock``."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock

    def callLater(self, *a: Any, **kw: Any) -> Any:
        return self.clock.callLater(*a, **kw)

    def seconds(self) -> float:
        return self.clock.seconds()

    def getDelayedCalls(self) -> Any:
        return self.clock.getDelayedCalls()


@needs_httptools
@pytest_twisted.ensureDeferred
async def test_pool_idle_timeout_and_close_leave_nothing(
    etcd_proxy: TCPProxy, etcd_prefix: bytes
) -> None:
    clock = task.Clock()
    pool = PoolClient(
        SplitReactor(clock),
        idle_timeout=30,
        endpoint_factory=lambda r, scheme, host, port: TCP4ClientEndpoint(reactor(), host, port),
    )
    url = etcd_proxy.endpoint + "/v3/kv/range"
    await defer.gatherResults(
        [
            pool.request(b"POST", url, body=range_body(etcd_prefix), idempotent=True)
            for _ in range(3)
        ]
    )
    assert pool.connection_count(url) == 3
    assert len(clock.getDelayedCalls()) == 3  # one idle timer each
    clock.advance(29)
    assert pool.connection_count(url) == 3
    clock.advance(1)
    await until(lambda: pool.connection_count() == 0)
    assert clock.getDelayedCalls() == []
    await until(lambda: etcd_proxy.active_connections == 0)
    # And close() with connections open and a request queued.
    pool.max_connections = 1
    first = pool.request(b"POST", url, body=range_body(etcd_prefix), idempotent=True, timeout=9)
    await first
    queued = [pool.request(b"POST", url, body=b"{}", timeout=9) for _ in range(3)]
    await pool.close()
    for d in queued:
        with pytest.raises((ClientClosed, OutcomeUnknown)):
            await d
    assert pool.connection_count() == 0 and clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_connection_close_is_honoured(clients: Clients, serve: Callable[..., str]) -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    url = serve(lambda p: p.transport.write(answer) if p.transport is not None else None)
    http = clients()
    for _ in range(2):
        r = await http.request(b"POST", url, timeout=5, idempotent=True)
        assert (r.status, r.body) == (200, b"ok")


# -- treq against an in-memory resource (StubTreq's agent) -------------------------------------


class Lines(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: List[Any] = []

    def render_POST(self, request: Any) -> Any:
        self.requests.append(request)
        if request.path == b"/put":
            request.setHeader(b"content-type", b"application/json")
            return b'{"header":{"revision":"2"},"got":' + request.content.read() + b"}"
        if request.path == b"/bad":
            request.setResponseCode(500)
            return b'{"error":{"grpc_code":2}}'
        return NOT_DONE_YET  # /watch: written by the test


def stub_client(resource: Resource, clock: Optional[task.Clock] = None) -> Any:
    agent = RequestTraversalAgent(resource)
    client = HTTPClient(agent, data_to_body_producer=_SynchronousProducer)
    return agent, TreqClient(client, clock or task.Clock())


def test_treq_stub_request_and_stream() -> None:
    resource = Lines()
    agent, http = stub_client(resource)
    d = http.request(b"POST", "http://etcd/put", body=b'{"k":1}')
    agent.flush()
    r = outcome(d)
    assert r.status == 200 and json.loads(r.body)["got"] == {"k": 1}
    assert r.headers[b"content-type"] == b"application/json"

    got: List[bytes] = []
    handle = http.stream(b"POST", "http://etcd/watch", body=b"{}", on_line=got.append)
    agent.flush()
    (request,) = [q for q in resource.requests if q.path == b"/watch"]
    for piece in [b'{"a":', b'1}\n{"b"', b":2}\n", b'{"c":3}\n{"d', b'":4}\n']:
        request.write(piece)
        agent.flush()
    assert got == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
    assert outcome(handle.response).status == 200
    request.finish()
    agent.flush()
    assert outcome(handle.done) == 200

    bad = http.stream(b"POST", "http://etcd/bad", on_line=got.append)
    agent.flush()
    err = outcome(bad.done)
    assert isinstance(err, HTTPStatusError) and err.response.status == 500


def test_treq_stub_deadline_and_cancel() -> None:
    clock = task.Clock()
    resource = Lines()
    agent, http = stub_client(resource, clock)
    d = http.request(b"POST", "http://etcd/watch", body=b"{}", timeout=3)
    agent.flush()
    clock.advance(3)
    assert isinstance(outcome(d), WriteTimeout)
    handle = http.stream(b"POST", "http://etcd/watch", on_line=lambda line: None)
    agent.flush()
    handle.cancel()
    agent.flush()
    assert isinstance(outcome(handle.done), defer.CancelledError)
    assert clock.getDelayedCalls() == []


def test_treq_refuses_a_retrying_pool() -> None:
    pool = HTTPConnectionPool(task.Clock(), persistent=True)
    with pytest.raises(ValueError, match="retryAutomatically"):
        TreqClient(Agent(task.Clock(), pool=pool), task.Clock())
    with pytest.raises(TypeError, match="HTTPClient, an IAgent or None"):
        TreqClient(object(), task.Clock())  # type: ignore[arg-type]


@needs_httptools
@pytest_twisted.ensureDeferred
async def test_pool_deadlines_share_one_timer_and_expire_in_order(
    serve: Callable[..., str],
) -> None:
    """Requests of one timeout are timed by one timer of the pool: each fails at its own
    deadline, finished ones are skipped, and close() leaves no timer behind."""
    clock = task.Clock()
    url = serve(lambda p: None)  # a server that never answers
    pool = PoolClient(
        SplitReactor(clock),
        endpoint_factory=lambda r, scheme, host, port: TCP4ClientEndpoint(reactor(), host, port),
    )
    first = pool.request(b"GET", url, timeout=5, idempotent=True)
    await until(lambda: pool.connection_count() == 1)  # connected (real TCP), request sent
    clock.advance(2)
    second = pool.request(b"GET", url, timeout=5, idempotent=True)
    third = pool.request(b"GET", url, timeout=5, idempotent=True)
    other = pool.request(b"GET", url, timeout=9, idempotent=True)
    await until(lambda: pool.connection_count() == 4)
    third.cancel()  # finished early: its place in the queue is skipped
    with pytest.raises(defer.CancelledError):
        await third
    expiries = [c for c in clock.getDelayedCalls() if getattr(c, "func", None) == pool._expire]
    assert len(expiries) == 2  # one timer per timeout value, not one per request
    clock.advance(3)  # t = 5
    assert isinstance(outcome(first), Timeout) and not second.called
    clock.advance(2)  # t = 7
    assert isinstance(outcome(second), Timeout) and not other.called
    clock.advance(4)  # t = 11: 9 s after `other` was made at t = 2
    assert isinstance(outcome(other), Timeout)
    left = [c for c in clock.getDelayedCalls() if getattr(c, "func", None) == pool._expire]
    assert left == []  # the queues are empty: no deadline timer is left
    late = pool.request(b"GET", url, timeout=5, idempotent=True)
    await pool.close()
    with pytest.raises(ClientClosed):
        await late
    assert clock.getDelayedCalls() == []
