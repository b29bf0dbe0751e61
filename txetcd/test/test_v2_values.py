"""txetcd.v2 as python-etcd users meet it: any value is sent as str(value), v2.__all__ is the
public API only, a server without the v2 API says so, and a request is sent again only by the
one resend rule, after RESEND_BACKOFF on the client's clock."""

from __future__ import annotations

import inspect
import re
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import CancelledError, Deferred

import txetcd
from txetcd import ClientClosed, v2
from txetcd.testing import EtcdServer, free_port
from txetcd.v2 import Client, EtcdV2Error, EtcdV2NotEnabled, _refresh


def sleep(seconds: float) -> "Deferred[None]":
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def key(request: Any) -> str:
    return "/t/" + re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)


@pytest_twisted.async_yield_fixture
async def client(etcd_v2_server: EtcdServer) -> AsyncIterator[Client]:
    c = Client("127.0.0.1", etcd_v2_server.client_port, reactor=reactor, read_timeout=10)
    try:
        yield c
    finally:
        await c.close()


# -- values ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_any_value_is_sent_as_its_str(client: Client, key: str) -> None:
    """python-etcd's ``client.set("/n", 3)`` stores "3"; so does ours."""
    await client.set(key, 3)
    assert (await client.get(key)).value == "3"
    await client.test_and_set(key, 4.5, 3)  # the compared value is text too
    assert (await client.get(key)).value == "4.5"
    await client.write(key, True, prev_value=4.5)
    assert (await client.get(key)).value == "True"
    await client.compare_and_swap(key, None.__class__.__name__, prev_value=True)
    assert (await client.get(key)).value == "NoneType"
    appended = await client.append(key + "-queue", 7)
    assert appended.value == "7"
    assert (
        await client.compare_and_delete(key, prev_value="NoneType")
    ).action == "compareAndDelete"


def test_value_conversion_before_sending() -> None:
    from txetcd.v2._keys import append_request, set_request

    assert dict(set_request("/k", 3).params)["value"] == "3"
    assert dict(set_request("/k", b"caf\xc3\xa9").params)["value"] == "café"
    assert dict(set_request("/k", "x", prev_value=10).params)["prevValue"] == "10"
    assert dict(append_request("/q", 0.5).params)["value"] == "0.5"
    with pytest.raises(v2.EtcdInvalidRequest):
        set_request("/k", None)  # None is "no value", as in python-etcd: not "None"


# -- the public surface ------------------------------------------------------------------------


def test_all_is_the_public_api() -> None:
    public = set(v2.__all__)
    assert len(public) == len(v2.__all__)
    exported = {
        n for n in dir(v2) if not n.startswith("_") and not inspect.ismodule(getattr(v2, n))
    }
    assert exported == public
    for internal in ("set_request", "V2Request", "from_json", "V2_ERROR_CLASSES", "srv_name"):
        assert internal not in public and not hasattr(v2, internal)
    for name in public:
        obj = getattr(v2, name)
        assert inspect.getdoc(obj), name
        home = getattr(obj, "__module__", "")
        assert home.startswith("txetcd.v2._") or obj is txetcd.EtcdError, (name, home)


def test_repr() -> None:
    client = Client((("127.0.0.1", 2379), ("::1", 2380)), username="u", password="s3cret")
    assert repr(client) == "<txetcd.v2.Client http://127.0.0.1:2379, http://[::1]:2380>"
    assert repr(Client(srv_domain="example.test")) == "<txetcd.v2.Client SRV example.test>"


# -- a server without the v2 API ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_v2_not_enabled_says_so(etcd_server: EtcdServer) -> None:
    """etcd 3.5 without --enable-v2 answers 404 page not found for every /v2 request."""
    client = Client("127.0.0.1", etcd_server.client_port, reactor=reactor, read_timeout=10)
    try:
        for call in (
            lambda: client.get("/k"),
            lambda: client.set("/k", "v"),
            lambda: client.members(),
            lambda: client.stats(),
        ):
            with pytest.raises(EtcdV2NotEnabled) as info:
                await call()
            message = str(info.value)
            assert f"the server at {etcd_server.endpoint} does not serve etcd's v2 API" in message
            assert "--enable-v2" in message and "txetcd.Client" in message
            assert isinstance(info.value, EtcdV2Error) and not isinstance(info.value, KeyError)
        watch = client.eternal_watch("/k")
        with pytest.raises(EtcdV2NotEnabled, match="404 page not found for /v2/keys/k"):
            await watch.done
        assert await client.health()  # the rest of the server is there
    finally:
        await client.close()


# -- the resend rule and its backoff -------------------------------------------------------------


def dead_endpoint() -> tuple[str, int]:
    """An address where nothing listens: a connection is refused, so nothing was sent."""
    return ("127.0.0.1", free_port())


async def backoff_timer(clock: task.Clock) -> Any:
    """The backoff timer, once the first attempt has been refused (on the real reactor)."""
    for _ in range(500):
        if clock.getDelayedCalls():
            (call,) = clock.getDelayedCalls()
            return call
        await sleep(0.01)
    raise AssertionError("no backoff timer was set")


@pytest.mark.parametrize("what", ["read", "write"])
@pytest_twisted.ensureDeferred
async def test_refused_request_waits_resend_backoff_on_the_clock(
    etcd_v2_server: EtcdServer, key: str, what: str
) -> None:
    """A request refused at connect (never sent: a write too) goes to the next member only
    after RESEND_BACKOFF(0), 10-20 ms, on the client's clock, not the reactor's."""
    clock = task.Clock()
    members = (dead_endpoint(), ("127.0.0.1", etcd_v2_server.client_port))
    client = Client(members, reactor=reactor, clock=clock, read_timeout=10)
    try:
        d: Deferred[Any] = Deferred()
        (client.get(key) if what == "read" else client.set(key, "v")).chainDeferred(d)
        timer = await backoff_timer(clock)
        assert 0.01 <= timer.getTime() < 0.02
        await sleep(0.05)
        assert not d.called  # the reactor's time does not count
        clock.advance(0.02)
        if what == "read":
            with pytest.raises(v2.EtcdKeyNotFound):
                await d
        else:
            assert (await d).value == "v"
        assert clock.getDelayedCalls() == []
    finally:
        await client.close()


@pytest.mark.parametrize("how", ["close", "cancel"])
@pytest_twisted.ensureDeferred
async def test_backoff_ends_with_close_or_cancel(how: str) -> None:
    clock = task.Clock()
    client = Client((dead_endpoint(), dead_endpoint()), reactor=reactor, clock=clock)
    d = client.get("/k")
    await backoff_timer(clock)
    if how == "close":
        await client.close()
        with pytest.raises(ClientClosed):
            await d
    else:
        d.cancel()
        with pytest.raises(CancelledError):
            await d
        await client.close()
    assert clock.getDelayedCalls() == [] and not client._resending


def test_refresh_loop_backoff_is_the_one_policy() -> None:
    """v2 Lock/Election retries: backoff_policy(0.05, 1.0): the old 0.05 s doubling up to 1 s,
    now scaled by a jitter factor in [0.5, 1)."""
    for failures in range(1, 15):
        old = min(1.0, 0.05 * 2.0 ** (failures - 1))
        for _ in range(20):
            assert 0.5 * old <= _refresh.backoff(failures) < old
