"""The cluster and maintenance answers as etcdctl 3.5 writes them: members, endpoint status,
health and hashes, alarms, a moved leader.

Which formats each answer has follows etcdctl: ``table`` for the member list and the
endpoint answers only, ``fields`` for all but the member changes and the leader move,
``protobuf`` for all but the endpoint answers; the rest is refused with exit 4, after the call
was made (as etcdctl does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from txetcd._cli._printer import Output, go_quote
from txetcd._cli._printer_admin import (
    fields_header,
    go_list,
    header_or_empty,
    hex_id,
    humanize_bytes,
    set_header,
)
from txetcd._cli._printer_json import encode, header_json, omit_empty
from txetcd._cluster import Member, MemberAddResult, MemberListResult
from txetcd._maintenance import AlarmResult, HashKVResult, MoveLeaderResult, StatusResult
from txetcd._proto import rpc_pb2

__all__ = [
    "Health",
    "show_alarms",
    "show_endpoint_hashes",
    "show_endpoint_health",
    "show_endpoint_status",
    "show_member_added",
    "show_member_changed",
    "show_members",
    "show_move_leader",
]


# -- members ---------------------------------------------------------------------------------


def _member_json(member: Member) -> Dict[str, Any]:
    return omit_empty(
        (
            ("ID", member.id),
            ("name", member.name),
            ("peerURLs", list(member.peer_urls)),
            ("clientURLs", list(member.client_urls)),
            ("isLearner", member.is_learner),
        )
    )


def _member_pb(target: Any, member: Member) -> None:
    target.SetInParent()
    target.ID = member.id
    target.name = member.name
    target.peerURLs.extend(member.peer_urls)
    target.clientURLs.extend(member.client_urls)
    target.isLearner = member.is_learner


def _members_pb(message: Any, members: Sequence[Member]) -> bytes:
    for member in members:
        _member_pb(message.members.add(), member)
    data: bytes = message.SerializeToString()
    return data


def _member_rows(members: Sequence[Member]) -> List[List[str]]:
    return [
        [
            hex_id(m.id),
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peer_urls),
            ",".join(m.client_urls),
            "true" if m.is_learner else "false",
        ]
        for m in members
    ]


_MEMBER_HEADER = ("ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner")


def show_members(out: Output, result: MemberListResult) -> None:
    """``member list``'s answer."""
    if out.format == "simple":
        for row in _member_rows(result.members):
            out.line(", ".join(row))
    elif out.format == "json":
        if out.hex:
            out.line(_members_hex_json(result))
        else:
            out.json(
                omit_empty(
                    (
                        ("header", header_json(result.header)),
                        ("members", [_member_json(m) for m in result.members]),
                    )
                )
            )
    elif out.format == "fields":
        fields_header(out, result.header)
        for m in result.members:
            out.line(f'"ID" : {m.id}')
            out.line(f'"Name" : {go_quote(m.name)}')
            for url in m.peer_urls:
                out.line(f'"PeerURL" : {go_quote(url)}')
            for url in m.client_urls:
                out.line(f'"ClientURL" : {go_quote(url)}')
            out.line(f'"IsLearner" : {"true" if m.is_learner else "false"}')
            out.line()
    elif out.format == "table":
        out.table(_MEMBER_HEADER, _member_rows(result.members))
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.MemberListResponse(), result.header)
        out.write(_members_pb(message, result.members))
    else:
        out.unsupported()


def _members_hex_json(result: MemberListResult) -> str:
    """etcdctl's hand-made JSON of ``member list -w json --hex``: IDs in hexadecimal strings
    (the raft term too, unquoted), no learner flag, ``clientURLS`` spelled so."""
    h = result.header
    parts = [
        f'{{"header":{{"cluster_id":"{hex_id(h.cluster_id)}","member_id":"{hex_id(h.member_id)}"'
        f',"raft_term":{hex_id(h.raft_term)}}}'
    ]
    for index, m in enumerate(result.members):
        parts.append(',"members":[{"ID":"' if index == 0 else ',{"ID":"')
        parts.append(
            f'{hex_id(m.id)}","name":"{m.name}","peerURLs":{_go_json_list(m.peer_urls)}'
            f',"clientURLS":{_go_json_list(m.client_urls)}}}'
        )
        if index == len(result.members) - 1:
            parts.append("]")
    parts.append("}")
    return "".join(parts)


