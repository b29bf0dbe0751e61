"""Debian's etcd 3.4 under :class:`~txetcd.testing.EtcdServer`: v2 over HTTP, v3 over gRPC.

The binary comes from :func:`~txetcd.testing.etcd34_binary` (``.ci/fetch-etcd34`` unpacks it at
CI setup; nothing is downloaded here); without one, the tests that need it skip.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest
import pytest_twisted

from txetcd.test.helpers import client_of
from txetcd.testing import EtcdNotFound, EtcdServer, etcd34_binary
from txetcd.testing._server import _ETCD34_MISSING, _etcd_version, _log_flags

BINARY = etcd34_binary()
needs_etcd34 = pytest.mark.skipif(BINARY is None, reason=_ETCD34_MISSING)


def _http(server: EtcdServer, method: str, path: str, body: Optional[str] = None) -> Dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        assert 200 <= response.status < 300, (response.status, data)
        answer: Dict[str, Any] = json.loads(data)
        return answer
    finally:
        conn.close()


def _v2_put_get(server: EtcdServer, key: str) -> None:
    put = _http(server, "PUT", f"/v2/keys/{key}", "value=1")
    assert put["action"] == "set"
    assert put["node"]["value"] == "1"
    got = _http(server, "GET", f"/v2/keys/{key}")
    assert got["action"] == "get"
    assert got["node"] == put["node"]


@pytest.fixture(scope="module")
def etcd34() -> Iterator[EtcdServer]:
    assert BINARY is not None
    with EtcdServer(["--enable-v2=true"], binary=BINARY) as server:
        yield server


@needs_etcd34
def test_the_binary_is_etcd_34() -> None:
    assert BINARY is not None
    version = _etcd_version(BINARY)
    assert version is not None and version[:2] == (3, 4), version
    assert _log_flags(BINARY) == ["--logger", "zap", "--log-level", "warn"]


@needs_etcd34
def test_server_reports_34(etcd34: EtcdServer) -> None:
    assert _http(etcd34, "GET", "/version")["etcdserver"].startswith("3.4.")


@needs_etcd34
def test_v2_put_get(etcd34: EtcdServer) -> None:
    _v2_put_get(etcd34, "txetcd-34")


@needs_etcd34
@pytest_twisted.ensureDeferred
async def test_v3_grpc_put_get(etcd34: EtcdServer) -> None:
    async with client_of(etcd34.endpoint) as client:
        await client.put(b"txetcd-34/v3", b"over gRPC")
        assert (await client.get(b"txetcd-34/v3")).value == b"over gRPC"


def test_etcd_v2_server_fixture(etcd_v2_server: EtcdServer, request: Any) -> None:
    """Each version the fixture runs serves v2 and is the version it says."""
    version = request.node.callspec.params["etcd_v2_server"]
    _v2_put_get(etcd_v2_server, "txetcd-fixture")
    reported = _http(etcd_v2_server, "GET", "/version")["etcdserver"]
    if version == "3.4" or not os.environ.get("TXETCD_ETCD_BIN"):
        assert reported.startswith(version + "."), reported


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TXETCD_ETCD34_BIN", str(fake))
    with pytest.raises(EtcdNotFound, match="TXETCD_ETCD34_BIN"):
        etcd34_binary()
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert etcd34_binary() == str(fake)
