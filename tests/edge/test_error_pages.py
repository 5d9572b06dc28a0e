"""A refused page request gets a page: the edge's 429s (the throttle's, and the refused connection's
of an address serving its penalty) are a small HTML page when the request is a browser's page GET
(Accept prefers text/html), with the same status and Retry-After; the API and JSON clients keep the
JSON error body."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from edge import serve
from edge.pages import head_wants_page, prefers_html, wants_page
from edge.penalties import Penalties, refusal
from edge.throttle import AddressLimits, HttpThrottle

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("*/*", False),  # fetch(), curl: JSON
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.9", False),
        ("text/html;q=0.5, */*;q=0.1", True),
        ("text/html;q=0.5, application/json", False),
        ("text/html;q=0", False),
    ],
)
def test_accept_negotiation(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


def test_only_page_gets_outside_the_api_get_a_page() -> None:
    assert wants_page("GET", "/", BROWSER) and wants_page("HEAD", "/admin/", BROWSER)
    assert not wants_page("POST", "/", BROWSER)
    assert not wants_page("GET", "/api/predict", BROWSER)
    assert head_wants_page(f"GET / HTTP/1.1\r\nHost: x\r\nAccept: {BROWSER}\r\n\r\n".encode())
    assert not head_wants_page(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
    assert not head_wants_page(b"NOT HTTP AT ALL\r\n\r\n")
    assert not head_wants_page(b"")


def _split(answer: bytes) -> tuple[list[bytes], dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines, dict(line.split(b": ", 1) for line in lines[1:]), body


def test_the_penalty_refusal_is_a_page_for_a_page_request() -> None:
    lines, headers, body = _split(refusal(2.3, page=True))
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    assert headers[b"Content-Type"].startswith(b"text/html") and int(headers[b"Retry-After"]) == 3
    assert int(headers[b"Content-Length"]) == len(body)
    text = body.decode()
    assert text.startswith("<!doctype html>") and "Too many requests from your address — try again in 3 s" in text
    _, headers, body = _split(refusal(2.3))
    assert headers[b"Content-Type"] == b"application/json" and json.loads(body)["code"] == "rate_limited"


def _throttled(path: str, accept: str | None, method: str = "GET") -> tuple[dict[str, Any], bytes]:
    limits = AddressLimits(MemoryStorage(), uploads="1/minute", socket_opens="off", health="1/minute")

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def go() -> list[dict[str, Any]]:
        mw = HttpThrottle(app, limits=lambda: limits)
        headers = [(b"accept", accept.encode())] if accept is not None else []
        scope = {"type": "http", "method": method, "path": path, "client": ["9.8.7.6", 1], "headers": headers}
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        for _ in range(2):
            sent.clear()
            await mw(scope, None, send)
        return sent

    start, body = asyncio.run(go())
    return start, body["body"]


def test_the_throttle_answers_a_page_request_with_a_page_and_keeps_json_for_the_rest() -> None:
    start, body = _throttled("/healthz", BROWSER)
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"content-type"].startswith(b"text/html")
    assert int(headers[b"retry-after"]) >= 1 and int(headers[b"content-length"]) == len(body)
    assert "Too many requests from your address — try again in" in body.decode()
    for path, accept, method in [
        ("/healthz", "application/json", "GET"),
        ("/healthz", None, "GET"),
        ("/api/predict", BROWSER, "POST"),
    ]:
        start, body = _throttled(path, accept, method)
        assert start["status"] == 429 and dict(start["headers"])[b"content-type"] == b"application/json"
        assert json.loads(body)["code"] == "rate_limited"


class _Transport(StringTransport):
    def loseWriteConnection(self) -> None:
        self.loseConnection()

    def abortConnection(self) -> None:
        self.loseConnection()


def _refused_connection(monkeypatch, data: bytes, hold: float | None) -> tuple[bytes, Clock]:
    clock = Clock()
    monkeypatch.setattr(serve, "reactor", clock)
    box = Penalties()
    box.refuse("5.5.5.5", 3)
    if hold is None:
        monkeypatch.setattr(box, "hold", lambda address: None)
    protocol = serve.RefusedConnection("5.5.5.5", box)
    transport = _Transport()
    protocol.makeConnection(transport)
    if hold:
        clock.advance(hold)
    protocol.dataReceived(data)
    clock.advance(serve.HEAD_WAIT_S)
    return transport.value(), clock


@pytest.mark.parametrize("hold", [None, 1.0])
def test_a_refused_connection_answers_a_browser_page_request_with_a_page(monkeypatch, hold) -> None:
    page = f"GET / HTTP/1.1\r\nHost: example\r\nAccept: {BROWSER}\r\n\r\n".encode()
    answer, _ = _refused_connection(monkeypatch, page, hold)
    lines, headers, body = _split(answer)
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests" and headers[b"Content-Type"].startswith(b"text/html")
    assert int(headers[b"Retry-After"]) >= 1 and "try again in" in body.decode()


@pytest.mark.parametrize(
    "data",
    [
        b"GET /api/x HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"",
        b"GET / HTTP/1.1\r\nAccept: application/json",
    ],
)
def test_a_refused_connection_keeps_json_for_the_rest(monkeypatch, data: bytes) -> None:
    answer, _ = _refused_connection(monkeypatch, data, None)  # an incomplete head: answered after HEAD_WAIT_S
    _, headers, body = _split(answer)
    assert headers[b"Content-Type"] == b"application/json" and json.loads(body)["code"] == "rate_limited"
