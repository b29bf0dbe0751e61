"""The treq-backed :class:`~txetcd._http1.interface.HTTP1Client`: any treq ``HTTPClient`` or
``IAgent``.

Use it for custom TLS, proxies, or ``treq.testing.StubTreq`` in tests. The same rules as
:class:`~txetcd._http1.pool.PoolClient` hold (see :mod:`txetcd._http1.interface`), with one
requirement on
what you pass in: **its** ``HTTPConnectionPool`` **must have** ``retryAutomatically = False``.
Twisted's default re-sends a body-less request whose answer was lost on a reused connection, a
hidden retry txetcd must not make; an agent whose persistent pool retries is refused with
``ValueError``. When no client is given, one is built with such a pool.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set, Union

from treq.client import HTTPClient
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from txetcd._errors import ClientClosed, EtcdError, OutcomeUnknown
from txetcd._http1.interface import (
    HeadersArg,
    HTTPResponse,
    HTTPStatusError,
    StreamHandle,
    _check_args,
    _connection_failed,
    _failure,
    _header_pairs,
    _Key,
    _LineBuffer,
    _lost_error,
    _split_url,
    _timeout_error,
)

__all__ = ["TreqClient"]

_NOT_SENT = (
    ierror.ConnectError,  # refused, connect timeout, no route, ...
    ierror.DNSLookupError,
)


def _never_sent(f: Failure) -> bool:
    from twisted.web._newclient import RequestGenerationFailed, RequestNotSent

    return isinstance(f.value, (RequestNotSent, RequestGenerationFailed, *_NOT_SENT))


def _check_agent(agent: object) -> None:
    pool = getattr(agent, "_pool", None)
    if pool is not None and getattr(pool, "persistent", False):
        if getattr(pool, "retryAutomatically", False):
            raise ValueError(
                "the agent's HTTPConnectionPool re-sends requests by itself: set its "
                "retryAutomatically to False (txetcd never retries behind your back)"
            )


def _headers_of(response: IResponse) -> Dict[bytes, bytes]:
    out: Dict[bytes, bytes] = {}
    for name, values in response.headers.getAllRawHeaders():
        out[name.lower()] = b", ".join(values)
    return out


class _Body(Protocol):
    """Receives a response body; ``on_data`` may raise, which ends it with that error."""

    def __init__(self, on_data: Callable[[bytes], None], on_end: Callable[[Failure], None]):
        self.on_data = on_data
        self.on_end = on_end
        self.ended = False

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            self.on_data(data)
        except Exception:
            self.ended = True
            f = _failure()
            self.stop()
            self.on_end(f)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.ended:
            self.ended = True
            self.on_end(reason)

    def stop(self) -> None:
        """Stop reading: closes the connection."""
        self.ended = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


class _Call:
    """One request through treq: waiting for a slot, sending, reading the body."""

    def __init__(
        self,
        owner: "TreqClient",
        key: _Key,
        method: bytes,
        url: str,
        headers: HeadersArg,
        body: bytes,
        timeout: Optional[float],
        idempotent: bool,
        limited: bool,
    ) -> None:
        self.owner = owner
        self.key = key
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.idempotent = idempotent
        self.limited = limited
        self.stage = "waiting"  # -> sending -> reading -> done
        self.holding = False
        self.pending: Optional[Deferred[Any]] = None
        self.reader: Optional[_Body] = None
        self.finished = False
        self.deferred: Deferred[HTTPResponse] = Deferred(lambda d: self._abort(None))
        self.timer: Optional[IDelayedCall] = None
        if timeout is not None:
            self.timer = owner.clock.callLater(timeout, self._timed_out)

    def describe(self) -> str:
        return f"{self.method.decode('ascii', 'replace')} {self.url}"

    def start(self) -> None:
        self.owner._calls.add(self)
        if self.limited:
            d = self.owner._semaphore(self.key).acquire()
            self.pending = d
            d.addCallbacks(self._acquired, lambda f: None)
        else:
            self._acquired(None)

    def _acquired(self, _: object) -> None:
        self.pending = None
        if self.limited:
            self.holding = True
        if self.finished:
            self._release()
            return
        self.stage = "sending"
        headers = Headers()
        for name, value in _header_pairs(self.headers):
            headers.addRawHeader(name, value)
        d = self.owner._client.request(
            self.method.decode("ascii"),
            self.url,
            headers=headers,
            data=self.body or None,
            allow_redirects=False,
            unbuffered=True,
        )
        self.pending = d
        d.addCallbacks(self._got_response, self._request_failed)

    def _got_response(self, response: IResponse) -> None:
        self.pending = None
        if self.finished:
            return
        self.stage = "reading"
        self.response_started(response)

    def response_started(self, response: IResponse) -> None:
        parts: list[bytes] = []
        status, headers = response.code, _headers_of(response)

        def ended(reason: Failure) -> None:
            if isinstance(reason.value, (ResponseDone, PotentialDataLoss)):
                self._finish(HTTPResponse(status, headers, b"".join(parts)))
            else:
                self._broken(reason)

        self.reader = _Body(parts.append, ended)
        response.deliverBody(self.reader)  # type: ignore[no-untyped-call]

    def _request_failed(self, f: Failure) -> None:
        self.pending = None
        if self.finished:
            return
        why = f.getErrorMessage() or f.type.__name__  # type: ignore[union-attr]
        if _never_sent(f):
            self._finish(_failure(_connection_failed(f"could not send: {why}", sent=False)))
        else:
            self._broken(f)

    def _broken(self, f: Failure) -> None:
        why = f.getErrorMessage() or f.type.__name__  # type: ignore[union-attr]
        self._finish(
            _failure(
                _lost_error(f"connection lost: {why}", written=True, idempotent=self.idempotent)
            )
        )

    def _release(self) -> None:
        if self.holding:
            self.holding = False
            self.owner._semaphore(self.key).release()

    def _finish(self, result: Union[HTTPResponse, Failure]) -> None:
        if self.finished:
            return
        self.finished = True
        self.stage = "done"
        self.owner._calls.discard(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self._release()
        self.deliver(result)

    def deliver(self, result: Union[HTTPResponse, Failure]) -> None:
        if isinstance(result, Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)

    def _abort(self, error: Optional[EtcdError]) -> None:
        """Stop wherever the call is (closing its connection), then fail it with ``error``.

        ``None``: the caller cancelled; the Deferred fails with ``CancelledError``.
        """
        if self.finished:
            return
        self.finished = True  # nothing that comes back from here on counts
        pending, self.pending = self.pending, None
        reader, self.reader = self.reader, None
        if pending is not None:
            pending.cancel()
        if reader is not None:
            reader.stop()
        if error is None:
            self.owner._calls.discard(self)
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.timer = None
            self._release()
            self.stage = "done"
            self.cancelled()
            return
        self.finished = False
        self._finish(_failure(error))

    def cancelled(self) -> None:
        """The caller cancelled ``deferred`` (Twisted fails it with ``CancelledError``)."""

    def _timed_out(self) -> None:
        self.timer = None
        if self.finished:
            return
        written = self.stage in ("sending", "reading")
        self._abort(_timeout_error(self.describe(), written=written, idempotent=self.idempotent))


class _StreamCall(_Call):
    """A streaming request: 2xx bodies go line by line to ``on_line``."""

    def __init__(
        self,
        owner: "TreqClient",
        key: _Key,
        method: bytes,
        url: str,
        headers: HeadersArg,
        body: bytes,
        on_line: Callable[[bytes], None],
    ) -> None:
        super().__init__(owner, key, method, url, headers, body, None, True, False)
        self.handle = StreamHandle(lambda: self._abort(None))
        self.lines = _LineBuffer(on_line)

    def response_started(self, response: IResponse) -> None:
        status, headers = response.code, _headers_of(response)
        self.handle._answered(HTTPResponse(status, headers))
        if not 200 <= status < 300:
            super().response_started(response)
            return

        def ended(reason: Failure) -> None:
            if self.finished:
                return
            if isinstance(reason.value, (ResponseDone, PotentialDataLoss)):
                try:
                    self.lines.finish()
                except Exception:
                    self._finish(_failure())
                    return
                self._finish_stream(status)
            elif getattr(reason, "_txetcd_user", False):  # on_line raised: end with its error
                self._finish(reason)
            else:
                self._broken(reason)

        self.reader = _LineReader(self.lines.feed, ended)
        response.deliverBody(self.reader)  # type: ignore[no-untyped-call]
        # Twisted's body transport is a producer: pausing it stops reading the socket.
        self.handle._reading_from(self.reader.transport)

    def _finish_stream(self, status: int) -> None:
        self.lines.stopped = True
        self.finished = True
        self.owner._calls.discard(self)
        self.handle._end(status)

    def deliver(self, result: Union[HTTPResponse, Failure]) -> None:
        self.lines.stopped = True
        if isinstance(result, HTTPResponse):  # a non-2xx answer, read whole
            self.handle._end(_failure(HTTPStatusError(result)))
        else:
            self.handle._end(result)

    def cancelled(self) -> None:
        self.lines.stopped = True


class _LineReader(_Body):
    """A :class:`_Body` whose ``on_data`` errors are the user's: they end the stream as is."""

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            self.on_data(data)
        except Exception:
            f = _failure()
            f._txetcd_user = True  # type: ignore[attr-defined]
            self.stop()
            self.ended = True
            self.on_end(f)


