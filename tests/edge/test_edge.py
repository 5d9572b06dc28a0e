"""The ASGI layers in front of the app: whose address a request is (proxies), which WebSocket
origins are let in (origins), and the per-address limits (throttle)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage

from edge.origins import SameOriginPosts, SameOriginWebSocket, origin_allowed
from edge.penalties import PENALTY_AFTER_REFUSALS, Refusals, penalties
from edge.proxies import TrustedProxies, client_address, parse_networks
from edge.throttle import AddressLimits, HttpThrottle
from recognizer.ratelimit import AddressSockets, AllOf, TokenBucket

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1"])


def test_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    # a client talking to us directly cannot pick its address
    assert client_address("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"
    # through the proxy: the right-most address the proxies did not write, not what the client wrote
    assert client_address("10.1.2.3", "1.2.3.4, 198.51.100.7", PROXIES) == "198.51.100.7"
    assert client_address("10.1.2.3", "198.51.100.7, 10.9.9.9", PROXIES) == "198.51.100.7"
    assert client_address("10.1.2.3", None, PROXIES) == "10.1.2.3"
    assert client_address("10.1.2.3", "not-an-ip", PROXIES) == "10.1.2.3"
    assert client_address("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"  # no proxies configured: none trusted


def _scope(kind: str, client: str, headers: dict[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": kind,
        "path": "/",
        "scheme": "ws" if kind == "websocket" else "http",
        "client": [client, 5555],
        "headers": list(headers.items()),
    }


def test_trusted_proxies_rewrites_the_client_and_scheme_of_the_scope() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope)

    mw = TrustedProxies(app, PROXIES)
    headers = {b"x-forwarded-for": b"1.2.3.4, 198.51.100.7", b"x-forwarded-proto": b"https"}
    asyncio.run(mw(_scope("http", "10.0.0.5", headers), None, None))
    asyncio.run(mw(_scope("websocket", "10.0.0.5", headers), None, None))
    asyncio.run(mw(_scope("http", "203.0.113.9", headers), None, None))  # spoofed, not from a proxy
    assert [(s["client"][0], s["scheme"]) for s in seen] == [
        ("198.51.100.7", "https"),
        ("198.51.100.7", "wss"),
        ("203.0.113.9", "http"),
    ]


def test_websocket_origins_must_match_scheme_host_and_port_exactly() -> None:
    hosts = ["localhost", "127.0.0.1"]
    assert origin_allowed("http://localhost:8000", "localhost:8000", False, hosts, [])
    assert origin_allowed("https://localhost", "localhost:443", True, hosts, [])  # default port either way
    assert not origin_allowed("http://localhost:3000", "localhost:8000", False, hosts, [])  # another port
    assert not origin_allowed("http://evil.example:8000", "localhost:8000", False, hosts, [])
    assert not origin_allowed("http://localhost:8000", "localhost:8000", True, hosts, [])  # page on http, socket wss
    assert not origin_allowed("http://attacker:8000", "attacker:8000", False, hosts, [])  # host not allowed
    assert not origin_allowed("null", "localhost:8000", False, hosts, [])
    assert origin_allowed("https://app.example.org", "internal:8000", False, hosts, ["https://app.example.org"])


@pytest.mark.django_db  # Channels' denier is a consumer: it closes stale database connections first
def test_a_socket_from_a_foreign_origin_is_denied_before_the_app() -> None:
    called = []

    async def app(scope, receive, send) -> None:
        called.append(scope)

    async def go(origin: bytes | None) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        headers = {b"host": b"localhost:8000", **({b"origin": origin} if origin else {})}
        queue: asyncio.Queue = asyncio.Queue()
        await queue.put({"type": "websocket.connect"})
        await queue.put({"type": "websocket.disconnect", "code": 1006})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await SameOriginWebSocket(app, ["localhost"], [])(_scope("websocket", "127.0.0.1", headers), queue.get, send)
        return sent

    assert [m["type"] for m in asyncio.run(go(b"http://localhost:3000"))] == ["websocket.close"]
    assert [m["type"] for m in asyncio.run(go(None))] == ["websocket.close"]
    assert called == []
    asyncio.run(go(b"http://localhost:8000"))
    assert len(called) == 1


def test_http_throttle_answers_429_with_retry_after_per_address_before_the_app() -> None:
    limits = AddressLimits(MemoryStorage(), uploads="3/minute", socket_opens="off", health="off")
    calls = []

    async def app(scope, receive, send) -> None:
        calls.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def go() -> list[int]:
        mw = HttpThrottle(app, limits=lambda: limits)
        statuses = []
        for client in ["1.1.1.1"] * 5 + ["2.2.2.2"]:
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await mw({**_scope("http", client, {}), "path": "/api/predict"}, None, send)
            statuses.append(sent[0]["status"])
            if sent[0]["status"] == 429:
                assert int(dict(sent[0]["headers"])[b"retry-after"]) >= 1
        await mw({**_scope("http", "1.1.1.1", {}), "path": "/"}, None, send)  # not an upload: not counted
        return statuses

    assert asyncio.run(go()) == [200, 200, 200, 429, 429, 200]
    assert calls == ["1.1.1.1"] * 3 + ["2.2.2.2", "1.1.1.1"]


def test_a_limit_whose_counter_is_down_lets_requests_through() -> None:
    class Broken(MemoryStorage):
        async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
            raise ConnectionError("redis down")

    limits = AddressLimits(Broken(), uploads="1/minute", socket_opens="off", health="off")
    assert limits.uploads is not None

    async def go() -> list[bool]:
        return [await limits.uploads.hit("1.1.1.1") for _ in range(3)]

    assert asyncio.run(go()) == [True, True, True]


def test_sockets_per_address_are_capped_and_share_one_message_budget() -> None:
    book = AddressSockets(max_sockets=2, rate=0.001, burst=3)
    a1, a2 = book.open("1.1.1.1"), book.open("1.1.1.1")
    assert a1 is not None and a1 is a2
    assert book.open("1.1.1.1") is None  # a third socket
    assert book.open("2.2.2.2") is not None
    took = [AllOf(TokenBucket(100, 100), a1).take() for _ in range(4)]
    assert took == [True, True, True, False]  # the address's budget, whichever socket spends it
    book.close("1.1.1.1")
    assert book.open("1.1.1.1") is not None
    book.close("1.1.1.1"), book.close("1.1.1.1")
    assert book.sockets("1.1.1.1") == 0 and "1.1.1.1" not in book._open


def _post(
    mw: Any, client: str, headers: dict[bytes, bytes], path: str = "/api/predict", method: str = "POST"
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw({**_scope("http", client, headers), "path": path, "method": method}, None, send))
    return sent


def test_retry_after_comes_from_the_window_that_refused() -> None:
    limits = AddressLimits(MemoryStorage(), uploads="2/second;3/minute", socket_opens="off", health="off")
    assert limits.uploads is not None

    async def go() -> list[int | None]:
        return [await limits.uploads.refused("1.1.1.1") for _ in range(3)]

    first = asyncio.run(go())
    assert first[:2] == [None, None] and first[2] == 1  # the second's window: 1 s, not the minute's 60
    time.sleep(1.05)
    second = asyncio.run(go())
    assert second[0] is None and second[1] is not None and 55 <= second[1] <= 60  # now the minute refuses


def test_a_persons_refused_upload_is_not_a_site_wide_penalty_but_a_flood_is() -> None:
    limits = AddressLimits(MemoryStorage(), uploads="5/second", socket_opens="off", health="off")

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw = HttpThrottle(app, limits=lambda: limits)
    statuses = [_post(mw, "7.7.7.7", {})[0]["status"] for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert penalties.remaining("7.7.7.7") == 0  # the page, the admin and sockets are still served
    for _ in range(PENALTY_AFTER_REFUSALS):  # one that goes on asking regardless
        assert _post(mw, "7.7.7.7", {})[0]["status"] == 429
    assert penalties.remaining("7.7.7.7") > 0  # refused at accept (edge.serve) until its Retry-After


def test_refusals_count_as_a_flood_only_within_their_retry_after() -> None:
    book = Refusals(limit=2)
    assert [book.flooding("a", 0.2) for _ in range(3)] == [False, False, True]
    time.sleep(0.25)
    assert book.flooding("a", 0.2) is False  # a new window of refusals
    assert book.flooding("b", 10) is False


def test_cross_site_posts_to_the_api_are_refused_before_any_limit() -> None:
    hit: list[str] = []

    async def app(scope, receive, send) -> None:
        hit.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw = SameOriginPosts(app, ["localhost", "127.0.0.1"], ["https://app.example.org"])
    host = {b"host": b"localhost:8000"}
    refused = _post(mw, "1.1.1.1", {**host, b"origin": b"http://evil.example"})
    assert refused[0]["status"] == 403 and json.loads(refused[1]["body"])["code"] == "cross_site"
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"null"})[0]["status"] == 403  # a sandboxed frame
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"http://localhost:3000"})[0]["status"] == 403  # another port
    assert hit == []  # the throttle behind it never saw them: no limit counted
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"http://localhost:8000"})[0]["status"] == 200  # the page
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"https://app.example.org"})[0]["status"] == 200  # trusted
    assert _post(mw, "1.1.1.1", host)[0]["status"] == 200  # no Origin: curl, scripts
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"http://evil.example"}, method="GET")[0]["status"] == 200
    assert _post(mw, "1.1.1.1", {**host, b"origin": b"http://evil.example"}, path="/admin/login/")[0]["status"] == 200
    assert len(hit) == 5
