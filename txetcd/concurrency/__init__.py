"""Coordination recipes on the public :class:`txetcd.Client` API (as Go's
``client/v3/concurrency``): sessions, locks, elections, STM, namespaces, registries, mirrors.
This module only re-exports."""

from txetcd.concurrency._election import Election, Observer
from txetcd.concurrency._lock import Lock
from txetcd.concurrency._mirror import Mirror, MirrorChange
from txetcd.concurrency._namespace import Namespace, NamespacedWatch
from txetcd.concurrency._registry import Registry
from txetcd.concurrency._session import Session
from txetcd.concurrency._stm import STM, Isolation, stm

__all__ = [
    "Session",
    "Mirror",
    "MirrorChange",
    "Lock",
    "Election",
    "Observer",
    "stm",
    "STM",
    "Isolation",
    "Namespace",
    "NamespacedWatch",
    "Registry",
]
