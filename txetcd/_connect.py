"""How a :class:`~txetcd.Client` is put together from its options: the transport by name, TLS
options, credentials, the HTTP/1.1 client of the gateway, endpoint checks (and the options a
sibling client for one endpoint is made from)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from txetcd._auth import Credentials
from txetcd._gateway.channel import GatewayChannel
from txetcd._grpc.channel import Channel
from txetcd._tls import PEMSource, TLSOptions, endpoint_factory
from txetcd._transport import Transport

__all__ = [
    "_make_transport",
    "_given_options",
    "_sibling_http_client",
    "_endpoint_list",
    "_shown_url",
    "_tls_options",
    "_credentials",
    "_http_client",
]


def _make_transport(
    transport: str,
    endpoints: Sequence[str],
    reactor: Any,
    *,
    connect_timeout: float,
    keepalive_interval: Optional[float],
    keepalive_timeout: float,
    http_client: Any,
    clock: Any,
    tls: Optional[TLSOptions],
) -> Transport:
    """The transport a client asked for by name."""
    if transport == "grpc":
        if http_client is not None:
            raise TypeError("http_client is for transport='gateway'")
        return Channel(
            endpoints,
            reactor,
            tls=tls,
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            clock=clock,
        )
    if transport == "gateway":
        if http_client is not None and tls is not None:
            raise TypeError(
                "TLS options go to your own http_client (its agent's TLS), not to the Client"
            )
        http = _http_client(http_client, reactor, connect_timeout, clock, tls)
        return GatewayChannel(endpoints, reactor, http, clock=clock)
    raise ValueError(f"transport must be 'grpc' or 'gateway', not {transport!r}")


def _given_options(given: Dict[str, Any]) -> Dict[str, Any]:
    """``Client.__init__``'s keyword arguments, from its ``locals()`` before it sets any."""
    skip = ("self", "endpoints", "_transport")  # _transport: txetcd.testing.MemoryEtcd's
    return {name: value for name, value in given.items() if name not in skip}


def _sibling_http_client(given: Any) -> Any:
    """The ``http_client`` for a sibling client: closing the sibling must not close the
    original's pool, so txetcd's own pool is not shared (the sibling makes its own) and a
    wrapped treq client is shared through its treq client, which the sibling does not own."""
    from txetcd._http1.pool import PoolClient
    from txetcd._http1.treq import TreqClient

    if isinstance(given, PoolClient):
        return None
    if isinstance(given, TreqClient):
        return given._client
    return given


def _endpoint_list(endpoints: object) -> list[str]:
    """The endpoints as a list: one URL, or a sequence of them; anything else is a TypeError."""
    if isinstance(endpoints, str):
        return [endpoints]
    if isinstance(endpoints, (bytes, bytearray)) or not isinstance(endpoints, Iterable):
        raise TypeError(
            "endpoints must be a URL (str) or a list of URLs, such as "
            f"'http://127.0.0.1:2379', not {type(endpoints).__name__}"
        )
    urls = list(endpoints)
    for url in urls:
        if not isinstance(url, str):
            raise TypeError(f"each endpoint must be a URL (str), not {type(url).__name__}")
    return urls


def _shown_url(url: str) -> str:
    """A URL without the user and password it may carry (for reprs and messages)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _tls_options(
    endpoints: Sequence[str],
    *,
    ca_cert: Optional[PEMSource],
    cert: Optional[PEMSource],
    key: Optional[PEMSource],
    server_name: Optional[str],
    insecure_skip_verify: bool,
    tls: Any,
) -> Optional[TLSOptions]:
    """The client's TLS options, or None when it has none (https then means system trust)."""
    given = (ca_cert, cert, key, server_name, tls)
    if all(v is None for v in given) and not insecure_skip_verify:
        return None
    if not any(urlsplit(u).scheme == "https" for u in endpoints):
        raise ValueError(
            "TLS options were given but no endpoint is https:// (write the endpoints as "
            "https://host:port)"
        )
    return TLSOptions(
        ca_cert=ca_cert,
        cert=cert,
        key=key,
        server_name=server_name,
        insecure_skip_verify=insecure_skip_verify,
        creator=tls,
    )


def _credentials(
    endpoints: Sequence[str],
    user: Optional[str],
    password: Optional[str],
    allow_insecure: bool,
) -> Optional[Credentials]:
    """The login to use, checked: both or neither, and never in clear unless asked for."""
    if user is None and password is None:
        return None
    if user is None or password is None:
        raise TypeError("give both user= and password= (or neither)")
    if not isinstance(allow_insecure, bool):
        raise TypeError("allow_insecure_credentials must be a bool")
    plain = [_shown_url(u) for u in endpoints if urlsplit(u).scheme != "https"]
    if plain and not allow_insecure:
        raise ValueError(
            "a password would be sent in clear to " + ", ".join(plain) + ": use https:// "
            "endpoints, or pass allow_insecure_credentials=True to accept that"
        )
    return Credentials(user, password)


def _http_client(
    given: Any, reactor: Any, connect_timeout: float, clock: Any, tls: Optional[TLSOptions] = None
) -> Any:
    """The HTTP/1.1 client for the gateway: ours, a wrapped treq client or agent, or a pool.

    One made here keeps its time (request deadlines, connect and idle timers) on ``clock``.
    """
    from txetcd._http1.pool import PoolClient
    from txetcd._http1.treq import TreqClient

    if isinstance(given, (PoolClient, TreqClient)):
        return given
    if given is None:
        made: Any = PoolClient(
            reactor,
            connect_timeout=connect_timeout,
            endpoint_factory=endpoint_factory(tls, (b"http/1.1",)),
        )
    else:
        made = TreqClient(given, reactor, connect_timeout=connect_timeout)
    made.clock = clock
    return made
