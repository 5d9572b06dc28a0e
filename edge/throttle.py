"""Per-address rate limits (the `limits` library): uploads, new sockets and health checks.

Uploads and socket opens are counted in Redis, so every web process shares one budget per client
address; health checks are counted in the process's memory (they must answer when Redis does not).
When Redis is down the shared limits let requests through (logged): an outage of the counter must
not become an outage of the service. The messages of an address's open sockets are limited in the
web process itself (recognizer.ratelimit), since a Redis round trip per stroke message would cost
more than the message.

Each limit is a `limits` string such as "5/second;100/minute" (several windows, all must allow);
"off" disables it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from contract.errors import error_body
from edge.pages import CONTENT_TYPE, scope_wants_page, too_many_page
from edge.penalties import penalties, refusals

log = logging.getLogger(__name__)

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass
class Limit:
    """One named limit: its windows and the counter they are kept in."""

    name: str
    items: list[RateLimitItem]
    limiter: MovingWindowRateLimiter
    shared: bool  # counted in Redis (all processes) rather than in this process
    _warned_at: float = 0.0

    async def refused(self, address: str) -> int | None:
        """Count one event from `address`: None when every window allows it, else the seconds until
        the window that refused it allows one again (its Retry-After, at least 1)."""
        try:
            for item in self.items:
                if not await self.limiter.hit(item, self.name, address):
                    stats = await self.limiter.get_window_stats(item, self.name, address)
                    return max(1, int(stats.reset_time - time.time() + 0.999))
            return None
        except Exception as exc:  # the counter is down: let it through, say so now and then
            if time.monotonic() - self._warned_at > 10:
                self._warned_at = time.monotonic()
                log.warning("rate limit %s not counted (%r): allowing", self.name, exc)
            return None

    async def hit(self, address: str) -> bool:
        """Count one event from `address`; whether it is within every window."""
        return await self.refused(address) is None


def make_limit(name: str, spec: str, storage: Storage, shared: bool) -> Limit | None:
    if spec.strip().lower() in ("", "off", "none"):
        return None
    return Limit(name, parse_many(spec), MovingWindowRateLimiter(storage), shared)


class AddressLimits:
    """The process's limits (see `address_limits()`); `shared` is where uploads and socket opens are
    counted (Redis in the service, memory in unit tests)."""

    def __init__(self, shared: Storage, uploads: str, socket_opens: str, health: str, submits: str = "off") -> None:
        self.uploads = make_limit("upload", uploads, shared, True)
        self.submits = make_limit("submit", submits, shared, True)  # stored drawings (recognizer.consumers)
        self.socket_opens = make_limit("socket", socket_opens, shared, True)
        self.health = make_limit("health", health, MemoryStorage(), False)

    @classmethod
    def from_settings(cls) -> AddressLimits:
        from django.conf import settings

        # redis-py's asyncio client (the project's Redis client); one pool per process
        shared = RedisStorage(
            settings.REDIS_URL.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            key_prefix=f"{settings.REDIS_PREFIX}limits",
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        return cls(
            shared, settings.THROTTLE_UPLOADS, settings.THROTTLE_SOCKET_OPENS, settings.THROTTLE_HEALTH, settings.THROTTLE_SUBMITS
        )

    def for_path(self, path: str) -> Limit | None:
        if path.startswith("/api/predict"):
            return self.uploads
        if path in ("/healthz", "/livez"):
            return self.health
        return None


_limits: AddressLimits | None = None


def address_limits() -> AddressLimits:
    global _limits
    if _limits is None:
        _limits = AddressLimits.from_settings()
    return _limits


class HttpThrottle:
    """Answers `429 rate_limited` (with the refusing window's Retry-After) before the app or the body is
    touched (an HTML page for a browser's page request, edge.pages); an address that goes on asking
    regardless is refused at accept (edge.penalties)."""

    def __init__(self, app: App, limits: Callable[[], AddressLimits] = address_limits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("client"):
            limit = self.limits().for_path(scope["path"])
            address = scope["client"][0]
            retry_after = await limit.refused(address) if limit is not None else None
            if limit is not None and retry_after is not None:
                if refusals.flooding(address, retry_after):  # asks on and on: refused at accept until then
                    penalties.refuse(address, retry_after)
                await self._refuse(send, limit, retry_after, page=scope_wants_page(scope))
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Any, limit: Limit, retry_after: int, *, page: bool = False) -> None:
        """The JSON error; a small HTML page for a browser's page request (edge.pages)."""
        if page:
            body, content_type = too_many_page(retry_after), CONTENT_TYPE
        else:
            body = error_body("rate_limited", f"too many {limit.name} requests from this address; retry in {retry_after} s")
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
