"""Addresses told to wait (429 with Retry-After) that come back early are refused at accept.

A flooder that ignores Retry-After still cost the web process a whole request per 429: HTTP parsing,
an ASGI application instance, the limit's counter (a Redis round trip for uploads), the answer. The
event loop it shares with every drawing socket of the process paid that, ~300 times a second in
bench/reliability.py's flood. So once an address is refused, new connections from it until its
Retry-After has passed are answered by the web server itself, before any HTTP is parsed
(digitsite.serve): a fixed 429 after a short hold (a closed-loop flooder then sends a request per
hold per connection instead of as fast as the server answers), the request never read.

Per process, in memory: each web process learns of an address by refusing it once. Connections from
TRUSTED_PROXIES are never refused here (the proxy's address stands for many clients); sockets
already open are not touched.
"""
from __future__ import annotations

import json
import os
import time

HOLD_S = float(os.environ.get("PENALTY_HOLD_S", "1.0"))  # how long a refused connection waits for its answer
MAX_HELD = 128  # connections held at once per address; more are answered at once (file descriptors)
MAX_ADDRESSES = 10_000  # addresses remembered at once; the oldest go first


class Penalties:
    """Address -> when it may connect again (time.monotonic())."""

    def __init__(self, max_addresses: int = MAX_ADDRESSES) -> None:
        self.max_addresses = max_addresses
        self._until: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def refuse(self, address: str, seconds: float) -> None:
        """`address` was told to retry in `seconds`."""
        self._until.pop(address, None)  # re-inserted last: the dict's order is the age
        self._until[address] = time.monotonic() + seconds
        while len(self._until) > self.max_addresses:
            del self._until[next(iter(self._until))]

    def remaining(self, address: str) -> float:
        """Seconds until `address` may connect again (0: it may now)."""
        until = self._until.get(address)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._until[address]
            return 0.0
        return left

    def hold(self, address: str) -> float | None:
        """How long to hold a refused connection from `address` before answering; None: answer it at
        once, not counted as held (MAX_HELD are held already). A held one is `release`d when answered."""
        held = self._held.get(address, 0)
        if held >= MAX_HELD:
            return None
        self._held[address] = held + 1
        return min(HOLD_S, self.remaining(address))

    def release(self, address: str) -> None:
        held = self._held.get(address, 0) - 1
        if held > 0:
            self._held[address] = held
        else:
            self._held.pop(address, None)


penalties = Penalties()  # the process's


def refusal(retry_after: float) -> bytes:
    """The whole HTTP answer to a refused connection."""
    seconds = max(1, int(retry_after + 0.999))
    body = json.dumps({"type": "error", "code": "rate_limited",
                       "message": f"too many requests from this address; retry in {seconds} s"}).encode()
    return (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: %d\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (seconds, len(body), body))
