"""LeaderService: run something only while this process leads an election; campaign again
whenever leadership is lost."""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Optional, Union

from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import key_bytes, to_bytes
from txetcd._lease import check_ttl
from txetcd._service._base import LoopService, Run, Stopped, call_user, check_callable
from txetcd._service._client import ClientSource
from txetcd._service._session import close_session
from txetcd.concurrency._election import Election
from txetcd.concurrency._session import Session

__all__ = ["LeaderService"]


def _default_value() -> bytes:
    return f"{socket.gethostname()}:{os.getpid()}".encode()


class _Work:
    """What ``on_elected`` started: nothing, a Deferred (cancelled when leadership ends) or an
    ``IService`` (started now, stopped then). :attr:`failed` fires with the error if the work
    fails while we lead."""

    def __init__(self, result: Any) -> None:
        self.service: Any = None
        self.deferred: Optional[Deferred[Any]] = None
        self.failed: Deferred[BaseException] = Deferred()
        self.failure: Optional[Failure] = None  # how it failed, traceback included
        self._stopping = False
        if IService.providedBy(result):
            self.service = result
            if not result.running:
                started = maybeDeferred(result.startService)
                started.addErrback(self._fail)
        else:
            self.deferred = call_user(lambda: result)
            self.deferred.addErrback(self._fail)

    def _fail(self, failure: Failure) -> None:
        if not self._stopping and not self.failed.called:
            error = failure.value
            assert error is not None
            self.failure = failure
            self.failed.callback(error)

    async def stop(self, log: Logger, name: bytes) -> None:
        """Stop the work and wait until it has stopped (what it raises is logged)."""
        self._stopping = True
        try:
            if self.service is not None:
                if self.service.running:
                    await maybeDeferred(self.service.stopService)
            elif self.deferred is not None and not self.deferred.called:
                self.deferred.cancel()
                await self.deferred
        except CancelledError:
            pass
        except Exception:
            log.failure("the work of the leader of {name!r} failed to stop", name=name)


