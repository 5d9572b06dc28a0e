"""edge.penalties: who is refused at accept, for how long, and how many are held."""

from __future__ import annotations

import json
import time

import pytest

from edge import penalties as penalties_module
from edge.penalties import Penalties, refusal


def test_an_address_is_refused_until_its_retry_after_and_then_forgotten():
    box = Penalties()
    assert box.remaining("10.0.0.1") == 0
    box.refuse("10.0.0.1", 0.2)
    assert 0.1 < box.remaining("10.0.0.1") <= 0.2
    assert box.remaining("10.0.0.2") == 0  # only the address refused
    time.sleep(0.25)
    assert box.remaining("10.0.0.1") == 0
    assert "10.0.0.1" not in box._until  # nothing kept for it


def test_a_later_refusal_replaces_the_earlier_one():
    box = Penalties()
    box.refuse("a", 30)
    box.refuse("a", 2)
    assert 1 < box.remaining("a") <= 2


def test_at_most_max_addresses_are_remembered_the_oldest_forgotten_first():
    box = Penalties(max_addresses=2)
    box.refuse("a", 30)
    box.refuse("b", 30)
    box.refuse("a", 30)  # refused again: now the newest
    box.refuse("c", 30)
    assert box.remaining("b") == 0 and box.remaining("a") > 0 and box.remaining("c") > 0


def test_a_hold_lasts_at_most_hold_s_and_at_most_max_held_are_held(monkeypatch):
    monkeypatch.setattr(penalties_module, "MAX_HELD", 3)
    box = Penalties()
    box.refuse("a", 0.5)
    assert 0.4 < box.hold("a") <= 0.5  # never past the Retry-After
    box.refuse("a", 60)
    assert box.hold("a") == penalties_module.HOLD_S
    assert box.hold("a") == penalties_module.HOLD_S
    assert box.hold("a") is None  # a fourth: answered at once
    box.release("a")
    assert box.hold("a") == penalties_module.HOLD_S
    for _ in range(3):
        box.release("a")
    assert "a" not in box._held


@pytest.mark.parametrize(("retry_after", "stated"), [(0.2, 1), (1.0, 1), (2.3, 3)])
def test_the_refusal_is_a_complete_http_429_with_retry_after(retry_after, stated):
    head, _, body = refusal(retry_after).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert int(headers[b"Retry-After"]) == stated
    assert int(headers[b"Content-Length"]) == len(body) and headers[b"Connection"] == b"close"
    assert json.loads(body)["code"] == "rate_limited"
