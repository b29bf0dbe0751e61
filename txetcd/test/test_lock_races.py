"""The lock queue's waits under every order in which answers and watch events may arrive.

Each client here is a real :class:`txetcd.Client` on :class:`~txetcd.testing.MemoryEtcd`, seen
through :class:`Slow`: etcd applies each request when it is sent, but its answer and every
watch batch are held until the test delivers them, answers in any order and each watch's
batches in their own order (what separate HTTP/2 streams of one connection may do). The
directed tests below pin the races of the wait (a delete that beats the read's answer, our own
key deleted while we wait, a key name used again, a read cut by its limit); the hypothesis test
tries random schedules of acquires, releases, cancels, deletes by someone else and deliveries,
and checks at every acquisition that

- no live key is older than the new holder's (nobody older holds or waits: fair and exclusive);
- if the holder's key is already gone, it was deleted *after* the revision of the answer or
  event that made the acquisition fire (a waiter never takes a lock with a key it could have
  known was gone: etcd #11456);

and at the end, with everything delivered and released, that no key and no watch is left.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from txetcd import LockLost, Session, SessionExpired
from txetcd.concurrency import Lock, _queue
from txetcd.test.helpers import module_timers, outcome
from txetcd.testing import MemoryEtcd

PREFIX = b"q/"


class Net:
    """Answers and watch batches held back, delivered when the test says."""

    def __init__(self) -> None:
        self.answers: List[Tuple[Deferred[Any], Any]] = []
        self.streams: List[Deque[Tuple[int, Callable[[], None]]]] = []
        #: the revision of what is being delivered (an answer's header or a batch)
        self.now: Optional[int] = None

    def pending(self) -> int:
        return len(self.answers) + sum(1 for s in self.streams if s)

    def deliver(self, index: int) -> None:
        """Deliver the ``index``-th of: every held answer, then each watch's next batch."""
        if index < len(self.answers):
            d, result = self.answers.pop(index)
            if isinstance(result, Failure):
                self.now = None
                d.errback(result)
            else:
                self.now = result.header.revision
                d.callback(result)
        else:
            ready = [s for s in self.streams if s]
            revision, go = ready[index - len(self.answers)].popleft()
            self.now = revision
            go()
        self.now = None

    def drain(self) -> None:
        while self.pending():
            self.deliver(0)


