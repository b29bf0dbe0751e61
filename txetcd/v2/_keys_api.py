"""The v2 keys API of :class:`txetcd.v2.Client`: reads, writes, deletes and watches, with
python-etcd's method names and options, each turned into one request of
:mod:`txetcd.v2._keys` sent through the one request path (:class:`~txetcd.v2._request.RequestPath`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txetcd._errors import OutcomeUnknown, Timeout, WriteTimeout
from txetcd._http1.interface import HTTPResponse
from txetcd.v2._errors import (
    EtcdInvalidRequest,
    EtcdKeyNotFound,
    EtcdRaftInternal,
    EtcdV2Error,
    EtcdWatchTimedOut,
    from_json,
)
from txetcd.v2._keys import (
    Key,
    V2Request,
    Value,
    append_request,
    delete_request,
    get_request,
    set_request,
)
from txetcd.v2._request import DEFAULT_TIMEOUT, RequestPath
from txetcd.v2._result import EtcdResult

__all__ = ["KeysAPI"]

#: ``Failure(exc)`` (typed: Twisted's is not)
_failure: Callable[..., Failure] = Failure

#: python-etcd's spellings of options -> txetcd's
_ALIASES = {
    "prevValue": "prev_value",
    "prevIndex": "prev_index",
    "prevExist": "prev_exist",
    "waitIndex": "wait_index",
}

#: server answers to a write after which it may still commit (raft timed out, leader lost)
_UNCERTAIN = ("timed out", "leader changed", "stopped", "unhealthy")


def _options(given: Mapping[str, Any], allowed: Sequence[str], call: str) -> Dict[str, Any]:
    """``given`` keyword options with python-etcd's names mapped to txetcd's, checked."""
    out: Dict[str, Any] = {}
    for name, value in given.items():
        canonical = _ALIASES.get(name, name)
        if canonical not in allowed:
            raise TypeError(f"{call}() got an unexpected keyword argument {name!r}")
        if canonical in out:
            raise TypeError(f"{call}() got {canonical!r} twice (under two spellings)")
        out[canonical] = value
    return out


class KeysAPI(RequestPath):
    """The keys API of :class:`txetcd.v2.Client`."""

    def _keys(
        self, request: V2Request, timeout: Any, *, exclusive: bool = False
    ) -> "Deferred[EtcdResult]":
        """Send a keys request; fires with its typed result or fails with its v2 error."""
        method = request.method.encode("ascii")
        target = self._target(request)
        mutation = request.method != "GET"
        d: Deferred[EtcdResult] = self._call(
            method,
            target,
            body=request.body or b"",
            headers=self._form_headers if request.body is not None else self._headers,
            idempotent=not mutation,
            timeout=self._timeout(timeout),
            exclusive=exclusive,
            parse=_keys_result,
        )
        if exclusive:
            d.addErrback(_wait_timed_out)
        return d

    # -- reads ---------------------------------------------------------------------------------

    def read(
        self,
        key: Key,
        *,
        recursive: Optional[bool] = None,
        sorted: Optional[bool] = None,
        quorum: Optional[bool] = None,
        wait: bool = False,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Read ``key`` (a file or a directory).

        :param recursive: list a directory's whole subtree.
        :param sorted: children in key order.
        :param quorum: a linearizable read (through raft).
        :param wait: a long poll: fire at the key's next change (with ``recursive``, the next
            change below it), or at the first change at or after ``wait_index``.
        :param wait_index: (``waitIndex``) with ``wait``: the first index to look at.
        :param timeout: seconds (default ``read_timeout``; ``None`` or 0: none). A wait that
            times out fails with :class:`~txetcd.v2.EtcdWatchTimedOut`.
        :raises ~txetcd.v2.EtcdKeyNotFound: no such key.
        """
        opts = _options(options, ("wait_index",), "read")
        request = get_request(
            key,
            recursive=recursive,
            sorted=sorted,
            quorum=quorum,
            wait=True if wait else None,
            wait_index=opts.get("wait_index"),
        )
        return self._keys(request, timeout, exclusive=wait)

    def get(self, key: Key, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[EtcdResult]":
        """``read(key)``."""
        return self._keys(get_request(key), timeout)

    def exists(self, key: Key, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[bool]":
        """Whether ``key`` exists (python-etcd's ``key in client``)."""
        d = self._keys(get_request(key), timeout)

        def missing(f: Failure) -> Union[bool, Failure]:
            return False if isinstance(f.value, EtcdKeyNotFound) else f

        return d.addCallbacks(lambda _: True, missing)

    # -- writes --------------------------------------------------------------------------------

    def write(
        self,
        key: Key,
        value: Optional[Value],
        ttl: Optional[int] = None,
        dir: bool = False,
        append: bool = False,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Write ``key``: set, create, update or compare-and-swap, by the options given.

        :param value: the value (``None`` with ``dir=True``, or a refresh).
        :param ttl: seconds to live; without it a write drops any TTL the key had.
        :param dir: make a directory.
        :param append: create an in-order key in the directory ``key`` (POST).
        :param prev_value: (``prevValue``) only if the current value is this.
        :param prev_index: (``prevIndex``) only if the key's modified index is this.
        :param prev_exist: (``prevExist``) ``False``: only create; ``True``: only update.
        :param refresh: with ``ttl`` and no value: reset the TTL, waking no watcher.
        """
        opts = _options(options, ("prev_value", "prev_index", "prev_exist", "refresh"), "write")
        if append:
            if opts:
                raise EtcdInvalidRequest(f"append takes no {', '.join(sorted(opts))}")
            request = append_request(key, value, ttl=ttl, dir=True if dir else None)
        else:
            request = set_request(key, value, ttl=ttl, dir=True if dir else None, **opts)
        return self._keys(request, timeout)

    def set(
        self, key: Key, value: Value, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` (creating or replacing it)."""
        return self._keys(set_request(key, value, ttl=ttl), timeout)

    def update(self, obj: EtcdResult, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[EtcdResult]":
        """Write back a result read earlier (its ``value`` and ``ttl`` as changed), only if the
        key was not modified since (``prevIndex`` = its ``modified_index``)."""
        if not isinstance(obj, EtcdResult):
            raise TypeError(f"update() takes an EtcdResult, not {type(obj).__name__}")
        if obj.dir:
            request = set_request(obj.key, None, ttl=obj.ttl, dir=True, prev_exist=True)
        else:
            if obj.modified_index is None:
                raise EtcdInvalidRequest("update() needs a result with a modified index")
            request = set_request(
                obj.key,
                obj.value if obj.value is not None else "",
                ttl=obj.ttl,
                prev_index=obj.modified_index,
            )
        return self._keys(request, timeout)

    def test_and_set(
        self,
        key: Key,
        value: Value,
        prev_value: Value,
        ttl: Optional[int] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` only if its value is ``prev_value``."""
        return self._keys(set_request(key, value, ttl=ttl, prev_value=prev_value), timeout)

    def compare_and_swap(
        self,
        key: Key,
        value: Value,
        ttl: Optional[int] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **conditions: Any,
    ) -> "Deferred[EtcdResult]":
        """Set ``key`` to ``value`` only if the conditions hold: ``prev_value``, ``prev_index``
        and/or ``prev_exist`` (python-etcd's spellings too); at least one is required.
        :raises ~txetcd.v2.EtcdCompareFailed: a condition did not hold.
        """
        opts = _options(conditions, ("prev_value", "prev_index", "prev_exist"), "compare_and_swap")
        if not any(v is not None for v in opts.values()):
            raise EtcdInvalidRequest("compare_and_swap needs prev_value, prev_index or prev_exist")
        return self._keys(set_request(key, value, ttl=ttl, **opts), timeout)

    def refresh(
        self, key: Key, ttl: int, *, timeout: Any = DEFAULT_TIMEOUT, **options: Any
    ) -> "Deferred[EtcdResult]":
        """Reset the TTL of the existing ``key`` without changing its value or waking
        watchers (``refresh=true``, ``prevExist=true``: the key must exist and keeps its created
        index). ``prev_value``/``prev_index`` add conditions.
        """
        opts = _options(options, ("prev_value", "prev_index", "prev_exist"), "refresh")
        opts.setdefault("prev_exist", True)
        return self._keys(set_request(key, None, ttl=ttl, refresh=True, **opts), timeout)

    def append(
        self, key: Key, value: Value, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Create an in-order key in the directory ``key``, named by its creation index."""
        return self._keys(append_request(key, value, ttl=ttl), timeout)

    def mkdir(
        self, key: Key, ttl: Optional[int] = None, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Create the directory ``key``. :raises ~txetcd.v2.EtcdAlreadyExist: it exists."""
        return self._keys(set_request(key, None, ttl=ttl, dir=True, prev_exist=False), timeout)

    # -- deletes -------------------------------------------------------------------------------

    def delete(
        self,
        key: Key,
        recursive: Optional[bool] = None,
        dir: Optional[bool] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[EtcdResult]":
        """Delete ``key``; ``dir=True`` for an empty directory, ``recursive=True`` for a
        directory and everything below it; ``prev_value``/``prev_index`` make it a
        compare-and-delete."""
        opts = _options(options, ("prev_value", "prev_index", "prev_exist"), "delete")
        return self._keys(delete_request(key, recursive=recursive, dir=dir, **opts), timeout)

    def compare_and_delete(
        self,
        key: Key,
        *,
        prev_value: Optional[Value] = None,
        prev_index: Optional[int] = None,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[EtcdResult]":
        """Delete ``key`` only if its value is ``prev_value`` and/or its modified index is
        ``prev_index``. :raises ~txetcd.v2.EtcdCompareFailed: it is not."""
        if prev_value is None and prev_index is None:
            raise EtcdInvalidRequest("compare_and_delete needs prev_value or prev_index")
        request = delete_request(key, prev_value=prev_value, prev_index=prev_index)
        return self._keys(request, timeout)

    def pop(
        self,
        key: Key,
        recursive: Optional[bool] = None,
        dir: Optional[bool] = None,
        *,
        timeout: Any = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> "Deferred[Optional[EtcdResult]]":
        """Delete ``key`` and fire with the node as it was (its value included)."""
        d = self.delete(key, recursive, dir, timeout=timeout, **options)
        return d.addCallback(lambda result: result.prev_node)

    def rmdir(
        self, key: Key, recursive: bool = False, *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[EtcdResult]":
        """Delete the directory ``key`` (it must be empty unless ``recursive``)."""
        request = delete_request(key, dir=True, recursive=True if recursive else None)
        return self._keys(request, timeout)

    # -- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        index: Optional[int] = None,
        timeout: Any = DEFAULT_TIMEOUT,
        recursive: Optional[bool] = None,
    ) -> "Deferred[EtcdResult]":
        """Wait for the next change of ``key`` (at or after ``index`` if given): one long poll.

        :raises ~txetcd.v2.EtcdWatchTimedOut: nothing happened within ``timeout``.
        :raises ~txetcd.v2.EtcdEventIndexCleared: ``index`` is older than etcd's history of
            the last 1,000 events (use :meth:`eternal_watch`, which recovers).
        """
        return self.read(key, wait=True, wait_index=index, recursive=recursive, timeout=timeout)

    def eternal_watch(
        self,
        key: Key,
        index: Optional[int] = None,
        recursive: bool = False,
        *,
        callback: Optional[Callable[[Any], object]] = None,
        poll_timeout: Optional[float] = None,
        max_backlog: int = 1000,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
    ) -> Any:
        """Watch ``key`` for ever: an :class:`~txetcd.v2.EternalWatch` (``async for`` it, or
        give ``callback``). It follows ``X-Etcd-Index``, recovers from ``EventIndexCleared`` by
        re-reading (a :class:`~txetcd.v2.Resynced` item says so) and reconnects with backoff
        and failover. ``cancel()`` it to stop.

        :param poll_timeout: seconds a poll may stay quiet before it is made again from
            ``X-Etcd-Index + 1`` (default ``read_timeout``, else 60).
        :param max_backlog: with ``async for``: items held before polling pauses.
        :param backoff_initial: first delay (seconds) before a failed poll is made again;
            doubled after each failure in a row, up to ``backoff_max``, with jitter.
        """
        from txetcd.v2._watch import EternalWatch

        return EternalWatch(
            self,
            key,
            index=index,
            recursive=recursive,
            callback=callback,
            poll_timeout=poll_timeout,
            max_backlog=max_backlog,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )

    #: python-etcd's misspelling, kept for code written against it
    ethernal_watch = eternal_watch


def _keys_result(response: HTTPResponse, mutation: bool) -> EtcdResult:
    if response.status >= 400:
        error = from_json(response.body, response.status)
        if (
            mutation
            and isinstance(error, EtcdRaftInternal)
            and any(word in (error.cause or "") for word in _UNCERTAIN)
        ):
            raise OutcomeUnknown(f"the write's outcome is unknown: {error}", cause=error)
        raise error
    if response.status >= 300:
        raise EtcdV2Error(
            f"HTTP {response.status}: etcd redirected the request (not followed)",
            status=response.status,
        )
    return EtcdResult.from_response(response.body, response.headers, response.status)


def _wait_timed_out(failure: Failure) -> Failure:
    err = failure.value
    if isinstance(err, Timeout) and not isinstance(err, (WriteTimeout, EtcdWatchTimedOut)):
        return _failure(EtcdWatchTimedOut(f"no change within the timeout ({err})", cause=err))
    return failure
