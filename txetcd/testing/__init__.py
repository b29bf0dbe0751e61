"""Public test support for txetcd users: real etcd processes and pytest fixtures.

Start a throwaway etcd with :class:`EtcdServer`; put a :class:`TCPProxy` between a client and
etcd to reset, blackhole, refuse or cut connections; with pytest, add
``pytest_plugins = ["txetcd.testing.pytest_plugin"]`` to your ``conftest.py`` for the
``etcd_server`` fixture.
"""

from txetcd.testing._proxy import TCPProxy
from txetcd.testing._server import (
    EtcdCluster,
    EtcdNotFound,
    EtcdServer,
    etcd_binary,
    free_port,
)

__all__ = ["EtcdCluster", "EtcdNotFound", "EtcdServer", "TCPProxy", "etcd_binary", "free_port"]