class Slow:
    """``client`` with its txn/get answers and watch batches going through ``net``."""

    def __init__(self, client: Any, net: Net) -> None:
        self._client = client
        self._net = net
        self.watches: List[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _held(self, d: "Deferred[Any]") -> "Deferred[Any]":
        out: Deferred[Any] = Deferred()
        d.addBoth(lambda result: self._net.answers.append((out, result)))
        return out

    def txn(self, *args: Any, **kwargs: Any) -> "Deferred[Any]":
        return self._held(self._client.txn(*args, **kwargs))

    def get(self, *args: Any, **kwargs: Any) -> "Deferred[Any]":
        return self._held(self._client.get(*args, **kwargs))

    def watch(self, key: Any, *, callback: Callable[[Any], Any], **options: Any) -> Any:
        stream: Deque[Tuple[int, Callable[[], None]]] = deque()
        self._net.streams.append(stream)
        watch: List[Any] = []

        def held(batch: Any) -> None:
            def go() -> None:
                if not watch[0].ended:
                    callback(batch)

            stream.append((batch.revision, go))

        watch.append(self._client.watch(key, callback=held, **options))
        self.watches.append(watch[0])
        return watch[0]

    @property
    def open_watches(self) -> int:
        return sum(not w.ended for w in self.watches)


class World:
    """One MemoryEtcd, ``clients`` slow clients, a session and a Lock per contender, and an
    admin client (not slow) that sees every event."""

    def __init__(self, contenders: int, clients: int, watch_after: float = 0.05) -> None:
        self.etcd = MemoryEtcd()
        self.net = Net()
        self.admin = self.etcd.client()
        self.slow = [Slow(self.etcd.client(), self.net) for _ in range(clients)]
        self.sessions = [
            Session(self.slow[i % clients], ttl=60)  # type: ignore[arg-type]
            for i in range(contenders)
        ]
        self.locks = [Lock(s, "q", watch_after=watch_after) for s in self.sessions]
        self.acquiring: Dict[int, Deferred[Any]] = {}
        self.holding: Dict[int, Lock] = {}
        self.failed: List[str] = []
        self.outcomes: List[Tuple[int, str]] = []
        self.deleted: Dict[Tuple[bytes, int], int] = {}  # (key, create rev) -> delete rev
        self._created: Dict[bytes, int] = {}
        self.admin.watch(PREFIX, prefix=True, callback=self._history)

    def _history(self, batch: Any) -> None:
        for event in batch.events:
            key = event.kv.key
            if event.type.name == "PUT":
                self._created[key] = event.kv.create_revision
            else:
                self.deleted[(key, self._created.pop(key))] = batch.revision

    def live(self) -> Dict[bytes, int]:
        return {kv.key: kv.create_revision for kv in outcome(self.admin.get_prefix(PREFIX))}

    def acquire(self, i: int) -> "Deferred[Any]":
        lock = self.locks[i]
        d = lock.acquire()
        self.acquiring[i] = d

        def got(_: Any) -> None:
            self.acquiring.pop(i, None)
            self.holding[i] = lock
            self.outcomes.append((i, "acquired"))
            self._check(i, lock)

        def failed(f: Failure) -> None:
            self.acquiring.pop(i, None)
            self.outcomes.append((i, type(f.value).__name__))
            if not f.check(CancelledError, SessionExpired):
                self.failed.append(f"contender {i}: acquire failed with {f.value!r}")

        d.addCallbacks(got, failed)
        return d

    def _check(self, i: int, lock: Lock) -> None:
        assert lock.key is not None and lock.revision is not None
        older = {k: r for k, r in self.live().items() if r < lock.revision}
        if older:
            self.failed.append(f"contender {i} acquired at {lock.revision} with older {older}")
        gone = self.deleted.get((lock.key, lock.revision))
        now = self.net.now
        if gone is not None and (now is None or gone <= now):
            self.failed.append(
                f"contender {i} acquired on news of revision {now} with its key deleted at {gone}"
            )

    def release(self, i: int) -> None:
        lock = self.holding.pop(i)
        lock.release().addErrback(lambda f: f.trap(LockLost))

    def cancel(self, i: int) -> None:
        self.acquiring[i].cancel()

    def settle(self) -> None:
        """Deliver everything and release every holder until nobody waits."""
        for _ in range(100):
            self.net.drain()
            for i in list(self.holding):
                self.release(i)
            self.net.drain()
            if not self.acquiring and not self.holding:
                return
        raise AssertionError(f"still waiting: {sorted(self.acquiring)}")

    def close(self) -> None:
        assert self.failed == []
        assert self.live() == {}, "keys left behind"
        assert [s.open_watches for s in self.slow] == [0] * len(self.slow), "watches left"
        for session in self.sessions:
            session.close()
        self.net.drain()
        for client in [self.admin, *self.slow]:
            client.close()
        self.etcd.close()


# -- directed races ----------------------------------------------------------------------------


def test_an_old_delete_of_a_key_name_used_again_does_not_count() -> None:
    # A lets go and queues again under the same key name; B, queuing after that, must wait for
    # A's new key even when the event of A's old delete reaches it only after B's create
    world = World(contenders=3, clients=1)
    a, b, c = 0, 1, 2
    world.acquire(a)
    world.net.drain()
    world.acquire(c)
    world.net.drain()  # C waits behind A: the client's feed runs
    world.release(a)  # A's delete (held: its answer and its event)
    world.acquire(a)  # A queues again, behind C, with the same key name
    world.acquire(b)  # B queues behind both
    events = world.net.pending() - len(world.net.answers)
    assert events == 1  # the old delete's event is held...
    while world.net.answers:  # ...while every answer arrives (B's create among them)
        world.net.deliver(0)
    world.net.drain()  # now the old delete: C's turn, not B's
    assert list(world.holding) == [c]
    world.release(c)
    world.net.drain()
    assert list(world.holding) == [a]  # A's new key is older than B's
    world.settle()
    assert [i for i, what in world.outcomes if what == "acquired"] == [a, c, a, b]
    world.close()


def test_the_event_of_a_delete_ahead_before_the_read_answers() -> None:
    # B is the first waiter of its client: the feed is started after B's create, so B reads
    # the keys ahead again; A lets go while that read is in flight, and the delete's event
    # arrives before the read's answer: recorded, then applied once the read's revision is known
    world = World(contenders=2, clients=2)
    world.acquire(0)
    world.net.drain()
    waiting = world.acquire(1)
    world.net.deliver(0)  # B's create: a key ahead; the feed is created, the read is sent
    assert len(world.net.answers) == 1 and world.net.pending() == 1
    world.release(0)
    assert world.net.pending() == 3  # the read's and the delete's answers, the delete's event
    world.net.deliver(2)  # the event first
    assert not waiting.called
    world.net.drain()
    assert waiting.called and 1 in world.holding
    world.settle()
    world.close()


@pytest.mark.parametrize("together", [False, True])
def test_our_key_deleted_while_waiting_is_never_taken_for_the_lock(together: bool) -> None:
    # etcd #11456: the waiter's key goes (its session expired) before the key ahead does
    world = World(contenders=3, clients=2)
    world.acquire(0)
    world.net.drain()
    waiting = world.acquire(1)
    world.net.drain()
    assert not waiting.called
    holder, waiter = world.locks[0], world.locks[1]
    assert holder.key is not None and waiter.key is not None
    if together:  # one revision deletes both: the waiter must not count it as its turn
        outcome(world.admin.delete_prefix(PREFIX))
    else:
        outcome(world.admin.delete(waiter.key))
        world.release(0)
    world.net.drain()
    assert waiting.called and world.outcomes[-1] == (1, "SessionExpired")
    world.holding.clear()  # the holder's key is gone too (together) or released
    world.settle()
    world.close()


def test_a_read_cut_by_its_limit_reads_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_queue, "AHEAD_LIMIT", 2)
    _queue._create_ops.cache_clear()
    try:
        world = World(contenders=6, clients=2)
        for i in range(6):
            world.acquire(i)
            world.net.drain()
        assert list(world.holding) == [0]
        for _ in range(6):
            (i,) = world.holding
            world.release(i)
            world.net.drain()
        order = [i for i, what in world.outcomes if what == "acquired"]
        assert order == [0, 1, 2, 3, 4, 5]
        world.settle()
        world.close()
    finally:
        _queue._create_ops.cache_clear()


