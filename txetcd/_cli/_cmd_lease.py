"""The lease verbs: ``lease grant``, ``lease revoke``, ``lease timetolive``, ``lease list`` and
``lease keep-alive``, with etcdctl 3.5's checks, messages, output and exit codes.

Lease IDs are read and written in hexadecimal, as etcdctl does. ``lease keep-alive`` refreshes
the lease a third of its TTL after each answer (on the reactor's clock) and writes every answer
until the lease is gone or the process is stopped (Ctrl-C).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import deferLater

from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_BAD_CONNECTION,
    EXIT_ERROR,
    Bool,
    CommandError,
    Context,
    register,
)
from txetcd._cli._printer_admin import call_failed, parse_go_int
from txetcd._cli._printer_lease import (
    show_grant,
    show_keepalive,
    show_keepalive_end,
    show_leases,
    show_revoke,
    show_time_to_live,
)
from txetcd._errors import EtcdError, LeaseNotFound
from txetcd._lease import LeaseTimeToLiveResult

__all__ = ["lease_arg"]

#: etcd's answer about a lease it does not know (a lease ID of 0 included, which the client
#: refuses to send)
LEASE_NOT_FOUND = "etcdserver: requested lease not found"

#: how often clientv3's keep-alive loop looks for leases due for a refresh
_TICK = 0.5


def lease_arg(text: str) -> int:
    """A lease ID given in hexadecimal (Go's ``ParseInt(text, 16, 64)``), etcdctl's message."""
    try:
        return parse_go_int(text, 16)
    except ValueError as e:
        raise CommandError(EXIT_BAD_ARGS, f"bad lease ID arg ({e}), expecting ID in Hex") from None


async def _grant(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "lease grant command needs TTL argument")
    try:
        ttl = parse_go_int(ctx.args[0], 10)
    except ValueError as e:
        raise CommandError(EXIT_BAD_ARGS, f"bad TTL ({e})") from None
    client = await ctx.client()
    try:
        # etcd raises any TTL below its minimum (2 s by default) to it, 0 and negative ones
        # too; the client takes 1 and up
        result = await client.grant(max(ttl, 1))
    except EtcdError as e:
        raise call_failed(e, EXIT_ERROR, "failed to grant lease ({})") from None
    show_grant(ctx.out, result)


async def _revoke(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "lease revoke command needs 1 argument")
    lease_id = lease_arg(ctx.args[0])
    client = await ctx.client()
    if lease_id == 0:
        raise CommandError(EXIT_ERROR, f"failed to revoke lease ({LEASE_NOT_FOUND})")
    try:
        result = await client.revoke(lease_id)
    except EtcdError as e:
        raise call_failed(e, EXIT_ERROR, "failed to revoke lease ({})") from None
    show_revoke(ctx.out, lease_id, result)


async def _time_to_live(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "lease timetolive command needs lease ID as argument")
    lease_id = lease_arg(ctx.args[0])
    client = await ctx.client()
    try:
        if lease_id == 0:  # etcd knows no lease 0: it answers as for an expired one
            header = (await client.leases()).header
            result = LeaseTimeToLiveResult(header, 0, -1, 0, ())
        else:
            result = await client.time_to_live(lease_id, keys=ctx.options.keys)
    except EtcdError as e:
        raise call_failed(e, EXIT_BAD_CONNECTION) from None
    show_time_to_live(ctx.out, result, ctx.options.keys)


async def _list(ctx: Context) -> None:
    client = await ctx.client()
    try:
        result = await client.leases()
    except EtcdError as e:
        raise call_failed(e, EXIT_BAD_CONNECTION) from None
    show_leases(ctx.out, result)


async def _keep_alive(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "lease keep-alive command needs lease ID as argument")
    lease_id = lease_arg(ctx.args[0])
    client = await ctx.client()
    if ctx.options.once:
        if lease_id == 0:
            raise CommandError(EXIT_BAD_CONNECTION, LEASE_NOT_FOUND)
        try:
            result = await client.keepalive_once(lease_id)
        except LeaseNotFound:
            raise CommandError(EXIT_BAD_CONNECTION, LEASE_NOT_FOUND) from None
        except EtcdError as e:
            raise call_failed(e, EXIT_BAD_CONNECTION) from None
        show_keepalive(ctx.out, result)
        return
    if lease_id != 0:
        # clientv3 gives the first answer the dial timeout and a second
        first_wait = ctx.connection().dial_timeout + 1.0
        await keep_alive(ctx, client, lease_id, first_wait)
    show_keepalive_end(ctx.out, lease_id)


async def keep_alive(ctx: Context, client: Any, lease_id: int, first_wait: float) -> None:
    """Refresh ``lease_id`` and write each answer until the lease is gone: the server says
    so, or no refresh was answered before the lease's deadline (``first_wait`` seconds for the
    first answer). Failed refreshes are sent again every half second meanwhile."""
    clock = ctx.reactor
    deadline = clock.seconds() + first_wait
    while True:
        wait: float
        try:
            result = await client.keepalive_once(lease_id)
        except LeaseNotFound:
            return
        except EtcdError:
            if clock.seconds() >= deadline:
                return
            wait = _TICK
        else:
            show_keepalive(ctx.out, result)
            ctx.out.flush()
            deadline = clock.seconds() + result.ttl
            wait = max(result.ttl / 3.0, _TICK)
        await deferLater(clock, wait, lambda: None)


register(
    "lease grant",
    _grant,
    summary="Creates leases",
    usage="<ttl>",
)
register(
    "lease revoke",
    _revoke,
    summary="Revokes leases",
    usage="<leaseID>",
)
register(
    "lease timetolive",
    _time_to_live,
    summary="Get lease information",
    usage="<leaseID>",
    flags=[Bool("keys", "Get keys attached to this lease")],
)
register(
    "lease list",
    _list,
    summary="List all active leases",
)
register(
    "lease keep-alive",
    _keep_alive,
    summary="Keeps leases alive (renew)",
    usage="<leaseID>",
    flags=[
        Bool(
            "once",
            "Resets the keep-alive time to its original value and exits immediately",
        )
    ],
)
