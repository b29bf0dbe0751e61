"""The declared seam between the client and its transports.

:class:`Transport` is what :class:`~txetcd.Client`, the watch hub and the keepalive loop talk to,
and all they talk to: unary calls and streams that take and deliver *protobuf messages*, close,
and :class:`Capabilities`. :class:`txetcd._grpc.channel.Channel` (gRPC on our HTTP/2 layer) and
:class:`txetcd._gateway.channel.GatewayChannel` (etcd's JSON gateway over HTTP/1.1) implement it; an
in-memory fake for tests can be a third. A call names its method by a :class:`Method`, which
carries what each transport needs to route it (the gRPC path, the message types, the gateway's
route), so no transport looks anything up by string and no caller serialises anything.

Rules every implementation keeps (the tests hold them to it):

- ``unary`` fires with ``decode(response message)``; it fails with an
  :class:`~txetcd.EtcdError`. It applies the one resend rule (:func:`txetcd._retry.may_resend`)
  and its backoff within the call's deadline; nothing else re-sends anything.
- A deadline (``timeout`` seconds on the transport's clock, ``None``: none) fails the call with
  :class:`~txetcd.Timeout`, or :class:`~txetcd.WriteTimeout` when a non-idempotent request may
  have been seen.
- ``stream`` returns at once; ``on_message`` gets each response message in order and
  ``on_close(error or None)`` is called exactly once, at the end, never from inside ``stream()``.
  ``pause()`` stops delivery and holds the server back (HTTP/2 window, or TCP on HTTP/1.1).
- On a transport without ``duplex_streams`` a stream's requests are all given before the reactor
  turns (they form one request body), and nothing can be sent on it afterwards.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Protocol, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred

__all__ = ["Capabilities", "Metadata", "Method", "REQUIRE_LEADER", "Stream", "Transport"]

T = TypeVar("T")

#: extra request metadata: (lower-case name, value) pairs
Metadata = Sequence[Tuple[bytes, bytes]]

#: etcd's ``hasleader`` metadata: a member without a leader answers ``no leader`` at once,
#: before anything is proposed (so the call may be sent again, a write included), instead of
#: holding the call until it times out with an uncertain outcome
REQUIRE_LEADER: Metadata = ((b"hasleader", b"true"),)


class Method(NamedTuple):
    """One etcd RPC, as every transport needs to know it.

    :ivar path: the gRPC method path, e.g. ``b"/etcdserverpb.KV/Range"``.
    :ivar request: the request message class.
    :ivar response: the response message class.
    :ivar gateway: the JSON gateway's route for it (``"/v3/kv/range"``), or ``None`` when the
        gateway does not serve it.
    :ivar parse: ``response.FromString``, looked up once.
    """

    path: bytes
    request: Any
    response: Any
    gateway: Optional[str]
    parse: Callable[[bytes], Any]

    @classmethod
    def of(cls, path: bytes, request: Any, response: Any, gateway: Optional[str]) -> "Method":
        """A method from its path, message classes and gateway route."""
        return cls(path, request, response, gateway, response.FromString)

    @property
    def name(self) -> str:
        """``Service/Method``, for messages."""
        return self.path.decode("ascii").rsplit(".", 1)[-1]


class Capabilities(NamedTuple):
    """What a transport can do.

    :ivar duplex_streams: requests can be added to an open stream (gRPC); without it, each
        stream's requests form one body sent once (the gateway: every watch needs a stream of
        its own, and a watch cannot be cancelled by a message, only by closing its stream).
    :ivar stream_window: a paused stream holds the server back per stream (HTTP/2), rather than
        per connection.
    """

    duplex_streams: bool
    stream_window: bool


class Stream(Protocol):
    """A streaming call: messages out with :meth:`send`, messages in through ``on_message``."""

    @property
    def ended(self) -> bool:
        """True once ``on_close`` was called."""

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""

    def send(self, message: Any, end: bool = False) -> bool:
        """Send one request message (``end``: and half-close); False if it had to be queued.

        Raises ``RuntimeError`` if the stream is closed for sending.
        """

    def close_send(self) -> None:
        """Half-close: no more requests (the server may go on answering)."""

    def pause(self) -> None:
        """Hold messages back and hold the server back."""

    def resume(self) -> None:
        """Deliver what was held and let the server send again."""

    def cancel(self) -> None:
        """End the call; ``on_close`` gets ``CancelledError``."""


class Transport(Protocol):
    """Unary calls and streams to etcd, whatever carries them (see the module docstring)."""

    @property
    def capabilities(self) -> Capabilities:
        """What this transport can do."""

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""

    @property
    def clock(self) -> Any:
        """The ``IReactorTime`` the transport's deadlines and backoffs run on."""

    @property
    def endpoint_urls(self) -> Sequence[str]:
        """The client URLs this transport connects to."""

    def update_endpoints(self, urls: Sequence[str]) -> None:
        """Replace the client URLs (auto-sync, discovery): endpoints that stay keep their
        health; if the endpoint in use is gone, new calls go elsewhere (calls and streams open
        there finish where they are). ``urls`` are checked like the constructor's: an empty
        list is a ``ValueError``, a bad URL a ``TypeError``/``ValueError``, and then nothing
        changes."""

    def unary(
        self,
        method: Method,
        request: Any,
        *,
        timeout: Optional[float],
        idempotent: bool,
        decode: Callable[[Any], T],
        metadata: Metadata = (),
    ) -> "Deferred[T]":
        """Call a unary method; fires with ``decode(response message)``."""

    def stream(
        self,
        method: Method,
        on_message: Callable[[Any], None],
        on_close: Callable[[Optional[BaseException]], None],
        *,
        metadata: Metadata = (),
    ) -> Stream:
        """Open a streaming call (see the module docstring for its rules)."""

    def reauthenticate(self, stale: Optional[str] = None) -> "Deferred[bool]":
        """Log in again because the server refused a request for its token (e.g. a watch create
        answered ``permission denied`` after the token expired); fires True once a fresh token
        is held, False when the transport has no login (nothing to refresh)."""

    def close(self) -> "Deferred[None]":
        """Close every connection; fires once nothing (connection, timer) is left."""
