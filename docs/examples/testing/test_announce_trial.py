"""trial tests of announce.py: the same MemoryEtcd and Clock, and a real etcd for one class.

Run: cd docs/examples/testing && python -m twisted.trial test_announce_trial
(pytest does not collect this module: see conftest.py.)
"""

from announce import announce, wait_for
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks
from twisted.trial import unittest

from txetcd import Client
from txetcd.testing import EtcdServer, MemoryEtcd


class AnnounceInMemory(unittest.TestCase):
    """No reactor turns: MemoryEtcd answers at once and time is its task.Clock."""

    def setUp(self):
        self.etcd = MemoryEtcd()
        self.clock = self.etcd.clock
        self.client = self.etcd.client(timeout=10)

    def tearDown(self):
        self.successResultOf(self.client.close())
        self.etcd.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])  # no timer left behind

    def announce(self, name, address, ttl=10):
        return self.successResultOf(
            Deferred.fromCoroutine(announce(self.client, name, address, ttl))
        )

    def test_found(self):
        session = self.announce(b"web", b"10.0.0.1:80")
        self.assertEqual(self.successResultOf(wait_for(self.client, b"web", 5)), b"10.0.0.1:80")
        self.successResultOf(session.close())

    def test_expires_when_the_process_stalls(self):
        session = self.announce(b"web", b"10.0.0.1:80", ttl=10)
        session.keepalive.stop()
        self.clock.advance(10)
        self.assertFalse(self.successResultOf(self.client.get(b"services/web")))
        self.successResultOf(session.close())  # the lease is gone already: no error

    def test_gives_up_on_the_clock(self):
        d = wait_for(self.client, b"db", timeout=30)
        self.clock.advance(29.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, TimeoutError)


class AnnounceOnRealEtcd(unittest.TestCase):
    """A real etcd of the test's own; the tests run on the reactor."""

    @inlineCallbacks
    def setUp(self):
        server = EtcdServer()
        yield server.start_async(reactor)  # trial waits for a Deferred setUp returns
        self.addCleanup(server.stop)
        self.client = Client(server.endpoint, reactor=reactor, timeout=10)
        self.addCleanup(self.client.close)  # cleanups run last-in first-out

    @inlineCallbacks
    def test_found(self):
        session = yield Deferred.fromCoroutine(announce(self.client, b"web", b"10.0.0.1:80"))
        address = yield wait_for(self.client, b"web", timeout=5)
        self.assertEqual(address, b"10.0.0.1:80")
        yield session.close()
        self.assertFalse((yield self.client.get(b"services/web")))
