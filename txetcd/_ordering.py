"""Go's "ordering" guarantee for ``Client(ordering=True)``: reads never go back in time.

The client remembers the newest store revision it has seen in any KV answer (a header's
``revision``). A read (a get, a read-only txn) answered from an older revision than the one
known when the call was made comes from a member that is behind (a serializable read of a
member just restarted, or cut off): the answer is refused with
:class:`~txetcd.RevisionWentBackwards`, which the transport treats like a member that cannot
serve: the endpoint backs off (the channel's endpoint machinery), the read is sent again to
another member after the resend backoff, within the call's deadline; when no member has caught
up in time, the call fails with that error.

The check is made in the answer's decoder (:meth:`Ordering.wrap`), so it is the same for both
transports, and costs nothing when ordering is off (the client then never calls it).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from txetcd._errors import RevisionWentBackwards
from txetcd._methods import DELETE_RANGE, PUT, RANGE, TXN

__all__ = ["ORDERED_PATHS", "Ordering"]

T = TypeVar("T")

#: the calls whose answers carry the store revision in their header
ORDERED_PATHS = frozenset({RANGE.path, PUT.path, DELETE_RANGE.path, TXN.path})


class Ordering:
    """The newest revision seen by one client, and the check of each answer against it."""

    __slots__ = ("revision",)

    def __init__(self) -> None:
        #: the newest store revision seen in an answer
        self.revision = 0

    def wrap(self, decode: Callable[[Any], T], *, read: bool) -> Callable[[Any], T]:
        """``decode``, which first notes the answer's revision and, for a ``read``, refuses an
        answer older than what was seen when the call was made (Go's rule: the revision known
        at the start of the call, so concurrent calls cannot refuse each other's answers)."""
        floor = self.revision if read else 0

        def checked(response: Any) -> T:
            revision = response.header.revision
            if revision < floor:
                raise RevisionWentBackwards(
                    f"the member answered from revision {revision}, older than revision "
                    f"{floor} already seen",
                    revision=revision,
                    seen=floor,
                )
            if revision > self.revision:
                self.revision = revision
            return decode(response)

        return checked
