"""The one resend rule and the one backoff policy, used by every transport and every loop.

**Resend rule** (Go clientv3's): a call that failed may be sent again when it is a read, or when
it certainly never reached the server (not yet written, refused before it was processed, or
rejected for its auth token, which etcd checks before applying anything). A mutation that may
have been seen is never sent again: it fails with :class:`~txetcd.OutcomeUnknown` and the caller
decides. :func:`may_resend` is the only place this is decided; the gRPC channel, the JSON gateway
and the v2 client all ask it.

**Backoff** (Twisted's ``backoffPolicy`` shape): :func:`backoff_policy` returns a plain function
of the number of failures in a row (0 for the first), giving the seconds to wait, with jitter.
Every wait before a resend, a reconnect, a watch resume, a keepalive stream reopen, a Mirror
re-list and the v2 loops comes from one such function, on the injected clock.
"""

from __future__ import annotations

import random
from typing import Callable

from txetcd._errors import LearnerNotSupported, NoLeader, RevisionWentBackwards, Unavailable

__all__ = ["backoff_policy", "may_resend", "may_resend_after", "member_unfit", "RESEND_BACKOFF"]


def backoff_policy(
    initial: float = 0.05,
    maximum: float = 5.0,
    factor: float = 2.0,
    jitter: Callable[[], float] = random.random,
) -> Callable[[int], float]:
    """A backoff policy as a plain function: failures in a row (0 first) -> seconds to wait.

    The wait is ``min(initial * factor ** failures, maximum)``, scaled by a random factor in
    ``[0.5, 1)`` (``jitter()`` gives the random part, in ``[0, 1)``), so many clients that broke
    at once do not come back at once.
    """
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError("backoff needs initial >= 0, maximum >= 0 and factor >= 1")

    def policy(failures: int) -> float:
        delay: float = min(initial * factor ** min(max(failures, 0), 64), maximum)
        return delay * (0.5 + 0.5 * jitter())

    return policy


def may_resend(*, idempotent: bool, maybe_sent: bool, auth_rejected: bool = False) -> bool:
    """Whether a failed call may be sent again (see the module docstring).

    :param idempotent: the call only reads (a get, a read-only txn, a keepalive refresh).
    :param maybe_sent: the request may have reached the server.
    :param auth_rejected: the server refused the call for its auth token, so applied nothing.
    """
    return idempotent or not maybe_sent or auth_rejected


def may_resend_after(error: BaseException, *, idempotent: bool) -> bool:
    """Whether a call that etcd *answered* with ``error`` may be sent again: a read that met an
    UNAVAILABLE answer (no leader, leader changed, request timed out, server stopping, a learner
    that serves no such call), as Go's clientv3 does for its immutable calls; and any call
    answered ``no leader`` (sent with ``hasleader``, it was refused before anything was
    proposed), so calls made during an election wait for the new leader within their deadline.
    A write answered otherwise may have been applied: its answer decides (see
    :func:`txetcd._errors.error_from_status`)."""
    if isinstance(error, NoLeader):
        return True  # asked with hasleader: refused before anything was proposed
    return idempotent and isinstance(error, (Unavailable, RevisionWentBackwards))


def member_unfit(error: BaseException) -> bool:
    """Whether an answer says the member itself cannot serve now (no leader, a learner, or
    behind what the client has seen: ``ordering``), so the next attempt should go to another
    endpoint."""
    return isinstance(error, (NoLeader, LearnerNotSupported, RevisionWentBackwards))


#: the wait before a unary call is sent again (a short first wait, then doubling, up to 1 s)
RESEND_BACKOFF: Callable[[int], float] = backoff_policy(initial=0.02, maximum=1.0)
