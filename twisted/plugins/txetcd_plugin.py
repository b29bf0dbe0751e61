"""twistd's ``etcd-mirror`` plugin; its options and service live in ``txetcd._cli._tap``.

No ``__init__.py`` beside this file: ``twisted/plugins`` is Twisted's own package, which finds
plugin modules in every ``twisted/plugins`` directory on ``sys.path``.
"""

from twisted.application.service import ServiceMaker

etcdMirror = ServiceMaker(
    "txetcd etcd-mirror",
    "txetcd._cli._tap",
    "Keep a directory in step with an etcd key prefix (one file per key)",
    "etcd-mirror",
)
