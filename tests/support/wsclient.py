"""A small synchronous protocol-v1 client for the tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any

from websockets.sync.client import connect


class ProtocolClient:
    def __init__(self, base_url: str) -> None:
        ws_url = base_url.replace("http://", "ws://") + "/ws/recognize/"
        self._exit = ExitStack()
        self.ws = self._exit.enter_context(connect(ws_url, origin=base_url, open_timeout=10, max_size=2**22))
        self.seq = 0

    def close(self) -> None:
        self._exit.close()

    def send(self, **message: Any) -> int:
        self.seq += 1
        self.ws.send(json.dumps({**message, "seq": self.seq}))
        return self.seq

    def send_raw(self, frame: str | bytes) -> None:
        self.ws.send(frame)

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> list[dict[str, Any]]:
        """All messages received up to and including the first one for which `done` is true."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            seen.append(self.recv(timeout=max(0.01, deadline - time.monotonic())))
            if done(seen[-1]):
                return seen

    def prediction_for(self, seq: int, timeout: float = 15.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msgs = self.until(lambda m: m["type"] == "prediction" and m["seq"] >= seq, timeout)
        return msgs[-1], msgs

    def stream(
        self,
        strokes: Iterable[Sequence[Sequence[float]]],
        *,
        drawing: str,
        batch: int = 6,
        canvas: tuple[float, float] = (280, 280),
        brush: float = 16,
        pause: float = 0.0,
    ) -> int:
        """Send strokes point batch by point batch like the page does; returns the last seq."""
        last = 0
        for k, stroke in enumerate(strokes):
            points = [list(p) for p in stroke]
            for i in range(0, len(points), batch):
                chunk = points[i : i + batch]
                last = self.send(
                    type="stroke",
                    drawing=drawing,
                    stroke=k,
                    points=chunk,
                    final=i + batch >= len(points),
                    canvas=list(canvas),
                    brush=brush,
                )
                if pause:
                    time.sleep(pause)
        return last
