"""txetcd.v2.Client against real etcd (3.5.1, and Debian's 3.4.23 when it is there), both
HTTP/1.1 implementations: every method and option, hostile keys, errors, failover, the retry
rule, timeouts, basic auth, SRV discovery and the cluster calls."""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import reactor

from txetcd import OutcomeUnknown, Timeout, WriteTimeout, v2
from txetcd.test.helpers import (
    HOSTILE_KEYS,
    HOSTILE_VALUES,
    FakeResolver,
    MakeV2Client,
    ix,
    sleep,
)
from txetcd.testing import EtcdCluster, EtcdServer, TCPProxy, free_port
from txetcd.v2 import (
    Client,
    ComparedThenDeleted,
    ComparedThenSwapped,
    Created,
    Deleted,
    EtcdAlreadyExist,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdDirNotEmpty,
    EtcdInsufficientPermissions,
    EtcdInvalidKey,
    EtcdInvalidRequest,
    EtcdKeyNotFound,
    EtcdNotFile,
    EtcdResult,
    EtcdRootReadOnly,
    EtcdWatchTimedOut,
    Got,
    Set,
    Updated,
)
from txetcd.v2._srv import srv_name


@pytest.fixture(params=["pool", "treq"])
def http_kind(request: Any) -> str:
    return str(request.param)


@pytest.fixture
def client(make_v2_client: MakeV2Client, http_kind: str) -> Client:
    """A client of the v2 server on each HTTP/1.1 implementation in turn."""
    return make_v2_client(http_kind=http_kind)


# -- reads and writes ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_write_read_typed_results(client: Client, prefix: str) -> None:
    created = await client.write(f"{prefix}/k", "v1")
    assert isinstance(created, Created) and created.new_key and created.status == 201
    assert created.key == f"{prefix}/k" and created.value == "v1"
    assert created.etcd_index == created.modified_index == created.created_index
    assert created.raft_index is not None and created.raft_term is not None
    replaced = await client.set(f"{prefix}/k", "v2")
    assert isinstance(replaced, Set) and not replaced.new_key
    assert replaced.prev_node is not None and replaced.prev_node.value == "v1"
    got = await client.read(f"{prefix}/k")
    assert isinstance(got, Got) and got.value == "v2"
    assert got.modified_index == replaced.modified_index
    assert (await client.get(f"{prefix}/k")).value == "v2"
    assert await client.exists(f"{prefix}/k") is True
    assert await client.exists(f"{prefix}/nope") is False
    with pytest.raises(EtcdKeyNotFound) as info:
        await client.read(f"{prefix}/nope")
    assert isinstance(info.value, KeyError) and info.value.error_code == 100


@pytest_twisted.ensureDeferred
async def test_directories_recursive_sorted_leaves(client: Client, prefix: str) -> None:
    for key in ("b", "a", "sub/c", "sub/deeper/d"):
        await client.write(f"{prefix}/dir/{key}", key.upper())
    flat = await client.read(f"{prefix}/dir", sorted=True)
    assert flat.dir and [n.key for n in flat.nodes] == [
        f"{prefix}/dir/{k}" for k in ("a", "b", "sub")
    ]
    assert flat.nodes[2].dir and flat.nodes[2].nodes == ()
    deep = await client.read(f"{prefix}/dir", recursive=True, sorted=True)
    assert [leaf.value for leaf in deep.leaves] == ["A", "B", "SUB/C", "SUB/DEEPER/D"]
    assert [leaf.key for leaf in deep.children] == [leaf.key for leaf in deep.leaves]
    quorum = await client.read(f"{prefix}/dir/a", quorum=True)
    assert quorum.value == "A"
    made = await client.mkdir(f"{prefix}/empty")
    assert isinstance(made, Created) and made.dir
    with pytest.raises(EtcdAlreadyExist):
        await client.mkdir(f"{prefix}/empty")
    with pytest.raises(EtcdNotFile):
        await client.delete(f"{prefix}/dir")
    with pytest.raises(EtcdDirNotEmpty):
        await client.rmdir(f"{prefix}/dir")
    assert (await client.rmdir(f"{prefix}/empty")).dir
    gone = await client.rmdir(f"{prefix}/dir", recursive=True)
    assert isinstance(gone, Deleted) and gone.dir
    assert not await client.exists(f"{prefix}/dir/a")


