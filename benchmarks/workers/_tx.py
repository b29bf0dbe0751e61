"""Twisted plumbing for the txetcd workers: the epoll reactor, running one coroutine, sleeping.

Import this module before anything imports ``twisted.internet.reactor``: it installs the epoll
reactor where there is one, and puts this checkout on ``sys.path`` so ``import txetcd`` finds it.
With ``TXETCD_BENCH_TREE`` set (the harness's ``--baseline``), that directory goes first on
``sys.path`` instead, and importing this module fails unless ``txetcd`` is found there: a baseline
row can never measure this checkout's code by mistake.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["REACTOR", "TREE", "TREE_ENV", "gather", "react_run", "sleep", "wait_for"]


def _install_best_reactor() -> str:
    """Install epoll where there is one (before anything imports the global reactor)."""
    from twisted.internet.error import ReactorAlreadyInstalledError

    try:
        from twisted.internet import epollreactor

        epollreactor.install()  # type: ignore[no-untyped-call]
    except (ImportError, ReactorAlreadyInstalledError):  # no epoll here, or too late
        return "default"
    return "epoll"


TREE_ENV = "TXETCD_BENCH_TREE"
"""The variable naming another txetcd source tree to import (a directory holding ``txetcd/``)."""


def _put_txetcd_on_path() -> str:
    """Put the tree to import txetcd from first on ``sys.path``; return it."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    other = os.environ.get(TREE_ENV)
    tree = os.path.abspath(other) if other else checkout
    if tree in sys.path:
        sys.path.remove(tree)
    sys.path.insert(0, tree)
    if other:
        import importlib.util

        spec = importlib.util.find_spec("txetcd")
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.startswith(os.path.join(tree, "txetcd", "")):
            raise ImportError(f"{TREE_ENV}={other}: txetcd is not imported from there ({origin})")
    return tree


REACTOR = _install_best_reactor()
TREE = _put_txetcd_on_path()
"""Where ``import txetcd`` comes from: this checkout, or ``$TXETCD_BENCH_TREE``."""

from twisted.internet import defer, task  # noqa: E402  (after the reactor is installed)
from twisted.python.failure import Failure  # noqa: E402


def react_run(body: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """Run ``await body(reactor)`` under ``task.react`` and return its result (or raise)."""
    box: list[Any] = []

    async def wrapped(reactor: Any) -> None:
        try:
            box.append(await body(reactor))
        except BaseException as e:  # noqa: BLE001  (re-raised below, not logged by react)
            box.append(e)

    try:
        task.react(lambda reactor: defer.ensureDeferred(wrapped(reactor)))
    except SystemExit:
        pass  # react always exits; the outcome is in box
    if not box:
        raise RuntimeError("the reactor stopped before the workload finished")
    if isinstance(box[0], BaseException):
        raise box[0]
    result: dict[str, Any] = box[0]
    result["reactor"] = REACTOR
    return result


def gather(coros: list[Coroutine[Any, Any, None]]) -> defer.Deferred[Any]:
    """Run coroutines together on Deferreds (``run_async``'s ``gather`` for Twisted workers).

    A failure is the loop's own exception, not ``gatherResults``' ``FirstError`` wrapper.
    """
    d = defer.gatherResults([defer.ensureDeferred(c) for c in coros], consumeErrors=True)

    def unwrap(failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, defer.FirstError):
            sub: Failure = error.subFailure
            return sub
        return failure

    return d.addErrback(unwrap)


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    """A Deferred that fires after ``seconds`` on ``reactor``'s clock."""
    return task.deferLater(reactor, seconds, lambda: None)


async def wait_for(reactor: Any, d: defer.Deferred[Any], timeout: float) -> bool:
    """Wait for ``d`` at most ``timeout`` seconds: true if it fired, false on timeout.

    ``d`` itself is left alone (not cancelled): it is usually shared.
    """
    waiter: defer.Deferred[bool] = defer.Deferred()

    def fired(result: object) -> object:
        if not waiter.called:
            waiter.callback(True)
        return result

    def timed_out() -> None:
        if not waiter.called:
            waiter.callback(False)

    d.addBoth(fired)
    call = reactor.callLater(timeout, timed_out)
    ok = await waiter
    if call.active():
        call.cancel()
    return ok
