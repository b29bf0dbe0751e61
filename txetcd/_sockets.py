"""The one socket fast path, shared by the HTTP/2 connection and the HTTP/1.1 pool.

Twisted's ``write()`` only buffers: the bytes leave on the reactor's next turn, after an
``epoll_ctl``/``epoll_wait`` pair. When nothing is buffered, sending on the socket at once keeps
the order of bytes and saves that round; whatever the kernel does not take (or any error) goes
through ``write()``, so Twisted still owns buffering, errors and closing. Only a plain TCP
connection qualifies: a TLS transport (which forwards attribute lookups to the TCP transport
under it, ``socket`` included) must see every byte, or plain text would reach the wire.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet import tcp as _tcp

__all__ = ["direct_sender", "send_now"]


def _send(t: Any, data: bytes) -> None:
    if t._tempDataBuffer or t.dataBuffer or t.disconnecting or not t.connected:
        t.write(data)
        return
    try:
        n = t.socket.send(data)
    except (BlockingIOError, InterruptedError):
        n = 0
    except OSError:
        t.write(data)  # let Twisted see and report the failure
        return
    if n < len(data):
        t.write(data[n:])


def direct_sender(transport: Any) -> Optional[Callable[[bytes], None]]:
    """A function sending on ``transport``'s socket at once when nothing is buffered, or
    ``None`` when ``transport`` is not a plain TCP connection (TLS, test transports)."""
    if not isinstance(transport, _tcp.Connection):
        return None

    def send(data: bytes) -> None:
        _send(transport, data)

    return send


def send_now(transport: Any, data: bytes) -> None:
    """Write ``data``, straight onto the socket when ``transport`` is plain TCP with nothing
    buffered; through ``write()`` otherwise."""
    if isinstance(transport, _tcp.Connection):
        _send(transport, data)
    else:
        transport.write(data)
