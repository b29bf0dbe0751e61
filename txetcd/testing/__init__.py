"""Public test support for txetcd users: real etcd processes and pytest fixtures.

Start a throwaway etcd with :class:`EtcdServer` (the binary from :func:`etcd_binary`, or an
etcd 3.4 from :func:`etcd34_binary` when one is at hand; a failed start raises
:class:`EtcdStartError`). ``EtcdServer(tls=True, separate_http=True, binary=etcd35_binary())``
runs etcd as production should: gRPC alone on its client port, HTTP on a port of its own (it
needs a newer etcd 3.5, which :func:`etcd35_binary` finds). Put a :class:`TCPProxy` between a
client and etcd to reset, blackhole, refuse or cut connections; with pytest, add
``pytest_plugins = ["txetcd.testing.pytest_plugin"]`` to your ``conftest.py`` for the
``etcd_server`` fixture (and ``etcd_v2_server``, run against etcd 3.5 and 3.4).

For tests that need no real etcd at all, :class:`MemoryEtcd` is an in-memory one (no sockets,
no processes, time on a ``task.Clock``) that runs the real :class:`txetcd.Client` code:
``client = MemoryEtcd().client()``; the ``memory_etcd`` and ``memory_client`` fixtures give
one to pytest tests.
"""

from txetcd.testing._memory import MemoryEtcd
from txetcd.testing._proxy import TCPProxy
from txetcd.testing._server import (
    EtcdCluster,
    EtcdNotFound,
    EtcdServer,
    EtcdStartError,
    etcd34_binary,
    etcd35_binary,
    etcd_binary,
    free_port,
)

__all__ = [
    "EtcdCluster",
    "EtcdNotFound",
    "EtcdServer",
    "EtcdStartError",
    "MemoryEtcd",
    "TCPProxy",
    "etcd_binary",
    "etcd34_binary",
    "etcd35_binary",
    "free_port",
]
