"""Registry: service instances registered under a prefix, each on its session's lease."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

from twisted.internet.defer import Deferred

from txetcd._args import key_bytes, to_bytes
from txetcd._types import PutResult
from txetcd.concurrency._mirror import Mirror, MirrorChange
from txetcd.concurrency._session import Session

__all__ = ["Registry"]


class Registry:
    """Instances of a service under ``prefix`` (``prefix + name = value``), each key on the
    lease of the session that registered it, so it disappears with its process::

        registry = Registry(client, b"services/api/")
        await registry.register(b"node-1", b"10.0.0.1:8080", session)
        mirror = await registry.watch().ready
        registry.instances      # {b"node-1": b"10.0.0.1:8080", ...}, kept current
    """

    def __init__(self, client: Any, prefix: Union[bytes, str]) -> None:
        self.client = client
        self.prefix = to_bytes(prefix, "prefix")
        if not self.prefix:
            raise ValueError("prefix must not be empty")
        self._mirror: Optional[Mirror] = None

    def __repr__(self) -> str:
        return f"<Registry {self.prefix!r}>"

    def register(
        self, name: Union[bytes, str], value: Union[bytes, str], session: Session
    ) -> "Deferred[PutResult]":
        """Register instance ``name`` with ``value`` on ``session``'s lease (it goes when the
        session ends or is lost)."""
        key = self.prefix + key_bytes(name, "name")
        data = to_bytes(value, "value")
        if not isinstance(session, Session):
            raise TypeError(f"session must be a txetcd.Session, not {type(session).__name__}")
        d = session.ready
        return d.addCallback(lambda s: self.client.put(key, data, lease_id=s.lease_id))

    def unregister(self, name: Union[bytes, str]) -> "Deferred[Any]":
        """Remove instance ``name``."""
        return self.client.delete(self.prefix + key_bytes(name, "name"))  # type: ignore[no-any-return]

    def watch(self, on_change: Optional[Callable[[MirrorChange], Any]] = None) -> Mirror:
        """Start (once) and return the :class:`~txetcd.Mirror` of the prefix that
        :attr:`instances` reads; ``on_change`` gets every change after it is ready."""
        if self._mirror is None:
            self._mirror = Mirror(self.client, self.prefix, on_change=on_change)
        return self._mirror

    @property
    def instances(self) -> Dict[bytes, bytes]:
        """The live instances, name -> value (from :meth:`watch`'s mirror; call it first)."""
        if self._mirror is None:
            raise RuntimeError("call registry.watch() first")
        n = len(self.prefix)
        return {key[n:]: value for key, value in self._mirror.items()}

    def close(self) -> None:
        """Stop the mirror (registrations stay: they go with their sessions)."""
        if self._mirror is not None:
            self._mirror.close()
