"""Request bodies over the limit are refused before the app reads them."""

from __future__ import annotations

import asyncio
from typing import Any

from edge.limits import RequestBodyLimit


class App:
    def __init__(self) -> None:
        self.read = 0
        self.called = False

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(app: RequestBodyLimit, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    sent: list[dict[str, Any]] = []
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        body = chunks[pulled]
        pulled += 1
        return {"type": "http.request", "body": body, "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent, pulled


def test_a_declared_size_over_the_limit_is_refused_without_reading_a_byte() -> None:
    inner = App()
    sent, pulled = run(RequestBodyLimit(inner, 1000), [(b"content-length", b"100000000")], [b"x" * 100] * 3)
    assert sent[0]["status"] == 400 and b'"too_large"' in sent[1]["body"]
    assert pulled == 0 and not inner.called


def test_an_undeclared_body_is_counted_and_cut_off_at_the_limit() -> None:
    inner = App()
    sent, pulled = run(RequestBodyLimit(inner, 1000), [], [b"x" * 400] * 10)
    assert sent[0]["status"] == 400 and pulled == 3  # stopped at the chunk that crossed 1,000 bytes


def test_bodies_within_the_limit_pass() -> None:
    inner = App()
    sent, _ = run(RequestBodyLimit(inner, 1000), [(b"content-length", b"800")], [b"x" * 400] * 2)
    assert sent[0]["status"] == 200 and inner.read == 800
