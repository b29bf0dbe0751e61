"""Streams over the JSON gateway: watches and other server streams (one request body each) and
the lease keepalive stream (a POST per refresh), shaped like gRPC streams."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from twisted.internet.defer import CancelledError, Deferred

from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    HTTPStatusError,
    ProtocolViolation,
    Unimplemented,
    error_from_status,
)
from txetcd._gateway.pbjson import dict_to_message
from txetcd._gateway.wire import gateway_error, gateway_headers, result_lines, to_json
from txetcd._http1.interface import HTTPResponse
from txetcd._proto import rpc_pb2
from txetcd._transport import Metadata, Method

if TYPE_CHECKING:
    from txetcd._gateway.channel import GatewayChannel
    from txetcd._grpc.channel import Endpoint

__all__ = ["GatewayKeepAliveStream", "GatewayStream"]


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
        channel: "GatewayChannel",
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
        if isinstance(err, HTTPStatusError):  # a non-2xx answer: its body is etcd's error
            response = err.response
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
        channel: "GatewayChannel",
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
            results = result_lines(response.body)
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
