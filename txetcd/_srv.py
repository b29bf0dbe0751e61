"""Finding etcd members by DNS SRV records (``twisted.names``), for both clients.

etcd's convention (Go's ``client/pkg/srv``, etcdctl's ``--discovery-srv``): the client URLs of
a cluster in ``<domain>`` are the targets of ``_etcd-client-ssl._tcp.<domain>`` (``https``) and
``_etcd-client._tcp.<domain>`` (``http``); a ``service_name`` (``--discovery-srv-name``) is
appended to the service: ``_etcd-client-ssl-<name>._tcp.<domain>``,
``_etcd-client-<name>._tcp.<domain>``.

:func:`lookup_srv` is the one lookup; it raises :class:`SRVLookupFailed`, which each caller
turns into its own error (:class:`txetcd.v2.EtcdConnectionFailed` for the v2 client,
:class:`~txetcd.ConnectionFailed` for :meth:`txetcd.Client.from_srv`).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

__all__ = ["SRVLookupFailed", "check_service_name", "lookup_srv", "srv_name"]


class SRVLookupFailed(Exception):
    """No usable SRV record for ``name``: the lookup failed (``cause``) or found nothing."""

    def __init__(self, message: str, name: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.name = name
        self.cause = cause


def check_service_name(service_name: object) -> Optional[str]:
    """``service_name`` checked: None, or a non-empty str without dots."""
    if service_name is None:
        return None
    if not isinstance(service_name, str):
        raise TypeError(f"service_name must be a str, not {type(service_name).__name__}")
    if not service_name or "." in service_name:
        raise ValueError(f"service_name must be a non-empty label, not {service_name!r}")
    return service_name


def check_domain(domain: object) -> str:
    """``domain`` checked: a non-empty str."""
    if not isinstance(domain, str):
        raise TypeError(f"domain must be a str, not {type(domain).__name__}")
    if not domain.strip("."):
        raise ValueError("domain must be a domain name, not empty")
    return domain


def srv_name(domain: str, scheme: str, service_name: Optional[str] = None) -> str:
    """The SRV name etcd's clients look up for ``scheme`` (``"http"`` or ``"https"``):
    ``_etcd-client[-ssl][-<service_name>]._tcp.<domain>``."""
    service = "_etcd-client-ssl" if scheme == "https" else "_etcd-client"
    if service_name:
        service = f"{service}-{service_name}"
    return f"{service}._tcp.{domain.rstrip('.')}"


async def lookup_srv(
    domain: str,
    scheme: str,
    *,
    service_name: Optional[str] = None,
    resolver: Optional[Any] = None,
) -> List[str]:
    """The client URLs (``scheme://target:port``) named by the domain's SRV records for
    ``scheme``, by priority, then weight (highest first), without repeats.

    :param resolver: an ``IResolver`` (``twisted.names.client.getResolver()`` by default).
    :raises SRVLookupFailed: the lookup failed, or found no record.
    """
    from twisted.names import dns

    if resolver is None:
        from twisted.names import client

        resolver = client.getResolver()  # type: ignore[no-untyped-call]
    name = srv_name(domain, scheme, service_name)
    try:
        answers, _authority, _additional = await resolver.lookupService(name)
    except Exception as e:  # DNSNameError, timeouts, ...
        raise SRVLookupFailed(f"SRV lookup of {name} failed: {e!r}", name, e) from None
    found: List[Tuple[int, int, str]] = []
    for record in answers:
        if record.type != dns.SRV:
            continue
        srv = record.payload
        target = str(srv.target).rstrip(".")
        if not target:
            continue
        authority = f"[{target}]:{srv.port}" if ":" in target else f"{target}:{srv.port}"
        found.append((srv.priority, -srv.weight, f"{scheme}://{authority}"))
    if not found:
        raise SRVLookupFailed(f"no SRV record for {name}", name)
    found.sort()
    urls: List[str] = []
    for _p, _w, url in found:
        if url not in urls:
            urls.append(url)
    return urls
