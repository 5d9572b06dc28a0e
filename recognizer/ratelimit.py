"""Per-connection and per-address limits on WebSocket messages, kept in the web process.

A stroke message costs the server a few microseconds; a Redis round trip to count it would cost
more, so these are in memory. With several web processes an address's budget is per process.

Budgets are charged by what a message asks for, not only counted: messages (one token each), their
bytes (taken before a frame is parsed: a 10,000-point stroke is 150 KB of JSON to parse and check,
a 5-point live update 150 bytes), and predictions (recognizer.protocol.PREDICTION_POINTS_PER_UNIT:
charged when asked for, even into debt; the socket's next prediction then waits until it is paid).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol


class Budget(Protocol):
    def take(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens: False (and nothing spent) when the budget has fewer."""
        ...

    def charge(self, cost: float) -> None:
        """Spend `cost` tokens for work already under way, even into debt: what is asked next waits
        until the debt is paid off."""
        ...

    def available(self) -> float:
        """Tokens there now (negative while in debt)."""
        ...

    def wait_s(self, cost: float = 0.0) -> float:
        """Seconds until the budget holds `cost` tokens (0: now; with the default, until a debt is paid)."""
        ...


class TokenBucket:
    """`rate` tokens per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def available(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, cost: float = 1.0) -> bool:
        if self.available() < cost:
            return False
        self.tokens -= cost
        return True

    def charge(self, cost: float) -> None:
        self.available()
        self.tokens -= cost

    def wait_s(self, cost: float = 0.0) -> float:
        short = cost - self.available()
        return 0.0 if short <= 0 else short / self.rate if self.rate > 0 else math.inf


class Unlimited:
    """A budget that never refuses."""

    def take(self, cost: float = 1.0) -> bool:
        return True

    def charge(self, cost: float) -> None:
        pass

    def available(self) -> float:
        return math.inf

    def wait_s(self, cost: float = 0.0) -> float:
        return 0.0


class AllOf:
    """Spends from every budget or from none: refused when one of them has too few tokens."""

    def __init__(self, *buckets: Budget) -> None:
        self.buckets = buckets

    def available(self) -> float:
        return min((bucket.available() for bucket in self.buckets), default=math.inf)

    def take(self, cost: float = 1.0) -> bool:
        if self.available() < cost:
            return False
        for bucket in self.buckets:
            bucket.charge(cost)
        return True

    def charge(self, cost: float) -> None:
        for bucket in self.buckets:
            bucket.charge(cost)

    def wait_s(self, cost: float = 0.0) -> float:
        return max((bucket.wait_s(cost) for bucket in self.buckets), default=0.0)


@dataclass
class _Address:
    sockets: int
    bucket: TokenBucket
    frame_bytes: TokenBucket
    work: TokenBucket


@dataclass
class AddressSockets:
    """Open sockets per client address, and the buckets an address's sockets share: messages, their
    bytes, predictions."""

    max_sockets: int
    rate: float
    burst: float
    bytes_rate: float = math.inf
    bytes_burst: float = math.inf
    work_rate: float = math.inf
    work_burst: float = math.inf
    max_resting: int = 10_000
    _open: dict[str, _Address] = field(default_factory=dict)
    # The bytes and prediction buckets of addresses whose sockets all closed, kept until they are full
    # again: an address that closes its sockets and opens new ones does not get a fresh burst.
    _resting: dict[str, tuple[TokenBucket, TokenBucket]] = field(default_factory=dict)

    def open(self, address: str) -> TokenBucket | None:
        """A socket from `address` opens: its address's shared message bucket, or None when it has too many."""
        entry = self._open.get(address)
        if entry is None:
            resting = self._resting.pop(address, None)
            frame_bytes, work = resting or (
                TokenBucket(self.bytes_rate, self.bytes_burst),
                TokenBucket(self.work_rate, self.work_burst),
            )
            entry = self._open[address] = _Address(0, TokenBucket(self.rate, self.burst), frame_bytes, work)
        if entry.sockets >= self.max_sockets:
            return None
        entry.sockets += 1
        return entry.bucket

    def frame_bytes(self, address: str) -> TokenBucket | None:
        """The frame bytes bucket shared by `address`'s open sockets (None when it has none open)."""
        entry = self._open.get(address)
        return entry.frame_bytes if entry else None

    def work(self, address: str) -> TokenBucket | None:
        """The prediction bucket shared by `address`'s open sockets (None when it has none open)."""
        entry = self._open.get(address)
        return entry.work if entry else None

    def close(self, address: str) -> None:
        entry = self._open.get(address)
        if entry is not None:
            entry.sockets -= 1
            if entry.sockets <= 0:  # nothing kept for addresses gone, but buckets they have yet to refill
                del self._open[address]
                self._rest(address, entry)

    def _rest(self, address: str, entry: _Address) -> None:
        for name, (frame_bytes, work) in list(self._resting.items())[:4]:  # the oldest: refilled by now?
            if frame_bytes.available() >= frame_bytes.burst and work.available() >= work.burst:
                del self._resting[name]
        if entry.frame_bytes.available() < entry.frame_bytes.burst or entry.work.available() < entry.work.burst:
            self._resting[address] = (entry.frame_bytes, entry.work)
            while len(self._resting) > self.max_resting:
                del self._resting[next(iter(self._resting))]

    def sockets(self, address: str) -> int:
        entry = self._open.get(address)
        return entry.sockets if entry else 0
