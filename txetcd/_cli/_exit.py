"""etcdctl's exit codes, and the error a verb raises for a user mistake."""

from __future__ import annotations

__all__ = [
    "CommandError",
    "EXIT_BAD_ARGS",
    "EXIT_BAD_CONNECTION",
    "EXIT_BAD_FEATURE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_INPUT",
    "EXIT_IO",
    "EXIT_SUCCESS",
]

#: etcdctl's exit codes (``pkg/cobrautl``)
EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3  # txn and watch input
EXIT_BAD_FEATURE = 4  # a valid flag with an unsupported value (an output format, a sort order)
EXIT_INTERRUPTED = 5  # a watch ended by the server
EXIT_IO = 6
EXIT_BAD_ARGS = 128  # a missing or extra argument


class CommandError(Exception):
    """A user mistake or a failed command: printed as one ``Error: message`` line on stderr;
    the process exits with ``code`` (one of the EXIT_* constants)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
