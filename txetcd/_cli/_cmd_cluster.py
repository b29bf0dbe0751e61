"""The cluster and maintenance verbs: ``member list/add/remove/update/promote``, ``endpoint
status/health/hashkv``, ``defrag``, ``snapshot save``, ``alarm list/disarm`` and
``move-leader``, with etcdctl 3.5's checks, messages, output and exit codes.

The endpoint verbs and ``defrag`` work on each endpoint of ``--endpoints`` in turn, named as
given, or with ``--cluster`` on every client URL of the member list.
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, gatherResults

from txetcd._cli import _flags
from txetcd._cli._command import (
    EXIT_BAD_ARGS,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Bool,
    CommandError,
    Context,
    Int,
    Str,
    register,
)
from txetcd._cli._printer_admin import call_failed, go_duration, go_error, go_list, parse_go_int
from txetcd._cli._printer_cluster import (
    Health,
    show_alarms,
    show_endpoint_hashes,
    show_endpoint_health,
    show_endpoint_status,
    show_member_added,
    show_member_changed,
    show_members,
    show_move_leader,
)
from txetcd._errors import EtcdError, PermissionDenied
from txetcd._maintenance import AlarmType, HashKVResult, StatusResult

__all__ = ["check_peer_urls", "endpoints_of"]

#: etcd's answer about a member ID it does not know (0 included, which the client refuses)
MEMBER_NOT_FOUND = "etcdserver: member not found"

_CLUSTER = Bool("cluster", "use all endpoints from the cluster member list")


# -- helpers ---------------------------------------------------------------------------------


def _stderr(ctx: Context, text: str) -> None:
    ctx.out.flush()
    if ctx.stderr is not None:
        ctx.stderr.write(text.encode("utf-8", "replace") + b"\n")
        ctx.stderr.flush()


def _url(ctx: Context, endpoint: str) -> str:
    """An endpoint as given (``host:port``) as the URL the client wants."""
    if "://" in endpoint:
        return endpoint
    return ("https://" if ctx.connection().secure else "http://") + endpoint


async def endpoints_of(ctx: Context) -> List[str]:
    """The endpoints an endpoint verb works on: ``--endpoints`` as given, or with ``--cluster``
    every client URL of the member list."""
    if not ctx.options.cluster:
        return list(ctx.connection().endpoints)
    client = await ctx.client()
    try:
        members = await client.member_list()
    except EtcdError as e:
        raise CommandError(
            EXIT_ERROR,
            f"failed to fetch endpoints from etcd cluster member list: {go_error(e)}",
        ) from None
    return [url for m in members for url in m.client_urls]


def check_peer_urls(urls: Sequence[str]) -> None:
    """clientv3's check of peer URLs before a member add or update (``types.NewURLs``), with
    its messages."""
    for given in urls:
        text = given.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise CommandError(
                EXIT_ERROR, f"URL scheme must be http, https, unix, or unixs: {text}"
            )
        if not _host_port(parts.netloc):
            raise CommandError(
                EXIT_ERROR, f'URL address does not have the form "host:port": {text}'
            )
        if parts.path:
            raise CommandError(EXIT_ERROR, f"URL must not contain a path: {text}")


def _host_port(netloc: str) -> bool:
    """Whether Go's ``net.SplitHostPort`` takes ``netloc``."""
    host = netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        close = host.find("]")
        return close > 0 and host[close + 1 : close + 2] == ":" and ":" not in host[close + 2 :]
    head, colon, _ = host.rpartition(":")
    return bool(colon) and ":" not in head and "[" not in head and "]" not in head


def _member_id(ctx: Context) -> int:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "member ID is not provided")
    try:
        return parse_go_int(ctx.args[0], 16, unsigned=True)
    except ValueError as e:
        raise CommandError(EXIT_BAD_ARGS, f"bad member ID arg ({e}), expecting ID in Hex") from None


# -- member ----------------------------------------------------------------------------------


async def _member_list(ctx: Context) -> None:
    client = await ctx.client()
    result = await client.member_list()
    show_members(ctx.out, result)


async def _member_add(ctx: Context) -> None:
    if not ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "member name not provided")
    if len(ctx.args) > 1:
        message = "too many arguments"
        for word in ctx.args:
            if word.lower().startswith("http"):
                message += f", did you mean --peer-urls={word}"
        raise CommandError(EXIT_BAD_ARGS, message)
    peer_urls = ctx.options.peer_urls
    if not peer_urls:
        raise CommandError(EXIT_BAD_ARGS, "member peer urls not provided")
    urls = peer_urls.split(",")
    check_peer_urls(urls)
    client = await ctx.client()
    result = await client.member_add([u.strip() for u in urls], is_learner=ctx.options.learner)
    show_member_added(ctx.out, ctx.args[0], peer_urls, result)


async def _member_remove(ctx: Context) -> None:
    await _member_change(ctx, "remove")


