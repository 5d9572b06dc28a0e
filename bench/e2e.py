"""End-to-end benchmark: N concurrent WebSocket clients stream real drawings stroke by stroke.

Drawings are MNIST test digits traced into pen strokes (digits.strokes), sent in point batches
every --pace-ms like the page does. Latency is measured per drawing from its last stroke message
to the prediction for that message. Prints predictions/s and latency p50/p95/p99, errors, lost.

    python bench/e2e.py --clients 50              # starts its own stack on a free port
    python bench/e2e.py --url http://127.0.0.1:8000 --clients 1
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import websockets  # noqa: E402

from digits.mnist import load_split  # noqa: E402
from digits.strokes import densify, skeleton_strokes  # noqa: E402

CANVAS, BRUSH = 280.0, 18.0


def make_drawings(data_dir: Path, count: int, seed: int) -> list[tuple[int, list[list[list[float]]]]]:
    images, labels = load_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    drawings = []
    for i in rng.choice(len(images), size=count, replace=False):
        strokes = skeleton_strokes(images[i], scale=CANVAS / 28)
        strokes = [[list(p) for p in densify(s, step=4.0)] for s in strokes]
        if strokes:
            drawings.append((int(labels[i]), strokes))
    return drawings


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.server_ms: list[float] = []
        self.phases: dict[str, list[float]] = {}
        self.predictions = 0
        self.correct = 0
        self.errors: list[str] = []
        self.lost = 0


async def client(url: str, cid: int, drawings, stats: Stats, pace: float, batch: int, timeout: float) -> None:
    origin = url.replace("ws://", "http://").split("/ws/")[0]
    async with websockets.connect(url, origin=origin, max_size=2**22) as ws:
        seq = 0
        for n, (label, strokes) in enumerate(drawings):
            drawing = f"c{cid}d{n}"
            waiter: dict[int, asyncio.Future] = {}
            reader = asyncio.create_task(_read(ws, waiter, stats))
            last_sent = 0.0
            for k, stroke in enumerate(strokes):
                for i in range(0, len(stroke), batch):
                    seq += 1
                    final = i + batch >= len(stroke)
                    msg = {"type": "stroke", "seq": seq, "drawing": drawing, "stroke": k,
                           "points": stroke[i:i + batch], "final": final, "canvas": [CANVAS, CANVAS], "brush": BRUSH}
                    if k == len(strokes) - 1 and final:
                        waiter[seq] = asyncio.get_running_loop().create_future()
                    await ws.send(json.dumps(msg))
                    last_sent = time.perf_counter()
                    await asyncio.sleep(pace)
            try:
                pred, received = await asyncio.wait_for(waiter[seq], timeout)
                stats.latencies.append((received - last_sent) * 1000)
                stats.server_ms.append(pred["latency_ms"])
                for phase, ms in pred.get("timings", {}).items():
                    stats.phases.setdefault(phase, []).append(ms)
                stats.correct += pred["digit"] == label
            except asyncio.TimeoutError:
                stats.lost += 1
            reader.cancel()
            seq += 1
            await ws.send(json.dumps({"type": "clear", "seq": seq, "drawing": drawing}))


async def _read(ws, waiter: dict[int, asyncio.Future], stats: Stats) -> None:
    async for raw in ws:
        msg = json.loads(raw)
        if msg["type"] == "prediction":
            stats.predictions += 1
            fut = waiter.get(msg["seq"])
            if fut and not fut.done():
                fut.set_result((msg, time.perf_counter()))
        elif msg["type"] == "error":
            stats.errors.append(msg["code"])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run(args: argparse.Namespace, base_url: str) -> None:
    drawings = make_drawings(Path(args.data_dir), args.drawings * args.clients, args.seed)
    per_client = [drawings[i::args.clients] for i in range(args.clients)]
    ws_url = base_url.replace("http://", "ws://") + "/ws/recognize/"
    stats = Stats()
    started = time.perf_counter()
    await asyncio.gather(*(client(ws_url, c, per_client[c], stats, args.pace_ms / 1000, args.batch, args.timeout)
                           for c in range(args.clients)))
    wall = time.perf_counter() - started
    lat = stats.latencies
    print(f"clients={args.clients} drawings={len(drawings)} messages_per_drawing~{np.mean([sum(-(-len(s) // args.batch) for s in d) for _, d in drawings]):.1f} "
          f"pace={args.pace_ms}ms wall={wall:.1f}s")
    print(f"predictions/s={stats.predictions / wall:.1f}  predictions={stats.predictions}  "
          f"final-correct={stats.correct}/{len(lat)}  errors={len(stats.errors)} {sorted(set(stats.errors))}  lost={stats.lost}")
    print(f"latency ms (last stroke -> its prediction, client side): p50={pct(lat, 50):.2f} p95={pct(lat, 95):.2f} "
          f"p99={pct(lat, 99):.2f} max={max(lat, default=float('nan')):.2f}")
    print(f"server-side latency_ms: p50={pct(stats.server_ms, 50):.2f} p95={pct(stats.server_ms, 95):.2f}")
    print("server-side phases, median ms: " + "  ".join(f"{k}={pct(v, 50):.2f}" for k, v in stats.phases.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service; without it a stack is started on a free port")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--drawings", type=int, default=40, help="drawings per client")
    parser.add_argument("--pace-ms", type=float, default=50.0, help="pause between messages (the page throttles to 50 ms)")
    parser.add_argument("--batch", type=int, default=8, help="points per stroke message")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DIR", str(ROOT.parent / "shared/data/mnist")))
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args, args.url.rstrip("/")))
        return
    from scripts.stack import Stack

    with Stack(port=free_port(), redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")) as stack:
        time.sleep(1.0)
        asyncio.run(run(args, stack.url))


if __name__ == "__main__":
    main()
