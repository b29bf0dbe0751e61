"""The v2 client: python-etcd's API shape, every method returning a ``Deferred``.

:class:`Client` is the keys API (:mod:`txetcd.v2._keys_api`) and the cluster and stats API
(:mod:`txetcd.v2._cluster_api`) over one request path (:mod:`txetcd.v2._request`: endpoints,
discovery, failover and the resend rule); this module only builds it.
"""

from __future__ import annotations

import base64
from typing import Any, List, Literal, Optional, Tuple, Union

from twisted.internet.defer import Deferred

from txetcd._args import check_timeout
from txetcd.v2._cluster_api import ClusterAPI
from txetcd.v2._keys_api import KeysAPI
from txetcd.v2._request import DEFAULT_TIMEOUT, FORM, JSON, endpoint_urls

__all__ = ["Client", "DEFAULT_TIMEOUT"]


class Client(KeysAPI, ClusterAPI):
    """An etcd v2 client with python-etcd's API; every method returns a ``Deferred``.

    :param host: a host name or address, or a tuple of ``(host, port)`` pairs (the cluster's
        members, tried in order).
    :param port: the port when ``host`` is one name (etcd's client port, 2379).
    :param protocol: ``"http"`` or ``"https"``.
    :param version_prefix: the API prefix, ``"/v2"``.
    :param allow_reconnect: also learn the cluster's other members (``/v2/machines``, at the
        first request) and fail over to them. Endpoints given in ``host`` are failed over to in
        any case.
    :param srv_domain: find the members by DNS SRV: ``_etcd-client._tcp.<domain>``
        (``_etcd-client-ssl._tcp.<domain>`` with ``https``), looked up at the first request.
    :param cert: a client certificate for TLS: a PEM file holding certificate and key, or a
        ``(cert_file, key_file)`` pair.
    :param ca_cert: a PEM file of the CA certificates to trust (by default, the system's).
        The server's certificate is always verified.
    :param username: with ``password``: HTTP basic auth on every request (v2 auth).
    :param read_timeout: seconds each request may take (``None`` or ``0``: no deadline, as in
        :class:`txetcd.Client`); every method takes ``timeout=`` to override it, with the same
        meaning. Waits use it too unless given their own.
    :param lock_prefix: where :class:`~txetcd.v2.Lock` keeps its keys.
    :param expected_cluster_id: refuse answers of any other cluster
        (:class:`~txetcd.v2.EtcdClusterIdChanged`); otherwise the first answer's cluster id is
        expected from every member failed over to.
    :param http_client: the HTTP/1.1 client: a treq ``HTTPClient`` or any ``IAgent`` (your own
        TLS, proxies, ``treq.testing.StubTreq``), or one of txetcd's; by default txetcd's
        keep-alive pool. (``cert``/``ca_cert`` apply to the default pool only.)
    :param reactor: the reactor (TCP, and time unless ``clock`` is given).
    :param clock: the clock for the waits before a request is sent again, the lock and
        election refresh loops and watch backoff (``reactor`` by default).
    :param resolver: the ``IResolver`` for ``srv_domain`` (``twisted.names``' by default).
    :param per_host_pool_size: keep-alive connections per endpoint in the default pool.
    """

    def __init__(
        self,
        host: Any = "127.0.0.1",
        port: int = 2379,
        *,
        protocol: Literal["http", "https"] = "http",
        version_prefix: str = "/v2",
        allow_reconnect: bool = False,
        srv_domain: Optional[str] = None,
        cert: Union[None, str, Tuple[str, str]] = None,
        ca_cert: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        read_timeout: Optional[float] = 60.0,
        lock_prefix: str = "/_locks",
        expected_cluster_id: Optional[str] = None,
        http_client: Any = None,
        reactor: Any = None,
        clock: Any = None,
        resolver: Any = None,
        connect_timeout: float = 5.0,
        per_host_pool_size: int = 32,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.protocol = protocol
        if srv_domain is not None:
            if not isinstance(srv_domain, str) or not srv_domain:
                raise TypeError("srv_domain must be a domain name")
            endpoint_urls("x", 1, protocol)  # checks the protocol
            self._endpoints: List[str] = []
        else:
            self._endpoints = endpoint_urls(host, port, protocol)
        if not isinstance(version_prefix, str) or not version_prefix.startswith("/"):
            raise ValueError(f"version_prefix must start with '/', not {version_prefix!r}")
        self.version_prefix = version_prefix.rstrip("/")
        self.allow_reconnect = bool(allow_reconnect)
        self.srv_domain = srv_domain
        self.read_timeout = check_timeout(read_timeout, "read_timeout")
        if not isinstance(lock_prefix, str):
            raise TypeError("lock_prefix must be a str")
        self.lock_prefix = lock_prefix
        self.expected_cluster_id = expected_cluster_id
        self._cluster_id = expected_cluster_id
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.username = username
        self._headers: Tuple[Tuple[bytes, bytes], ...] = ()
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._headers = ((b"Authorization", b"Basic " + token.encode("ascii")),)
        self._form_headers = self._headers + (FORM,)
        self._json_headers = self._headers + (JSON,)
        self._resolver = resolver
        self._current = 0
        self.closed = False
        self._resending = set()  # calls waiting out a backoff before their next attempt
        self._setup_waiters: List[Deferred[None]] = []
        self._needs_setup = srv_domain is not None or self.allow_reconnect
        self._http = self._make_http(
            http_client, cert, ca_cert, connect_timeout, per_host_pool_size
        )

    def __repr__(self) -> str:
        where = ", ".join(self._endpoints) or f"SRV {self.srv_domain}"
        closed = " closed" if self.closed else ""
        return f"<txetcd.v2.Client {where}{closed}>"
