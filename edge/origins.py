"""Origin checks: exact scheme, host and port, as Django's CSRF check does for forms, for WebSockets
and for POSTs to the CSRF-exempt upload API.

Channels' AllowedHostsOriginValidator compares only the origin's host name with ALLOWED_HOSTS, so a
page on any port of an allowed host (another app on localhost:3000, say) could open sockets here
with its visitors' browsers. A socket is accepted when its Origin is the site itself (the Host the
browser connected to, with the same scheme and port, that host being allowed) or is listed exactly
in CSRF_TRUSTED_ORIGINS. No Origin, no socket: non-browser clients must send one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.http.request import split_domain_port, validate_host

from contract.errors import error_body

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]

DEFAULT_PORTS = {"http": "80", "https": "443"}


def _normal(scheme: str, netloc: str) -> str | None:
    """scheme://host:port with the port always written out; None if it cannot be read."""
    host, port = split_domain_port(netloc.lower())
    if not host or scheme not in DEFAULT_PORTS:
        return None
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def origin_allowed(origin: str, host_header: str, secure: bool, allowed_hosts: list[str], trusted_origins: list[str]) -> bool:
    parts = urlsplit(origin)
    theirs = _normal(parts.scheme, parts.netloc)
    if theirs is None:
        return False
    trusted = {_normal(urlsplit(o).scheme, urlsplit(o).netloc) for o in trusted_origins}
    if theirs in trusted:
        return True
    host, _ = split_domain_port(host_header.lower())
    ours = _normal("https" if secure else "http", host_header)
    return theirs == ours and validate_host(host, allowed_hosts)


class SameOriginWebSocket:
    def __init__(self, app: App, allowed_hosts: list[str], trusted_origins: list[str]) -> None:
        self.app, self.allowed_hosts, self.trusted_origins = app, allowed_hosts, trusted_origins

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if not origin or not origin_allowed(
                origin, host, scope.get("scheme") == "wss", self.allowed_hosts, self.trusted_origins
            ):
                denier = WebsocketDenier()
                await denier(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SameOriginPosts:
    """Refuses a state-changing request to the CSRF-exempt API (/api/) that a browser sent from another
    site: `403 cross_site`, before any limit is counted (edge.throttle sits behind this).

    A multipart POST needs no CORS preflight, so without this any page could make its visitors'
    browsers upload here, spending their (or their whole NAT's) upload budget. Browsers send `Origin`
    with every cross-origin POST; it must be the site itself or listed in CSRF_TRUSTED_ORIGINS.
    Clients that send no `Origin` (curl, scripts) are not browsers acting for someone else and are
    served (docs/protocol.md).
    """

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: App, allowed_hosts: list[str], trusted_origins: list[str], prefix: str = "/api/") -> None:
        self.app, self.allowed_hosts, self.trusted_origins, self.prefix = app, allowed_hosts, trusted_origins, prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(self.prefix)
            and scope.get("method", "GET") not in self.SAFE_METHODS
        ):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin")
            if origin is not None and not origin_allowed(
                origin.decode("latin-1"),
                headers.get(b"host", b"").decode("latin-1"),
                scope.get("scheme") == "https",
                self.allowed_hosts,
                self.trusted_origins,
            ):
                await _forbid(send)
                return
        await self.app(scope, receive, send)


async def _forbid(send: Any) -> None:
    body = error_body("cross_site", "requests from other sites are not accepted; upload from this site's page")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
