"""Per-connection and per-address limits on WebSocket messages, kept in the web process.

A stroke message costs the server a few microseconds; a Redis round trip to count it would cost
more, so these are in memory. With several web processes an address's budget is per process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Budget(Protocol):
    def take(self) -> bool:
        """Spend one event's token: False when the budget is spent."""
        ...


class TokenBucket:
    """`rate` events per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class AllOf:
    """Takes a token from each bucket in turn; refused as soon as one refuses."""

    def __init__(self, *buckets: Budget) -> None:
        self.buckets = buckets

    def take(self) -> bool:
        return all(bucket.take() for bucket in self.buckets)


@dataclass
class _Address:
    sockets: int
    bucket: TokenBucket


@dataclass
class AddressSockets:
    """Open sockets per client address, and one message bucket shared by an address's sockets."""

    max_sockets: int
    rate: float
    burst: float
    _open: dict[str, _Address] = field(default_factory=dict)

    def open(self, address: str) -> TokenBucket | None:
        """A socket from `address` opens: its address's shared bucket, or None when it has too many."""
        entry = self._open.get(address)
        if entry is None:
            entry = self._open[address] = _Address(0, TokenBucket(self.rate, self.burst))
        if entry.sockets >= self.max_sockets:
            return None
        entry.sockets += 1
        return entry.bucket

    def close(self, address: str) -> None:
        entry = self._open.get(address)
        if entry is not None:
            entry.sockets -= 1
            if entry.sockets <= 0:  # nothing kept for addresses gone
                del self._open[address]

    def sockets(self, address: str) -> int:
        entry = self._open.get(address)
        return entry.sockets if entry else 0
