"""Send messages to Channels consumers from synchronous worker code.

`async_to_sync(layer.send)` would build a new event loop and Redis connection pool per call; a
worker instead keeps one loop in a daemon thread (per process) and reuses its connections.
"""
from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

_lock = threading.Lock()
_state: tuple[int, asyncio.AbstractEventLoop, Any] | None = None


def _loop_and_layer() -> tuple[asyncio.AbstractEventLoop, Any]:
    global _state
    with _lock:
        if _state is None or _state[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-push", daemon=True).start()
            _state = (os.getpid(), loop, get_channel_layer())
        return _state[1], _state[2]


def push(channel: str, message: dict[str, Any], timeout: float = 5.0) -> None:
    """Deliver `message` to `channel` (a consumer's or a waiting view's) through the layer."""
    loop, layer = _loop_and_layer()
    asyncio.run_coroutine_threadsafe(layer.send(channel, message), loop).result(timeout)
