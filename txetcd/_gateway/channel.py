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

from typing import Any, Callable, List, Optional, Sequence, Set

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater

from txetcd._errors import (
    ClientClosed,
    ConnectionFailed,
    EtcdError,
    OutcomeUnknown,
    ProtocolViolation,
    Timeout,
    Unimplemented,
)
from txetcd._gateway.kvjson import DIRECT
from txetcd._gateway.pbjson import dict_to_message
from txetcd._gateway.streams import GatewayKeepAliveStream, GatewayStream
from txetcd._gateway.wire import (
    LINES,
    decode_direct,
    from_json,
    gateway_error,
    gateway_headers,
    result_lines,
    to_json,
)
from txetcd._grpc.channel import Endpoint, parse_endpoint
from txetcd._http1.interface import HTTP1Client, HTTPResponse
from txetcd._methods import LEASE_KEEPALIVE, STATUS
from txetcd._retry import RESEND_BACKOFF, may_resend, may_resend_after, member_unfit
from txetcd._terms import PROBE_REQUEST, TermWatch
from txetcd._transport import Capabilities, Metadata, Method

__all__ = ["GatewayChannel"]


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
        self.lines = method.path in LINES  # the answer is stream lines ({"result": ...})
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
                results = result_lines(response.body)
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
            channel.terms.suspect()
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
        self.terms.suspect()
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
            gateway_headers(self.terms.metadata(metadata) if metadata else metadata),
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
            STATUS, PROBE_REQUEST, timeout=self.terms.interval, idempotent=True, decode=_same
        )
        d.addErrback(_ignore)

    def close(self) -> "Deferred[None]":
        """Close the HTTP/1.1 client: pending calls fail, nothing is left behind."""
        self.closed = True
        self.terms.close()
        return self.http.close()