def _go_json_list(items: Sequence[str]) -> str:
    return encode(list(items) or None)


def show_member_added(out: Output, name: str, peer_urls: str, result: MemberAddResult) -> None:
    """``member add``'s answer; ``name`` and ``peer_urls`` as given on the command line."""
    if out.format == "simple":
        out.line(
            f"Member {hex_id(result.member.id):>16} added to cluster "
            f"{hex_id(result.header.cluster_id):>16}"
        )
        cluster = []
        for m in result.members:
            for url in m.peer_urls:
                cluster.append(f"{name if m.id == result.member.id else m.name}={url}")
        out.line()
        out.line(f"ETCD_NAME={go_quote(name)}")
        out.line(f"ETCD_INITIAL_CLUSTER={go_quote(','.join(cluster))}")
        out.line(f"ETCD_INITIAL_ADVERTISE_PEER_URLS={go_quote(peer_urls)}")
        out.line('ETCD_INITIAL_CLUSTER_STATE="existing"')
    elif out.format == "json":
        out.json(
            omit_empty(
                (
                    ("header", header_json(result.header)),
                    ("member", _member_json(result.member)),
                    ("members", [_member_json(m) for m in result.members]),
                )
            )
        )
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.MemberAddResponse(), result.header)
        _member_pb(message.member, result.member)
        out.write(_members_pb(message, result.members))
    else:
        out.unsupported()


def show_member_changed(out: Output, verb: str, member_id: int, result: MemberListResult) -> None:
    """The answer to ``member remove`` (``verb`` "removed from"), ``update`` ("updated in")
    or ``promote`` ("promoted in")."""
    if out.format == "simple":
        out.line(
            f"Member {hex_id(member_id):>16} {verb} cluster {hex_id(result.header.cluster_id):>16}"
        )
    elif out.format == "json":
        out.json(
            omit_empty(
                (
                    ("header", header_json(result.header)),
                    ("members", [_member_json(m) for m in result.members]),
                )
            )
        )
    elif out.format == "protobuf":
        # (remove, update and promote answers are the same message on the wire)
        message = set_header(rpc_pb2.MemberListResponse(), result.header)
        out.write(_members_pb(message, result.members))
    else:
        out.unsupported()


# -- endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """One endpoint's health as ``endpoint health`` reports it."""

    endpoint: str
    health: bool
    took: str
    error: str = ""


def show_endpoint_health(out: Output, stderr: Any, report: Sequence[Health]) -> None:
    """``endpoint health``'s answer; in ``simple`` the unhealthy endpoints go to ``stderr``."""
    if out.format == "simple":
        for h in report:
            if not h.error:
                out.line(
                    f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}"
                )
            else:
                out.flush()
                stderr.write(
                    f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}\n".encode(
                        "utf-8", "replace"
                    )
                )
                stderr.flush()
    elif out.format == "json":
        out.json(
            [
                dict(
                    {"endpoint": h.endpoint, "health": h.health, "took": h.took},
                    **({"error": h.error} if h.error else {}),
                )
                for h in report
            ]
        )
    elif out.format == "fields":
        for h in report:
            out.line(f'"Endpoint" : {go_quote(h.endpoint)}')
            out.line(f'"Health" : {"true" if h.health else "false"}')
            out.line(f'"Took" : {h.took}')
            out.line(f'"Error" : {h.error}')
            out.line()
    elif out.format == "table":
        out.table(
            ("endpoint", "health", "took", "error"),
            [[h.endpoint, "true" if h.health else "false", h.took, h.error] for h in report],
        )
    else:
        out.unsupported()


def _status_json(s: StatusResult) -> Dict[str, Any]:
    return omit_empty(
        (
            ("header", None if s.header is None else header_json(s.header)),
            ("version", s.version),
            ("dbSize", s.db_size),
            ("leader", s.leader),
            ("raftIndex", s.raft_index),
            ("raftTerm", s.raft_term),
            ("raftAppliedIndex", s.raft_applied_index),
            ("errors", list(s.errors)),
            ("dbSizeInUse", s.db_size_in_use),
            ("isLearner", s.is_learner),
        )
    )


