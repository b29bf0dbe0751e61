"""SessionService: a :class:`~txetcd.concurrency.Session` kept from ``startService`` to
``stopService``, replaced by a new one whenever it is lost."""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import LeaseLost, LeaseNotFound
from txetcd._lease import check_ttl
from txetcd._service._base import LoopService, Run, Stopped, call_user, check_callable
from txetcd._service._client import ClientSource
from txetcd.concurrency._session import Session

__all__ = ["SessionService", "close_session"]

_log = Logger()


async def close_session(session: Session, log: Logger = _log) -> None:
    """Close ``session`` (revoke its lease); a failure is logged, never raised."""
    try:
        await session.close()
    except Exception as error:
        if not isinstance(error, LeaseNotFound):
            log.warn(
                "lease {lease_id} not revoked ({error}); it runs out its TTL of {ttl} s",
                lease_id=session.lease_id,
                error=error,
                ttl=session.ttl,
            )


class SessionService(LoopService[Session]):
    """Keep a :class:`~txetcd.concurrency.Session` (one lease, kept alive) while the service
    runs: the lease is granted on ``startService`` and revoked on ``stopService``, so keys put
    with it live exactly as long as the service::

        sessions = SessionService(client, ttl=10, on_session=register)
        sessions.setServiceParent(application)

        async def register(session):
            await client.put(b"members/node-1", b"up", lease=session.lease_id)

    ``client`` is a :class:`txetcd.Client` (not closed by the service) or an
    :class:`EtcdClientService`. :meth:`whenReady` fires with the session in use (at once if
    there is one); :attr:`session` is it, or ``None`` between sessions.

    **When the session is lost** (its lease expired or was revoked elsewhere, or could not be
    refreshed before its deadline) everything on its lease is gone already. The service logs
    it as a warning, calls ``on_lost(reason)`` (a :class:`~txetcd.LeaseLost`), closes the lost
    session, and starts a new one after a backoff, then calls ``on_session(new_session)``:
    put your keys again there. A grant that fails (etcd out of reach) is tried again the same
    way. The backoff (``retry_policy``, on ``clock``) counts failures in a row: grants that
    failed and sessions lost within their first TTL; a session that lived longer starts it
    from 0 again. Only a client given as it is and then closed ends it for good (logged as an
    error).

    An exception from ``on_session`` or ``on_lost``, or the failure of a Deferred or coroutine
    they return, is logged; the service goes on. ``on_lost`` is waited for before the next
    session is started, ``on_session`` is not.

    :param ttl: the lease's TTL, in seconds.
    :param retry_policy: seconds to wait before the next session from the failures in a row
        (0 first); ``txetcd``'s backoff (0.5 s doubling to 30 s, with jitter) by default.
    :param clock: the ``IReactorTime`` of that wait (the client's clock by default).
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        ttl: int = 60,
        *,
        on_session: Optional[Callable[[Session], Any]] = None,
        on_lost: Optional[Callable[[LeaseLost], Any]] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        clock: Any = None,
    ) -> None:
        source = ClientSource(client)
        check_callable(on_session, "on_session")
        check_callable(on_lost, "on_lost")
        LoopService.__init__(self, source, retry_policy, clock)
        self.ttl = check_ttl(ttl)
        self.on_session = on_session
        self.on_lost = on_lost

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SessionService ttl={self.ttl} {state} session={self.session!r}>"

    @property
    def session(self) -> Optional[Session]:
        """The session in use, or ``None`` (stopped, or between a loss and the next)."""
        return self._ready

    def whenReady(self) -> "Deferred[Session]":  # noqa: N802 (Twisted's spelling)
        """Fires with the session in use (at once if there is one), else with the next;
        fails with ``CancelledError`` if the service is stopped first."""
        return LoopService.whenReady(self)

    async def _loop(self, run: Run) -> None:
        failures = 0
        session: Optional[Session] = None
        try:
            while True:
                run.client = await run.wait(self._source.get())
                session = Session(run.client, self.ttl)
                try:
                    await run.wait(session.ready)
                except Stopped:
                    raise
                except Exception as error:
                    await close_session(session, self.log)
                    session = None
                    self.log.warn("session not granted: {error}", error=error)
                    failures = await self._retry(run, error, failures)
                    continue
                started = run.clock.seconds()
                self.log.info(
                    "session started: lease {lease_id}, TTL {ttl} s",
                    lease_id=session.lease_id,
                    ttl=session.ttl,
                )
                self._set_ready(run, session)
                if self.on_session is not None and not run.stopping:
                    self._call(self.on_session, session, "on_session")
                reason = await run.wait(session.lost)
                self._unready(run)
                self.log.warn(
                    "session lost: lease {lease_id}: {reason}",
                    lease_id=session.lease_id,
                    reason=reason,
                )
                if self.on_lost is not None:
                    await self._call(self.on_lost, reason, "on_lost")
                lost, session = session, None
                await close_session(lost, self.log)
                if run.clock.seconds() - started >= lost.ttl:
                    failures = 0
                failures = await self._retry(run, reason, failures)
        finally:
            self._unready(run)
            if session is not None:
                await close_session(session, self.log)

    async def _retry(self, run: Run, error: BaseException, failures: int) -> int:
        """Wait before the next session (forever if there can be none)."""
        if self._source.closed_for_good(error):
            self.log.error("no new session: its client was closed")
            await run.park()
        delay = self.retry_policy(failures)
        self.log.info("a new session in {delay:.2f} s", delay=delay)
        await run.pause(delay)
        return failures + 1

    def _call(self, f: Callable[..., Any], arg: Any, name: str) -> Any:
        def report(failure: Failure) -> None:
            self.log.failure(
                "{callback} of {service!r} failed", failure, callback=name, service=self
            )

        return call_user(f, arg).addErrback(report)
