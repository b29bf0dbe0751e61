"""The keepalive loop: every lease a client keeps alive, over one ``LeaseKeepAlive`` stream.

The stream is opened on first use and cancelled when no lease is kept any more. For each lease
a refresh is sent at once, then a third of the TTL after each answer, on the client's clock. A
refresh that gets no answer is sent again; a stream that breaks or goes silent is reopened after
a jittered backoff; all of this goes on until the lease's deadline: the time its last answered
refresh was *sent*, plus the TTL (the server's countdown started no earlier than that). Answers
are matched to leases by ID.

A :class:`KeepAlive` handle's ``lost`` Deferred fires, with a :class:`LeaseLost` as its result,
when the server says the lease is gone (:class:`LeaseExpired`), when the deadline passes with no
answer (:class:`LeaseKeepAliveTimeout`), or when the client is closed (:class:`LeaseAbandoned`).
"""

from __future__ import annotations

import random
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
    TypeVar,
)

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from txetcd._errors import (
    ClientClosed,
    LeaseAbandoned,
    LeaseExpired,
    LeaseKeepAliveTimeout,
    LeaseLost,
    ProtocolViolation,
    Timeout,
)
from txetcd._kv import header_of
from txetcd._methods import LEASE_KEEPALIVE
from txetcd._proto import rpc_pb2
from txetcd._retry import backoff_policy
from txetcd._signal import Signal
from txetcd._types import ResponseHeader

if TYPE_CHECKING:
    from txetcd._transport import Stream, Transport

__all__ = [
    "KeepAlive",
    "LeaseKeepAliveResult",
    "keepalive_backoff",
    "retry_interval",
]

T = TypeVar("T")


class LeaseKeepAliveResult(NamedTuple):
    """A refreshed lease: the server restarted its countdown at ``ttl`` seconds."""

    header: ResponseHeader
    id: int
    ttl: int


# -- the loop --------------------------------------------------------------------------------------


def keepalive_backoff(
    initial: float = 0.05,
    maximum: float = 1.0,
    factor: float = 2.0,
    jitter: Callable[[], float] = random.random,
) -> Callable[[int], float]:
    """The backoff policy for reopening the keepalive stream (:func:`txetcd._retry.backoff_policy`
    with a 1 s cap: a lease's TTL leaves little room to wait)."""
    return backoff_policy(initial, maximum, factor, jitter)


def retry_interval(ttl: Optional[int]) -> float:
    """Seconds to wait for an answer to a refresh before sending it again (TTL/6, 0.25-5 s)."""
    if ttl is None or ttl <= 0:
        return 1.0
    return min(max(ttl / 6.0, 0.25), 5.0)


class _Kept:
    """The loop's state for one lease ID (shared by every :class:`KeepAlive` of that lease)."""

    __slots__ = (
        "hub",
        "id",
        "request",
        "ttl",
        "deadline",
        "last_refresh",
        "last_reply",
        "next_refresh",
        "due",
        "last_attempt",
        "sent",
        "timer",
        "handles",
    )

    def __init__(self, hub: "_KeepAliveHub", lease_id: int, ttl: Optional[int], now: float) -> None:
        self.hub = hub
        self.id = lease_id
        self.request = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)
        self.ttl = ttl
        # Until the first answer: the TTL we were given, or the client's call timeout.
        self.deadline = now + (ttl if ttl is not None else hub.first_reply_timeout)
        self.last_refresh: Optional[float] = None
        self.last_reply: Optional[LeaseKeepAliveResult] = None
        self.next_refresh = now
        self.due = True  # a refresh is wanted and not yet answered
        self.last_attempt = now
        # Send times of unanswered refreshes on this stream: rarely more than one, so a list
        # (an empty deque costs ten times an empty list, and there is one per kept lease).
        self.sent: List[float] = []
        self.timer: Optional[IDelayedCall] = None
        self.handles: List[KeepAlive] = []

    def arm(self) -> None:
        """(Re)schedule the one timer: next refresh, retry, or deadline, whichever is first."""
        clock = self.hub.clock
        if self.due:
            at = min(self.last_attempt + retry_interval(self.ttl), self.deadline)
        else:
            at = min(self.next_refresh, self.deadline)
        delay = max(at - clock.seconds(), 0.0)
        if self.timer is not None and self.timer.active():
            self.timer.reset(delay)  # cheaper than cancel + a new call: no dead entry in the heap
        else:
            self.timer = clock.callLater(delay, self.fire)

    def disarm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def fire(self) -> None:
        self.timer = None
        now = self.hub.clock.seconds()
        if now >= self.deadline:
            cause = self.hub.last_error
            self.hub.lose(
                self,
                LeaseKeepAliveTimeout(
                    f"no refresh of lease {self.id} was answered before its deadline "
                    f"(TTL {self.ttl} s); it may have expired"
                    + (f"; last keepalive stream error: {cause}" if cause else ""),
                    lease_id=self.id,
                    cause=cause,
                ),
            )
        elif not self.due:
            self.due = True
            self.hub.send(self)
        else:
            self.hub.retry(self)

    def answered(self, resp: Any, now: float) -> None:
        sent = self.sent.pop(0) if self.sent else now
        if resp.TTL <= 0:
            self.hub.lose(
                self,
                LeaseExpired(
                    f"lease {self.id} expired or was revoked (the server does not know it)",
                    lease_id=self.id,
                ),
            )
            return
        self.ttl = resp.TTL
        self.deadline = sent + resp.TTL
        self.last_refresh = now
        self.last_reply = LeaseKeepAliveResult(header_of(resp.header), resp.ID, resp.TTL)
        self.due = False
        self.next_refresh = now + resp.TTL / 3.0
        self.arm()


