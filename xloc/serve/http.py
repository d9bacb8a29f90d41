"""uvicorn's HTTP protocol with Nagle's algorithm off on every connection.

uvicorn writes a response's headers and body in two writes. asyncio turns Nagle off for the sockets it accepts, but
not in the processes of ``uvicorn --workers N``, which rebuild the listening socket from a file descriptor (its
protocol reads as 0, not TCP, and asyncio then leaves the option alone): the body waited for the client's delayed
ACK, 44 ms per request on loopback. This protocol sets ``TCP_NODELAY`` itself.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["NoDelayHttpToolsProtocol"]


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
