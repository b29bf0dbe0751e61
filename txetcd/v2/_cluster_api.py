"""The v2 cluster and stats API of :class:`txetcd.v2.Client`: members, machines, the leader,
stats, version and health, sent through the one request path
(:class:`~txetcd.v2._request.RequestPath`)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Literal, Sequence, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._errors import EtcdError, ProtocolViolation
from txetcd._http1.interface import HTTPResponse
from txetcd.v2._errors import EtcdKeyNotFound, from_json
from txetcd.v2._request import DEFAULT_TIMEOUT, RequestPath

__all__ = ["ClusterAPI", "StatsName"]

#: which ``/v2/stats`` to read
StatsName = Literal["self", "store", "leader"]


def _json_body(response: HTTPResponse, what: str) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        raise ProtocolViolation(
            f"{what}: the answer is not JSON: {response.body[:200]!r}"
        ) from None


def _plain_error(response: HTTPResponse, what: str) -> EtcdError:
    """The error of a non-keys v2 answer (``{"message"}`` bodies of members and stats)."""
    error = from_json(response.body, response.status)
    if response.status in (404, 410) and error.error_code is None:
        return EtcdKeyNotFound(f"{what}: {error}", status=response.status, payload=error.payload)
    return error


class ClusterAPI(RequestPath):
    """The cluster and stats API of :class:`txetcd.v2.Client`."""

    def _plain(
        self,
        method: bytes,
        path: str,
        what: str,
        *,
        body: bytes = b"",
        timeout: Any = DEFAULT_TIMEOUT,
        json_body: bool = False,
        ok: Tuple[int, ...] = (200,),
    ) -> "Deferred[HTTPResponse]":
        d = self._call(
            method,
            path,
            body=body,
            headers=self._json_headers if json_body else self._headers,
            idempotent=method == b"GET",
            timeout=self._timeout(timeout),
        )

        def check(response: HTTPResponse) -> HTTPResponse:
            if response.status not in ok:
                raise _plain_error(response, what)
            return response

        return d.addCallback(check)

    def machines(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[List[str]]":
        """The client URLs of every member (``/v2/machines``)."""
        d = self._plain(b"GET", self.version_prefix + "/machines", "machines", timeout=timeout)
        return d.addCallback(
            lambda r: [u.strip() for u in r.body.decode("utf-8", "replace").split(",") if u.strip()]
        )

    def members(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Dict[str, Any]]]":
        """Every member by its hex id: ``{"id", "name", "peerURLs", "clientURLs"}``."""
        d = self._plain(b"GET", self.version_prefix + "/members", "members", timeout=timeout)

        def parse(response: HTTPResponse) -> Dict[str, Dict[str, Any]]:
            data = _json_body(response, "members")
            members = data.get("members") if isinstance(data, dict) else None
            if not isinstance(members, list):
                raise ProtocolViolation(f"members: unexpected answer {data!r}")
            return {m["id"]: m for m in members if isinstance(m, dict) and "id" in m}

        return d.addCallback(parse)

    def leader(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """The leader member: ``{"id", "name", "peerURLs", "clientURLs"}``."""
        d = self._plain(b"GET", self.version_prefix + "/members/leader", "leader", timeout=timeout)
        return d.addCallback(_json_body, "leader")

    def add_member(
        self, peer_urls: Union[str, Sequence[str]], *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[Dict[str, Any]]":
        """Add a member by its peer URLs; fires with the new member (its ``id``)."""
        urls = [peer_urls] if isinstance(peer_urls, str) else list(peer_urls)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise TypeError("peer_urls must be a URL or a list of URLs")
        body = json.dumps({"peerURLs": urls}).encode()
        d = self._plain(
            b"POST",
            self.version_prefix + "/members",
            "add_member",
            body=body,
            timeout=timeout,
            json_body=True,
            ok=(200, 201),
        )
        return d.addCallback(_json_body, "add_member")

    def update_member(
        self,
        member_id: str,
        peer_urls: Union[str, Sequence[str]],
        *,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> "Deferred[None]":
        """Change a member's peer URLs."""
        urls = [peer_urls] if isinstance(peer_urls, str) else list(peer_urls)
        body = json.dumps({"peerURLs": urls}).encode()
        d = self._plain(
            b"PUT",
            f"{self.version_prefix}/members/{_member_id(member_id)}",
            "update_member",
            body=body,
            timeout=timeout,
            json_body=True,
            ok=(200, 204),
        )
        return d.addCallback(lambda _: None)

    def remove_member(self, member_id: str, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[None]":
        """Remove a member by its hex id.
        :raises ~txetcd.v2.EtcdKeyNotFound: no such member (or removed already)."""
        d = self._plain(
            b"DELETE",
            f"{self.version_prefix}/members/{_member_id(member_id)}",
            "remove_member",
            timeout=timeout,
            ok=(200, 204),
        )
        return d.addCallback(lambda _: None)

    def stats(
        self, which: StatsName = "self", *, timeout: Any = DEFAULT_TIMEOUT
    ) -> "Deferred[Dict[str, Any]]":
        """``/v2/stats/<which>``: ``"self"`` (this member), ``"store"`` or ``"leader"`` (only
        the leader answers that one)."""
        if which not in ("self", "store", "leader"):
            raise ValueError(f"stats are 'self', 'store' or 'leader', not {which!r}")
        d = self._plain(
            b"GET", f"{self.version_prefix}/stats/{which}", f"stats/{which}", timeout=timeout
        )
        return d.addCallback(_json_body, f"stats/{which}")

    def leader_stats(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """``stats("leader")``."""
        return self.stats("leader", timeout=timeout)

    def store_stats(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[Dict[str, Any]]":
        """``stats("store")``."""
        return self.stats("store", timeout=timeout)

    def version(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[str]":
        """The server's version, e.g. ``"3.5.1"``."""
        d = self._plain(b"GET", "/version", "version", timeout=timeout)
        return d.addCallback(lambda r: str(_json_body(r, "version")["etcdserver"]))

    def cluster_version(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[str]":
        """The cluster's version, e.g. ``"3.5.0"``."""
        d = self._plain(b"GET", "/version", "version", timeout=timeout)
        return d.addCallback(lambda r: str(_json_body(r, "version")["etcdcluster"]))

    def health(self, *, timeout: Any = DEFAULT_TIMEOUT) -> "Deferred[bool]":
        """Whether the member is healthy (``/health``: it has a leader)."""
        d = self._plain(b"GET", "/health", "health", timeout=timeout, ok=(200, 503))

        def parse(response: HTTPResponse) -> bool:
            data = _json_body(response, "health")
            return isinstance(data, dict) and data.get("health") in ("true", True)

        return d.addCallback(parse)


def _member_id(member_id: str) -> str:
    if (
        not isinstance(member_id, str)
        or not member_id
        or not all(c in "0123456789abcdefABCDEF" for c in member_id)
    ):
        raise ValueError(f"a member id is a hex string, not {member_id!r}")
    return member_id
