"""Session: one lease, kept alive while the session lasts; locks and elections stand on it.

Built on the client's public lease API only (``grant``, ``keepalive_once``, ``keepalive``,
``revoke``), after Go's ``concurrency.Session``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import LeaseLost, LeaseNotFound
from txetcd._keepalive import KeepAlive, LeaseKeepAliveResult
from txetcd._lease import LeaseGrantResult, LeaseMethods, check_lease_id, check_ttl
from txetcd._signal import Signal

__all__ = ["Session"]


class Session:
    """A lease the client keeps alive until :meth:`close`; it starts at once.

    ``Session(client, ttl=60)`` grants a lease of ``ttl`` seconds; ``Session(client,
    lease_id=id)`` adopts an existing lease instead (its TTL is then the server's). Either way
    the lease is refreshed a third of its TTL after each answer, on the client's clock::

        async with Session(client, ttl=10) as session:
            await client.put(b"service/me", b"up", lease=session.lease_id)
            ...  # the key lives as long as the session

    :attr:`ready` and :attr:`lost` give a new Deferred on each access, so any number of
    observers can wait for them.

    :ivar lease_id: the lease (``None`` until granted).
    :ivar ttl: the lease's TTL in seconds: as asked for, then as the server granted it.
    """

    log = Logger()

    def __init__(
        self, client: LeaseMethods, ttl: int = 60, *, lease_id: Optional[int] = None
    ) -> None:
        self.client = client
        self.ttl = check_ttl(ttl)
        self.lease_id: Optional[int] = None
        self._ready: Signal[Session] = Signal()
        self._lost: Signal[LeaseLost] = Signal()
        self._keepalive: Optional[KeepAlive] = None
        self._closing = False
        self._closed = False
        self._close_outcome: Optional[Failure] = None
        self._close_waiters: List[Deferred[None]] = []
        start: Deferred[Any]
        if lease_id is None:
            start = client.grant(self.ttl)
        else:
            start = client.keepalive_once(check_lease_id(lease_id))
        self._starting: Optional[Deferred[Any]] = start
        start.addCallbacks(self._started, self._start_failed)

    @property
    def ready(self) -> "Deferred[Session]":
        """Fires with the session once the lease is granted (or, for an adopted lease, refreshed
        once); fails with the grant's error, or with ``CancelledError`` if the session was
        closed first.
        """
        return self._ready.wait()

    @property
    def lost(self) -> "Deferred[LeaseLost]":
        """Fires, with a :class:`~txetcd.LeaseLost` as its *result*, when the lease is gone.

        The reason is :class:`~txetcd.LeaseExpired` (revoked or expired on the server),
        :class:`~txetcd.LeaseKeepAliveTimeout` (not refreshed in time) or
        :class:`~txetcd.LeaseAbandoned` (the client was closed). Everything built on the
        session must stop then. It does **not** fire on :meth:`close`: wait on what
        ``close()`` returns for that.
        """
        return self._lost.wait()

    @property
    def keepalive(self) -> Optional[KeepAlive]:
        """The handle of the lease's keepalive (``None`` before ``ready`` and after close)."""
        return self._keepalive

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed

    # -- starting ------------------------------------------------------------------------------
    def _started(self, result: Union[LeaseGrantResult, LeaseKeepAliveResult]) -> None:
        self._starting = None
        self.lease_id, self.ttl = result.id, result.ttl
        if self._closing:
            why = CancelledError("the session was closed before it was ready")
            self._ready.fire(Failure(why))  # type: ignore[no-untyped-call]
            self._shutdown()
            return
        self._keepalive = self.client.keepalive(result.id, result.ttl)
        self._keepalive.lost.addCallback(self._on_lost)
        self._ready.fire(self)

    def _start_failed(self, failure: Failure) -> None:
        self._starting = None
        self._ready.fire(failure)
        if self._closing:
            self._finish(None)

    def _on_lost(self, reason: LeaseLost) -> None:
        self._keepalive = None
        if not self._closing:
            self.log.info(
                "session lease {lease_id} lost: {reason}", lease_id=self.lease_id, reason=reason
            )
            self._lost.fire(reason)

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> "Deferred[None]":
        """Stop the keepalive and revoke the lease (its keys go with it).

        Fires once the revoke is answered; a lease already gone is no error. Other revoke
        errors (the client closed, a timeout) are passed on: the lease then runs out its TTL.
        Calling it again returns the same outcome.
        """
        if self._closed:
            return fail(self._close_outcome) if self._close_outcome else succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        if not self._closing:
            self._closing = True
            if self._starting is None:
                self._shutdown()
        return d

    def _shutdown(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.stop()
        if self.lease_id is None:  # never granted
            self._finish(None)
            return
        timeout = float(self.ttl)
        if self.client.timeout is not None:
            timeout = min(timeout, self.client.timeout)
        d = self.client.revoke(self.lease_id, timeout=timeout)
        d.addCallbacks(lambda _: self._finish(None), self._revoke_failed)

    def _revoke_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, LeaseNotFound):
            self._finish(None)
        else:
            self._finish(failure)

    def _finish(self, outcome: Optional[Failure]) -> None:
        self._closed = True
        self._close_outcome = outcome
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            if outcome is None:
                d.callback(None)
            else:
                d.errback(outcome)

    # -- async with ----------------------------------------------------------------------------
    async def __aenter__(self) -> "Session":
        await self.ready
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<Session lease={self.lease_id} ttl={self.ttl} {state}>"
