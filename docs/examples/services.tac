# A twistd application on etcd: run it with   twistd -ny services.tac
# (ETCD_ENDPOINT says where etcd is; http://127.0.0.1:2379 by default).
import os

from twisted.application.service import Application
from twisted.logger import Logger

from txetcd.service import EtcdClientService, LeaderService, MirrorService, SessionService

log = Logger(namespace="example")
application = Application("etcd-example")

# One client for all the services below; it is closed once they have stopped.
etcd = EtcdClientService(os.environ.get("ETCD_ENDPOINT", "http://127.0.0.1:2379"), timeout=10)
etcd.setServiceParent(application)


def config_changed(change):
    value = change.new.value.decode() if change.new else "(deleted)"
    log.info("config changed: {key} = {value}", key=change.key.decode(), value=value)


MirrorService(etcd, "examples/config/", config_changed).setServiceParent(application)


async def register(session):
    # a key that lives as long as this process's session (made again with each new session)
    member = f"examples/members/{os.getpid()}"
    await etcd.client.put(member, "up", lease=session.lease_id)


SessionService(etcd, ttl=10, on_session=register).setServiceParent(application)


def elected(election):
    log.info("leading examples/leader (revision {revision})", revision=election.revision)


def deposed(reason):
    log.info("no longer leading: {reason}", reason=reason or "stopping")


LeaderService(etcd, "examples/leader", elected, deposed, ttl=10).setServiceParent(application)