class TreqClient:
    """HTTP/1.1 through treq (see the module docstring).

    :param client: a treq ``HTTPClient``, an ``IAgent`` (wrapped in an ``HTTPClient``), or
        ``None`` for an ``Agent`` on a persistent pool of our own that never retries.
    :param reactor: for time (deadlines) and, when ``client`` is ``None``, for TCP.
    :param max_connections_per_endpoint: requests in flight per endpoint (and, with our own
        pool, cached connections); streams and ``exclusive`` requests are not counted.
    """

    def __init__(
        self,
        client: Union[HTTPClient, IAgent, None],
        reactor: Any,
        *,
        max_connections_per_endpoint: int = 32,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(max_connections_per_endpoint, int) or max_connections_per_endpoint < 1:
            raise ValueError("max_connections_per_endpoint must be a positive int")
        self.clock: IReactorTime = reactor
        self._pool: Optional[HTTPConnectionPool] = None
        if client is None:
            pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
            pool.retryAutomatically = False
            pool.maxPersistentPerHost = max_connections_per_endpoint
            self._pool = pool
            agent = Agent(reactor, connectTimeout=connect_timeout, pool=pool)  # type: ignore[no-untyped-call]
            self._client = HTTPClient(agent)
        elif isinstance(client, HTTPClient):
            _check_agent(getattr(client, "_agent", None))
            self._client = client
        elif IAgent.providedBy(client):
            _check_agent(client)
            self._client = HTTPClient(client)
        else:
            raise TypeError(
                f"client must be a treq HTTPClient, an IAgent or None, not {type(client).__name__}"
            )
        self.max_connections = max_connections_per_endpoint
        self.closed = False
        self._limits: Dict[_Key, DeferredSemaphore] = {}
        self._calls: Set[_Call] = set()

    def _semaphore(self, key: _Key) -> DeferredSemaphore:
        sem = self._limits.get(key)
        if sem is None:
            sem = self._limits[key] = DeferredSemaphore(self.max_connections)
        return sem

    def request(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        timeout: Optional[float] = None,
        idempotent: bool = False,
        exclusive: bool = False,
    ) -> "Deferred[HTTPResponse]":
        """See :meth:`txetcd._http1.interface.HTTP1Client.request`."""
        _check_args(method, url, headers, body)
        key = _split_url(url)[0]
        _header_pairs(headers)
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        call = _Call(self, key, method, url, headers, body, timeout, idempotent, not exclusive)
        call.start()
        return call.deferred

    def stream(
        self,
        method: bytes,
        url: str,
        *,
        headers: HeadersArg = (),
        body: bytes = b"",
        on_line: Callable[[bytes], None],
    ) -> StreamHandle:
        """See :meth:`txetcd._http1.interface.HTTP1Client.stream`."""
        _check_args(method, url, headers, body)
        if not callable(on_line):
            raise TypeError(f"on_line must be callable, not {type(on_line).__name__}")
        key = _split_url(url)[0]
        _header_pairs(headers)
        call = _StreamCall(self, key, method, url, headers, body, on_line)
        if self.closed:
            call._finish(_failure(ClientClosed("the client is closed")))
        else:
            call.start()
        return call.handle

    def close(self) -> "Deferred[None]":
        """Stop every call in flight (closing its connection) and, with our own pool, close it.

        Calls not yet sent fail with :class:`~txetcd.ClientClosed`, a non-idempotent request
        already sent with :class:`~txetcd.OutcomeUnknown`. A pool you passed in stays open.
        """
        self.closed = True
        for call in list(self._calls):
            closed = ClientClosed("the client is closed")
            if call.stage != "waiting" and not call.idempotent:
                call._abort(OutcomeUnknown("the client was closed during a write", cause=closed))
            else:
                call._abort(closed)
        if self._pool is not None:
            d: Deferred[None] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
            return d
        return succeed(None)
