"""One member of a real etcd cluster at a time, for tests: taken down and brought back by index,
the leader found, learners added (:class:`~txetcd.testing.EtcdCluster` has these methods)."""

from __future__ import annotations

import http.client
import json
import signal
import tempfile
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

if TYPE_CHECKING:
    from txetcd.testing._server import EtcdServer

__all__ = ["ClusterControl"]


class ClusterControl:
    """What :class:`~txetcd.testing.EtcdCluster` does to its members one at a time (a mixin:
    it needs ``members``, the :class:`~txetcd.testing.EtcdServer` of each, by index).

    :meth:`kill`, :meth:`stop_member`, :meth:`start_member` and :meth:`restart_member` (and the
    ``*_async(..., reactor)`` forms, which do not block a running reactor) take a member down
    and bring it back with its data; :meth:`leader` tells which one leads; :meth:`add_learner`
    (or :meth:`new_member`, the client's ``member_add`` and :meth:`start_member`) grows the
    cluster by one learner. The status and membership calls these make are blocking HTTP calls
    to the members' JSON gateway (plain-HTTP clusters).
    """

    if TYPE_CHECKING:
        members: List[EtcdServer]

    def peer_url(self, index: int) -> str:
        """Member ``index``'s peer URL (what ``member_add`` and ``member_update`` take)."""
        return f"http://127.0.0.1:{self.members[index].peer_port}"

    # -- one member --------------------------------------------------------------------------------
    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Kill member ``index`` (SIGKILL by default: a crash) and wait for it; its data stays."""
        self.members[index].kill(sig)

    def stop_member(self, index: int) -> None:
        """Stop member ``index`` cleanly (SIGTERM: it hands over leadership first if it leads)
        and wait for it; its data stays for :meth:`start_member`."""
        self.members[index].kill(signal.SIGTERM)

    def start_member(self, index: int) -> EtcdServer:
        """Start member ``index`` (blocking until healthy): back with its data after
        :meth:`kill`, or for the first time after :meth:`new_member`."""
        self._prepare_start(index)
        return self.members[index].start()

    def start_member_async(self, index: int, reactor: Any) -> "Deferred[EtcdServer]":
        """:meth:`start_member` without blocking ``reactor``."""
        self._prepare_start(index)
        return self.members[index].start_async(reactor)

    def restart_member(self, index: int, sig: int = signal.SIGKILL) -> EtcdServer:
        """:meth:`kill` member ``index`` with ``sig``, then :meth:`start_member` it."""
        self.kill(index, sig)
        return self.start_member(index)

    def restart_member_async(
        self, index: int, reactor: Any, sig: int = signal.SIGKILL
    ) -> "Deferred[EtcdServer]":
        """:meth:`restart_member` without blocking ``reactor``."""
        self.kill(index, sig)
        return self.start_member_async(index, reactor)

    def _prepare_start(self, index: int) -> None:
        member = self.members[index]
        if member.initial_cluster is None:  # a new member's first start: join as it stands now
            member.initial_cluster = self._joining_cluster(index)

    # -- status ------------------------------------------------------------------------------------
    def status(self, index: int, timeout: float = 2.0) -> Dict[str, Any]:
        """Member ``index``'s status as the JSON gateway gives it (blocking): ``header``,
        ``leader``, ``isLearner``, ... (64-bit numbers as strings, missing when 0 or false)."""
        return _post(self.members[index].gateway_port, "/v3/maintenance/status", {}, timeout)

    def member_id(self, index: int) -> int:
        """Member ``index``'s member ID (it must be running)."""
        return int(self.status(index)["header"]["member_id"])

    def leader(self, timeout: float = 10.0) -> int:
        """The index of the leader (blocking), once the running members agree there is one that
        runs: polled every 50 ms for at most ``timeout`` seconds (then ``RuntimeError``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._leader_now()
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no leader among the running members within {timeout} s")
            time.sleep(0.05)

    def leader_async(self, reactor: Any, timeout: float = 10.0) -> "Deferred[int]":
        """:meth:`leader` polled on ``reactor`` (each poll is a quick blocking loopback call)."""
        return Deferred.fromCoroutine(self._leader_async(reactor, timeout))

    async def _leader_async(self, reactor: Any, timeout: float) -> int:
        deadline = reactor.seconds() + timeout
        while True:
            found = self._leader_now()
            if found is not None:
                return found
            if reactor.seconds() >= deadline:
                raise RuntimeError(f"no leader among the running members within {timeout} s")
            await deferLater(reactor, 0.05, lambda: None)

    def _leader_now(self) -> Optional[int]:
        ids: Dict[int, int] = {}
        leaders = set()
        for index, member in enumerate(self.members):
            if not member.running:
                continue
            try:
                status = self.status(index, timeout=1.0)
            except (OSError, ValueError, RuntimeError, http.client.HTTPException):
                continue
            ids[int(status["header"]["member_id"])] = index
            leaders.add(int(status.get("leader", 0)))
        leaders.discard(0)
        if len(leaders) == 1:
            return ids.get(leaders.pop())
        return None

    # -- growing the cluster -----------------------------------------------------------------------
    def new_member(self) -> int:
        """Make (not start) one more member; return its index.

        It gets ports and a data directory, and joins with ``--initial-cluster-state
        existing`` when :meth:`start_member` starts it, after ``client.member_add(
        [cluster.peer_url(index)], is_learner=True)`` told the cluster about it.
        """
        from txetcd.testing._server import EtcdServer

        first = self.members[0]
        name = f"m{len(self.members)}"
        extra_args = [*first.extra_args, "--initial-cluster-state", "existing"]
        member = EtcdServer(
            extra_args, binary=first.binary, startup_timeout=first.startup_timeout, name=name
        )
        member.data_dir = tempfile.mkdtemp(prefix=f"txetcd-{name}-")
        member._pick_ports()
        self.members.append(member)
        return len(self.members) - 1

    def add_learner(self) -> int:
        """Add a learner (blocking): :meth:`new_member`, ``member/add`` as a learner through a
        running member (again while etcd answers ``unhealthy cluster``, as it does until every
        voting member has been connected for 5 s), :meth:`start_member`; return its index."""
        index = self.new_member()
        deadline = time.monotonic() + self.members[0].startup_timeout
        try:
            while not self._learner_added(index, time.monotonic() >= deadline):
                time.sleep(0.1)
        except BaseException:
            self.members.pop().stop()
            raise
        self.start_member(index)
        return index

    def add_learner_async(self, reactor: Any) -> "Deferred[int]":
        """:meth:`add_learner` without blocking ``reactor`` (each ``member/add`` is a quick
        blocking loopback call)."""
        return Deferred.fromCoroutine(self._add_learner_async(reactor))

    async def _add_learner_async(self, reactor: Any) -> int:
        index = self.new_member()
        deadline = reactor.seconds() + self.members[0].startup_timeout
        try:
            while not self._learner_added(index, reactor.seconds() >= deadline):
                await deferLater(reactor, 0.1, lambda: None)
        except BaseException:
            self.members.pop().stop()
            raise
        await self.start_member_async(index, reactor)
        return index

    def _learner_added(self, index: int, last: bool) -> bool:
        """Ask for member ``index`` as a learner; False if etcd said "not now" (unless
        ``last``: then that is raised)."""
        body = {"peerURLs": [self.peer_url(index)], "isLearner": True}
        try:
            _post(self._running_port(), "/v3/cluster/member/add", body, 10.0)
        except RuntimeError as e:
            # etcd refuses changes until every voter has been connected for 5 s
            if "unhealthy cluster" not in str(e) or last:
                raise
            return False
        return True

    def _running_port(self) -> int:
        for member in self.members:
            if member.running:
                return member.gateway_port
        raise RuntimeError("no member of the cluster is running")

    def _joining_cluster(self, index: int) -> str:
        """``--initial-cluster`` for member ``index`` joining: every member the cluster has now
        (names as they are known, the new one's own), by their peer URLs."""
        answer = _post(self._running_port(), "/v3/cluster/member/list", {}, 10.0)
        own = self.peer_url(index)
        entries: List[str] = []
        for m in answer.get("members", []):
            urls = m.get("peerURLs", [])
            name = self.members[index].name if own in urls else m.get("name") or f"x{m['ID']}"
            entries.extend(f"{name}={url}" for url in urls)
        return ",".join(entries)


def _post(port: int, path: str, body: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """POST JSON to the gateway of the etcd on ``127.0.0.1:port`` (blocking); the JSON answer.

    An error answer raises ``RuntimeError`` with etcd's message."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    answer: Dict[str, Any] = json.loads(data)
    if response.status != 200:
        raise RuntimeError(f"{path} on port {port}: {answer.get('message', data)!r}")
    return answer