class LeaderService(LoopService[Election]):
    """Campaign in election ``name`` while the service runs, and run ``on_elected(election)``
    only while this process leads::

        async def lead(election):
            while True:  # cancelled when leadership ends
                await client.txn(compare=[election.is_leader()], success=[...])
                await deferLater(reactor, 10, lambda: None)

        LeaderService(client, "jobs/leader", lead).setServiceParent(application)

    ``client`` is a :class:`txetcd.Client` (not closed by the service) or an
    :class:`EtcdClientService`. Each campaign stands on a session of its own (a lease of
    ``ttl`` seconds, kept alive): the service grants it, campaigns with ``value`` (by default
    ``"<host name>:<pid>"``), and once elected calls ``on_elected`` with the
    :class:`~txetcd.concurrency.Election` (``election.is_leader()`` fences txns on
    leadership; ``election.revision`` is a fencing token). What ``on_elected`` returns is the
    work done while leading:

    - a Deferred or a coroutine: cancelled when leadership ends; if it *fails* meanwhile,
      the failure is logged and the service resigns and campaigns again (if it just fires,
      the service goes on leading);
    - an ``IService``: started (unless running) and stopped when leadership ends;
    - anything else: nothing to stop.

    **When leadership ends**, whether it was lost (the session's lease expired or was
    revoked, the leader key deleted: see :attr:`Election.lost
    <txetcd.concurrency.Election.lost>`) or the work failed, the service stops the work and
    waits for it, calls ``on_deposed(reason)`` and waits for what it returns, resigns, ends the
    session, then campaigns again on a new session after a backoff (``retry_policy`` on
    ``clock``, counting terms and failed campaigns in a row shorter than ``ttl``). ``reason``
    is a :class:`~txetcd.LockLost` (or what the work failed with). Another process is elected
    only once this one's work has stopped and its key is gone, except when the lease ran out
    first: fence the work's writes with ``election.is_leader()``.

    ``stopService`` does the same (``on_deposed(None)``), then resigns and ends the session
    (its lease is revoked); a campaign under way is withdrawn.

    Exceptions from ``on_elected`` and ``on_deposed`` (and failures of what they return) are
    logged, never swallowed. :attr:`election` is the election while leading; :meth:`whenReady`
    fires with it once this process leads.

    :param value: what the leader key holds while this process campaigns and leads.
    :param ttl: the TTL of each session's lease, in seconds: how long leadership outlives a
        process that died.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        name: Union[bytes, str],
        on_elected: Callable[[Election], Any],
        on_deposed: Optional[Callable[[Optional[BaseException]], Any]] = None,
        *,
        value: Union[bytes, str, None] = None,
        ttl: int = 60,
        retry_policy: Optional[Callable[[int], float]] = None,
        clock: Any = None,
    ) -> None:
        source = ClientSource(client)
        check_callable(on_elected, "on_elected", optional=False)
        check_callable(on_deposed, "on_deposed")
        LoopService.__init__(self, source, retry_policy, clock)
        #: the election's name (``name`` is the service's own, as for any Twisted service)
        self.election_name = key_bytes(name, "name")
        self.value = _default_value() if value is None else to_bytes(value, "value")
        self.ttl = check_ttl(ttl)
        self.on_elected = on_elected
        self.on_deposed = on_deposed

    def __repr__(self) -> str:
        state = "leading" if self.leading else "running" if self.running else "stopped"
        return f"<LeaderService {self.election_name!r} {state}>"

    @property
    def election(self) -> Optional[Election]:
        """The election while this process leads, else ``None``."""
        return self._ready

    @property
    def leading(self) -> bool:
        """True while this process leads (as far as it knows)."""
        return self._ready is not None and self._ready.leading

    def whenReady(self) -> "Deferred[Election]":  # noqa: N802 (Twisted's spelling)
        """Fires with the election once this process leads (at once if it does); fails with
        ``CancelledError`` if the service is stopped first."""
        return LoopService.whenReady(self)

    async def _loop(self, run: Run) -> None:
        failures = 0
        while True:
            run.client = await run.wait(self._source.get())
            started = run.clock.seconds()
            try:
                reason = await self._term(run, Session(run.client, self.ttl))
            except Stopped:
                raise
            except Exception as error:
                self.log.warn(
                    "campaign in {name!r} failed: {error}", name=self.election_name, error=error
                )
                reason = error
            if run.clock.seconds() - started >= self.ttl:
                failures = 0
            if self._source.closed_for_good(reason):
                self.log.error(
                    "not campaigning in {name!r} any more: its client was closed",
                    name=self.election_name,
                )
                await run.park()
            delay = self.retry_policy(failures)
            failures += 1
            self.log.info(
                "campaigning again in {name!r} in {delay:.2f} s",
                name=self.election_name,
                delay=delay,
            )
            await run.pause(delay)

    async def _term(self, run: Run, session: Session) -> BaseException:
        """One session: campaign, lead, and end it all; why leadership ended."""
        election: Optional[Election] = None
        work: Optional[_Work] = None
        reason: Optional[BaseException] = None
        try:
            await run.wait(session.ready)
            election = Election(session, self.election_name)
            await run.wait(election.campaign(self.value))
            self.log.info(
                "elected in {name!r} (revision {revision}, lease {lease_id})",
                name=self.election_name,
                revision=election.revision,
                lease_id=session.lease_id,
            )
            ended: Deferred[BaseException] = Deferred()
            election.lost.addCallback(ended.callback)
            work = self._start_work(election)
            work.failed.addCallback(lambda error: None if ended.called else ended.callback(error))
            self._set_ready(run, election)
            reason = await run.wait(ended)
            self.log.warn(
                "leadership of {name!r} ended: {reason}", name=self.election_name, reason=reason
            )
            return reason
        finally:
            self._unready(run)
            if work is not None:
                await work.stop(self.log, self.election_name)
                if self.on_deposed is not None:
                    await call_user(self.on_deposed, reason).addErrback(self._report, "on_deposed")
            if election is not None:
                await self._resign(run, election)
            await close_session(session, self.log)

    def _start_work(self, election: Election) -> _Work:
        try:
            result = self.on_elected(election)
        except Exception as error:
            self._report(Failure(), "on_elected")  # type: ignore[no-untyped-call]
            work = _Work(None)
            work.failed.callback(error)
            return work
        work = _Work(result)

        def failed(error: BaseException) -> BaseException:
            self.log.failure(
                "the leader's work in {name!r} failed; resigning",
                work.failure,
                name=self.election_name,
            )
            return error

        work.failed.addCallback(failed)
        return work

    def _report(self, failure: Failure, callback: str) -> None:
        self.log.failure(
            "{callback} of the leader of {name!r} failed",
            failure,
            callback=callback,
            name=self.election_name,
        )

    async def _resign(self, run: Run, election: Election) -> None:
        if not election.leading and election.key is None:
            return
        timeout = getattr(run.client, "timeout", None) or float(self.ttl)
        try:
            await election.resign().addTimeout(timeout, run.clock)
        except Exception as error:
            self.log.warn(
                "could not resign in {name!r} ({error}); the session's end removes the key",
                name=self.election_name,
                error=error,
            )
