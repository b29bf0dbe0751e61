"""txetcd.v2: a client for etcd's v2 API with python-etcd's shape, returning Deferreds.

:class:`Client` (keys, members, stats; the one request path with failover), the
:class:`EternalWatch` that survives EventIndexCleared and broken connections, :class:`Lock` and
:class:`Election` over CAS writes and TTL refresh loops; under them, key and form encoding
(:mod:`txetcd.v2._keys`), results typed by action (:mod:`txetcd.v2._result`) and the v2 error
table (:mod:`txetcd.v2._errors`). Every error is a :class:`txetcd.EtcdError`. The v2 API exists
in etcd 3.4 and 3.5 only with ``--enable-v2`` and is gone in 3.6. This module only re-exports
the public names; the layer's building blocks (request builders and encoders, the error and
result tables) live in its private modules.
"""

from txetcd.v2._client import Client
from txetcd.v2._election import Election, EtcdLeadershipLost, LeaderObserver
from txetcd.v2._errors import (
    EtcdAlreadyExist,
    EtcdClientInternal,
    EtcdClusterIdChanged,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdDirNotEmpty,
    EtcdEventIndexCleared,
    EtcdException,
    EtcdExistingPeerAddr,
    EtcdIndexNaN,
    EtcdIndexOrValueRequired,
    EtcdIndexValueMutex,
    EtcdInsufficientPermissions,
    EtcdInvalidActiveSize,
    EtcdInvalidField,
    EtcdInvalidForm,
    EtcdInvalidKey,
    EtcdInvalidRemoveDelay,
    EtcdInvalidRequest,
    EtcdKeyError,
    EtcdKeyIsPreserved,
    EtcdKeyNotFound,
    EtcdLeaderElectionInProgress,
    EtcdLockExpired,
    EtcdNameRequired,
    EtcdNoMorePeer,
    EtcdNotDir,
    EtcdNotFile,
    EtcdPrevValueRequired,
    EtcdRaftInternal,
    EtcdRefreshTTLRequired,
    EtcdRefreshValue,
    EtcdRootReadOnly,
    EtcdStandbyInternal,
    EtcdTimeoutNaN,
    EtcdTTLNaN,
    EtcdV2Error,
    EtcdV2NotEnabled,
    EtcdValueError,
    EtcdValueOrTTLRequired,
    EtcdValueRequired,
    EtcdWatcherCleared,
    EtcdWatchTimedOut,
)
from txetcd.v2._keys import join_key, normalize_key
from txetcd.v2._lock import Lock
from txetcd.v2._result import (
    ComparedThenDeleted,
    ComparedThenSwapped,
    Created,
    Deleted,
    EtcdResult,
    Expired,
    Got,
    Set,
    Updated,
)
from txetcd.v2._watch import EternalWatch, Resynced

__all__ = [
    # the client
    "Client",
    # results, by action
    "EtcdResult",
    "Got",
    "Set",
    "Created",
    "Updated",
    "Deleted",
    "Expired",
    "ComparedThenSwapped",
    "ComparedThenDeleted",
    # watches, locks, elections
    "EternalWatch",
    "Resynced",
    "Lock",
    "Election",
    "LeaderObserver",
    "EtcdLeadershipLost",
    # keys
    "join_key",
    "normalize_key",
    # errors (python-etcd's names)
    "EtcdException",
    "EtcdV2Error",
    "EtcdKeyError",
    "EtcdValueError",
    "EtcdKeyNotFound",
    "EtcdCompareFailed",
    "EtcdNotFile",
    "EtcdNoMorePeer",
    "EtcdNotDir",
    "EtcdAlreadyExist",
    "EtcdKeyIsPreserved",
    "EtcdRootReadOnly",
    "EtcdDirNotEmpty",
    "EtcdExistingPeerAddr",
    "EtcdInsufficientPermissions",
    "EtcdValueRequired",
    "EtcdPrevValueRequired",
    "EtcdTTLNaN",
    "EtcdIndexNaN",
    "EtcdValueOrTTLRequired",
    "EtcdTimeoutNaN",
    "EtcdNameRequired",
    "EtcdIndexOrValueRequired",
    "EtcdIndexValueMutex",
    "EtcdInvalidField",
    "EtcdInvalidForm",
    "EtcdRefreshValue",
    "EtcdRefreshTTLRequired",
    "EtcdRaftInternal",
    "EtcdLeaderElectionInProgress",
    "EtcdWatcherCleared",
    "EtcdEventIndexCleared",
    "EtcdStandbyInternal",
    "EtcdInvalidActiveSize",
    "EtcdInvalidRemoveDelay",
    "EtcdClientInternal",
    "EtcdConnectionFailed",
    "EtcdWatchTimedOut",
    "EtcdClusterIdChanged",
    "EtcdLockExpired",
    "EtcdInvalidRequest",
    "EtcdInvalidKey",
    "EtcdV2NotEnabled",
]
