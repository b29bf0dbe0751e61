"""Twisted services (``IService``) for etcd: each owns what it makes from ``startService`` to
``stopService``, whose Deferred fires once all of it is closed, with no timer left.

- :class:`EtcdClientService`: a :class:`txetcd.Client`, made on start and closed on stop;
- :class:`MirrorService`: a :class:`~txetcd.concurrency.Mirror` of a prefix, a callback per
  change;
- :class:`SessionService`: a :class:`~txetcd.concurrency.Session` (a lease kept alive), made
  again when lost;
- :class:`LeaderService`: run something only while this process leads an election.

The last three take a ``client``: a :class:`txetcd.Client` (which they never close) or an
:class:`EtcdClientService`. See ``docs/services.rst``. This module only re-exports.
"""

from txetcd._service._client import EtcdClientService
from txetcd._service._leader import LeaderService
from txetcd._service._mirror import MirrorService
from txetcd._service._session import SessionService

__all__ = ["EtcdClientService", "MirrorService", "SessionService", "LeaderService"]