class KeepAlive:
    """A handle on a lease the client keeps alive (see :meth:`txetcd.Client.keepalive`).

    :ivar lease_id: the lease.
    """

    def __init__(self, kept: _Kept) -> None:
        self._kept = kept
        self.lease_id = kept.id
        self._lost: Signal[LeaseLost] = Signal()
        self._active = True

    @property
    def lost(self) -> "Deferred[LeaseLost]":
        """A new Deferred that fires, with a :class:`LeaseLost` as its *result* (never as a
        failure), when the lease is gone: :class:`LeaseExpired` when the server says so,
        :class:`LeaseKeepAliveTimeout` when no refresh was answered before the deadline,
        :class:`LeaseAbandoned` when the client was closed. It never fires after :meth:`stop`.
        """
        return self._lost.wait()

    @property
    def active(self) -> bool:
        """True until :meth:`stop` is called or the lease is lost."""
        return self._active

    @property
    def ttl(self) -> Optional[int]:
        """The TTL from the last answer (or as given, before the first), in seconds."""
        return self._kept.ttl

    @property
    def deadline(self) -> float:
        """The clock time by which the lease expires unless a refresh is answered first."""
        return self._kept.deadline

    @property
    def last_refresh(self) -> Optional[float]:
        """The clock time of the last answered refresh (``None`` before the first)."""
        return self._kept.last_refresh

    @property
    def last_reply(self) -> Optional[LeaseKeepAliveResult]:
        """The last answer of the server (``None`` before the first)."""
        return self._kept.last_reply

    def stop(self) -> None:
        """Stop refreshing the lease for this handle (it is not revoked); ``lost`` won't fire.

        Other handles on the same lease keep it alive. Calling it twice is harmless.
        """
        if self._active:
            self._active = False
            self._kept.hub.stop(self)

    def _lose(self, reason: LeaseLost) -> None:
        if self._active:
            self._active = False
            self._lost.fire(reason)

    def __repr__(self) -> str:
        state = "active" if self._active else "stopped"
        return f"<KeepAlive lease={self.lease_id} ttl={self.ttl} {state}>"