def test_one_watch_per_client_for_its_waiters_and_none_left() -> None:
    world = World(contenders=4, clients=1)
    for i in range(4):
        world.acquire(i)
        world.net.drain()
    (client,) = world.slow
    assert client.open_watches == 1  # the feed: no watch per waiter, none for the holder
    for _ in range(4):
        (i,) = world.holding
        world.release(i)
        world.net.drain()
    assert [i for i, what in world.outcomes if what == "acquired"] == [0, 1, 2, 3]
    assert client.open_watches == 0
    world.close()


# -- random schedules --------------------------------------------------------------------------

ACTIONS = ["deliver"] * 6 + ["acquire"] * 2 + ["release", "cancel", "delete", "tick"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_schedules_keep_the_lock_exclusive_and_fair(data: st.DataObject) -> None:
    contenders = data.draw(st.integers(2, 4), label="contenders")
    clients = data.draw(st.integers(1, contenders), label="clients")
    watch_after = data.draw(st.sampled_from([0.0, 0.05]), label="watch_after")
    world = World(contenders, clients, watch_after)
    try:
        _play(data, world, contenders)
    finally:  # also when hypothesis stops an example early: let every wait end
        world.settle()
    world.close()


def _play(data: st.DataObject, world: World, contenders: int) -> None:
    for _ in range(data.draw(st.integers(10, 80), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS))
        idle = [i for i in range(contenders) if i not in world.acquiring and i not in world.holding]
        if action == "deliver" and world.net.pending():
            world.net.deliver(data.draw(st.integers(0, world.net.pending() - 1)))
        elif action == "acquire" and idle:
            world.acquire(data.draw(st.sampled_from(idle)))
        elif action == "release" and world.holding:
            world.release(data.draw(st.sampled_from(sorted(world.holding))))
        elif action == "cancel" and world.acquiring:
            world.cancel(data.draw(st.sampled_from(sorted(world.acquiring))))
        elif action == "delete":
            live = sorted(world.live())
            if live:
                outcome(world.admin.delete(data.draw(st.sampled_from(live))))
        elif action == "tick":
            world.etcd.clock.advance(0.03)
        assert world.failed == []


# -- the owner key's watch ---------------------------------------------------------------------


@pytest.mark.parametrize("watch_after", [0.0, 0.05])
def test_a_lock_taken_at_once_watches_its_key_after_watch_after(watch_after: float) -> None:
    world = World(contenders=1, clients=1, watch_after=watch_after)
    (client,) = world.slow
    lock = world.locks[0]
    world.acquire(0)
    world.net.drain()
    lost: List[Any] = []
    lock.lost.addCallback(lost.append)
    assert client.open_watches == (1 if watch_after == 0 else 0)
    assert lock.key is not None
    outcome(world.admin.delete(lock.key))  # someone else deletes the holder's key
    world.net.drain()
    if watch_after:
        assert lost == [] and lock.locked  # not watched yet
        world.etcd.clock.advance(watch_after)
        assert client.open_watches == 1  # from the revision after the key's creation
        world.net.drain()
    assert len(lost) == 1 and isinstance(lost[0], LockLost) and not lock.locked
    assert "deleted" in str(lost[0])
    world.holding.clear()
    released = lock.release()
    world.net.drain()
    assert isinstance(outcome(released), LockLost)  # fenced: nothing of ours to delete
    world.close()


def test_a_short_hold_costs_no_watch_and_leaves_no_timer() -> None:
    world = World(contenders=1, clients=1)
    (client,) = world.slow
    for _ in range(3):
        world.acquire(0)
        world.net.drain()
        world.etcd.clock.advance(0.04)
        world.release(0)
        world.net.drain()
    assert client.watches == []
    assert module_timers(world.etcd.clock, "txetcd.concurrency._common") == []
    world.close()
