"""The lease answers as etcdctl 3.5 writes them (``simple``, ``json``, ``fields``; ``table``
and ``protobuf`` are refused with exit 4, as etcdctl refuses ``table``).

clientv3's lease answers embed the header (its fields come first in the JSON object) and use
their own JSON names: ``ID``/``TTL`` for grant and keep-alive, ``id``/``ttl``/``granted-ttl``/
``keys`` for time-to-live, ``leases: [{"id": ...}]`` for the list. With ``-w protobuf``
etcdctl writes only that embedded header (the one part of those answers that is a protobuf
message), and refuses a revoke's answer.
"""

from __future__ import annotations

from typing import Any, Dict

from txetcd._cli._exit import EXIT_BAD_FEATURE, CommandError
from txetcd._cli._printer import Output, go_quote
from txetcd._cli._printer_admin import (
    compact_header,
    fields_header,
    flat_header,
    go_list,
    header_pb,
)
from txetcd._cli._printer_json import b64, header_json
from txetcd._keepalive import LeaseKeepAliveResult
from txetcd._lease import LeaseGrantResult, LeaseRevokeResult, LeasesResult, LeaseTimeToLiveResult

__all__ = [
    "lease_hex",
    "show_grant",
    "show_keepalive",
    "show_keepalive_end",
    "show_leases",
    "show_revoke",
    "show_time_to_live",
]


def lease_hex(lease_id: int) -> str:
    """A lease ID as etcdctl writes it: Go's ``%016x`` of a signed 64-bit integer."""
    return f"{lease_id:016x}"


def show_grant(out: Output, result: LeaseGrantResult) -> None:
    """``lease grant``'s answer."""
    if out.format == "simple":
        out.line(f"lease {lease_hex(result.id)} granted with TTL({result.ttl}s)")
    elif out.format == "json":
        body: Dict[str, Any] = flat_header(result.header)
        body.update(ID=result.id, TTL=result.ttl, Error="")
        out.json(body)
    elif out.format == "fields":
        fields_header(out, result.header)
        out.line(f'"ID" : {result.id}')
        out.line(f'"TTL" : {result.ttl}')
    elif out.format == "protobuf":
        out.write(header_pb(result.header).SerializeToString())
    else:
        out.unsupported()


def show_revoke(out: Output, lease_id: int, result: LeaseRevokeResult) -> None:
    """``lease revoke``'s answer."""
    if out.format == "simple":
        out.line(f"lease {lease_hex(lease_id)} revoked")
    elif out.format == "json":
        out.json({"header": header_json(result.header)})
    elif out.format == "fields":
        fields_header(out, result.header)
    elif out.format == "protobuf":
        raise CommandError(
            EXIT_BAD_FEATURE,
            "marshal unsupported for type clientv3.LeaseRevokeResponse "
            f"({{{compact_header(result.header)} {{}} [] 0}})",
        )
    else:
        out.unsupported()


def show_keepalive(out: Output, result: LeaseKeepAliveResult) -> None:
    """One refresh of ``lease keep-alive``."""
    if out.format == "simple":
        out.line(f"lease {lease_hex(result.id)} keepalived with TTL({result.ttl})")
    elif out.format == "json":
        body: Dict[str, Any] = flat_header(result.header)
        body.update(ID=result.id, TTL=result.ttl)
        out.json(body)
    elif out.format == "fields":
        fields_header(out, result.header)
        out.line(f'"ID" : {result.id}')
        out.line(f'"TTL" : {result.ttl}')
    elif out.format == "protobuf":
        out.write(header_pb(result.header).SerializeToString())
    else:
        out.unsupported()


def show_keepalive_end(out: Output, lease_id: int) -> None:
    """The last line of ``lease keep-alive`` once the lease is gone (simple output only)."""
    if out.format == "simple":
        out.line(f"lease {lease_hex(lease_id)} expired or revoked.")


def show_time_to_live(out: Output, result: LeaseTimeToLiveResult, keys: bool) -> None:
    """``lease timetolive``'s answer (``keys``: ``--keys`` was given)."""
    if out.format == "simple":
        if result.granted_ttl == 0 and result.ttl == -1:
            out.line(f"lease {lease_hex(result.id)} already expired")
            return
        text = (
            f"lease {lease_hex(result.id)} granted with TTL({result.granted_ttl}s), "
            f"remaining({result.ttl}s)"
        ).encode()
        if keys:
            text += b", attached keys(" + go_list(result.keys) + b")"
        out.line(text)
    elif out.format == "json":
        body: Dict[str, Any] = flat_header(result.header)
        body.update(
            {
                "id": result.id,
                "ttl": result.ttl,
                "granted-ttl": result.granted_ttl,
                "keys": [b64(k) for k in result.keys] or None,
            }
        )
        out.json(body)
    elif out.format == "fields":
        fields_header(out, result.header)
        out.line(f'"ID" : {result.id}')
        out.line(f'"TTL" : {result.ttl}')
        out.line(f'"GrantedTTL" : {result.granted_ttl}')
        for key in result.keys:
            out.line(f'"Key" : {go_quote(key)}')
    elif out.format == "protobuf":
        out.write(header_pb(result.header).SerializeToString())
    else:
        out.unsupported()


def show_leases(out: Output, result: LeasesResult) -> None:
    """``lease list``'s answer."""
    if out.format == "simple":
        out.line(f"found {len(result.leases)} leases")
        for lease_id in result.leases:
            out.line(lease_hex(lease_id))
    elif out.format == "json":
        body: Dict[str, Any] = flat_header(result.header)
        body["leases"] = [{"id": lease_id} for lease_id in result.leases]
        out.json(body)
    elif out.format == "fields":
        fields_header(out, result.header)
        for lease_id in result.leases:
            out.line(f'"ID" : {lease_id}')
    elif out.format == "protobuf":
        out.write(header_pb(result.header).SerializeToString())
    else:
        out.unsupported()
