"""Load generation shared by bench/e2e.py and bench/compare.py: protocol-v1 clients drawing at the page's pace.

Drawings are MNIST test digits traced into pen strokes (digits.data.strokes). Each client holds one
WebSocket and sends a drawing point batch by point batch, one message every `pace` seconds as the
page does, waits for the prediction of the drawing's last stroke message (the latency measured, client
side, from that message being sent), sends `clear`, and starts the next drawing. Two modes: a number
of drawings per client, or drawings back to back until a deadline (`duration`). All clients run in
one asyncio process, so the client costs the machine as little as it can.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import websockets  # noqa: E402

from digits.data.mnist import load_split  # noqa: E402
from digits.data.strokes import densify, skeleton_strokes  # noqa: E402

CANVAS, BRUSH = 280.0, 18.0
DEFAULT_MNIST_DIR = Path(os.environ.get("MNIST_DIR", str(ROOT.parent / "shared/data/mnist")))

Strokes = list[list[list[float]]]
Drawing = tuple[int, Strokes]  # (label, strokes)
T = TypeVar("T")


def make_drawings(data_dir: Path, count: int, seed: int) -> list[Drawing]:
    """`count` MNIST test digits (fewer when a trace comes out empty) as canvas pen strokes."""
    images, labels = load_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    drawings = []
    for i in rng.choice(len(images), size=count, replace=False):
        strokes = skeleton_strokes(images[i], scale=CANVAS / 28)
        strokes = [[list(p) for p in densify(s, step=4.0)] for s in strokes]
        if strokes:
            drawings.append((int(labels[i]), strokes))
    return drawings


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # ms, last stroke message -> its prediction
    server_ms: list[float] = field(default_factory=list)  # the prediction's latency_ms
    phases: dict[str, list[float]] = field(default_factory=dict)
    predictions: int = 0  # every prediction received, not only the final ones
    messages: int = 0  # client messages sent (stroke and clear)
    correct: int = 0  # final predictions naming the drawing's label
    errors: list[str] = field(default_factory=list)  # error codes received, and client-side failures
    lost: int = 0  # final predictions that never came (within the timeout)
    submits: int = 0  # `submit` messages sent (load_run's submit_every)
    stored_ids: list[int] = field(default_factory=list)  # the row id of each `stored` acknowledgement
    submits_lost: int = 0  # submits with no `stored` (within the timeout)


@dataclass
class LoadResult:
    clients: int
    wall_s: float
    client_cpu_ms: float  # this process's CPU time over the run: what the load generator itself cost
    stats: Stats

    @property
    def drawings(self) -> int:
        return len(self.stats.latencies) + self.stats.lost

    @property
    def predictions_per_s(self) -> float:
        return self.stats.predictions / self.wall_s if self.wall_s else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.stats.messages / self.wall_s if self.wall_s else 0.0

    def latency(self, q: float) -> float:
        return pct(self.stats.latencies, q)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


async def client(
    base_url: str,
    cid: int,
    drawings: Sequence[Drawing],
    stats: Stats,
    *,
    pace: float,
    batch: int,
    timeout: float,
    deadline: float | None = None,
    stagger: float = 0.0,
    submit_every: int = 0,
    tag: str = "",
) -> None:
    """One page: draws `drawings` in order once, or round and round until `deadline` (perf_counter).

    With `submit_every` = k, every k-th drawing is submitted with its label once its final prediction
    came (as a person would), and must be acknowledged `stored`; `tag` starts every drawing id, so
    that a run's stored rows can be told apart."""
    ws_url = base_url.replace("http://", "ws://") + "/ws/recognize/"
    if stagger:
        await asyncio.sleep(stagger)  # clients in lockstep would send in bursts no real crowd makes
    try:
        ws = await websockets.connect(ws_url, origin=base_url, max_size=2**22, open_timeout=timeout)
    except (TimeoutError, OSError, websockets.WebSocketException) as exc:
        stats.errors.append(f"connect:{type(exc).__name__}")
        return
    waiters: dict[int, asyncio.Future[tuple[dict[str, Any], float]]] = {}
    stored: dict[int, asyncio.Future[int]] = {}  # submit seq -> the stored row's id
    reader = asyncio.create_task(_read(ws, waiters, stats, stored))
    seq, n = 0, 0
    try:
        while (deadline is None and n < len(drawings)) or (deadline is not None and time.perf_counter() < deadline):
            label, strokes = drawings[n % len(drawings)]
            drawing = f"{tag}c{cid}d{n}"
            n += 1
            last_sent = 0.0
            for k, stroke in enumerate(strokes):
                for i in range(0, len(stroke), batch):
                    seq += 1
                    final = i + batch >= len(stroke)
                    msg = {
                        "type": "stroke",
                        "seq": seq,
                        "drawing": drawing,
                        "stroke": k,
                        "points": stroke[i : i + batch],
                        "final": final,
                        "canvas": [CANVAS, CANVAS],
                        "brush": BRUSH,
                    }
                    if k == len(strokes) - 1 and final:
                        waiters[seq] = asyncio.get_running_loop().create_future()
                    await ws.send(json.dumps(msg))
                    last_sent = time.perf_counter()
                    stats.messages += 1
                    await asyncio.sleep(pace)
            try:
                pred, received = await asyncio.wait_for(waiters[seq], timeout)
                stats.latencies.append((received - last_sent) * 1000)
                stats.server_ms.append(pred["latency_ms"])
                for phase, ms in (pred.get("timings") or {}).items():
                    stats.phases.setdefault(phase, []).append(ms)
                stats.correct += pred["digit"] == label
            except TimeoutError:
                stats.lost += 1
            waiters.pop(seq, None)
            if submit_every and n % submit_every == 0:
                seq += 1  # not awaited here: the page goes on drawing while the row is written
                stored[seq] = asyncio.get_running_loop().create_future()
                await ws.send(json.dumps({"type": "submit", "seq": seq, "drawing": drawing, "label": label}))
                stats.messages += 1
                stats.submits += 1
            seq += 1
            await ws.send(json.dumps({"type": "clear", "seq": seq, "drawing": drawing}))
            stats.messages += 1
    except websockets.ConnectionClosed as exc:
        stats.errors.append(f"closed:{exc.rcvd.code if exc.rcvd else 'none'}")
    finally:
        if stored:  # every submit is answered before the page goes (or counted lost)
            done, pending = await asyncio.wait(stored.values(), timeout=timeout)
            stats.stored_ids.extend(f.result() for f in done)
            stats.submits_lost += len(pending)
        reader.cancel()
        await ws.close()


