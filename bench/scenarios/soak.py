"""The soak: page-paced clients drawing (every few drawings submitted) for a long time; memory, Redis and stored
rows judged against the load's start."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.load import DEFAULT_MNIST_DIR, LoadResult, load_run, make_drawings, pct, run_async
from bench.scenarios.health import (
    MEMORY_GROWTH_MAX,
    RedisState,
    crash_failures,
    growth,
    redis_state,
    rss_lines,
    rss_sample,
    stack_pids,
    verdict,
)
from scripts.stack import Stack


@dataclass
class SoakReport:
    clients: int
    seconds: float
    load: LoadResult
    rss: list[tuple[float, dict[str, int]]]  # (seconds into the run, kB per process)
    warmup_s: float
    redis_start: RedisState
    redis_end: RedisState
    acked: int  # distinct rows acknowledged `stored`
    rows: int  # rows of this run in the database
    predicted: int  # of those, filled in by a worker
    crashes: list[str]

    @property
    def errors(self) -> int:
        return len(self.load.stats.errors)

    @property
    def lost(self) -> int:
        return self.load.stats.lost + self.load.stats.submits_lost

    @property
    def rss_after_warmup(self) -> dict[str, int]:
        return next((s for t, s in self.rss if t >= self.warmup_s), self.rss[-1][1])

    @property
    def rss_growth(self) -> dict[str, float]:
        return growth(self.rss_after_warmup, self.rss[-1][1])

    @property
    def failures(self) -> list[str]:
        f = list(self.crashes)
        if self.errors:
            f.append(f"{self.errors} errors {sorted(Counter(self.load.stats.errors).items())}")
        if self.lost:
            f.append(f"{self.load.stats.lost} final predictions and {self.load.stats.submits_lost} submits lost")
        if not self.load.stats.submits:
            f.append("no submit was made (run longer)")
        f += [f"{name} RSS +{g:.1%} after warm-up" for name, g in self.rss_growth.items() if g > MEMORY_GROWTH_MAX]
        if len(self.redis_end.kept) > len(self.redis_start.kept):
            f.append(
                f"Redis keys without an expiry under the prefix {len(self.redis_start.kept)} -> "
                f"{len(self.redis_end.kept)} (new: {sorted(self.redis_end.kept - self.redis_start.kept)})"
            )
        if self.redis_end.channels > self.redis_start.channels:
            f.append(f"Redis channels under the prefix {self.redis_start.channels} -> {self.redis_end.channels}")
        if self.rows != self.acked:
            f.append(f"{self.rows} rows stored for {self.acked} acknowledged submits")
        return f

    def lines(self) -> list[str]:
        s, lat = self.load.stats, self.load.stats.latencies
        end_t, end = self.rss[-1]
        r0, r1 = self.redis_start, self.redis_end
        return [
            f"soak: {self.clients} clients x {self.seconds:g} s; drawings={self.load.drawings} messages={s.messages} "
            f"({self.load.messages_per_s:.0f}/s) predictions={s.predictions} final-correct={s.correct}/{len(lat)}",
            f"errors={self.errors} {sorted(Counter(s.errors).items())}  lost final predictions={s.lost}",
            f"submits={s.submits} acknowledged stored={len(s.stored_ids)} (distinct rows {self.acked}) "
            f"no-ack={s.submits_lost}; rows in the database={self.rows}, predictions filled in={self.predicted}",
            f"latency ms (last stroke -> its prediction): p50={pct(lat, 50):.1f} p95={pct(lat, 95):.1f} "
            f"p99={pct(lat, 99):.1f} max={max(lat, default=math.nan):.1f}",
            f"RSS, after warm-up ({self.warmup_s:.0f} s) vs end ({end_t:.0f} s), {len(self.rss)} samples:",
            *rss_lines(self.rss_after_warmup, end, ("after warm-up", "end")),
            *self._trajectory(),
            f"Redis: used_memory {r0.used_memory / 2**20:.2f} -> {r1.used_memory / 2**20:.2f} MB (whole server); "
            f"keys under the prefix {len(r0.keys)} -> {len(r1.keys)}, of which without an expiry "
            f"{len(r0.kept)} -> {len(r1.kept)}; pub/sub channels {r0.channels} -> {r1.channels}",
            verdict(self.failures, "0 errors, 0 lost, RSS <= +10% after warm-up, no Redis growth, rows = acks"),
        ]

    def _trajectory(self, points: int = 8) -> list[str]:
        """Each process's RSS at a few evenly spaced samples: a leak climbs, a high-water mark levels off."""
        picked = self.rss[:: max(1, -(-len(self.rss) // points))] + ([self.rss[-1]] if len(self.rss) > 1 else [])
        when = " ".join(f"{t:5.0f}s" for t, _ in picked)
        return [f"RSS MB at {when}"] + [
            f"  {name:<20} " + " ".join(f"{s.get(name, 0) / 1024:6.0f}" for _, s in picked) for name in self.rss[-1][1]
        ]


def stored_rows(tag: str) -> tuple[int, int]:
    """(rows, rows with their prediction filled in) of drawings whose id starts with `tag`."""
    from recognizer.models import Drawing

    rows = Drawing.objects.filter(client_id__startswith=tag)
    return rows.count(), rows.filter(predicted_at__isnull=False).count()


def soak(
    stack: Stack,
    *,
    clients: int,
    seconds: float,
    warmup_s: float | None = None,
    sample_s: float = 10.0,
    submit_every: int = 5,
    data_dir: Path = DEFAULT_MNIST_DIR,
    seed: int = 0,
) -> SoakReport:
    """Clients draw at the page's pace for `seconds`, every `submit_every`-th drawing submitted."""
    warmup = min(60.0, seconds / 4) if warmup_s is None else warmup_s
    drawings = make_drawings(data_dir, max(60, 4 * clients), seed)
    tag = f"rel{uuid.uuid4().hex[:6]}"
    pids = stack_pids(stack)
    # one drawing first: the web process subscribes its reply channel on its first socket, which is
    # not growth
    run_async(load_run(stack.url, drawings, clients=1, per_client=1, seed=seed))
    redis_start = redis_state(stack)
    rss: list[tuple[float, dict[str, int]]] = []

    async def run() -> LoadResult:
        started = time.perf_counter()
        load = asyncio.ensure_future(
            load_run(stack.url, drawings, clients=clients, duration=seconds, submit_every=submit_every, tag=tag, seed=seed)
        )
        # samples at warm-up's end exactly, then every sample_s, and one as the load ends
        times = sorted({warmup, *(t for t in _steps(sample_s, seconds) if t != warmup)})
        for t in times:
            if t >= seconds:
                break
            done, _ = await asyncio.wait({load}, timeout=max(0.0, started + t - time.perf_counter()))
            if done:
                break
            rss.append((time.perf_counter() - started, rss_sample(stack)))
        result = await load
        rss.append((time.perf_counter() - started, rss_sample(stack)))
        return result

    result = run_async(run())
    deadline = time.monotonic() + 15  # the queues drain, the last rows' predictions are filled in
    time.sleep(1.0)
    while (counts := stored_rows(tag))[1] < counts[0] and time.monotonic() < deadline:
        time.sleep(0.5)
    rows, predicted = counts
    redis_end = redis_state(stack)
    return SoakReport(
        clients,
        seconds,
        result,
        rss,
        warmup,
        redis_start,
        redis_end,
        acked=len(set(result.stats.stored_ids)),
        rows=rows,
        predicted=predicted,
        crashes=crash_failures(stack, pids),
    )


def _steps(step: float, until: float) -> Iterator[float]:
    t = step
    while t < until:
        yield t
        t += step
