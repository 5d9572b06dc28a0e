"""Stroke flood: another client's live latency while one address replays huge strokes.

One client draws MNIST digits at the page's pace (bench/load.py) from 127.0.0.1; its final-prediction
latency p95 is measured alone, then while 127.0.0.2 (another address to the per-address limits) holds
--sockets sockets that each cycle a --points-point stroke (random points over the canvas, a final
stroke: its prediction is asked at once) and an undo, one cycle every --cycle-ms, sending without
waiting for answers; a flooding socket that is closed connects again at once. Target (issue "Hostile
clients get nowhere"): p95 under the flood <= 2x p95 alone.

    python bench/stroke_flood.py                       # starts its own stack (default limits)
    python bench/stroke_flood.py --no-work-limits      # the same with the work budgets lifted (A/B)
    python bench/stroke_flood.py --seconds 10 --sockets 10 --points 10000

It starts the service as `make run` does (scripts.stack.Stack, a Redis key prefix and a throwaway
database of its own); the flood runs in a process of its own, so its client-side work is not the
measured client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from bench.load import DEFAULT_MNIST_DIR, LoadResult, load_run, make_drawings, pct, run_async  # noqa: E402

FLOODER = "127.0.0.2"
P95_RATIO_MAX = 2.0
CANVAS = 280.0  # the page's canvas and brush: a flood that passes the protocol's checks
BRUSH = 15.8
NO_WORK_LIMITS = dict.fromkeys(
    (
        "WS_BYTES_PER_SECOND",
        "WS_BYTES_BURST",
        "WS_PREDICTIONS_PER_SECOND",
        "WS_PREDICTIONS_BURST",
        "WS_ADDRESS_BYTES_PER_SECOND",
        "WS_ADDRESS_BYTES_BURST",
        "WS_ADDRESS_PREDICTIONS_PER_SECOND",
        "WS_ADDRESS_PREDICTIONS_BURST",
    ),
    "1e12",
)


def stroke_points(count: int, seed: int) -> str:
    """`count` random points over the canvas, as the JSON of a `points` list (0.1 px like the page)."""
    rng = random.Random(seed)
    return json.dumps(
        [[round(rng.uniform(0, CANVAS), 1), round(rng.uniform(0, CANVAS), 1)] for _ in range(count)], separators=(",", ":")
    )


async def _flood_socket(url: str, index: int, points_json: str, cycle_s: float, stop_at: float, counts: Counter[str]) -> None:
    """One flooding socket; closed, it connects again at once (refused, it tries again 100 ms later)."""
    port, n = int(url.rsplit(":", 1)[1]), 0
    while time.perf_counter() < stop_at:
        try:
            sock = socket.create_connection(("127.0.0.1", port), source_address=(FLOODER, 0))
            ws = await websockets.connect(
                url.replace("http://", "ws://") + "/ws/recognize/",
                sock=sock,
                origin=url,
                max_size=2**22,
                open_timeout=10,
                write_limit=2**23,
            )
        except (OSError, websockets.WebSocketException) as exc:
            counts[f"connect refused:{getattr(getattr(exc, 'response', None), 'status_code', type(exc).__name__)}"] += 1
            await asyncio.sleep(0.1)
            continue
        counts["connected"] += 1
        n += 1
        await _flood_on(ws, f"flood{index}x{n}", points_json, cycle_s, stop_at, counts)


async def _flood_on(ws: Any, drawing: str, points_json: str, cycle_s: float, stop_at: float, counts: Counter[str]) -> None:
    async def read() -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                counts[msg["code"] if msg["type"] == "error" else msg["type"]] += 1
        except websockets.ConnectionClosed as exc:
            counts[f"closed:{exc.rcvd.code if exc.rcvd else 'none'}"] += 1

    reader = asyncio.create_task(read())
    seq = 0
    head = (
        f'{{"type":"stroke","drawing":"{drawing}","stroke":0,"final":true,"canvas":[{CANVAS},{CANVAS}],'
        f'"brush":{BRUSH},"points":{points_json},"seq":'
    )
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            seq += 1
            await ws.send(f"{head}{seq}}}")
            seq += 1
            await ws.send(json.dumps({"type": "undo", "drawing": drawing, "seq": seq}))
            counts["cycles sent"] += 1
            await asyncio.sleep(max(0.0, cycle_s - (time.perf_counter() - started)))
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.close()
        reader.cancel()


def _flooder(url: str, sockets: int, points: int, cycle_s: float, seconds: float, ready: Any, out: Any) -> None:
    points_json = stroke_points(points, 0)

    async def run() -> Counter[str]:
        counts: Counter[str] = Counter()
        ready.set()
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_flood_socket(url, i, points_json, cycle_s, stop_at, counts) for i in range(sockets)))
        return counts

    counts = asyncio.run(run())
    t = os.times()
    counts["cpu_ms"] = int((t.user + t.system) * 1000)
    out.put(dict(counts))


def cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far."""
    out = {}
    for name, pid in pids.items():
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return out