def show_endpoint_status(out: Output, report: Sequence[Tuple[str, StatusResult]]) -> None:
    """``endpoint status``'s answer: (endpoint as named, status) for each that answered."""
    rows = [
        [
            endpoint,
            hex_id(s.member_id),
            s.version,
            humanize_bytes(s.db_size),
            "true" if s.leader == s.member_id else "false",
            "true" if s.is_learner else "false",
            str(s.raft_term),
            str(s.raft_index),
            str(s.raft_applied_index),
            ", ".join(s.errors),
        ]
        for endpoint, s in report
    ]
    if out.format == "simple":
        for row in rows:
            out.line(", ".join(row))
    elif out.format == "json":
        out.json([{"Endpoint": endpoint, "Status": _status_json(s)} for endpoint, s in report])
    elif out.format == "fields":
        for endpoint, s in report:
            fields_header(out, s.header)
            out.line(f'"Version" : {go_quote(s.version)}')
            out.line(f'"DBSize" : {s.db_size}')
            out.line(f'"Leader" : {s.leader}')
            out.line(f'"IsLearner" : {"true" if s.is_learner else "false"}')
            out.line(f'"RaftIndex" : {s.raft_index}')
            out.line(f'"RaftTerm" : {s.raft_term}')
            out.line(f'"RaftAppliedIndex" : {s.raft_applied_index}')
            out.line(b'"Errors" : ' + go_list(s.errors))
            out.line(f'"Endpoint" : {go_quote(endpoint)}')
            out.line()
    elif out.format == "table":
        header = (
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        )
        out.table(header, rows)
    else:
        out.unsupported()


def show_endpoint_hashes(out: Output, report: Sequence[Tuple[str, HashKVResult]]) -> None:
    """``endpoint hashkv``'s answer: (endpoint as named, hash) for each that answered."""
    if out.format == "simple":
        for endpoint, h in report:
            out.line(f"{endpoint}, {h.hash}")
    elif out.format == "json":
        out.json(
            [
                {
                    "Endpoint": endpoint,
                    "HashKV": omit_empty(
                        (
                            ("header", header_json(h.header)),
                            ("hash", h.hash),
                            ("compact_revision", h.compact_revision),
                        )
                    ),
                }
                for endpoint, h in report
            ]
        )
    elif out.format == "fields":
        for endpoint, h in report:
            fields_header(out, h.header)
            out.line(f'"Endpoint" : {go_quote(endpoint)}')
            out.line(f'"Hash" : {h.hash}')
            out.line()
    elif out.format == "table":
        out.table(("endpoint", "hash"), [[endpoint, str(h.hash)] for endpoint, h in report])
    else:
        out.unsupported()


# -- alarms and the leader -------------------------------------------------------------------


def show_alarms(out: Output, result: AlarmResult, *, with_header: bool = True) -> None:
    """``alarm list``'s answer, or ``alarm disarm``'s (``with_header=False``: clientv3 builds
    that answer itself, without a header)."""
    if out.format == "simple":
        for alarm in result.alarms:
            out.line(f"memberID:{alarm.member_id} alarm:{alarm.alarm.name} ")
    elif out.format == "json":
        alarms = [
            omit_empty((("memberID", a.member_id), ("alarm", int(a.alarm)))) for a in result.alarms
        ]
        header = header_json(result.header) if with_header else None
        out.json(omit_empty((("header", header), ("alarms", alarms))))
    elif out.format == "fields":
        # (etcdctl 3.5 crashes on disarm's missing header; zeros here)
        fields_header(out, result.header if with_header else None)
        for alarm in result.alarms:
            out.line(f'"MemberID" : {alarm.member_id}')
            out.line(f'"AlarmType" : {alarm.alarm.name}')
            out.line()
    elif out.format == "protobuf":
        message = set_header(rpc_pb2.AlarmResponse(), result.header if with_header else None)
        for alarm in result.alarms:
            message.alarms.add(memberID=alarm.member_id, alarm=int(alarm.alarm))
        out.write(message.SerializeToString())
    else:
        out.unsupported()


def show_move_leader(out: Output, result: MoveLeaderResult) -> None:
    """``move-leader``'s answer."""
    if out.format == "simple":
        out.line(
            f"Leadership transferred from {hex_id(result.previous)} to {hex_id(result.target)}"
        )
    elif out.format == "json":
        out.json(header_or_empty(result.header))
    elif out.format == "protobuf":
        header = result.header if any(result.header) else None
        out.write(set_header(rpc_pb2.MoveLeaderResponse(), header).SerializeToString())
    else:
        out.unsupported()
