"""An application run by twistd (``twistd -n myapp``) that follows its configuration in etcd.

Its options and its ``makeService`` live here, in the application's own package; the plugin
file, ``twisted/plugins/myapp_plugin.py``, only points at them.
"""

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.python import usage

from txetcd.service import EtcdClientService, MirrorService


class Options(usage.Options):
    optParameters = [
        ["endpoints", None, "http://127.0.0.1:2379", "etcd client URLs, comma separated"],
        ["prefix", None, "myapp/config/", "the prefix of the configuration keys"],
    ]


class Config:
    """The configuration as the application reads it: ``config.values["colour"]``."""

    log = Logger()

    def __init__(self, prefix):
        self.prefix = prefix
        self.values = {}

    def name(self, key):
        return key[len(self.prefix) :].decode()

    def loaded(self, mirror):
        # the whole prefix, once listed; changes come one by one after this
        self.values = {self.name(key): value.decode() for key, value in mirror.items()}
        self.log.info("config loaded: {values}", values=self.values)

    def changed(self, change):
        # change.resync: found by listing again (after a compaction), not from a watch event
        name = self.name(change.key)
        if change.new is None:
            self.values.pop(name, None)
            self.log.info("config: {name} removed", name=name)
        else:
            self.values[name] = change.new.value.decode()
            self.log.info("config: {name} = {value}", name=name, value=self.values[name])


def makeService(options):
    prefix = options["prefix"].encode()
    config = Config(prefix)
    top = MultiService()
    # the client service first: a MultiService stops its children in reverse order
    etcd = EtcdClientService(options["endpoints"].split(","), timeout=10)
    etcd.setServiceParent(top)
    mirror = MirrorService(etcd, prefix, config.changed)
    mirror.whenReady().addCallback(config.loaded)
    mirror.setServiceParent(top)
    # ... and the application's own services, reading config.values, would go here too
    return top
