"""Public test support for txetcd users: real etcd processes and pytest fixtures.

Start a throwaway etcd with :class:`EtcdServer`; with pytest, add
``pytest_plugins = ["txetcd.testing.pytest_plugin"]`` to your ``conftest.py`` for the
``etcd_server`` fixture.
"""

from txetcd.testing._server import EtcdNotFound, EtcdServer, etcd_binary, free_port

__all__ = ["EtcdNotFound", "EtcdServer", "etcd_binary", "free_port"]