@pytest_twisted.ensureDeferred
async def test_ttl_refresh_and_update(client: Client, prefix: str) -> None:
    key = f"{prefix}/ttl"
    first = await client.write(key, "v", ttl=30)
    assert first.ttl is not None and 28 <= first.ttl <= 30 and first.expiration is not None
    refreshed = await client.refresh(key, 100)
    assert isinstance(refreshed, Updated) and refreshed.value == "v"
    assert refreshed.ttl is not None and refreshed.ttl > 90
    assert refreshed.created_index == first.created_index  # prevExist=true keeps it
    with pytest.raises(EtcdKeyNotFound):
        await client.refresh(f"{prefix}/missing", 10)
    plain = await client.set(key, "w")  # a set without ttl drops the TTL
    assert plain.ttl is None and plain.expiration is None
    # update(): write back what was read, only if unchanged since
    read = await client.read(key)
    read.value = "changed"
    read.ttl = 50
    updated = await client.update(read)
    assert isinstance(updated, ComparedThenSwapped) and updated.value == "changed"
    assert updated.ttl is not None and updated.ttl > 40
    read.value = "stale"
    with pytest.raises(EtcdCompareFailed) as info:
        await client.update(read)  # modified_index moved on
    assert isinstance(info.value, ValueError)
    assert (await client.get(key)).value == "changed"


@pytest_twisted.ensureDeferred
async def test_conditional_writes_and_deletes(client: Client, prefix: str) -> None:
    key = f"{prefix}/cas"
    with pytest.raises(EtcdKeyNotFound):
        await client.write(key, "x", prevExist=True)
    made = await client.write(key, "a", prev_exist=False)
    assert isinstance(made, Created) and made.action == "create"
    with pytest.raises(EtcdAlreadyExist):
        await client.write(key, "x", prevExist=False)
    upd = await client.write(key, "b", prevExist=True)
    assert isinstance(upd, Updated)
    swapped = await client.test_and_set(key, "c", "b")
    assert isinstance(swapped, ComparedThenSwapped) and swapped.prev_node is not None
    with pytest.raises(EtcdCompareFailed) as info:
        await client.test_and_set(key, "z", "wrong")
    assert info.value.cause == "[wrong != c]"
    by_index = await client.compare_and_swap(key, "d", prev_index=swapped.modified_index)
    assert by_index.value == "d"
    with pytest.raises(EtcdCompareFailed):
        await client.compare_and_swap(key, "e", prevIndex=swapped.modified_index)
    with pytest.raises(EtcdInvalidRequest):
        client.compare_and_swap(key, "e")  # no condition: refused before sending
    with pytest.raises(EtcdCompareFailed):
        await client.compare_and_delete(key, prev_value="nope")
    with pytest.raises(EtcdCompareFailed):
        await client.delete(key, prevIndex=1)
    deleted = await client.compare_and_delete(key, prev_value="d")
    assert isinstance(deleted, ComparedThenDeleted)
    assert deleted.prev_node is not None and deleted.prev_node.value == "d"
    await client.set(key, "again")
    current = await client.get(key)
    gone = await client.compare_and_delete(key, prev_index=current.modified_index)
    assert isinstance(gone, ComparedThenDeleted)
    await client.set(key, "pop me")
    popped = await client.pop(key)
    assert popped is not None and popped.value == "pop me"
    with pytest.raises(EtcdKeyNotFound):
        await client.pop(key)
    with pytest.raises(EtcdRootReadOnly):
        await client.delete("/", recursive=True)
    with pytest.raises(TypeError):
        client.write(key, "v", prevVlaue="typo")
    with pytest.raises(TypeError):
        client.write(key, "v", prev_value="a", prevValue="b")


