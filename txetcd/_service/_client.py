"""EtcdClientService: a :class:`txetcd.Client` owned from ``startService`` to ``stopService``;
and how the other services take their client (a Client, or this service)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Set

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.logger import Logger

from txetcd._args import NOT_GIVEN
from txetcd._client import Client
from txetcd._errors import ClientClosed
from txetcd._service._base import check_callable, failure_of
from txetcd._signal import Signal

__all__ = ["EtcdClientService", "ClientSource"]


class EtcdClientService(Service):
    """Owns a :class:`txetcd.Client`: made on ``startService``, closed on ``stopService``.

    Give it :class:`~txetcd.Client`'s own arguments, or ``factory``, a function of no
    arguments that makes the client (``MemoryEtcd().client`` in tests, say)::

        clients = EtcdClientService("http://127.0.0.1:2379", timeout=10)
        clients.setServiceParent(application)
        MirrorService(clients, b"config/", on_change).setServiceParent(application)

    The other services of :mod:`txetcd.service` take it in place of a client: they use its
    client while it runs, wait for the next one while it does not, and never close it. Unknown
    option names are refused at once (``TypeError``); the options' values are checked when
    the client is made, so a bad one makes ``startService`` raise.

    Stopping it closes the client once the services that use it and are stopping at the same
    time have finished (a session's revoke is not cut short): those stopping already, and, if
    its parent is stopping all its children, those among them not stopped yet, whatever their
    order. A service that uses it and keeps running sees its client closed, and waits for the
    next.

    :ivar client: the client while the service runs, ``None`` otherwise. Each start makes a
        new one.
    """

    log = Logger()

    def __init__(
        self,
        endpoints: Any = NOT_GIVEN,
        *,
        factory: Optional[Callable[[], Client]] = None,
        **options: Any,
    ) -> None:
        if factory is not None:
            if endpoints is not NOT_GIVEN or options:
                raise TypeError("give either factory or the client's options, not both")
            check_callable(factory, "factory", optional=False)
            self._factory: Callable[[], Client] = factory
        else:
            args = () if endpoints is NOT_GIVEN else (endpoints,)
            inspect.signature(Client).bind(*args, **options)  # unknown names: TypeError now

            def make() -> Client:
                return Client(*args, **options)

            self._factory = make
        self.client: Optional[Client] = None
        self._gone: Signal[None] = Signal()  # fires when the current client is closed
        self._waiters: List[Deferred[Client]] = []
        self._next: List[Deferred[Client]] = []
        self._users: Set[Any] = set()  # running services that use this one
        self._stops: Set[Deferred[Any]] = set()  # their stops under way
        self._awaited: Dict[Any, Deferred[None]] = {}  # users to stop before the client goes

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EtcdClientService {state} client={self.client!r}>"

    # -- IService ------------------------------------------------------------------------------
    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Make the client (what the factory or ``Client(...)`` raises is raised here);
        nothing if the service runs already."""
        if self.client is not None:
            return
        client = self._factory()
        self._gone = Signal()
        Service.startService(self)  # type: ignore[no-untyped-call]
        self.client = client
        self.log.info("etcd client started: {client!r}", client=client)
        waiters, self._waiters = self._waiters, []
        nexts, self._next = self._next, []
        for d in waiters + nexts:
            d.callback(client)

    def stopService(self) -> "Deferred[None]":  # noqa: N802
        """Close the client (after the stops of the services using it that are under way);
        fires once no connection or timer of it is left."""
        Service.stopService(self)  # type: ignore[no-untyped-call]
        client, self.client = self.client, None
        self._gone.fire(None)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure_of(CancelledError("the etcd client service was stopped")))
        if client is None:
            return succeed(None)
        pending: List[Deferred[Any]] = list(self._stops)
        parent = self.parent
        if parent is not None and not parent.running:
            # the parent is stopping its children, in an order we do not choose: wait for
            # the users among them that it has not stopped yet too
            for user in self._users:
                if user.parent is parent and user.running:
                    pending.append(self._awaited.setdefault(user, Deferred()))
        first: Deferred[Any] = DeferredList(pending) if pending else succeed(None)

        def close(_: object) -> "Deferred[None]":
            self.log.info("etcd client closing: {client!r}", client=client)
            return client.close()

        closed: Deferred[None] = first.addCallback(close)
        return closed

    # -- the client ----------------------------------------------------------------------------
    def whenReady(self) -> "Deferred[Client]":  # noqa: N802 (Twisted's spelling)
        """Fires with the client: at once while the service runs, else at the next start.
        Fails with ``CancelledError`` if the service is stopped first.

        There is no separate "connected" state: the client connects when first used, and
        calls made before the connection is up wait for it within their deadline.
        """
        if self.client is not None:
            return succeed(self.client)
        d: Deferred[Client] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        return d

    def _next_client(self) -> "Deferred[Client]":
        """For the services using this one: like :meth:`whenReady`, but waits across stops."""
        if self.client is not None:
            return succeed(self.client)
        d: Deferred[Client] = Deferred(self._next.remove)
        self._next.append(d)
        return d

    def _client_gone(self, client: Client) -> "Deferred[None]":
        """Fires when ``client`` (one this service made) is being closed."""
        if client is not self.client:
            return succeed(None)
        return self._gone.wait()

    def _user_started(self, user: Any) -> None:
        """``user``, a service that uses this one, has started."""
        self._users.add(user)

    def _user_stopping(self, user: Any, stopped: "Deferred[Any]") -> None:
        """``user`` is stopping: close the client only once ``stopped`` has fired."""
        self._users.discard(user)
        self._stops.add(stopped)
        awaited = self._awaited.pop(user, None)

        def gone(result: object) -> object:
            self._stops.discard(stopped)
            if awaited is not None:
                awaited.callback(None)
            return result

        stopped.addBoth(gone)


class ClientSource:
    """Where a service gets its client: a client given as it is (``txetcd.Client``, a
    namespace of one, ``MemoryEtcd().client()``) or an :class:`EtcdClientService`."""

    def __init__(self, client: Any) -> None:
        self.service: Optional[EtcdClientService] = None
        self.client: Any = None
        if isinstance(client, EtcdClientService):
            self.service = client
        elif all(hasattr(client, name) for name in ("get", "watch", "grant", "clock")):
            self.client = client
        else:
            raise TypeError(
                "client must be a txetcd.Client or an EtcdClientService, "
                f"not {type(client).__name__}"
            )

    def get(self) -> "Deferred[Any]":
        """The client to use now (for a service: its client, or the next one)."""
        if self.service is not None:
            return self.service._next_client()
        return succeed(self.client)

    def gone(self, client: Any) -> "Deferred[None]":
        """Fires when ``client`` is taken away (its client service stops); never for a client
        given as it is (cancel it when done)."""
        if self.service is not None:
            return self.service._client_gone(client)
        return Deferred()

    def started(self, user: Any) -> None:
        """``user``, the service using this source, has started."""
        if self.service is not None:
            self.service._user_started(user)

    def stopping(self, user: Any, stopped: "Deferred[Any]") -> None:
        """``user`` is stopping; ``stopped`` fires when it has."""
        if self.service is not None:
            self.service._user_stopping(user, stopped)

    def closed_for_good(self, error: BaseException) -> bool:
        """Whether ``error`` says the client is closed and none will come after it (a client
        given as it is; a client service makes a new one at its next start)."""
        return self.service is None and isinstance(error, ClientClosed)