async def _read(
    ws: Any,
    waiters: dict[int, asyncio.Future[tuple[dict[str, Any], float]]],
    stats: Stats,
    stored: dict[int, asyncio.Future[int]] | None = None,
) -> None:
    try:
        async for raw in ws:
            received = time.perf_counter()
            msg = json.loads(raw)
            if msg["type"] == "prediction":
                stats.predictions += 1
                fut = waiters.get(msg["seq"])
                if fut and not fut.done():
                    fut.set_result((msg, received))
            elif msg["type"] == "stored" and stored is not None:
                ack = stored.get(msg["seq"])
                if ack and not ack.done():
                    ack.set_result(int(msg["id"]))
            elif msg["type"] == "error":
                stats.errors.append(msg["code"])
    except websockets.ConnectionClosed:
        pass  # the sender sees it too and reports it


async def load_run(
    base_url: str,
    drawings: Sequence[Drawing],
    *,
    clients: int,
    per_client: int | None = None,
    duration: float | None = None,
    pace: float = 0.05,
    batch: int = 8,
    timeout: float = 10.0,
    seed: int = 0,
    submit_every: int = 0,
    tag: str = "",
) -> LoadResult:
    """`clients` concurrent pages: `per_client` drawings each (distinct drawings, the first
    clients*per_client of `drawings`), or drawings back to back for `duration` seconds (each client
    starting at its own place in `drawings`). Client starts are spread over one `pace`. `submit_every`
    and `tag`: see `client`."""
    if (per_client is None) == (duration is None):
        raise ValueError("give exactly one of per_client and duration")
    rng = random.Random(seed)
    if per_client is not None:
        mine = [list(drawings[c : clients * per_client : clients]) for c in range(clients)]
        if any(not m for m in mine):
            raise ValueError(f"{len(drawings)} drawings are too few for {clients} clients")
    else:
        step = max(1, len(drawings) // max(1, clients))
        mine = [list(drawings[c * step :]) + list(drawings[: c * step]) for c in range(clients)]
    stats = Stats()
    cpu0, started = _cpu_s(), time.perf_counter()
    deadline = started + duration if duration is not None else None
    await asyncio.gather(
        *(
            client(
                base_url,
                c,
                mine[c],
                stats,
                pace=pace,
                batch=batch,
                timeout=timeout,
                deadline=deadline,
                stagger=rng.uniform(0, pace) if clients > 1 else 0.0,
                submit_every=submit_every,
                tag=tag,
            )
            for c in range(clients)
        )
    )
    wall = time.perf_counter() - started
    return LoadResult(clients=clients, wall_s=wall, client_cpu_ms=(_cpu_s() - cpu0) * 1000, stats=stats)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (requirements-dev): a cheaper client leaves more CPU to the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def report_lines(result: LoadResult, *, pace_ms: float) -> list[str]:
    """The human summary bench/e2e.py prints."""
    s, lat = result.stats, result.stats.latencies
    return [
        f"clients={result.clients} drawings={result.drawings} messages={s.messages} pace={pace_ms:g}ms "
        f"wall={result.wall_s:.1f}s client_cpu={result.client_cpu_ms / 1000:.1f}s",
        f"predictions/s={result.predictions_per_s:.1f}  predictions={s.predictions}  "
        f"final-correct={s.correct}/{len(lat)}  errors={len(s.errors)} {sorted(set(s.errors))}  lost={s.lost}",
        f"latency ms (last stroke -> its prediction, client side): p50={pct(lat, 50):.2f} p95={pct(lat, 95):.2f} "
        f"p99={pct(lat, 99):.2f} max={max(lat, default=float('nan')):.2f}",
        f"server-side latency_ms: p50={pct(s.server_ms, 50):.2f} p95={pct(s.server_ms, 95):.2f}",
        "server-side phases, median ms: " + "  ".join(f"{k}={pct(v, 50):.2f}" for k, v in s.phases.items()),
    ]