async def _member_update(ctx: Context) -> None:
    await _member_change(ctx, "update")


async def _member_promote(ctx: Context) -> None:
    await _member_change(ctx, "promote")


async def _member_change(ctx: Context, change: str) -> None:
    member_id = _member_id(ctx)
    urls: List[str] = []
    if change == "update":
        if not ctx.options.peer_urls:
            raise CommandError(EXIT_BAD_ARGS, "member peer urls not provided")
        urls = ctx.options.peer_urls.split(",")
        check_peer_urls(urls)
    client = await ctx.client()
    if member_id == 0:
        raise CommandError(EXIT_ERROR, MEMBER_NOT_FOUND)
    if change == "remove":
        result = await client.member_remove(member_id)
        verb = "removed from"
    elif change == "update":
        result = await client.member_update(member_id, [u.strip() for u in urls])
        verb = "updated in"
    else:
        result = await client.member_promote(member_id)
        verb = "promoted in"
    show_member_changed(ctx.out, verb, member_id, result)


# -- endpoint --------------------------------------------------------------------------------


async def _endpoint_status(ctx: Context) -> int:
    client = await ctx.client()
    report: List[Tuple[str, StatusResult]] = []
    failed = False
    for endpoint in await endpoints_of(ctx):
        try:
            report.append((endpoint, await client.status(_url(ctx, endpoint))))
        except EtcdError as e:
            failed = True
            _stderr(ctx, f"Failed to get the status of endpoint {endpoint} ({go_error(e)})")
    show_endpoint_status(ctx.out, report)
    return EXIT_ERROR if failed else 0


async def _endpoint_hashkv(ctx: Context) -> None:
    client = await ctx.client()
    report: List[Tuple[str, HashKVResult]] = []
    error = None
    for endpoint in await endpoints_of(ctx):
        try:
            report.append((endpoint, await client.hash_kv(_url(ctx, endpoint), ctx.options.rev)))
        except EtcdError as e:
            error = e
            _stderr(ctx, f"Failed to get the hash of endpoint {endpoint} ({go_error(e)})")
    show_endpoint_hashes(ctx.out, report)
    if error is not None:
        raise call_failed(error)


async def _endpoint_health(ctx: Context) -> None:
    endpoints = await endpoints_of(ctx)
    report: List[Health] = await gatherResults([_health(ctx, e) for e in endpoints])
    show_endpoint_health(ctx.out, ctx.stderr, report)
    if any(h.error for h in report):
        raise CommandError(EXIT_ERROR, "unhealthy cluster")


def _health(ctx: Context, endpoint: str) -> "Deferred[Health]":
    return Deferred.fromCoroutine(_check_health(ctx, endpoint))


async def _check_health(ctx: Context, endpoint: str) -> Health:
    """etcdctl's check of one endpoint: a read through consensus (``permission denied``
    counts as an answer), then no alarm raised."""
    settings = dataclasses.replace(ctx.connection(), endpoints=(endpoint,), discovery_srv=None)
    client = await _flags.connect(settings, ctx.reactor)
    try:
        started = ctx.reactor.seconds()
        error = ""
        try:
            await client.get(b"health")
        except PermissionDenied:
            pass
        except EtcdError as e:
            error = go_error(e)
        took = go_duration(ctx.reactor.seconds() - started)
        if not error:
            try:
                alarms = await client.alarm_list()
            except EtcdError:
                error = "Unable to fetch the alarm list"
            else:
                if alarms.alarms:
                    names = {AlarmType.NOSPACE: "NOSPACE ", AlarmType.CORRUPT: "CORRUPT "}
                    error = "Active Alarm(s): " + "".join(
                        names.get(a.alarm, "UNKNOWN ") for a in alarms.alarms
                    )
        return Health(endpoint, not error, took, error)
    finally:
        await client.close()


# -- defrag, snapshot, alarm, move-leader ------------------------------------------------------


async def _defrag(ctx: Context) -> int:
    if ctx.options.data_dir:
        raise CommandError(
            EXIT_BAD_FEATURE, "defrag --data-dir is not supported here: use etcdutl defrag"
        )
    client = await ctx.client()
    failures = 0
    for endpoint in await endpoints_of(ctx):
        try:
            await client.defragment(_url(ctx, endpoint))
        except EtcdError as e:
            failures += 1
            _stderr(ctx, f"Failed to defragment etcd member[{endpoint}] ({go_error(e)})")
        else:
            ctx.out.line(f"Finished defragmenting etcd member[{endpoint}]")
            ctx.out.flush()
    return EXIT_ERROR if failures else 0


def _command_timeout_given(ctx: Context) -> bool:
    return "ETCDCTL_COMMAND_TIMEOUT" in ctx.environ or any(
        word == "--command-timeout" or word.startswith("--command-timeout=") for word in ctx.argv
    )


