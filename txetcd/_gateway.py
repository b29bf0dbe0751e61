"""The same calls over etcd's JSON gateway (HTTP/1.1), for where HTTP/2 cannot go.

:class:`GatewayChannel` stands in for :class:`~txetcd._channel.Channel`: it takes the same
serialised protobuf request a gRPC call would send, maps it with protobuf's JSON mapping
(:mod:`txetcd._pbjson`: proto field names, int64 as strings, bytes as base64, enums by name) to
the gateway path of that method (one table, :data:`ROUTES`), POSTs it through an HTTP/1.1 client
(:mod:`txetcd._http1`: the lean pool, or treq with any agent), and hands back the answer
serialised as protobuf, so the client decodes it exactly as for gRPC. Errors are translated by
the gRPC ``code`` in the gateway's ``{"error", "code", "message"}`` body (never by HTTP status,
which differs between etcd 3.4 and 3.5).

The retry rule is the gRPC transport's: a read whose connection broke after it was sent is sent
again (to the next endpoint, up to ``max_attempts``); a write is sent again only when it never
left; otherwise :class:`~txetcd.OutcomeUnknown`.

Watches and the lease keepalive loop run on it too (see :class:`GatewayStream` and
:class:`GatewayKeepAliveStream`).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, fail

from txetcd._channel import Endpoint, parse_endpoint
from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    ProtocolViolation,
    Unimplemented,
    error_from_status,
)
from txetcd._http1 import HTTP1Client, HTTPResponse
from txetcd._kvjson import DIRECT, Fallback
from txetcd._pbjson import dict_to_message, json_loads, json_to_message, message_to_json
from txetcd._proto import rpc_pb2

__all__ = ["GatewayChannel", "ROUTES"]

#: gRPC method path -> (gateway path, request message, response message)
ROUTES: Dict[bytes, Tuple[str, Any, Any]] = {
    b"/etcdserverpb.KV/Range": ("/v3/kv/range", rpc_pb2.RangeRequest, rpc_pb2.RangeResponse),
    b"/etcdserverpb.KV/Put": ("/v3/kv/put", rpc_pb2.PutRequest, rpc_pb2.PutResponse),
    b"/etcdserverpb.KV/DeleteRange": (
        "/v3/kv/deleterange",
        rpc_pb2.DeleteRangeRequest,
        rpc_pb2.DeleteRangeResponse,
    ),
    b"/etcdserverpb.KV/Txn": ("/v3/kv/txn", rpc_pb2.TxnRequest, rpc_pb2.TxnResponse),
    b"/etcdserverpb.KV/Compact": (
        "/v3/kv/compaction",
        rpc_pb2.CompactionRequest,
        rpc_pb2.CompactionResponse,
    ),
    b"/etcdserverpb.Lease/LeaseGrant": (
        "/v3/lease/grant",
        rpc_pb2.LeaseGrantRequest,
        rpc_pb2.LeaseGrantResponse,
    ),
    b"/etcdserverpb.Lease/LeaseRevoke": (
        "/v3/lease/revoke",
        rpc_pb2.LeaseRevokeRequest,
        rpc_pb2.LeaseRevokeResponse,
    ),
    b"/etcdserverpb.Lease/LeaseTimeToLive": (
        "/v3/lease/timetolive",
        rpc_pb2.LeaseTimeToLiveRequest,
        rpc_pb2.LeaseTimeToLiveResponse,
    ),
    b"/etcdserverpb.Lease/LeaseLeases": (
        "/v3/lease/leases",
        rpc_pb2.LeaseLeasesRequest,
        rpc_pb2.LeaseLeasesResponse,
    ),
    # a stream on gRPC; one complete body gets one answer line per request on the gateway
    b"/etcdserverpb.Lease/LeaseKeepAlive": (
        "/v3/lease/keepalive",
        rpc_pb2.LeaseKeepAliveRequest,
        rpc_pb2.LeaseKeepAliveResponse,
    ),
}

#: methods whose gateway answer is stream lines (``{"result": ...}``), not one object
_LINES = frozenset({b"/etcdserverpb.Lease/LeaseKeepAlive"})

_JSON = ((b"content-type", b"application/json"),)
_WATCH = b"/etcdserverpb.Watch/Watch"
_KEEPALIVE = b"/etcdserverpb.Lease/LeaseKeepAlive"


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
    it can (:mod:`txetcd._kvjson`: no protobuf message in between)."""
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
        "timeout",
        "idempotent",
        "decode",
        "direct",
        "lines",
    )

    def __init__(
        self,
        channel: "GatewayChannel",
        gateway_path: str,
        response_type: Any,
        body: bytes,
        headers: Any,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], Any],
        lines: bool,
    ) -> None:
        self.channel = channel
        self.gateway_path = gateway_path
        self.response_type = response_type
        self.body = body
        self.headers = headers
        self.timeout = timeout
        self.idempotent = idempotent
        self.decode = decode
        self.direct = DIRECT.get(decode)
        self.lines = lines  # the answer is stream lines ({"result": ...}), not one object

    def __call__(self, n: int) -> "Deferred[Any]":
        channel = self.channel
        endpoint = channel.endpoints[channel._index % len(channel.endpoints)]
        d = channel.http.request(
            b"POST",
            endpoint.url.rstrip("/") + self.gateway_path,
            headers=self.headers,
            body=self.body,
            timeout=self.timeout,
            idempotent=self.idempotent,
        )
        return d.addCallbacks(self.answered, self.failed, errbackArgs=(n,))

    def answered(self, response: HTTPResponse) -> Any:
        if response.status != 200:
            raise gateway_error(response, mutation=not self.idempotent)
        decode = self.decode
        try:
            if self.lines:
                results = _result_lines(response.body)
                if not results:
                    raise ValueError("no result line")
                return decode(dict_to_message(results[0], self.response_type))
            if self.direct is not None:
                return decode_direct(response.body, self.response_type, decode, self.direct)
            return decode(from_json(response.body, self.response_type))
        except EtcdError:
            raise
        except Exception as e:
            raise ProtocolViolation(f"could not decode the gateway's answer: {e!r}") from None

    def failed(self, failure: Any, n: int) -> Any:
        channel = self.channel
        err = failure.value
        if isinstance(err, ConnectionFailed) and not channel.closed and n < channel.max_attempts:
            # Not sent at all, or a read: safe to send again, on the next endpoint.
            channel._index += 1
            return self(n + 1)
        return failure


