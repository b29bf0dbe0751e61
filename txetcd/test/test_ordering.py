"""``Client(ordering=True)``: a read answered from a revision older than one the client has seen
goes to another member within its deadline, or fails with RevisionWentBackwards (scripted
members on a task.Clock, both ways; the gateway transport carries the calls)."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest_twisted
from twisted.internet import defer, task

from txetcd import Client, RevisionWentBackwards
from txetcd._gateway.channel import GatewayChannel
from txetcd._http1.interface import HTTPResponse
from txetcd.test.helpers import reactor

A, B = "http://a:2379", "http://b:2379"


class Members:
    """An HTTP/1.1 client whose "members" answer from the revision set for each."""

    def __init__(self, revisions: Dict[str, int]) -> None:
        self.revisions = revisions
        self.asked: List[str] = []

    def request(self, method: bytes, url: str, **kw: Any) -> "defer.Deferred[HTTPResponse]":
        base = url.split("/v3/")[0]
        self.asked.append(base)
        header = {"revision": str(self.revisions[base]), "member_id": "1"}
        return defer.succeed(HTTPResponse(200, {}, json.dumps({"header": header}).encode()))

    def close(self) -> "defer.Deferred[None]":
        return defer.succeed(None)


def client_of(members: Members, clock: task.Clock, ordering: bool = True) -> Client:
    client = Client([A, B], reactor=reactor(), clock=clock, timeout=2.0, ordering=ordering)
    client._channel = GatewayChannel([A, B], reactor(), members, clock=clock)  # type: ignore[arg-type]
    return client


@pytest_twisted.ensureDeferred
async def test_a_member_behind_is_not_trusted() -> None:
    clock = task.Clock()
    members = Members({A: 10, B: 10})
    client = client_of(members, clock)
    await client.put(b"k", b"v")  # the client has seen revision 10
    members.revisions[A] = 7  # A fell behind (e.g. restarted)
    got: List[Any] = []
    client.get(b"k", serializable=True).addBoth(got.append)
    assert got == [] and members.asked == [A, A]  # refused; sent again after a backoff
    clock.advance(1.0)
    assert got[0].header.revision == 10
    assert members.asked == [A, A, B]
    members.revisions[B] = 12
    await client.get(b"k")  # newer: fine, and remembered
    members.revisions[A] = members.revisions[B] = 11
    got = []
    client.get(b"k", serializable=True).addBoth(got.append)
    for _ in range(30):
        clock.advance(0.1)  # refused; sent again and again until the deadline is near
    e = got[0].value
    assert isinstance(e, RevisionWentBackwards)
    assert (e.revision, e.seen) == (11, 12)
    assert clock.getDelayedCalls() == []
    await client.close()


@pytest_twisted.ensureDeferred
async def test_every_member_behind_fails_typed_within_the_deadline() -> None:
    clock = task.Clock()
    members = Members({A: 10, B: 10})
    client = client_of(members, clock)
    await client.put(b"k", b"v")
    members.revisions[A] = members.revisions[B] = 9
    got: List[Any] = []
    client.get(b"k", serializable=True).addBoth(got.append)
    for _ in range(20):
        clock.advance(0.1)
    assert len(got) == 1  # within the 2 s deadline
    assert isinstance(got[0].value, RevisionWentBackwards)
    assert set(members.asked[1:]) == {A, B} and len(members.asked) > 3
    assert clock.getDelayedCalls() == []
    await client.close()


@pytest_twisted.ensureDeferred
async def test_without_ordering_an_older_answer_is_taken() -> None:
    clock = task.Clock()
    members = Members({A: 10, B: 10})
    client = client_of(members, clock, ordering=False)
    await client.put(b"k", b"v")
    members.revisions[A] = 7
    assert (await client.get(b"k", serializable=True)).header.revision == 7
    await client.close()
