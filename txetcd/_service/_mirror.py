"""MirrorService: a :class:`~txetcd.concurrency.Mirror` of a prefix kept from ``startService``
to ``stopService``, made again whenever it ends."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._args import NOT_GIVEN
from txetcd._service._base import LoopService, Run, Stopped, call_user, check_callable
from txetcd._service._client import ClientSource
from txetcd.concurrency._mirror import Mirror, MirrorChange
from txetcd.concurrency._queue import first_to_fire

__all__ = ["MirrorService"]


class MirrorService(LoopService[Mirror]):
    """Follow every key under ``prefix`` while the service runs, calling ``on_change`` with a
    :class:`~txetcd.concurrency.MirrorChange` for each change::

        def changed(change):
            log.info("{key} is now {value}", key=change.key, value=change.new)

        config = MirrorService(client, b"config/", changed)
        config.setServiceParent(application)
        mirror = await config.whenReady()  # the whole prefix, as a read-only dict
        mirror[b"config/colour"]

    ``client`` is a :class:`txetcd.Client` (not closed by the service) or an
    :class:`EtcdClientService`.

    :meth:`whenReady` fires with the :class:`~txetcd.concurrency.Mirror` once the prefix is
    listed and watched; changes are reported from then on (the first listing is read from the
    mirror, not reported). :attr:`mirror` is that mirror.

    It keeps following through anything: a broken connection is resumed by the mirror's watch;
    a compaction makes the mirror list the prefix again and report what changed meanwhile with
    ``resync=True``; and if the mirror ends (etcd out of reach at start for longer than
    ``timeout``, a watch refused) the service logs why and makes a new one after a backoff
    (``retry_policy``, on ``clock``: the client's by default), reporting the difference between
    the old copy and the new one with ``resync=True`` too. Only a client given as it is and
    then closed ends it for good (logged as an error).

    ``on_change`` runs in the watch's delivery: keep it quick. An exception it raises (or a
    failure of the Deferred or coroutine it returns) is logged with the change, and the mirror
    goes on with the next change.

    :param timeout: how long a new mirror may take to get ready before it counts as failed
        (the client's call timeout by default; ``None``: no limit).
    :param retry_policy: seconds to wait before the next mirror, from the number of failures
        in a row (0 first); ``txetcd``'s backoff (0.5 s doubling to 30 s, with jitter) by
        default.
    :param clock: the ``IReactorTime`` of that wait (the client's clock by default).
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        prefix: Union[bytes, str],
        on_change: Optional[Callable[[MirrorChange], Any]] = None,
        *,
        timeout: Any = NOT_GIVEN,
        retry_policy: Optional[Callable[[int], float]] = None,
        clock: Any = None,
    ) -> None:
        source = ClientSource(client)
        check_callable(on_change, "on_change")
        if isinstance(prefix, str):
            prefix = prefix.encode()
        if not isinstance(prefix, bytes):
            raise TypeError(f"prefix must be bytes or str, not {type(prefix).__name__}")
        if timeout is not NOT_GIVEN and timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
                raise TypeError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
        LoopService.__init__(self, source, retry_policy, clock)
        self.prefix = prefix
        self.on_change = on_change
        self.timeout = timeout
        #: the mirror while the service runs (the last one, still readable, while a new one is
        #: being made after a failure); ``None`` before the first is ready
        self.mirror: Optional[Mirror] = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MirrorService {self.prefix!r} {state} mirror={self.mirror!r}>"

    def whenReady(self) -> "Deferred[Mirror]":  # noqa: N802 (Twisted's spelling)
        """Fires with the mirror once the prefix is listed and watched (at once if it is);
        fails with ``CancelledError`` if the service is stopped first."""
        return LoopService.whenReady(self)

    async def _loop(self, run: Run) -> None:
        failures = 0
        previous: Optional[Mirror] = None
        mirror: Optional[Mirror] = None
        try:
            while True:
                run.client = await run.wait(self._source.get())
                mirror = Mirror(
                    run.client,
                    self.prefix,
                    on_change=lambda change: self._changed(run, change),
                    timeout=self.timeout,
                )
                try:
                    await run.wait(mirror.ready)
                except Stopped:
                    raise
                except Exception as error:
                    failures = await self._retry(run, error, failures, "could not start")
                    continue
                failures = 0
                if previous is not None:
                    self._resync(run, previous, mirror)
                if run is self._run:
                    self.mirror = mirror
                self._set_ready(run, mirror)
                ended: BaseException = RuntimeError("it was closed")
                try:
                    which, _ = await run.wait(
                        first_to_fire([mirror.done, self._source.gone(run.client)])
                    )
                except Stopped:
                    raise
                except Exception as error:
                    ended = error
                else:
                    if which == 1:  # the client service stopped: wait for its next client
                        self.log.info(
                            "mirror of {prefix!r}: its client was closed; waiting for the next",
                            prefix=self.prefix,
                        )
                        mirror.close()
                        previous = mirror
                        continue
                previous = mirror
                failures = await self._retry(run, ended, failures, "ended")
        finally:
            if mirror is not None:
                mirror.close()
            if run is self._run or self._run is None:
                self.mirror = None

    async def _retry(self, run: Run, error: BaseException, failures: int, what: str) -> int:
        """Log why the mirror failed and wait before the next (forever if it cannot be)."""
        if self._source.closed_for_good(error):
            self.log.error(
                "mirror of {prefix!r} {what}: its client was closed; not following any more",
                prefix=self.prefix,
                what=what,
            )
            await run.park()
        delay = self.retry_policy(failures)
        self.log.warn(
            "mirror of {prefix!r} {what}: {error}; a new one in {delay:.2f} s",
            prefix=self.prefix,
            what=what,
            error=error,
            delay=delay,
        )
        await run.pause(delay)
        return failures + 1

    def _resync(self, run: Run, old: Mirror, new: Mirror) -> None:
        """Report what differs between the copy before a failure and the new one."""
        changed = 0
        for key in sorted(set(old.kvs) | set(new.kvs)):
            before, after = old.kvs.get(key), new.kvs.get(key)
            if before != after:
                changed += 1
                self._changed(run, MirrorChange(key, before, after, new.revision, True))
        self.log.info(
            "mirror of {prefix!r} made again at revision {revision}: {changed} keys changed",
            prefix=self.prefix,
            revision=new.revision,
            changed=changed,
        )

    def _changed(self, run: Run, change: MirrorChange) -> None:
        if self.on_change is None or run.stopping:
            return

        def report(failure: Failure) -> None:
            self.log.failure(
                "on_change of the mirror of {prefix!r} failed on {key!r} (revision {revision})",
                failure,
                prefix=self.prefix,
                key=change.key,
                revision=change.revision,
            )

        call_user(self.on_change, change).addErrback(report)
