"""Finding etcd members by DNS SRV records (``twisted.names``)."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from txetcd.v2._errors import EtcdConnectionFailed

__all__ = ["lookup_endpoints", "srv_name"]


def srv_name(domain: str, protocol: str) -> str:
    """The SRV name etcd's clients look up: ``_etcd-client._tcp.<domain>``, or
    ``_etcd-client-ssl._tcp.<domain>`` for ``https``."""
    service = "_etcd-client-ssl" if protocol == "https" else "_etcd-client"
    return f"{service}._tcp.{domain.rstrip('.')}"


async def lookup_endpoints(
    domain: str, protocol: str, *, resolver: Optional[Any] = None
) -> List[str]:
    """The members' URLs from the domain's SRV records, by priority, then weight (highest
    first). :raises ~txetcd.v2.EtcdConnectionFailed: no record, or the lookup failed."""
    from twisted.names import dns

    if resolver is None:
        from twisted.names import client

        resolver = client.getResolver()  # type: ignore[no-untyped-call]
    name = srv_name(domain, protocol)
    try:
        answers, _authority, _additional = await resolver.lookupService(name)
    except Exception as e:  # DNSNameError, timeouts, ...
        raise EtcdConnectionFailed(f"SRV lookup of {name} failed: {e!r}", cause=e) from None
    found: List[Tuple[int, int, str]] = []
    for record in answers:
        if record.type != dns.SRV:
            continue
        srv = record.payload
        target = str(srv.target).rstrip(".")
        if not target:
            continue
        authority = f"[{target}]:{srv.port}" if ":" in target else f"{target}:{srv.port}"
        found.append((srv.priority, -srv.weight, f"{protocol}://{authority}"))
    if not found:
        raise EtcdConnectionFailed(f"no SRV record for {name}")
    found.sort()
    urls: List[str] = []
    for _p, _w, url in found:
        if url not in urls:
            urls.append(url)
    return urls
