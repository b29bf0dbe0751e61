"""The v2 eternal watch: long polls one after the other, never losing or repeating an event.

Each poll is ``GET <key>?wait=true&waitIndex=<next>`` on a connection of its own. etcd answers
the headers at once, with ``X-Etcd-Index`` = the store index when the wait began, and the body
at the first matching event at or after ``waitIndex``. So:

- after an event, the next poll waits from its ``modifiedIndex + 1``;
- after a quiet poll (ended by ``poll_timeout``), nothing matched up to ``X-Etcd-Index``, so the
  next waits from ``X-Etcd-Index + 1``: the watch keeps up with the store even when the key is
  idle, and does not fall out of etcd's 1,000-event history for nothing;
- if it does fall out (401 ``EventIndexCleared``: away too long while > 1,000 other changes
  happened), it re-reads the key, hands on a :class:`Resynced` item with what it read, and goes
  on from the read's ``X-Etcd-Index + 1``;
- a broken connection (or a member down) is retried after a jittered exponential backoff on
  the client's clock, on the next member; the next index is kept, so nothing is lost.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txetcd._errors import ConnectionFailed, EtcdError, HTTPStatusError, ProtocolViolation, Timeout
from txetcd._http1.interface import HTTPResponse
from txetcd._retry import backoff_policy
from txetcd.v2._errors import (
    EtcdEventIndexCleared,
    EtcdKeyNotFound,
    EtcdV2Error,
    EtcdWatcherCleared,
    from_json,
)
from txetcd.v2._feed import ItemFeed
from txetcd.v2._keys import Key, get_request, normalize_key
from txetcd.v2._request import GO_NOT_FOUND, not_enabled
from txetcd.v2._result import EtcdResult

__all__ = ["EternalWatch", "Resynced"]

#: ``_failure(exc)``, or ``_failure()`` inside an ``except`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure


class Resynced(NamedTuple):
    """The watch fell out of etcd's event history and re-read the key instead.

    Events between the last one delivered and ``etcd_index`` were missed; ``result`` is the key
    (a directory read recursively for a recursive watch) as of ``etcd_index``, or ``None`` if it
    does not exist. The watch goes on with the changes after ``etcd_index``.

    :ivar result: the fresh read, or ``None`` (no such key).
    :ivar etcd_index: the store index the read reflects (``X-Etcd-Index``).
    :ivar missed_from: the first index the watch had wanted and etcd no longer had.
    """

    result: Optional[EtcdResult]
    etcd_index: int
    missed_from: Optional[int]


Item = Union[EtcdResult, Resynced]


class EternalWatch(ItemFeed):
    """A v2 watch that runs until cancelled (see the module docstring).

    Use it with ``async for item in watch`` or give ``callback``; items are
    :class:`~txetcd.v2.EtcdResult` events (``action`` ``set``, ``delete``, ``expire``, ...) and
    :class:`Resynced` notes. ``cancel()`` stops it; ``done`` fires with ``None`` then, or fails
    with the error that ended it (an exception from ``callback``, or a v2 error no retry can
    mend, such as :class:`~txetcd.v2.EtcdInsufficientPermissions`).

    :ivar next_index: the index the next poll waits from (``None`` before the first answer
        when no ``index`` was given).
    :ivar restarts: polls re-made after a failure; ``resyncs``: recoveries by re-reading.
    :ivar last_error: the last failure retried.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        key: Key,
        *,
        index: Optional[int] = None,
        recursive: bool = False,
        callback: Optional[Callable[[Item], object]] = None,
        poll_timeout: Optional[float] = None,
        max_backlog: int = 1000,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.client = client
        self.key = normalize_key(key)
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or index < 1
        ):
            raise ValueError(f"index must be an int >= 1, not {index!r}")
        self.next_index: Optional[int] = index
        self.recursive = bool(recursive)
        self._init_feed(callback, "watch")
        timeout = poll_timeout if poll_timeout is not None else client.read_timeout
        self.poll_timeout: float = float(timeout) if timeout else 60.0
        if max_backlog < 1:
            raise ValueError("max_backlog must be >= 1")
        self.max_backlog = max_backlog
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._backoff = backoff_policy(backoff_initial, backoff_max)
        self.clock = client.clock
        self.restarts = 0
        self.resyncs = 0
        self.failures = 0
        self.last_error: Optional[BaseException] = None
        self.done: Deferred[None] = Deferred()
        self.ended = False
        self._handle: Any = None
        self._timer: Optional[IDelayedCall] = None
        self._retry: Optional[IDelayedCall] = None
        self._headers: Optional[HTTPResponse] = None
        self._got_event = False
        self._held = False
        self._poll()

    # -- polling -------------------------------------------------------------------------------

    def _poll(self) -> None:
        self._retry = None
        if self.ended:
            return
        if self.callback is None and len(self._queue) >= self.max_backlog:
            self._held = True  # resumed when the consumer catches up
            return
        if self.client._needs_setup:  # SRV lookup / member discovery not done yet
            setup = self.client._setup()
            setup.addCallbacks(lambda _: self._poll(), self._failed)
            return
        request = get_request(
            self.key,
            recursive=True if self.recursive else None,
            wait=True,
            wait_index=self.next_index,
        )
        self._headers = None
        self._got_event = False
        try:
            handle = self.client._stream(request, self._line)
        except EtcdError as e:
            self._failed(_failure(e))
            return
        self._handle = handle
        handle.response.addCallbacks(self._answered, lambda f: None)
        self._timer = self.clock.callLater(self.poll_timeout, self._quiet, handle)
        handle.done.addCallbacks(self._ended, self._broken, errbackArgs=(handle,))

    def _answered(self, response: HTTPResponse) -> None:
        try:
            self.client._check_cluster(response)
        except EtcdError as e:  # failed over to another cluster: nothing to resume there
            self._finish(_failure(e))
            return
        self._headers = response

    def _line(self, line: bytes) -> None:
        if not line.strip() or self.ended:
            return
        headers = self._headers.headers if self._headers is not None else None
        result = EtcdResult.from_response(line, headers, 200)
        if result.modified_index is None:
            raise ProtocolViolation(f"a v2 event without modifiedIndex: {line[:200]!r}")
        self._got_event = True
        self.next_index = result.modified_index + 1
        self.failures = 0
        self._deliver(result)

    def _quiet(self, handle: Any) -> None:
        """A poll saw nothing for ``poll_timeout``: move on to after ``X-Etcd-Index``."""
        self._timer = None
        if handle is not self._handle:
            return
        index = self._etcd_index()
        if index is not None and not self._got_event:
            if self.next_index is None or index + 1 > self.next_index:
                self.next_index = index + 1
        self._handle = None
        handle.cancel()
        self._poll()

    def _etcd_index(self) -> Optional[int]:
        if self._headers is None:
            return None
        raw = self._headers.headers.get(b"x-etcd-index")
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _ended(self, status: int) -> None:
        """The poll's answer ended normally (its event delivered): poll again."""
        self._stop_timer()
        self._handle = None
        if self.ended:
            return
        if not self._got_event:
            # An empty 200 (the server shut the wait down): retry as after a failure.
            self._failed(_failure(ConnectionFailed("the wait ended without an event")))
            return
        self._poll()

    def _broken(self, failure: Failure, handle: Any) -> None:
        self._stop_timer()
        if handle is not self._handle:
            return  # cancelled by _quiet
        self._handle = None
        if self.ended or isinstance(failure.value, CancelledError):
            return
        err = failure.value
        if isinstance(err, HTTPStatusError):
            if err.response.status == 404 and err.response.body.startswith(GO_NOT_FOUND):
                path = f"{self.client.version_prefix}/keys{self.key}"
                self._finish(_failure(not_enabled(self.client.base_uri, path)))
                return
            v2error = from_json(err.response.body, err.response.status)
            if isinstance(v2error, EtcdEventIndexCleared):
                self._resync(v2error)
                return
            if isinstance(v2error, EtcdWatcherCleared) or err.response.status >= 500:
                self._failed(_failure(v2error))
                return
            self._finish(_failure(v2error))
            return
        if isinstance(err, (ConnectionFailed, Timeout)):
            self._failed(failure)
            return
        self._finish(failure)  # a bad event, or the callback raised

    def _failed(self, failure: Failure) -> None:
        """Retry after a backoff, on the next member."""
        if self.ended:
            return
        self.last_error = failure.value
        self.restarts += 1
        self.failures += 1
        self.client._failover()
        self._retry = self.clock.callLater(self._backoff(self.failures - 1), self._poll)

    def _resync(self, cleared: EtcdEventIndexCleared) -> None:
        self.resyncs += 1
        missed_from = self.next_index
        d = self.client.read(self.key, recursive=True if self.recursive else None)

        def read(result: EtcdResult) -> None:
            index = result.etcd_index if result.etcd_index is not None else cleared.index
            self._resynced(Resynced(result, index, missed_from))

        def failed(f: Failure) -> None:
            err = f.value
            if isinstance(err, EtcdKeyNotFound):
                self._resynced(Resynced(None, err.index or cleared.index, missed_from))
            elif isinstance(err, EtcdV2Error) and not isinstance(err, EtcdWatcherCleared):
                self._finish(f)
            else:
                self._failed(f)

        d.addCallbacks(read, failed)

    def _resynced(self, note: Resynced) -> None:
        if self.ended:
            return
        self.next_index = note.etcd_index + 1
        self._deliver(note)
        self._poll()

    # -- delivery ------------------------------------------------------------------------------

    def _deliver(self, item: Item) -> None:
        self._feed(item)

    def _consumed(self) -> None:
        if self._held and len(self._queue) < self.max_backlog:
            self._held = False
            self._poll()

    def _end_raised(self) -> None:
        self.done.addErrback(lambda _: None)  # raised to the consumer: handled

    # -- ending --------------------------------------------------------------------------------

    def _finish(self, result: Optional[Failure]) -> None:
        if self.ended:
            return
        self.ended = True
        self._stop_timer()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        self._feed_end(result)
        if result is None:
            self.done.callback(None)
        else:
            self.done.errback(result)

    def cancel(self) -> None:
        """Stop watching; ``done`` fires with ``None`` and ``async for`` ends."""
        self._finish(None)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "watching"
        return (
            f"<EternalWatch {self.key!r} {state} next_index={self.next_index} "
            f"restarts={self.restarts} resyncs={self.resyncs}>"
        )
