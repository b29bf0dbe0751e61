"""Leader election: campaign, observe, proclaim, a leader that dies, a leader that resigns.

    python docs/examples/tutorial_election.py [http://127.0.0.1:2379]

Three candidates, a, b and c, each with its own client and session, stand for one election.
The leader's writes are fenced on its leadership, so a leader that lost its lead (and has not
noticed yet) cannot write.

Works under the key prefix ``tutorial/election/`` and deletes it again at the end.
"""

import sys

from twisted.internet import defer, task

from txetcd import Client, Put, Session
from txetcd.concurrency import Election

PREFIX = b"tutorial/election/"
ELECTION = PREFIX + b"scheduler"
ACTIVE = PREFIX + b"active-config"


async def publish(client, election, config):
    """The leader's work: a write that lands only while ``election`` leads."""
    result = await client.txn(compare=[election.is_leader()], success=[Put(ACTIVE, config)])
    return result.succeeded


async def main(reactor, endpoint):
    names = ("a", "b", "c")
    clients = {n: Client(endpoint, reactor=reactor, timeout=10) for n in names}
    try:
        await clients["a"].delete_prefix(PREFIX)
        sessions = {n: Session(clients[n], ttl=10) for n in names}
        for session in sessions.values():
            await session.ready
        try:
            await run(clients, sessions)
        finally:
            for session in sessions.values():
                await session.close()
        await clients["a"].delete_prefix(PREFIX)
    finally:
        for client in clients.values():
            await client.close()
    print("done")


async def run(clients, sessions):
    ea, eb, ec = (Election(sessions[n], ELECTION) for n in ("a", "b", "c"))

    # -- campaign: the first candidate leads at once, the others queue behind it
    await ea.campaign(b"a")
    b_turn = eb.campaign(b"b")
    c_turn = ec.campaign(b"c")
    print("a leads:", ea.leading, "| b and c wait:", not b_turn.called and not c_turn.called)
    print("leader():", (await ec.leader()).value.decode())

    # -- observe: every change of leader and every proclaim, once and in order
    leaders = ec.observe()
    print("observed:", (await anext(leaders)).value.decode())

    print("a publishes:", await publish(clients["a"], ea, b"config from a"))
    await ea.proclaim(b"a, config v2")  # a new value, no new election
    print("observed:", (await anext(leaders)).value.decode())

    # -- a dies: its lease runs out and leadership moves on. Here we stop a's keepalive and
    # revoke its lease from b's side, which is what etcd does once the TTL has passed.
    a_lost = ea.lost
    sessions["a"].keepalive.stop()
    await clients["b"].revoke(sessions["a"].lease_id)
    await b_turn
    print("b leads:", eb.leading)
    print("observed:", (await anext(leaders)).value.decode())
    print("a is told:", type(await a_lost).__name__, "| a leads:", ea.leading)
    print("a's late publish:", await publish(clients["a"], ea, b"stale config from a"))
    print("b publishes:", await publish(clients["b"], eb, b"config from b"))
    active = await clients["c"].get(ACTIVE)
    print("active config:", active.value.decode())

    # -- b steps down: c, next in line, leads
    await eb.resign()
    await c_turn
    print("observed:", (await anext(leaders)).value.decode())
    leaders.cancel()
    await leaders.done
    await ec.resign()


if __name__ == "__main__":
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379"
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, endpoint)))