class GatewayChannel:
    """Unary calls over the JSON gateway, through one HTTP/1.1 client.

    :param endpoints: client URLs, tried in order (a read whose connection broke goes to the
        next one).
    :param http: the HTTP/1.1 client (:class:`txetcd._http1_pool.PoolClient`, or
        :class:`txetcd._http1_treq.TreqClient` wrapping any treq ``HTTPClient`` or ``IAgent``).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        reactor: Any,
        http: HTTP1Client,
        *,
        max_attempts: int = 3,
    ) -> None:
        self.endpoints: List[Endpoint] = [parse_endpoint(u) for u in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.reactor = reactor
        self.clock = reactor
        self.http = http
        self.max_attempts = max_attempts
        self.closed = False
        self._index = 0

    def unary(
        self,
        path: bytes,
        payload: bytes,
        *,
        timeout: Optional[float],
        idempotent: bool,
        metadata: Sequence[Tuple[bytes, bytes]] = (),
        decode: Callable[[bytes], Any] = bytes,
    ) -> "Deferred[Any]":
        """Send one call's serialised request; fires with ``decode`` of the serialised answer."""
        route = ROUTES.get(path)
        request = route[1].FromString(payload) if route is not None else None
        return self.unary_message(
            path,
            request,
            timeout=timeout,
            idempotent=idempotent,
            metadata=metadata,
            decode=lambda message: decode(message.SerializeToString()),
        )

    def unary_message(
        self,
        path: bytes,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        metadata: Sequence[Tuple[bytes, bytes]] = (),
        decode: Callable[[Any], Any],
    ) -> "Deferred[Any]":
        """:meth:`unary` with the request and the answer as protobuf messages (no serialising
        on the way: the client hands over its message, and gets the answer's)."""
        if self.closed:
            return fail(ClientClosed("the client is closed"))
        route = ROUTES.get(path)
        if route is None:
            return fail(
                Unimplemented(f"{path.decode()} is not available over the JSON gateway", code=12)
            )
        gateway_path, _request_type, response_type = route
        body = to_json(request)
        headers = (
            (
                _JSON
                + tuple((b"grpc-metadata-" + k, v) for k, v in metadata if k != b"token")
                + tuple((b"authorization", v) for k, v in metadata if k == b"token")
            )
            if metadata
            else _JSON
        )
        call = _Unary(
            self,
            gateway_path,
            response_type,
            body,
            headers,
            timeout,
            idempotent,
            decode,
            path in _LINES,
        )
        return call(1)

    #: one request body per stream: nothing can be added once it is sent (see etcd-api 5.6)
    half_duplex = True

    def stream(
        self,
        path: bytes,
        on_message: Callable[[bytes], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Sequence[Tuple[bytes, bytes]] = (),
    ) -> Any:
        """A stream over the gateway.

        A watch is one HTTP request whose body holds all its requests (:class:`GatewayStream`);
        a lease keepalive stream sends each message as a request of its own and hands on the
        answers (:class:`GatewayKeepAliveStream`), since the gateway answers a keepalive body
        only once it is complete.
        """
        if path == _WATCH:
            return GatewayStream(self, on_message, on_close, metadata)
        if path == _KEEPALIVE:
            return GatewayKeepAliveStream(self, on_message, on_close, metadata)
        raise NotImplementedError(f"{path.decode()} does not run over the JSON gateway")

    def close(self) -> "Deferred[None]":
        """Close the HTTP/1.1 client: pending calls fail, nothing is left behind."""
        self.closed = True
        return self.http.close()


class GatewayStream:
    """A watch stream on the gateway, shaped like :class:`~txetcd._grpc.GrpcStream`.

    Messages sent in the same reactor turn as the stream was made form the request body (the
    gateway answers nothing until the body is complete, and takes nothing after it); each JSON
    line of the answer is handed on as the serialised protobuf ``WatchResponse`` a gRPC stream
    would deliver. :meth:`cancel` closes the connection; there is no flow control to pause.
    """

    duplex = False
    paused = False

    def __init__(
        self,
        channel: GatewayChannel,
        on_message: Callable[[bytes], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Sequence[Tuple[bytes, bytes]],
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_close = on_close
        self.metadata = metadata
        self.ended = False
        self._body: List[bytes] = []
        self._handle: Any = None
        self._start_call = channel.clock.callLater(0, self._start)

    def send(self, message: bytes, end: bool = False) -> bool:
        """Add a request to the body; once the request has gone, nothing more can be sent."""
        if self._handle is not None or self.ended:
            raise RuntimeError("a gateway stream takes no more requests once it has started")
        self._body.append(to_json(rpc_pb2.WatchRequest.FromString(message)))
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
        from twisted.internet.defer import CancelledError

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
        endpoint = channel.endpoints[channel._index % len(channel.endpoints)]
        headers = _JSON + tuple(
            (b"grpc-metadata-" + k, v) for k, v in self.metadata if k != b"token"
        )
        self._handle = channel.http.stream(
            b"POST",
            endpoint.url.rstrip("/") + "/v3/watch",
            headers=headers,
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
            msg = dict_to_message(data["result"], rpc_pb2.WatchResponse)
            self.on_message(msg.SerializeToString())
        elif isinstance(data.get("error"), dict):
            err = data["error"]
            self._end(error_from_status(int(err.get("grpc_code", 2)), str(err.get("message", ""))))
            if self._handle is not None:
                self._handle.cancel()

    def _done(self, status: object) -> None:
        self._end(ConnectionFailed("the gateway ended the watch stream"))

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

    def _end(self, error: Optional[BaseException]) -> None:
        if self.ended:
            return
        self.ended = True
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

    Shaped like :class:`~txetcd._grpc.GrpcStream`, so the keepalive loop runs unchanged: each
    answer line comes back through ``on_message`` as a serialised ``LeaseKeepAliveResponse``.
    A failed request ends the stream (the loop opens another); :meth:`close_send` ends it once
    the answers in flight are in.
    """

    duplex = True
    paused = False

    def __init__(
        self,
        channel: GatewayChannel,
        on_message: Callable[[bytes], None],
        on_close: Callable[[Optional[BaseException]], None],
        metadata: Sequence[Tuple[bytes, bytes]],
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_close = on_close
        self.headers = _JSON + tuple(
            (b"grpc-metadata-" + k, v) for k, v in metadata if k != b"token"
        )
        self.ended = False
        self._closing = False
        self._pending: List[Deferred[Any]] = []

    def send(self, message: bytes, end: bool = False) -> bool:
        """POST one keepalive request; its answer comes back through ``on_message``."""
        if self.ended or self._closing:
            raise RuntimeError("stream is closed for sending")
        channel = self.channel
        endpoint = channel.endpoints[channel._index % len(channel.endpoints)]
        body = to_json(rpc_pb2.LeaseKeepAliveRequest.FromString(message))
        d = channel.http.request(
            b"POST",
            endpoint.url.rstrip("/") + "/v3/lease/keepalive",
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
            msg = dict_to_message(result, rpc_pb2.LeaseKeepAliveResponse)
            self.on_message(msg.SerializeToString())
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
        from twisted.internet.defer import CancelledError

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
