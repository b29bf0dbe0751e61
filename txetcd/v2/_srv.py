"""Finding etcd members by DNS SRV records, for the v2 client (the lookup is
:mod:`txetcd._srv`'s, shared with :meth:`txetcd.Client.from_srv`)."""

from __future__ import annotations

from typing import Any, List, Optional

from txetcd._srv import SRVLookupFailed, lookup_srv, srv_name
from txetcd.v2._errors import EtcdConnectionFailed

__all__ = ["lookup_endpoints", "srv_name"]


async def lookup_endpoints(
    domain: str, protocol: str, *, resolver: Optional[Any] = None
) -> List[str]:
    """The members' URLs from the domain's SRV records, by priority, then weight (highest
    first). :raises ~txetcd.v2.EtcdConnectionFailed: no record, or the lookup failed."""
    try:
        return await lookup_srv(domain, protocol, resolver=resolver)
    except SRVLookupFailed as e:
        raise EtcdConnectionFailed(str(e), cause=e.cause) from None