@pytest_twisted.ensureDeferred
async def test_append_in_order_keys(client: Client, prefix: str) -> None:
    made: List[EtcdResult] = []
    for i in range(5):
        made.append(await client.append(f"{prefix}/queue", f"job{i}"))
    assert all(isinstance(m, Created) for m in made)
    indexes = [m.created_index or 0 for m in made]
    assert indexes == sorted(indexes) and len(set(indexes)) == 5
    via_write = await client.write(f"{prefix}/queue", "job5", append=True, ttl=60)
    assert via_write.ttl is not None
    listing = await client.read(f"{prefix}/queue", sorted=True)
    assert [n.value for n in listing.nodes] == [f"job{i}" for i in range(6)]
    with pytest.raises(EtcdInvalidRequest):
        client.write(f"{prefix}/queue", "x", append=True, prevExist=True)


@pytest_twisted.ensureDeferred
async def test_hostile_keys_and_values_round_trip(client: Client, prefix: str) -> None:
    for i, suffix in enumerate(HOSTILE_KEYS):
        key = prefix + suffix
        value = HOSTILE_VALUES[i % len(HOSTILE_VALUES)] + suffix
        written = await client.write(key, value)
        assert written.key == key and written.value == value
        got = await client.read(key)
        assert got.key == key and got.value == value
        assert (await client.delete(key)).key == key
    for bad in ("/a//b", "/a/./b", "/a/../b", "..", "/x/.."):
        with pytest.raises(EtcdInvalidKey):
            client.write(bad, "v")
        with pytest.raises(EtcdInvalidKey):
            client.read(bad)
    with pytest.raises(EtcdInvalidKey):
        client.read(b"\xff\xfe")


# -- long polls ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_watch_long_poll(client: Client, prefix: str) -> None:
    key = f"{prefix}/w"
    first = await client.set(key, "0")
    waiting = client.watch(key, index=ix(first) + 1, timeout=10)
    await sleep(0.05)
    assert not waiting.called
    await client.set(key, "1")
    event = await waiting
    assert isinstance(event, Set) and event.value == "1"
    # an index in the past answers at once with the first change at or after it
    past = await client.read(key, wait=True, waitIndex=first.modified_index)
    assert past.value == "0"
    # recursive waits see children
    child = client.watch(prefix, index=ix(event) + 1, recursive=True, timeout=10)
    await client.set(f"{prefix}/sub/x", "deep")
    assert (await child).key == f"{prefix}/sub/x"
    with pytest.raises(EtcdWatchTimedOut) as info:
        await client.watch(key, timeout=0.3)
    assert isinstance(info.value, EtcdConnectionFailed) and isinstance(info.value, Timeout)
    # the client still works after a timed-out wait
    assert (await client.get(key)).value == "1"


# -- cluster calls -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_cluster_calls(client: Client, etcd_v2_server: EtcdServer) -> None:
    url = f"http://127.0.0.1:{etcd_v2_server.client_port}"
    assert await client.machines() == [url]
    members = await client.members()
    assert len(members) == 1
    (member,) = members.values()
    assert member["clientURLs"] == [url]
    leader = await client.leader()
    assert leader["id"] == member["id"]
    version = await client.version()
    assert re.match(r"3\.[45]\.\d+$", version)
    assert re.match(r"3\.[45]\.0$", await client.cluster_version())
    assert await client.health() is True
    me = await client.stats()
    assert me["id"] == member["id"] and me["state"] == "StateLeader"
    store = await client.store_stats()
    assert store["setsSuccess"] >= 0 and "watchers" in store
    assert (await client.leader_stats())["leader"] == member["id"]
    with pytest.raises(ValueError):
        client.stats("nope")  # type: ignore[arg-type]
    with pytest.raises(EtcdKeyNotFound):
        await client.remove_member("1234")


@pytest.fixture(scope="module")
def v2_cluster() -> Any:
    with EtcdCluster(2, extra_args=["--enable-v2=true"]) as cluster:
        yield cluster