def measure(
    url: str,
    *,
    seconds: float,
    sockets: int,
    points: int,
    cycle_ms: float,
    data_dir: Path,
    seed: int,
    pids: dict[str, int] | None = None,
) -> tuple[LoadResult, LoadResult, dict[str, int]]:
    drawings = make_drawings(data_dir, 40, seed)
    cpu0 = cpu_s(pids or {})
    quiet = run_async(load_run(url, drawings, clients=1, duration=seconds, seed=seed))
    cpu1 = cpu_s(pids or {})
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_flooder, daemon=True, args=(url, sockets, points, cycle_ms / 1000, seconds + 2.0, ready, out))
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("the flooder did not start")
    time.sleep(1.0)  # the flood is on before the measurement starts
    cpu2 = cpu_s(pids or {})
    flooded = run_async(load_run(url, drawings, clients=1, duration=seconds, seed=seed + 1))
    cpu3 = cpu_s(pids or {})
    counts = out.get(timeout=60)
    proc.join(10)
    for name in cpu0:  # the service's CPU, in ms per second of each measurement
        counts[f"server cpu ms/s {name}: alone"] = round((cpu1[name] - cpu0[name]) / seconds * 1000)
        counts[f"server cpu ms/s {name}: flooded"] = round((cpu3[name] - cpu2[name]) / seconds * 1000)
    return quiet, flooded, counts


def lines(quiet: LoadResult, flooded: LoadResult, counts: dict[str, int], args: argparse.Namespace) -> list[str]:
    q95, f95 = pct(quiet.stats.latencies, 95), pct(flooded.stats.latencies, 95)
    ratio = f95 / q95 if q95 else float("nan")

    def row(name: str, r: LoadResult) -> str:
        lat = r.stats.latencies
        return (
            f"{name:<8} drawings={len(lat)} p50={pct(lat, 50):.1f} ms p95={pct(lat, 95):.1f} ms "
            f"max={max(lat, default=float('nan')):.1f} ms errors={len(r.stats.errors)} "
            f"{sorted(set(r.stats.errors))} lost={r.stats.lost}\n         server-side phases p95 ms: "
            + " ".join(f"{k}={pct(v, 95):.1f}" for k, v in r.stats.phases.items())
        )

    cpu = counts.pop("cpu_ms", 0)
    server = {k[len("server cpu ms/s ") :]: counts.pop(k) for k in [k for k in counts if k.startswith("server cpu")]}
    return [
        f"flood: {args.sockets} sockets from {FLOODER}, each a {args.points}-point stroke + undo every {args.cycle_ms:g} ms "
        f"for {args.seconds:g} s (+2); work limits {'lifted' if args.no_work_limits else 'on (defaults)'}",
        row("alone", quiet),
        row("flooded", flooded),
        "flooder got: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" (its CPU {cpu / 1000:.1f} s)",
        *([("service CPU ms/s: " + ", ".join(f"{k}={v}" for k, v in server.items()))] if server else []),
        f"verdict: p95 {f95:.1f} ms under the flood vs {q95:.1f} ms alone = {ratio:.2f}x "
        f"({'PASS' if ratio <= P95_RATIO_MAX and not flooded.stats.lost else 'FAIL'}: target <= {P95_RATIO_MAX:g}x, none lost)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (its limits as they are); without it a stack is started")
    parser.add_argument("--seconds", type=float, default=15.0, help="each measurement (alone, then flooded)")
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--cycle-ms", type=float, default=100.0, help="each flood socket: stroke + undo this often")
    parser.add_argument("--no-work-limits", action="store_true", help="lift the bytes and prediction budgets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    from bench.procstat import machine_line

    print(machine_line(ROOT), flush=True)
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", flush=True)
    if args.url:
        print(
            "\n".join(
                lines(
                    *measure(
                        args.url.rstrip("/"),
                        seconds=args.seconds,
                        sockets=args.sockets,
                        points=args.points,
                        cycle_ms=args.cycle_ms,
                        data_dir=Path(args.data_dir),
                        seed=args.seed,
                    ),
                    args,
                )
            )
        )
        return
    from bench.database import throwaway_database
    from bench.e2e import free_port
    from scripts.stack import Stack, redis_prefix_clear

    redis_url, prefix = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"), f"bench-{uuid.uuid4().hex[:8]}:"
    env = {"REDIS_PREFIX": prefix, **(NO_WORK_LIMITS if args.no_work_limits else {})}
    try:
        with (
            throwaway_database() as db_url,
            Stack(port=free_port(), redis_url=redis_url, env={**env, "DATABASE_URL": db_url}) as stack,
        ):
            time.sleep(1.0)
            print(
                "\n".join(
                    lines(
                        *measure(
                            stack.url,
                            seconds=args.seconds,
                            sockets=args.sockets,
                            points=args.points,
                            cycle_ms=args.cycle_ms,
                            data_dir=Path(args.data_dir),
                            seed=args.seed,
                            pids={name: p.pid for name, p in stack.procs},
                        ),
                        args,
                    )
                ),
                flush=True,
            )
    finally:
        redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
