"""The same calls over etcd's JSON gateway (HTTP/1.1), for where HTTP/2 cannot go.

:class:`GatewayChannel` implements the :class:`~txetcd._transport.Transport` seam, like the gRPC
:class:`~txetcd._grpc.channel.Channel`: it takes the request *message*, writes it as the
gateway's JSON (:mod:`txetcd._gateway.pbjson`: proto field names, int64 as strings, bytes as
base64, enums by name), POSTs it to the method's gateway route
(:attr:`~txetcd._transport.Method.gateway`) through an HTTP/1.1 client
(:mod:`txetcd._http1.interface`: the lean pool, or treq with any agent), and hands ``decode``
the answer as a message (or, for KV answers, builds the result straight from the JSON:
:mod:`txetcd._gateway.kvjson`). Errors are translated by the gRPC ``code`` in the gateway's
``{"error", "code", "message"}`` body (never by HTTP status, which differs between etcd 3.4 and
3.5).

The resend rule and its backoff are the gRPC transport's (:mod:`txetcd._retry`): a read whose
connection broke after it was sent is sent again, to the next endpoint, up to ``max_attempts``;
a write only when it never left; otherwise :class:`~txetcd.OutcomeUnknown`.

Watches and the lease keepalive loop run on it too (see :class:`GatewayStream` and
:class:`GatewayKeepAliveStream`): their messages go straight between JSON and protobuf messages.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, Sequence, Set

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import deferLater

from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    OutcomeUnknown,
    ProtocolViolation,
    Timeout,
    Unimplemented,
    error_from_status,
)
from txetcd._gateway.kvjson import DIRECT, Fallback
from txetcd._gateway.pbjson import dict_to_message, json_loads, json_to_message, message_to_json
from txetcd._grpc.channel import Endpoint, parse_endpoint
from txetcd._http1.interface import HTTP1Client, HTTPResponse
from txetcd._methods import LEASE_KEEPALIVE, RANGE
from txetcd._proto import rpc_pb2
from txetcd._retry import RESEND_BACKOFF, may_resend, may_resend_after, member_unfit
from txetcd._terms import PROBE_REQUEST, TermWatch
from txetcd._transport import REQUIRE_LEADER, Capabilities, Metadata, Method

__all__ = ["GatewayChannel"]

_JSON = ((b"content-type", b"application/json"),)
#: methods whose gateway answer is stream lines (``{"result": ...}``), not one object
_LINES = frozenset({LEASE_KEEPALIVE.path})


def to_json(message: Any) -> bytes:
    """A protobuf message as the gateway wants it (proto names, defaults left out)."""
    return message_to_json(message)


def from_json(body: bytes, response_type: Any) -> Any:
    """The gateway's JSON answer as a protobuf message (unknown fields are ignored)."""
    return json_to_message(body, response_type)


def decode_direct(
    body: bytes,
    response_type: Any,
    decode: Callable[[Any], Any],
    direct: Callable[[Any], Any],
) -> Any:
    """``decode(from_json(body, response_type))``, made by ``direct`` from the JSON itself when
    it can (:mod:`txetcd._gateway.kvjson`: no protobuf message in between)."""
    data = json_loads(body)
    try:
        return direct(data)
    except Fallback:
        return decode(dict_to_message(data, response_type))


def gateway_error(response: HTTPResponse, *, mutation: bool) -> EtcdError:
    """The error a non-200 gateway answer stands for, by its gRPC ``code``."""
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), int):
        message = data.get("message") or data.get("error") or ""
        return error_from_status(data["code"], str(message), mutation=mutation)
    text = response.body.decode("utf-8", "replace").strip()
    if response.status == 404:
        return Unimplemented(f"the gateway has no such route ({text})", code=12)
    return ProtocolViolation(f"HTTP {response.status} from the gateway: {text[:200]}")