class _KeepAliveHub:
    """One client's keepalive loop: every kept lease, over one LeaseKeepAlive stream."""

    log = Logger()

    def __init__(self, channel: "Transport", clock: Any, first_reply_timeout: float) -> None:
        self.channel = channel
        self.clock = clock
        self.first_reply_timeout = first_reply_timeout
        self.leases: Dict[int, _Kept] = {}
        self.stream: Optional[Stream] = None
        self.backoff = keepalive_backoff()
        self.last_error: Optional[BaseException] = None
        self._generation = 0  # tells the current stream's callbacks from an old one's
        self._failures = 0  # stream breaks in a row
        self._last_message = float("-inf")  # clock time of the last message on this stream
        self._reopen: Optional[IDelayedCall] = None
        self.closed = False

    # -- leases --------------------------------------------------------------------------------
    def add(self, lease_id: int, ttl: Optional[int]) -> KeepAlive:
        kept = self.leases.get(lease_id)
        fresh = kept is None
        if kept is None:
            kept = self.leases[lease_id] = _Kept(self, lease_id, ttl, self.clock.seconds())
        handle = KeepAlive(kept)
        kept.handles.append(handle)
        if self.closed or self.channel.closed:
            self.lose(kept, self._abandoned(lease_id))
        elif fresh:
            self.send(kept)
        return handle

    def stop(self, handle: KeepAlive) -> None:
        kept = handle._kept
        if handle in kept.handles:
            kept.handles.remove(handle)
        if not kept.handles and self.leases.get(kept.id) is kept:
            self._remove(kept)

    def lose(self, kept: _Kept, reason: LeaseLost) -> None:
        self.log.info("lease {lease_id} lost: {reason}", lease_id=kept.id, reason=reason.message)
        if self.leases.get(kept.id) is kept:
            self._remove(kept)
        handles, kept.handles = kept.handles, []
        for handle in handles:
            handle._lose(reason)

    def _remove(self, kept: _Kept) -> None:
        kept.disarm()
        del self.leases[kept.id]
        if not self.leases:
            self._idle()

    def close(self) -> None:
        """Abandon every lease (their ``lost`` fire) and leave no stream and no timer."""
        self.closed = True
        for kept in list(self.leases.values()):
            self.lose(kept, self._abandoned(kept.id))
        self._idle()

    @staticmethod
    def _abandoned(lease_id: int) -> LeaseAbandoned:
        return LeaseAbandoned(
            f"the client was closed: lease {lease_id} is no longer kept alive",
            lease_id=lease_id,
        )

    # -- sending -------------------------------------------------------------------------------
    def send(self, kept: _Kept) -> None:
        """Send a refresh of ``kept`` now, or as soon as the stream is back."""
        kept.last_attempt = self.clock.seconds()
        if self.stream is None and self._reopen is None:
            self._open()
        stream = self.stream
        if stream is not None:
            try:
                stream.send(kept.request)
            except RuntimeError as e:  # the stream ended under us
                self._break(ProtocolViolation(f"keepalive stream closed: {e}"), cancel=True)
            else:
                kept.sent.append(kept.last_attempt)
        if self.leases.get(kept.id) is kept:  # an answer within the send may have dropped it
            kept.arm()

    def retry(self, kept: _Kept) -> None:
        """A refresh went unanswered: send it again, or reopen a stream that went silent."""
        if self.stream is not None and kept.sent and self._last_message < kept.sent[0]:
            wait = retry_interval(kept.ttl)
            self._break(Timeout(f"no keepalive answer within {wait:.2f} s"), cancel=True)
            kept.last_attempt = self.clock.seconds()
            kept.arm()
        else:
            self.send(kept)

    # -- the stream ----------------------------------------------------------------------------
    def _open(self) -> None:
        self._generation += 1
        generation = self._generation
        self._last_message = float("-inf")
        for kept in self.leases.values():
            kept.sent.clear()
        stream = self.channel.stream(
            LEASE_KEEPALIVE,
            lambda resp: self._message(generation, resp),
            lambda error: self._closed(generation, error),
        )
        if generation == self._generation:  # else it failed at once, and a reopen is due
            self.stream = stream

    def _message(self, generation: int, resp: Any) -> None:
        if generation != self._generation:
            return
        now = self.clock.seconds()
        self._last_message = now
        self._failures = 0
        self.last_error = None
        kept = self.leases.get(resp.ID)
        if kept is not None:
            kept.answered(resp, now)

    def _closed(self, generation: int, error: Optional[BaseException]) -> None:
        if generation != self._generation:
            return
        if isinstance(error, ClientClosed):
            self.stream = None
            self.close()
            return
        self._break(error or ProtocolViolation("the server ended the keepalive stream"), False)

    def _break(self, error: BaseException, cancel: bool) -> None:
        """Drop the current stream and open a new one after a backoff."""
        stream, self.stream = self.stream, None
        self._generation += 1
        self.last_error = error
        if cancel and stream is not None:
            stream.cancel()
        for kept in self.leases.values():
            kept.sent.clear()
        if not self.leases or self._reopen is not None:
            return
        delay = self.backoff(self._failures)
        self._failures += 1
        self.log.info(
            "lease keepalive stream broke ({error}); reopening in {delay:.3f} s",
            error=error,
            delay=delay,
        )
        self._reopen = self.clock.callLater(delay, self._reopen_now)

    def _reopen_now(self) -> None:
        self._reopen = None
        if self.leases and not self.closed:
            self._open()
            for kept in list(self.leases.values()):
                if kept.due and self.leases.get(kept.id) is kept:
                    self.send(kept)

    def _idle(self) -> None:
        """No lease is kept: end the stream and every timer."""
        if self._reopen is not None:
            if self._reopen.active():
                self._reopen.cancel()
            self._reopen = None
        stream, self.stream = self.stream, None
        self._generation += 1
        self._failures = 0
        self.last_error = None
        if stream is not None:
            stream.cancel()
