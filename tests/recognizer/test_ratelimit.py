"""Budgets charged by the work asked for (recognizer.ratelimit): costs, debt, all-or-nothing, per address."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from recognizer import ratelimit
from recognizer.ratelimit import AddressSockets, AllOf, TokenBucket, Unlimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=fake))
    return fake


def test_a_bucket_is_charged_by_cost(clock: Clock) -> None:
    bucket = TokenBucket(rate=100, burst=1000)
    assert bucket.take(900) and not bucket.take(200)  # a big message costs what it asks for
    assert bucket.available() == pytest.approx(100) and bucket.take(50) and bucket.take(1)
    clock.now += 2.0
    assert bucket.available() == pytest.approx(249)
    clock.now += 100.0
    assert bucket.available() == 1000  # never above the burst


def test_a_charge_may_go_into_debt_and_says_how_long_to_wait(clock: Clock) -> None:
    bucket = TokenBucket(rate=10, burst=20)
    bucket.charge(50)
    assert bucket.available() == pytest.approx(-30) and not bucket.take(1)
    assert bucket.wait_s() == pytest.approx(3.0) and bucket.wait_s(5) == pytest.approx(3.5)
    clock.now += 3.0
    assert bucket.wait_s() == 0.0 and not bucket.take(1)
    clock.now += 0.2
    assert bucket.take(1)


def test_all_of_spends_from_every_budget_or_from_none(clock: Clock) -> None:
    mine, shared = TokenBucket(rate=1, burst=100), TokenBucket(rate=1, burst=10)
    both = AllOf(mine, shared)
    assert not both.take(50)
    assert mine.available() == 100 and shared.available() == 10  # the refusal spent nothing
    assert both.take(8) and (mine.available(), shared.available()) == (92, 2)
    both.charge(12)
    assert both.available() == -10 and both.wait_s() == pytest.approx(10.0)


def test_unlimited_never_refuses_nor_waits() -> None:
    free = Unlimited()
    free.charge(1e12)
    assert free.take(1e12) and free.wait_s(1e12) == 0.0 and free.available() == math.inf


def test_an_addresss_sockets_share_their_bytes_and_prediction_budgets(clock: Clock) -> None:
    book = AddressSockets(max_sockets=10, rate=100, burst=100, bytes_rate=1000, bytes_burst=10_000, work_rate=5, work_burst=10)
    assert book.open("10.0.0.1") is not None and book.open("10.0.0.1") is not None and book.open("10.0.0.2") is not None
    one, other = book.frame_bytes("10.0.0.1"), book.frame_bytes("10.0.0.2")
    assert one is not None and other is not None and one is not other
    assert one.take(9_000) and not one.take(2_000) and other.take(9_000)  # an address's, not the process's
    work = book.work("10.0.0.1")
    assert work is not None and work.burst == 10 and work.rate == 5
    book.close("10.0.0.1")
    book.close("10.0.0.1")
    assert book.frame_bytes("10.0.0.1") is None and book.work("10.0.0.1") is None  # nothing kept when it goes


def test_an_address_that_closes_its_sockets_and_comes_back_gets_no_fresh_burst(clock: Clock) -> None:
    book = AddressSockets(max_sockets=10, rate=100, burst=100, bytes_rate=1000, bytes_burst=10_000, work_rate=5, work_burst=10)
    book.open("10.0.0.1")
    spent = book.frame_bytes("10.0.0.1")
    assert spent is not None and spent.take(9_500)
    book.close("10.0.0.1")
    book.open("10.0.0.1")
    assert book.frame_bytes("10.0.0.1") is spent and not spent.take(1_000)  # what was spent stays spent
    clock.now += 10.0
    book.close("10.0.0.1")  # refilled: nothing kept once it is full again
    book.open("10.0.0.2"), book.close("10.0.0.2")
    assert "10.0.0.1" not in book._resting and "10.0.0.1" not in book._open
