"""Addresses told to wait (429 with Retry-After) that come back early are refused at accept.

A flooder that ignores Retry-After still cost the web process a whole request per 429: HTTP parsing,
an ASGI application instance, the limit's counter (a Redis round trip for uploads), the answer. The
event loop it shares with every drawing socket of the process paid that, ~300 times a second in
bench/reliability.py's flood. So once an address is refused, new connections from it until its
Retry-After has passed are answered by the web server itself, before any HTTP is parsed
(edge.serve): a fixed 429 after a short hold (a closed-loop flooder then sends a request per
hold per connection instead of as fast as the server answers), the request never read.

Only floods are refused so: an address that goes on asking after its 429 (more than
PENALTY_AFTER_REFUSALS refusals before its Retry-After has passed), or whose new sockets were refused
(recognizer.consumers). A person's sixth upload in a second gets its 429 and nothing more: the page,
the admin and their sockets are still served.

Per process, in memory: each web process learns of an address by refusing it. Connections from
TRUSTED_PROXIES are never refused here (the proxy's address stands for many clients); sockets
already open are not touched.
"""

from __future__ import annotations

import os
import time

from contract.errors import error_body
from edge.pages import CONTENT_TYPE, too_many_page

HOLD_S = float(os.environ.get("PENALTY_HOLD_S", "1.0"))  # how long a refused connection waits for its answer
MAX_HELD = 128  # connections held at once per address; more are answered at once (file descriptors)
MAX_ADDRESSES = 10_000  # addresses remembered at once; the oldest go first
# refusals of one address's requests before its Retry-After has passed that make it a flood
PENALTY_AFTER_REFUSALS = int(os.environ.get("PENALTY_AFTER_REFUSALS", "10"))


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


class Refusals:
    """Address -> how many of its requests were refused since its first refusal, until that
    refusal's Retry-After has passed: past `limit`, the address is flooding."""

    def __init__(self, limit: int = PENALTY_AFTER_REFUSALS, max_addresses: int = MAX_ADDRESSES) -> None:
        self.limit, self.max_addresses = limit, max_addresses
        self._seen: dict[str, tuple[int, float]] = {}  # address -> (refusals, until when they count)

    def flooding(self, address: str, retry_after: float) -> bool:
        """One more request of `address` refused for `retry_after` s: whether it is now a flood."""
        now = time.monotonic()
        count, until = self._seen.pop(address, (0, 0.0))
        if now >= until:
            count, until = 0, now + retry_after
        self._seen[address] = (count + 1, until)  # re-inserted last: the dict's order is the age
        while len(self._seen) > self.max_addresses:
            del self._seen[next(iter(self._seen))]
        return count + 1 > self.limit


penalties = Penalties()  # the process's
refusals = Refusals()  # the process's, for HTTP limits (edge.throttle)


def refusal(retry_after: float, *, page: bool = False) -> bytes:
    """The whole HTTP answer to a refused connection: the JSON error, or for a browser's page request
    (`page`: edge.pages.head_wants_page) a small HTML page saying the same."""
    seconds = max(1, int(retry_after + 0.999))
    if page:
        body, content_type = too_many_page(seconds), CONTENT_TYPE
    else:
        body = error_body("rate_limited", f"too many requests from this address; retry in {seconds} s")
        content_type = b"application/json"
    return (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: %s\r\nRetry-After: %d\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (content_type, seconds, len(body), body)
    )