class _Unary:
    """One unary call's attempts: one Deferred per attempt, the answer decoded in its callback,
    so cancelling the call cancels its request, and a second attempt is chained to the first.

    A class rather than closures: closures that name each other make a reference cycle per call,
    which only the garbage collector can free (a measurable share of a busy client's time).
    """

    __slots__ = (
        "channel",
        "gateway_path",
        "response_type",
        "body",
        "headers",
        "deadline",
        "idempotent",
        "decode",
        "direct",
        "lines",
        "endpoint",
        "waits",
        "term",
        "pending",
        "superseded_by",
        "errors",
    )

    def __init__(
        self,
        channel: "GatewayChannel",
        method: Method,
        gateway_path: str,
        body: bytes,
        headers: Any,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
    ) -> None:
        self.channel = channel
        self.gateway_path = gateway_path
        self.response_type = method.response
        self.body = body
        self.headers = headers
        self.deadline = None if timeout is None else channel.clock.seconds() + timeout
        self.idempotent = idempotent
        self.decode = decode
        self.direct = DIRECT.get(decode)
        self.lines = method.path in _LINES  # the answer is stream lines ({"result": ...})
        self.endpoint = 0  # the index of the endpoint the last attempt went to
        self.waits = 0  # resends after "not now" answers
        self.term: Optional[int] = None  # a write in flight: the term when sent (_terms)
        self.pending: Optional[Deferred[Any]] = None  # the request in flight
        self.superseded_by = 0  # the new leader's term that ended this write
        self.errors: List[str] = []  # why each attempt could not connect, to name them all

    def __call__(self, n: int) -> "Deferred[Any]":
        channel = self.channel
        self.endpoint = index = channel._index
        endpoint = channel.endpoints[index % len(channel.endpoints)]
        deadline = self.deadline
        d = channel.http.request(
            b"POST",
            endpoint.url.rstrip("/") + self.gateway_path,
            headers=self.headers,
            body=self.body,
            timeout=None if deadline is None else max(deadline - channel.clock.seconds(), 0.001),
            idempotent=self.idempotent,
        )
        if not self.idempotent:
            self.pending = d
            channel.terms.sent(self)
        # An error answer (raised by answered) is judged by failed too: reads answered
        # UNAVAILABLE go again.
        return d.addCallback(self.answered).addErrback(self.failed, n)

    def superseded(self, term: int) -> None:
        """A new leader was elected since this write was sent (see :mod:`txetcd._terms`)."""
        self.superseded_by = term
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()

    def answered(self, response: HTTPResponse) -> Any:
        if self.term is not None:
            self.channel.terms.done(self)
            self.pending = None
        if response.status != 200:
            raise gateway_error(response, mutation=not self.idempotent)
        decode = self.decode
        try:
            if self.lines:
                results = _result_lines(response.body)
                if not results:
                    raise ValueError("no result line")
                result = decode(dict_to_message(results[0], self.response_type))
            elif self.direct is not None:
                result = decode_direct(response.body, self.response_type, decode, self.direct)
            else:
                result = decode(from_json(response.body, self.response_type))
        except EtcdError:
            raise
        except Exception as e:
            raise ProtocolViolation(f"could not decode the gateway's answer: {e!r}") from None
        self.channel.terms.saw(result)
        return result

    def failed(self, failure: Any, n: int) -> Any:
        channel = self.channel
        if self.term is not None:
            channel.terms.done(self)
            self.pending = None
            if self.superseded_by:
                raise OutcomeUnknown(
                    "the write's outcome is unknown: a new leader was elected (raft term "
                    f"{self.term} -> {self.superseded_by}) while it was in flight "
                    f"({self.gateway_path})"
                )
        err = failure.value
        if isinstance(err, Timeout):
            # HTTP/1.1 has no PING: a member that stays silent for a whole deadline (cut off,
            # black-holed) is only noticed so; later calls and its streams go elsewhere
            channel._endpoint_failed(self.endpoint, str(err))
            return failure
        if isinstance(err, ConnectionFailed):
            channel._endpoint_failed(self.endpoint, str(err))  # the next attempt and call go on
            if not may_resend(idempotent=self.idempotent, maybe_sent=err.maybe_sent):
                return failure
            if str(err) not in self.errors:
                self.errors.append(str(err))
            spent = n >= channel.max_attempts
            delay = RESEND_BACKOFF(n - 1)
        elif may_resend_after(err, idempotent=self.idempotent):
            if member_unfit(err):
                channel._endpoint_failed(self.endpoint, str(err))
            self.waits += 1  # "not now" answers have a budget of their own, as on gRPC
            spent = self.waits > channel.max_waits
            delay = RESEND_BACKOFF(self.waits - 1)
        else:
            return failure
        deadline = self.deadline
        clock = channel.clock
        if (
            channel.closed
            or spent
            or (deadline is not None and clock.seconds() + delay >= deadline)
        ):
            if isinstance(err, ConnectionFailed) and len(self.errors) > 1:
                # each endpoint tried, and what went wrong there (as the gRPC channel says it)
                raise ConnectionFailed("; ".join(self.errors), maybe_sent=err.maybe_sent)
            return failure
        return deferLater(clock, delay, self, n + 1)


