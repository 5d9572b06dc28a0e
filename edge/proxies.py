"""The client's address and scheme, taken from proxy headers only when a trusted proxy sent them.

daphne's `--proxy-headers` believes X-Forwarded-For from anyone, so a client could pick the address
its limits are counted under. Here the headers count only when the connection comes from an address
in TRUSTED_PROXIES (settings; none by default, as under `make run`, where nothing sits in front).
The client is then the right-most X-Forwarded-For entry that is not itself a trusted proxy: entries to
its left were written by the client and prove nothing. X-Forwarded-Proto from a trusted proxy sets
the scheme (https: Django's request.is_secure(), secure redirects and cookies).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.0/8', '127.0.0.1', ... -> networks (a bare address is a network of one)."""
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in spec if s.strip())


def is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: str | None, networks: tuple[Network, ...]) -> str:
    """The address to count a request under, given its TCP peer and X-Forwarded-For."""
    if not forwarded_for or not is_trusted(peer, networks):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from the proxy chain: count it under the proxy
    return peer


class TrustedProxies:
    def __init__(self, app: App, networks: tuple[Network, ...]) -> None:
        self.app, self.networks = app, networks

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.networks and scope.get("client"):
            peer, port = scope["client"][0], scope["client"][1]
            if is_trusted(peer, self.networks):
                headers = dict(scope.get("headers") or [])
                forwarded = headers.get(b"x-forwarded-for")
                address = client_address(peer, forwarded.decode("latin-1") if forwarded else None, self.networks)
                scope = {**scope, "client": [address, port]}
                proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
                if proto in ("http", "https"):
                    secure = proto == "https"
                    scheme = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)