@pytest_twisted.ensureDeferred
async def test_members_add_remove_and_follower_stats(v2_cluster: Any) -> None:
    ports = [int(u.rsplit(":", 1)[1]) for u in v2_cluster.endpoints]
    client = Client(tuple(("127.0.0.1", p) for p in ports), reactor=reactor, read_timeout=10)
    try:
        members = await client.members()
        assert len(members) == 2
        assert sorted(await client.machines()) == sorted(v2_cluster.endpoints)
        peer = f"http://127.0.0.1:{free_port()}"
        added = None
        for _ in range(50):  # etcd refuses reconfiguration right after start (opaque 500)
            try:
                added = await client.add_member([peer])
                break
            except v2.EtcdV2Error as e:
                assert e.status == 500, e
                await sleep(0.2)
        assert added is not None and added["peerURLs"] == [peer]
        assert added["id"] in await client.members()
        await client.update_member(added["id"], [f"http://127.0.0.1:{free_port()}"])
        await client.remove_member(added["id"])
        assert added["id"] not in await client.members()
        with pytest.raises(EtcdKeyNotFound):
            await client.remove_member(added["id"])  # 410: removed for good
        leader = await client.leader()
        follower = [u for u in v2_cluster.endpoints if u not in leader["clientURLs"]][0]
        fport = int(follower.rsplit(":", 1)[1])
        on_follower = Client("127.0.0.1", fport, reactor=reactor, read_timeout=10)
        try:
            assert (await on_follower.stats())["state"] == "StateFollower"
            with pytest.raises(v2.EtcdV2Error) as info:
                await on_follower.leader_stats()
            assert info.value.status == 403
        finally:
            await on_follower.close()
    finally:
        await client.close()


# -- failover, the retry rule, timeouts -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_failover_to_the_next_endpoint(etcd_v2_server: EtcdServer, prefix: str) -> None:
    dead = free_port()
    client = Client(
        (("127.0.0.1", dead), ("127.0.0.1", etcd_v2_server.client_port)), reactor=reactor
    )
    try:
        # never sent (refused): safe to send elsewhere, a write included
        written = await client.write(f"{prefix}/k", "v")
        assert written.value == "v"
        assert client.base_uri.endswith(f":{etcd_v2_server.client_port}")
        assert (await client.read(f"{prefix}/k")).value == "v"
    finally:
        await client.close()
    only_dead = Client("127.0.0.1", dead, reactor=reactor)
    try:
        with pytest.raises(EtcdConnectionFailed) as info:
            await only_dead.read(f"{prefix}/k")
        assert info.value.maybe_sent is False
    finally:
        await only_dead.close()


@pytest_twisted.ensureDeferred
async def test_allow_reconnect_learns_the_members(v2_cluster: Any) -> None:
    first = v2_cluster.endpoints[0]
    port = int(first.rsplit(":", 1)[1])
    client = Client("127.0.0.1", port, allow_reconnect=True, reactor=reactor, read_timeout=10)
    try:
        await client.set("/t/reconnect", "x")
        assert sorted(client.endpoints) == sorted(v2_cluster.endpoints)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_cluster_id_change_is_refused(etcd_v2_server: EtcdServer) -> None:
    with EtcdServer(["--enable-v2=true"]) as other:
        client = Client(
            (("127.0.0.1", other.client_port), ("127.0.0.1", etcd_v2_server.client_port)),
            reactor=reactor,
        )
        try:
            await client.set("/t/cid", "1")  # cluster id of `other` noted
            other.kill()
            with pytest.raises(v2.EtcdClusterIdChanged):
                await client.get("/t/cid")  # failed over to a different cluster
        finally:
            await client.close()


@pytest_twisted.ensureDeferred
async def test_reset_after_sending_reads_retried_writes_outcome_unknown(
    etcd_v2_server: EtcdServer, make_v2_client: MakeV2Client, prefix: str
) -> None:
    async with TCPProxy("127.0.0.1", etcd_v2_server.client_port, reactor=reactor) as proxy:
        direct = make_v2_client()
        client = Client("127.0.0.1", proxy.port, reactor=reactor, read_timeout=10)
        try:
            await direct.set(f"{prefix}/k", "before")
            proxy.cut_after(1, "down", which="next")  # the answer's first byte, then a reset
            with pytest.raises(OutcomeUnknown):
                await client.set(f"{prefix}/k", "after")
            # not sent again, yet etcd did apply it: that is why the outcome is "unknown"
            assert (await direct.get(f"{prefix}/k")).value == "after"
            proxy.cut_after(1, "down", which="next")
            got = await client.get(f"{prefix}/k")  # a read is sent again, on a new connection
            assert got.value == "after" and proxy.cuts >= 2
        finally:
            await client.close()


