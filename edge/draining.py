"""A web process's graceful shutdown: finish what is in flight, then close every socket politely.

On SIGTERM, edge.serve stops accepting connections and calls `drain()`: each open connection
waits (bounded) until its predictions are answered and its submits stored and acknowledged, then
closes with code 4001 (recognizer.consumers.CLOSE_RESTARTING), so the page reconnects (to another
web process, or to this one's successor) and sends its drawing again. Meanwhile /healthz says "draining" (not ready).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Drainable(Protocol):
    async def drain(self, deadline: float) -> None:
        """Finish in-flight work by loop time `deadline` (or give up then), then close."""


_open: set[Drainable] = set()
_draining = False


def register(conn: Drainable) -> None:
    _open.add(conn)


def unregister(conn: Drainable) -> None:
    _open.discard(conn)


def draining() -> bool:
    """Whether this process is shutting down (new sockets are turned away, health says not ready)."""
    return _draining


async def drain(timeout_s: float) -> int:
    """Drain every open connection within `timeout_s`; returns how many there were."""
    global _draining
    _draining = True
    conns = list(_open)
    deadline = asyncio.get_running_loop().time() + timeout_s
    results = await asyncio.gather(*(conn.drain(deadline) for conn in conns), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.warning("draining a connection failed: %r", result)
    return len(conns)