async def _snapshot_save(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "snapshot save expects one argument")
    path = ctx.args[0]
    connection = ctx.connection()
    if not connection.discovery_srv and len(connection.endpoints) != 1:
        raise CommandError(
            EXIT_INTERRUPTED,
            "snapshot must be requested to one selected node, not multiple "
            + go_list(list(connection.endpoints)).decode("utf-8", "replace"),
        )
    client = await ctx.client()
    # without --command-timeout, etcdctl gives the transfer no limit
    timeout = connection.command_timeout if _command_timeout_given(ctx) else None
    try:
        await client.snapshot(path, timeout=timeout)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise CommandError(
            EXIT_INTERRUPTED, f"could not open {path}.part (open {path}.part: {reason})"
        ) from None
    except EtcdError as e:
        raise call_failed(e, EXIT_INTERRUPTED) from None
    ctx.out.line(f"Snapshot saved at {path}")


async def _alarm_list(ctx: Context) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "alarm list command accepts no arguments")
    client = await ctx.client()
    result = await client.alarm_list()
    show_alarms(ctx.out, result)


async def _alarm_disarm(ctx: Context) -> None:
    if ctx.args:
        raise CommandError(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments")
    client = await ctx.client()
    result = await client.alarm_disarm()
    show_alarms(ctx.out, result, with_header=False)


async def _move_leader(ctx: Context) -> None:
    if len(ctx.args) != 1:
        raise CommandError(EXIT_BAD_ARGS, "move-leader command needs 1 argument")
    try:
        target = parse_go_int(ctx.args[0], 16, unsigned=True)
    except ValueError as e:
        raise CommandError(EXIT_BAD_ARGS, str(e)) from None
    client = await ctx.client()
    endpoints = list(ctx.connection().endpoints)
    leader = None
    for endpoint in endpoints:
        status = await client.status(_url(ctx, endpoint))
        if status.is_leader:
            leader = status
            break
    if leader is None:
        raise CommandError(
            EXIT_BAD_ARGS,
            "no leader endpoint given at " + go_list(endpoints).decode("utf-8", "replace"),
        )
    if target == 0:
        raise CommandError(EXIT_ERROR, "etcdserver: bad leader transferee")
    result = await client.move_leader(target)
    show_move_leader(ctx.out, result)


# -- registration ----------------------------------------------------------------------------

_PEER_URLS_ADD = Str("peer-urls", "comma separated peer URLs for the new member.")

register(
    "member list",
    _member_list,
    summary="Lists all members in the cluster",
    description=(
        "When --write-out is set to simple, this command prints out comma-separated member\n"
        "lists for each endpoint. The items in the lists are ID, Status, Name, Peer Addrs,\n"
        "Client Addrs, Is Learner."
    ),
)
register(
    "member add",
    _member_add,
    summary="Adds a member into the cluster",
    usage="<memberName>",
    flags=[_PEER_URLS_ADD, Bool("learner", "indicates if the new member is raft learner")],
)
register(
    "member remove",
    _member_remove,
    summary="Removes a member from the cluster",
    usage="<memberID>",
)
register(
    "member update",
    _member_update,
    summary="Updates a member in the cluster",
    usage="<memberID>",
    flags=[Str("peer-urls", "comma separated peer URLs for the updated member.")],
)
register(
    "member promote",
    _member_promote,
    summary="Promotes a non-voting member in the cluster",
    usage="<memberID>",
    description="Promotes a non-voting learner member to a voting one in the cluster.",
)
register(
    "endpoint status",
    _endpoint_status,
    summary="Prints out the status of endpoints specified in `--endpoints` flag",
    flags=[_CLUSTER],
    description=(
        "When --write-out is set to simple, this command prints out comma-separated status\n"
        "lists for each endpoint. The items in the lists are endpoint, ID, version, db size,\n"
        "is leader, is learner, raft term, raft index, raft applied index, errors."
    ),
)
register(
    "endpoint health",
    _endpoint_health,
    summary="Checks the healthiness of endpoints specified in `--endpoints` flag",
    flags=[_CLUSTER],
)
register(
    "endpoint hashkv",
    _endpoint_hashkv,
    summary="Prints the KV history hash for each endpoint in --endpoints",
    flags=[_CLUSTER, Int("rev", "maximum revision to hash (default: all revisions)")],
)
register(
    "defrag",
    _defrag,
    summary="Defragments the storage of the etcd members with given endpoints",
    flags=[
        _CLUSTER,
        Str("data-dir", "not supported here: use etcdutl defrag for a data directory"),
    ],
)
register(
    "snapshot save",
    _snapshot_save,
    summary="Stores an etcd node backend snapshot to a given file",
    usage="<filename>",
)
register("alarm list", _alarm_list, summary="Lists all alarms")
register("alarm disarm", _alarm_disarm, summary="Disarms all alarms")
register(
    "move-leader",
    _move_leader,
    summary="Transfers leadership to another etcd cluster member.",
    usage="<transferee-member-id>",
)