def _same(message: Any) -> Any:
    return message


def _ignore(_: object) -> None:
    return None


def gateway_headers(metadata: Metadata) -> Any:
    """Request headers for the gateway: JSON, and each metadata pair as a header (the auth
    token as ``Authorization``, the rest as ``Grpc-Metadata-<name>``)."""
    if not metadata:
        return _JSON
    if metadata is REQUIRE_LEADER:
        return _JSON_REQUIRE_LEADER
    return (
        _JSON
        + tuple((b"grpc-metadata-" + k, v) for k, v in metadata if k != b"token")
        + tuple((b"authorization", v) for k, v in metadata if k == b"token")
    )


_JSON_REQUIRE_LEADER = _JSON + tuple((b"grpc-metadata-" + k, v) for k, v in REQUIRE_LEADER)


class GatewayChannel:
    """The :class:`~txetcd._transport.Transport` over the JSON gateway, through one HTTP/1.1
    client.

    :param endpoints: client URLs, tried in order (a call whose connection broke goes on with
        the next one).
    :param reactor: the reactor (time for deadlines and backoff, unless ``clock`` is given).
    :param http: the HTTP/1.1 client (:class:`txetcd._http1.pool.PoolClient`, or
        :class:`txetcd._http1.treq.TreqClient` wrapping any treq ``HTTPClient`` or ``IAgent``).
    """

    #: one request body per stream: nothing can be added once it is sent (see etcd-api 5.6);
    #: a paused watch holds its own connection back by TCP
    capabilities = Capabilities(duplex_streams=False, stream_window=True)

    def __init__(
        self,
        endpoints: Sequence[str],
        reactor: Any,
        http: HTTP1Client,
        *,
        max_attempts: int = 3,
        clock: Any = None,
    ) -> None:
        self.endpoints: List[Endpoint] = [parse_endpoint(u) for u in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.reactor = reactor
        self.clock = reactor if clock is None else clock
        self.http = http
        self.max_attempts = max_attempts
        self.max_waits = 12  # resends after "not now" answers, as on the gRPC channel
        #: the highest raft term seen, and the writes in flight (see :mod:`txetcd._terms`)
        self.terms = TermWatch(self.clock, self._probe_term)
        self.closed = False
        self._index = 0
        self._streams: Set[GatewayStream] = set()  # open server streams (watches)

    @property
    def endpoint_urls(self) -> List[str]:
        """The client URLs this channel sends to."""
        return [e.url for e in self.endpoints]

    def _endpoint(self) -> Endpoint:
        return self.endpoints[self._index % len(self.endpoints)]

    def update_endpoints(self, urls: Sequence[str]) -> None:
        """Replace the endpoints: those that stay keep their place in the rotation if the one
        in use stays; otherwise calls go to the first of the new list. Requests in flight
        finish where they were sent."""
        fresh = [parse_endpoint(u) for u in urls]
        if not fresh:
            raise ValueError("at least one endpoint is needed")
        known = {e.url: e for e in self.endpoints}
        current = self._endpoint()
        self.endpoints = [known.get(e.url, e) for e in fresh]
        self._index = self.endpoints.index(current) if current in self.endpoints else 0

    def _endpoint_failed(self, index: int, why: str = "") -> None:
        """A call to endpoint ``index`` broke, timed out or was refused by a member that cannot
        serve: later calls go to the next (once per failure, however many calls saw it), and
        the streams open to it end with :class:`~txetcd.ConnectionFailed` (a watch resumes on
        the next endpoint; alone on a silent connection, it would never hear of the failure)."""
        if self._index != index:
            return
        self._index += 1
        endpoints = self.endpoints
        failed = endpoints[index % len(endpoints)]
        if endpoints[self._index % len(endpoints)] is failed:
            return  # one endpoint: nowhere else to go
        for stream in [s for s in self._streams if s.endpoint is failed]:
            stream._abandon(
                ConnectionFailed(f"{failed.url}: left after a failed call: {why}", maybe_sent=True)
            )

    def unary(
        self,
        method: Method,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        metadata: Metadata = (),
    ) -> "Deferred[Any]":
        """Send one call's request message; fires with ``decode`` of the answer's message (or
        of the result built straight from the JSON, for KV answers)."""
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        gateway_path = method.gateway
        if gateway_path is None:
            return fail(
                Unimplemented(f"{method.name} is not available over the JSON gateway", code=12)
            )
        call = _Unary(
            self,
            method,
            gateway_path,
            to_json(request),
            gateway_headers(metadata),
            timeout,
            idempotent,
            decode,
        )
        return call(1)

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> Any:
        """A stream over the gateway.

        A watch (or any server stream: snapshot, election observe) is one HTTP request whose
        body holds all its requests (:class:`GatewayStream`); a lease keepalive stream sends each
        message as a request of its own and hands on the answers (:class:`GatewayKeepAliveStream`),
        since the gateway answers a keepalive body only once it is complete. A method the gateway
        does not route ends at once with :class:`~txetcd.Unimplemented`.
        """
        if method.path == LEASE_KEEPALIVE.path:
            return GatewayKeepAliveStream(self, on_message, on_close, metadata)
        return GatewayStream(self, method, on_message, on_close, metadata)

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        """No login here (see :class:`txetcd._auth.AuthTransport`): nothing to refresh."""
        return succeed(False)

    def _probe_term(self) -> None:
        """Ask the member for its raft term (see :mod:`txetcd._terms`)."""
        d = self.unary(
            RANGE, PROBE_REQUEST, timeout=self.terms.interval, idempotent=True, decode=_same
        )
        d.addErrback(_ignore)

    def close(self) -> "Deferred[None]":
        """Close the HTTP/1.1 client: pending calls fail, nothing is left behind."""
        self.closed = True
        self.terms.close()
        return self.http.close()


class GatewayStream:
    """A watch (or other server) stream on the gateway, shaped like
    :class:`~txetcd._grpc.calls.GrpcStream`.

    Messages sent in the same reactor turn as the stream was made form the request body (the
    gateway answers nothing until the body is complete, and takes nothing after it); each JSON
    line of the answer is handed on as the response message a gRPC stream would deliver.
    :meth:`cancel` closes the connection; :meth:`pause` stops reading it.
    """

    duplex = False
    paused = False

    def __init__(
        self,
        channel: GatewayChannel,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata,
    ) -> None:
        self.channel = channel
        self.method = method
        self.on_message = on_message
        self.on_close = on_close
        self.metadata = metadata
        self.ended = False
        self._body: List[bytes] = []
        self._handle: Any = None
        self.endpoint: Optional[Endpoint] = None  # where it was sent
        self._start_call = channel.clock.callLater(0, self._start)

    def send(self, message: Any, end: bool = False) -> bool:
        """Add a request to the body; once the request has gone, nothing more can be sent."""
        if self._handle is not None or self.ended:
            raise RuntimeError("a gateway stream takes no more requests once it has started")
        self._body.append(to_json(message))
        return True

    def pause(self) -> None:
        """Stop reading this watch's connection (HTTP/1.1 has no stream window: the socket's
        TCP window holds the gateway back instead) until :meth:`resume`."""
        self.paused = True
        if self._handle is not None:
            self._handle.pause()

    def resume(self) -> None:
        """Read the connection again."""
        self.paused = False
        if self._handle is not None:
            self._handle.resume()

    def cancel(self) -> None:
        """Close the stream's connection; ``on_close`` gets ``CancelledError``."""
        if self._start_call.active():
            self._start_call.cancel()
        if self._handle is not None:
            self._handle.cancel()
        self._end(CancelledError())

    def _start(self) -> None:
        if self.ended:
            return
        channel = self.channel
        if channel.closed:
            self._end(ClientClosed("the client is closed"))
            return
        route = self.method.gateway
        if route is None:
            self._end(
                Unimplemented(f"{self.method.name} is not available over the JSON gateway", code=12)
            )
            return
        self.endpoint = endpoint = channel._endpoint()
        channel._streams.add(self)
        self._handle = channel.http.stream(
            b"POST",
            endpoint.url.rstrip("/") + route,
            headers=gateway_headers(self.metadata),
            body=b"\n".join(self._body),
            on_line=self._line,
        )
        if self.paused:
            self._handle.pause()
        self._handle.done.addCallbacks(self._done, self._failed)

    def _line(self, line: bytes) -> None:
        if self.ended or not line.strip():
            return
        data = json.loads(line)
        if "result" in data:
            self.on_message(dict_to_message(data["result"], self.method.response))
        elif isinstance(data.get("error"), dict):
            err = data["error"]
            self._end(error_from_status(int(err.get("grpc_code", 2)), str(err.get("message", ""))))
            if self._handle is not None:
                self._handle.cancel()

    def _done(self, status: object) -> None:
        # The body ended cleanly: the server ended the stream, as a gRPC status OK does (a
        # snapshot is complete; a watch stream resumes, as after any end).
        self._end(None)

    def _failed(self, failure: Any) -> None:
        err = failure.value
        response = getattr(err, "response", None)
        if isinstance(response, HTTPResponse):
            try:
                data = json.loads(response.body)
            except ValueError:
                data = None
            inner = data.get("error") if isinstance(data, dict) else None
            if isinstance(inner, dict):
                err = error_from_status(
                    int(inner.get("grpc_code", 2)), str(inner.get("message", ""))
                )
            else:
                err = gateway_error(response, mutation=False)
        elif not isinstance(err, EtcdError):
            err = ConnectionFailed(f"the gateway watch stream broke: {err!r}")
        self._end(err)

    def _abandon(self, error: BaseException) -> None:
        """End the stream with ``error`` and close its connection (its endpoint failed)."""
        self._end(error)
        if self._handle is not None:
            self._handle.cancel()

    def _end(self, error: Optional[BaseException]) -> None:
        if self.ended:
            return
        self.ended = True
        self.channel._streams.discard(self)
        self.on_close(error)


def _result_lines(body: bytes) -> List[Any]:
    """The ``{"result": ...}`` objects of a gateway stream body; raises on an error line."""
    out = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        data = json.loads(line)
        if "result" in data:
            out.append(data["result"])
        elif isinstance(data.get("error"), dict):
            err = data["error"]
            raise error_from_status(int(err.get("grpc_code", 2)), str(err.get("message", "")))
    return out


class GatewayKeepAliveStream:
    """A lease keepalive stream on the gateway: every message sent is a POST of its own.

    Shaped like :class:`~txetcd._grpc.calls.GrpcStream`, so the keepalive loop runs unchanged: each
    answer line comes back through ``on_message`` as a serialised ``LeaseKeepAliveResponse``.
    A failed request ends the stream (the loop opens another); :meth:`close_send` ends it once
    the answers in flight are in.
    """

    duplex = True
    paused = False

    def __init__(
        self,
        channel: GatewayChannel,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Metadata,
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_close = on_close
        self.headers = gateway_headers(metadata)
        self.ended = False
        self._closing = False
        self._pending: List[Deferred[Any]] = []

    def send(self, message: Any, end: bool = False) -> bool:
        """POST one keepalive request; its answer comes back through ``on_message``."""
        if self.ended or self._closing:
            raise RuntimeError("stream is closed for sending")
        channel = self.channel
        body = to_json(message)
        d = channel.http.request(
            b"POST",
            channel._endpoint().url.rstrip("/") + "/v3/lease/keepalive",
            headers=self.headers,
            body=body,
            timeout=None,
            idempotent=True,  # a refresh sent twice does no harm
        )
        self._pending.append(d)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(d,), errbackArgs=(d,))
        if end:
            self.close_send()
        return True

    def _answered(self, response: HTTPResponse, d: "Deferred[Any]") -> None:
        self._pending.remove(d)
        if self.ended:
            return
        try:
            if response.status != 200:
                raise gateway_error(response, mutation=False)
            results = _result_lines(response.body)
        except Exception as e:
            self._end(e if isinstance(e, EtcdError) else ProtocolViolation(repr(e)))
            return
        for result in results:
            self.on_message(dict_to_message(result, rpc_pb2.LeaseKeepAliveResponse))
        if self._closing and not self._pending:
            self._end(None)

    def _failed(self, failure: Any, d: "Deferred[Any]") -> None:
        if d in self._pending:
            self._pending.remove(d)
        err = failure.value
        self._end(err if isinstance(err, BaseException) else ConnectionFailed(repr(err)))

    def close_send(self) -> None:
        """No more requests; the stream ends once the answers in flight are in."""
        self._closing = True
        if not self._pending:
            self._end(None)

    def pause(self) -> None:
        """No-op: nothing to hold back."""

    def resume(self) -> None:
        """No-op."""

    def cancel(self) -> None:
        """Drop the requests in flight; ``on_close`` gets ``CancelledError``."""
        pending, self._pending = self._pending, []
        self._end(CancelledError())
        for d in pending:
            d.addErrback(lambda _: None)
            d.cancel()

    def _end(self, error: Optional[BaseException]) -> None:
        if self.ended:
            return
        self.ended = True
        self.on_close(error)