@pytest_twisted.ensureDeferred
async def test_read_timeout(etcd_v2_server: EtcdServer, prefix: str) -> None:
    async with TCPProxy("127.0.0.1", etcd_v2_server.client_port, reactor=reactor) as proxy:
        client = Client("127.0.0.1", proxy.port, reactor=reactor, read_timeout=0.3)
        try:
            await client.set(f"{prefix}/k", "v")
            proxy.blackhole()
            with pytest.raises(Timeout) as info:
                await client.get(f"{prefix}/k")
            assert not isinstance(info.value, WriteTimeout)
            with pytest.raises(WriteTimeout):
                await client.set(f"{prefix}/k", "w")
            proxy.restore()
            # the timed-out connections were closed; new ones work
            assert (await client.get(f"{prefix}/k", timeout=5)).value in ("v", "w")
        finally:
            await client.close()


# -- basic auth ----------------------------------------------------------------------------------


def _http(port: int, method: str, path: str, body: Any = None, auth: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status


@pytest_twisted.ensureDeferred
async def test_basic_auth() -> None:
    with EtcdServer(["--enable-v2=true"]) as server:
        port = server.client_port
        _http(port, "PUT", "/v2/auth/users/root", {"user": "root", "password": "rootpw"})
        _http(port, "PUT", "/v2/auth/enable")
        revoke = {"role": "guest", "revoke": {"kv": {"read": ["/*"], "write": ["/*"]}}}
        _http(port, "PUT", "/v2/auth/roles/guest", revoke, auth=("root", "rootpw"))
        anonymous = Client("127.0.0.1", port, reactor=reactor)
        wrong = Client("127.0.0.1", port, username="root", password="nope", reactor=reactor)
        root = Client("127.0.0.1", port, username="root", password="rootpw", reactor=reactor)
        try:
            with pytest.raises(EtcdInsufficientPermissions):
                await anonymous.set("/secret", "x")
            with pytest.raises(EtcdInsufficientPermissions):
                await wrong.get("/secret")
            assert (await root.set("/secret", "x")).value == "x"
            assert (await root.get("/secret")).value == "x"
        finally:
            for c in (anonymous, wrong, root):
                await c.close()
    with pytest.raises(ValueError):
        Client(username="root")


# -- SRV discovery -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_srv_discovery(etcd_v2_server: EtcdServer) -> None:
    dead = free_port()
    live = etcd_v2_server.client_port
    resolver = FakeResolver(
        {
            "_etcd-client._tcp.example.test": [
                (20, 0, 1, "127.0.0.9"),  # lower priority: tried last
                (10, 5, live, "127.0.0.1."),
                (10, 50, dead, "127.0.0.1."),  # same priority, heavier: first
            ]
        }
    )
    client = Client(srv_domain="example.test", resolver=resolver, reactor=reactor)
    try:
        assert (await client.set("/t/srv", "found")).value == "found"
        assert client.endpoints == [
            f"http://127.0.0.1:{dead}",
            f"http://127.0.0.1:{live}",
            "http://127.0.0.9:1",
        ]
        assert resolver.asked == ["_etcd-client._tcp.example.test"]
        assert client.base_uri == f"http://127.0.0.1:{live}"
    finally:
        await client.close()
    assert srv_name("example.test", "https") == "_etcd-client-ssl._tcp.example.test"
    missing = Client(srv_domain="nowhere.test", resolver=resolver, reactor=reactor)
    try:
        with pytest.raises(EtcdConnectionFailed):
            await missing.get("/t/srv")
    finally:
        await missing.close()
