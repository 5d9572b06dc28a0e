"""Reliability benchmark (issue 12): the real service under a long soak, hostile input and a flood.

Each scenario starts the service as `make run` does (`scripts.stack.Stack`, supervised, with a Redis
key prefix and a throwaway database of its own), prints its figures, then one verdict line against
the issue's target:

    python bench/reliability.py soak [--clients 100 --seconds 600]   # page-paced drawing, every 5th submitted
    python bench/reliability.py fuzz [--frames 2000]                  # hostile frames, uploads, 100 MB bodies
    python bench/reliability.py flood [--clients 5 --seconds 20]      # one address floods, others draw

(the throwaway database is made on DATABASE_URL's server, as Django's test databases are; REDIS_URL
defaults to redis://127.0.0.1:6379/13)

- soak: 0 errors, 0 lost (final predictions and `stored` acknowledgements), every process's RSS at
  most 10% above its size after warm-up, no more Redis keys without an expiry nor channels under
  the stack's prefix than before, stored rows = acknowledged submits.
- fuzz: every frame, upload and 100 MB body answered with an error (a protocol `error`, an HTTP 4xx
  JSON error) or a documented close, no process crashed or restarted, RSS flat (<= 10%).
- flood: 5 page-paced clients' final-prediction p95 while 127.0.0.2 floods uploads and health checks
  within 2x of their unloaded p95; the flooder is throttled (429). Default limits here; the other
  scenarios' clients share one address, so their stacks run without the per-address limits
  (ONE_ADDRESS).
The scenario functions take a running Stack, so tests/bench/test_reliability.py runs them small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import math
import multiprocessing
import os
import random
import select
import socket
import struct
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from bench.compare import machine_line, redis_pid  # noqa: E402
from bench.database import throwaway_database  # noqa: E402
from bench.load import BRUSH, CANVAS, DEFAULT_MNIST_DIR, LoadResult, load_run, make_drawings, pct, run_async  # noqa: E402
from scripts.stack import UNTHROTTLED, Stack  # noqa: E402

MEMORY_GROWTH_MAX = 0.10  # the "flat memory": at most 10% above the reference sample
P95_RATIO_MAX = 2.0  # others' p95 under a flood, against unloaded
FLOODER = "127.0.0.2"  # loopback too, but another address to the per-address limits
# UNTHROTTLED leaves the per-address message budget (1000/s) on, and 100 page-paced clients on one
# address send ~2000/s: lifted too where all clients share 127.0.0.1 (each socket keeps its own 100/s).
ONE_ADDRESS = {**UNTHROTTLED, "WS_ADDRESS_RATE_PER_SECOND": "1000000", "WS_ADDRESS_RATE_BURST": "2000000"}

# ---- the processes: RSS from /proc


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
                raw = Path(f"/proc/{entry.name}/stat").read_text()
                tree.setdefault(int(raw[raw.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    return tree


def tree_rss_kb(pid: int, tree: dict[int, list[int]]) -> int:
    """RSS of a process and its descendants (none today: daphne and solo workers are one process)."""
    return _rss_kb(pid) + sum(tree_rss_kb(child, tree) for child in tree.get(pid, []))


def stack_pids(stack: Stack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.procs}


def rss_sample(stack: Stack) -> dict[str, int]:
    """kB per process of the service: each of `stack.procs` (with its descendants), and Redis."""
    tree = _children()
    sample = {name: tree_rss_kb(proc.pid, tree) for name, proc in stack.procs}
    if (pid := redis_pid(stack.redis_url)) is not None:
        sample["redis"] = _rss_kb(pid)
    return sample


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {name: (after.get(name, 0) - kb) / kb for name, kb in before.items() if kb}


def rss_lines(before: dict[str, int], after: dict[str, int], labels: tuple[str, str]) -> list[str]:
    g = growth(before, after)
    return [
        f"  {name:<20} {before[name] / 1024:8.1f} MB {labels[0]}  {after.get(name, 0) / 1024:8.1f} MB {labels[1]}  "
        f"{g.get(name, math.nan):+7.1%}"
        for name in before
    ]


def crash_failures(stack: Stack, pids: dict[str, int]) -> list[str]:
    """Processes that died, were replaced or restarted since `pids` was taken."""
    failures = []
    now = stack_pids(stack)
    for name, pid in pids.items():
        proc = dict(stack.procs).get(name)
        if now.get(name) != pid or proc is None or proc.poll() is not None:
            failures.append(f"{name} (pid {pid}) died or was replaced")
        elif stack.restarts(name):
            failures.append(f"{name} restarted {stack.restarts(name)} time(s)")
    return failures


# ---- Redis under the stack's prefix


@dataclass(frozen=True)
class RedisState:
    used_memory: int  # the whole server's (shared with anything else using it)
    keys: frozenset[str]  # keys under the stack's prefix (without it)
    kept: frozenset[str]  # of those, the keys without an expiry (a lock or a heartbeat expires by itself)
    channels: int  # pub/sub channels with subscribers under the stack's prefix


def redis_state(stack: Stack) -> RedisState:
    import redis

    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    prefix = stack.env.get("REDIS_PREFIX", "")
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.ttl(key)
    names = [k.decode()[len(prefix) :] for k in keys]
    return RedisState(
        used_memory=int(client.info("memory")["used_memory"]),
        keys=frozenset(names),
        kept=frozenset(n for n, ttl in zip(names, pipe.execute()) if ttl == -1),
        channels=len(client.pubsub_channels(f"{prefix}*")),
    )


# ---- soak


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


def verdict(failures: list[str], target: str) -> str:
    return f"verdict: {'PASS' if not failures else 'FAIL'} (target: {target})" + (
        "" if not failures else " -- " + "; ".join(failures)
    )


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


# ---- fuzz: frames


@dataclass(frozen=True)
class Frame:
    category: str
    payload: str | bytes
    text: bool  # a text frame (bytes sent as text: invalid UTF-8)
    # the closes that are documented for this frame (None: the TCP connection dropped, no close
    # frame); any other frame is owed an `error`
    closes: tuple[int | None, ...] = ()


OVER_FRAME = 4 * 2**20  # docs/protocol.md: a frame over 4 MB closes the connection (1009, RFC 6455)
JSON_LIMIT = 256 * 1024  # over this, `too_large`


def _stroke(seq: int, /, **fields: Any) -> dict[str, Any]:
    msg = {
        "type": "stroke",
        "seq": seq,
        "drawing": "f",
        "stroke": 0,
        "points": [[10, 10], [20, 20]],
        "final": False,
        "canvas": [CANVAS, CANVAS],
        "brush": BRUSH,
    }
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not _MISSING}


_MISSING = object()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def _gen_random_binary(rng: random.Random, seq: int) -> Frame:
    return Frame("random bytes (binary)", rng.randbytes(rng.randint(0, 4096)), text=False)


def _gen_binary_json(rng: random.Random, seq: int) -> Frame:
    return Frame("valid JSON in a binary frame", _dumps(_stroke(seq)).encode(), text=False)


def _gen_invalid_utf8(rng: random.Random, seq: int) -> Frame:
    # RFC 6455 8.1: a text frame that is not UTF-8 fails the connection (7.1.7: a close frame, 1007, is
    # optional; autobahn, under daphne, drops the TCP connection)
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    body = _dumps(_stroke(seq)).encode()
    cut = rng.randint(0, len(body))
    return Frame("invalid UTF-8 (text)", body[:cut] + bad + body[cut:], text=True, closes=(1007, None))


def _gen_random_text(rng: random.Random, seq: int) -> Frame:
    alphabet = '{}[]":,0123456789abcdefnulltrue \t\n\\/éあ\u2028\x00'
    return Frame("random text", "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2000))) + "}", text=True)


def _gen_truncated(rng: random.Random, seq: int) -> Frame:
    body = _dumps(_stroke(seq, points=[[rng.uniform(0, 280), rng.uniform(0, 280)] for _ in range(20)]))
    return Frame("truncated JSON", body[: rng.randint(0, len(body) - 1)], text=True)


def _gen_not_object(rng: random.Random, seq: int) -> Frame:
    choices = ["[]", "null", "7", '"stroke"', "true", f"[{_dumps(_stroke(seq))}]"]
    return Frame("JSON, not an object", rng.choice(choices), text=True)


def _gen_deep(rng: random.Random, seq: int) -> Frame:
    depth = rng.randint(2_000, 60_000)
    if rng.random() < 0.5:
        return Frame("deeply nested JSON", "[" * depth + "]" * depth, text=True)
    return Frame(
        "deeply nested JSON", f'{{"type":"stroke","seq":{seq},"points":' + '{"a":' * depth + "1" + "}" * depth + "}", text=True
    )


def _gen_huge_json(rng: random.Random, seq: int) -> Frame:
    size = rng.randint(JSON_LIMIT + 1, OVER_FRAME - 1024)
    return Frame("JSON over 256 KB (up to 4 MB)", _dumps({"type": "stroke", "seq": seq, "pad": "x" * size}), text=True)


def _gen_oversized(rng: random.Random, seq: int) -> Frame:
    size = rng.randint(OVER_FRAME + 1, OVER_FRAME + 2**20)
    return Frame("frame over 4 MB", _dumps({"type": "stroke", "seq": seq, "pad": "x" * size}), text=True, closes=(1009, None))


def _gen_unknown_type(rng: random.Random, seq: int) -> Frame:
    kind = rng.choice(["hello", "", "STROKE", None, 7, ["stroke"], {"t": 1}, _MISSING])
    return Frame("unknown or missing type", _dumps(_stroke(seq, type=kind)), text=True)


def _gen_wrong_types(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [
            ("seq", str(seq)),
            ("seq", seq + 0.5),
            ("seq", None),
            ("seq", True),
            ("drawing", 5),
            ("drawing", None),
            ("points", {"x": 1}),
            ("points", "10,10"),
            ("points", [[1, "2"]]),
            ("points", [[True, 1]]),
            ("final", 1),
            ("final", "true"),
            ("canvas", "280x280"),
            ("canvas", [280]),
            ("brush", "18"),
            ("brush", None),
            ("stroke", 1.5),
            ("stroke", "0"),
            ("points", _MISSING),
            ("final", _MISSING),
            ("canvas", _MISSING),
        ]
    )
    return Frame("wrong types, missing fields", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_wrong_submit(rng: random.Random, seq: int) -> Frame:
    label = rng.choice([10, -1, "3", 3.5, True, [3]])
    return Frame("bad submit label", _dumps({"type": "submit", "seq": seq, "drawing": "f", "label": label}), text=True)


def _gen_nan_inf(rng: random.Random, seq: int) -> Frame:
    value = rng.choice([math.nan, math.inf, -math.inf])
    fld = rng.choice(["points", "brush", "canvas", "seq", "stroke"])
    obj = _stroke(seq)
    obj[fld] = {"points": [[value, 1]], "canvas": [value, 280]}.get(fld, value)
    text = _dumps(obj)
    if rng.random() < 0.5:  # numbers that overflow to infinity pass the JSON parser's NaN check
        text = text.replace("Infinity", "1e999").replace("NaN", "-1e999")
    return Frame("NaN and infinities", text, text=True)


def _gen_negative(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [("brush", -1), ("brush", 0), ("canvas", [-280, 280]), ("canvas", [280, 0]), ("stroke", -1), ("points", [[-1e6, 5]])]
    )
    return Frame("negative or zero numbers", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_huge_seq(rng: random.Random, seq: int) -> Frame:
    big = rng.choice([2**53, 2**63, -(2**63), 10**30, -(10**400), 10**4000])
    return Frame("huge seq", _dumps(_stroke(big)), text=True)


def _gen_out_of_range(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [
            ("points", [[1e6, 5]]),
            ("points", [[5, 100_001]]),
            ("points", [[1, 2, 3]]),
            ("points", [[1]]),
            ("points", [[]]),
            ("canvas", [10_001, 280]),
            ("brush", 1_001),
            ("stroke", 64),
            ("stroke", 2**40),
            ("stroke", 3),
        ]
    )
    return Frame("values out of range", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_long_stroke(rng: random.Random, seq: int) -> Frame:
    n = rng.randint(10_001, 12_000)
    points = [[round(rng.uniform(0, 280), 2), round(rng.uniform(0, 280), 2)] for _ in range(n)]
    return Frame("stroke over 10,000 points", _dumps(_stroke(seq, points=points)), text=True)


def _gen_bad_drawing(rng: random.Random, seq: int) -> Frame:
    drawing = rng.choice(["", "x" * 65, "a b", "d/1", "é", "<script>", "d\x00", "𝟘"])
    return Frame("bad drawing id", _dumps(_stroke(seq, drawing=drawing)), text=True)


def _gen_empty_submit(rng: random.Random, seq: int) -> Frame:
    kind = rng.choice(["submit", "undo", "clear"])
    if kind == "submit":  # nothing drawn on this socket: nothing to store
        return Frame("submit of nothing", _dumps({"type": "submit", "seq": seq, "drawing": "f", "label": 3}), text=True)
    return Frame("submit of nothing", _dumps({"type": kind, "seq": seq, "drawing": "x" * 65}), text=True)


def _gen_text_oddities(rng: random.Random, seq: int) -> Frame:
    body = _dumps(_stroke(seq))
    return Frame(
        "BOM, control characters",
        rng.choice(["\ufeff" + body, body.replace(",", ",\x00", 1), "\x00" * 64, body.replace('"stroke"', '"str\\ud800oke"', 1)]),
        text=True,
    )


GENERATORS: tuple[Callable[[random.Random, int], Frame], ...] = (
    _gen_random_binary,
    _gen_binary_json,
    _gen_invalid_utf8,
    _gen_random_text,
    _gen_truncated,
    _gen_not_object,
    _gen_deep,
    _gen_huge_json,
    _gen_oversized,
    _gen_unknown_type,
    _gen_wrong_types,
    _gen_wrong_submit,
    _gen_nan_inf,
    _gen_negative,
    _gen_huge_seq,
    _gen_out_of_range,
    _gen_long_stroke,
    _gen_bad_drawing,
    _gen_empty_submit,
    _gen_text_oddities,
)


@dataclass
class Tally:
    """Per category: how each hostile input was answered."""

    error: int = 0  # a protocol `error` / an HTTP 4xx JSON error
    closed: int = 0  # the documented close (WebSocket frames only)
    other: int = 0  # answered, but not with an error (accepted: a prediction, an HTTP 2xx)
    unanswered: int = 0  # nothing within the timeout, an undocumented close, a 5xx or a reset
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.error + self.closed + self.other + self.unanswered


async def _fuzz_socket(url: str, frames: list[Frame], tallies: dict[str, Tally], *, timeout: float, interval: float) -> bool:
    """Send `frames` one at a time on one socket (a new one after each close), each awaited; then
    whether the last socket still predicts a real stroke."""
    ws_url = url.replace("http://", "ws://") + "/ws/recognize/"

    async def connect() -> Any:
        return await websockets.connect(ws_url, origin=url, max_size=2**22, open_timeout=timeout, write_limit=2**23)

    ws = await connect()
    try:
        for frame in frames:
            tally = tallies.setdefault(frame.category, Tally())
            started = time.perf_counter()
            try:
                await ws.send(frame.payload, text=frame.text)
                answer = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if answer.get("type") == "error":
                    tally.error += 1
                    tally.codes[answer["code"]] += 1
                else:
                    tally.other += 1
                    tally.codes[f"answered {answer.get('type')}"] += 1
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in frame.closes:
                    tally.closed += 1
                else:
                    tally.unanswered += 1
                tally.codes[f"close {code or 'without a close frame'}"] += 1
                ws = await connect()
            except TimeoutError:
                tally.unanswered += 1
                tally.codes["no answer"] += 1
                await ws.close()
                ws = await connect()
            # the per-socket message budget (100/s) is not what this measures
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        await ws.send(
            json.dumps(
                {
                    "type": "stroke",
                    "seq": 1,
                    "drawing": "ok",
                    "stroke": 0,
                    "points": [[60, 60], [200, 220]],
                    "final": True,
                    "canvas": [CANVAS, CANVAS],
                    "brush": BRUSH,
                }
            )
        )
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if msg["type"] == "prediction":
                return msg["seq"] == 1 and msg["digit"] is not None
    except (TimeoutError, OSError, websockets.WebSocketException):
        return False
    finally:
        await ws.close()


def fuzz_frames(count: int, seed: int) -> list[Frame]:
    """`count` hostile frames, the categories in turn (each at least once when count >= their number)."""
    rng = random.Random(seed)
    return [GENERATORS[i % len(GENERATORS)](rng, i + 1) for i in range(count)]


# ---- fuzz: HTTP


def _png(width: int, height: int, ink: bool = True) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (width, height), 255)
    if ink:
        ImageDraw.Draw(img).line(
            [(width * 0.2, height * 0.2), (width * 0.8, height * 0.2), (width * 0.4, height * 0.9)],
            fill=0,
            width=max(1, min(width, height) // 10),
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    """A 1-bit side x side PNG of zeros (about 110 KB for 30,000: 900 million pixels when decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def _tiff() -> bytes:
    """A TIFF with ink: a format the page does not offer (PNG, JPEG, WebP, GIF are read)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(_png(112, 112))).save(buf, format="TIFF")
    return buf.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112"><path d="M20 20 H90 L45 100" '
    b'stroke="black" stroke-width="9" fill="none"/></svg>'
)


def hostile_uploads() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(name, method, headers, body) of each hostile request to /api/predict."""

    def multipart(
        data: bytes, filename: str = "d.png", ctype: str = "image/png", name: str = "image"
    ) -> tuple[dict[str, str], bytes]:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body

    good = _png(112, 112)
    cases = [
        ("not an image", *multipart(random.Random(1).randbytes(5000))),
        ("truncated PNG", *multipart(good[: len(good) // 2])),
        ("decompression bomb PNG 30000x30000 1-bit", *multipart(bomb_png())),
        ("4097x1 PNG with ink", *multipart(_png(4097, 1))),
        ("1x4097 PNG with ink", *multipart(_png(1, 4097))),
        ("zero-byte file", *multipart(b"")),
        ("PNG as text/plain body, no multipart", {"Content-Type": "text/plain"}, good),
        ("multipart without the image field", *multipart(good, name="file")),
        ("TIFF", *multipart(_tiff(), "d.tif", "image/tiff")),
        ("SVG", *multipart(SVG, "d.svg", "image/svg+xml")),
        ("6 MB file", *multipart(good + bytes(6 * 2**20), "big.png")),
    ]
    return [(name, "POST", headers, body) for name, headers, body in cases] + [("GET /api/predict", "GET", {}, b"")]


def _http(port: int, method: str, path: str, headers: dict[str, str], body: bytes, timeout: float) -> tuple[int, str, bool]:
    """(status, body, whether it is a JSON error) of one request; status 0 when nothing came back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        try:
            is_error = json.loads(text).get("type") == "error"
        except (ValueError, AttributeError):
            is_error = False
        return resp.status, text, is_error
    except OSError as exc:
        return 0, repr(exc), False
    finally:
        conn.close()


@dataclass(frozen=True)
class BigBody:
    name: str
    status: int  # 0: no answer
    answer_s: float  # from the headers sent to the status line
    mb_sent: float  # body sent when the answer came (or when sending stopped)
    closed: bool  # the server closed the connection within 3 s of answering
    json_error: bool
    probe_max_ms: float  # the slowest round trip of another socket meanwhile (nan: none measured)


BODY_KINDS = ("multipart, Content-Length", "octet-stream, Content-Length", "multipart, chunked")


class _Probe:
    """Another page's socket, asking for a prediction every 50 ms while a big body is sent: whether
    the body holds up the web process's event loop."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self.stop = url, threading.Event()
        self.round_trips: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        with connect(self.url.replace("http://", "ws://") + "/ws/recognize/", origin=self.url, open_timeout=10) as ws:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                sent = time.perf_counter()
                ws.send(json.dumps({"type": "clear", "seq": seq, "drawing": "probe"}))
                while (msg := json.loads(ws.recv(timeout=60)))["type"] != "prediction" or msg["seq"] != seq:
                    pass
                self.round_trips.append((time.perf_counter() - sent) * 1000)
                time.sleep(0.05)

    def max_ms(self) -> float:
        self.stop.set()
        self.thread.join(70)
        return max(self.round_trips, default=math.nan)


def big_body(port: int, *, kind: str, total: int = 100 * 2**20, timeout: float = 60.0) -> BigBody:
    """POST `total` bytes to /api/predict as fast as the server takes them, watching for an early
    answer. `kind` (BODY_KINDS): a well-formed multipart form whose `image` is `total` bytes long, or
    a bare body; its size declared by Content-Length, or chunked (counted only while it is read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    multipart, chunked = kind.startswith("multipart"), kind.endswith("chunked")
    head = [
        "POST /api/predict HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: " + ("multipart/form-data; boundary=bb" if multipart else "application/octet-stream"),
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}",
    ]
    opening = b'--bb\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n' if multipart else b""
    closing = b"\r\n--bb--\r\n" if multipart else b""
    block = b"\0" * 2**16
    piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
    probe = _Probe(f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    sent, answer, closed = len(opening) + len(closing), b"", False  # the form's framing counts in `total`
    answered_at: float | None = None
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.sendall(f"{len(opening):x}\r\n".encode() + opening + b"\r\n" if chunked and opening else opening)
        sock.setblocking(False)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.5)
            if readable:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                answer += data
                answered_at = answered_at or time.perf_counter()
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
            elif writable:
                try:
                    sent += _send_piece(sock, piece, block, chunked, total - sent)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if sent >= total:
                    end = (f"{len(closing):x}\r\n".encode() + closing + b"\r\n" if closing else b"") + b"0\r\n\r\n"
                    with contextlib.suppress(OSError):
                        sock.sendall(end if chunked else closing)
        if answer and not closed:  # answered: is the connection closed after it?
            sock.setblocking(True)
            sock.settimeout(3.0)
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    answer += data
                closed = True
    finally:
        sock.close()
    probe_max = probe.max_ms()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    body = answer.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in answer else b""
    try:
        json_error = json.loads(body).get("type") == "error"
    except (ValueError, AttributeError):
        json_error = False
    return BigBody(kind, status, ((answered_at or time.perf_counter()) - started), sent / 2**20, closed, json_error, probe_max)


def _send_piece(sock: socket.socket, piece: bytes, block: bytes, chunked: bool, left: int) -> int:
    """Send (part of) the next piece of body; returns body bytes sent (chunk framing not counted)."""
    if not chunked:
        return sock.send(block[:left])
    sock.setblocking(True)  # a chunk goes whole, or its framing breaks
    try:
        sock.sendall(piece)
    finally:
        sock.setblocking(False)
    return len(block)


def _complete(answer: bytes) -> bool:
    head, body = answer.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@dataclass
class FuzzReport:
    frames: int
    sockets: int
    tallies: dict[str, Tally]  # WebSocket frames per category
    uploads: dict[str, Tally]  # hostile uploads per kind
    bodies: list[BigBody]
    sockets_ok: int  # sockets that still predicted after their hostile frames
    sockets_used: int
    body_mb: float
    rss_phases: list[tuple[str, dict[str, int]]]  # (after which phase, kB per process)
    crashes: list[str]
    seconds: float

    @property
    def rss_before(self) -> dict[str, int]:
        return self.rss_phases[3][1]  # after the warm-up pass

    @property
    def rss_after(self) -> dict[str, int]:
        return self.rss_phases[-1][1]

    @property
    def answered(self) -> tuple[int, int, int, int]:
        every = [*self.tallies.values(), *self.uploads.values()]
        return (
            sum(t.error for t in every),
            sum(t.closed for t in every),
            sum(t.other for t in every),
            sum(t.unanswered for t in every),
        )

    @property
    def failures(self) -> list[str]:
        f = list(self.crashes)
        if (tried := sum(t.total for t in self.tallies.values())) < self.frames:
            f.append(f"{self.frames - tried} frames never sent (a socket could not connect again)")
        for kind, tallies in (("frame", self.tallies), ("upload", self.uploads)):
            for name, t in tallies.items():
                if t.other or t.unanswered:
                    f.append(f"{kind} '{name}': {t.other} accepted, {t.unanswered} unanswered {dict(t.codes)}")
        f += [
            f"big body '{b.name}': status {b.status}{'' if b.json_error else ', no JSON error'}"
            for b in self.bodies
            if not (400 <= b.status < 500 and b.json_error)
        ]
        if self.sockets_ok < self.sockets_used:
            f.append(f"{self.sockets_used - self.sockets_ok} of {self.sockets_used} sockets stopped predicting")
        f += [
            f"{name} RSS +{g:.1%} after the warm-up pass"
            for name, g in growth(self.rss_before, self.rss_after).items()
            if g > MEMORY_GROWTH_MAX
        ]
        return f

    def lines(self) -> list[str]:
        out = [
            f"fuzz: {self.frames} frames over {self.sockets} sockets, {sum(t.total for t in self.uploads.values())} "
            f"hostile uploads, {len(self.bodies)} {self.body_mb:g} MB bodies in {self.seconds:.1f} s "
            f"(a warm-up pass of each kind first, counted in)",
            f"{'WebSocket frames':<42} {'error':>6} {'doc.close':>9} {'accepted':>8} {'unanswered':>10}  codes",
        ]
        for name, t in self.tallies.items():
            out.append(f"  {name:<40} {t.error:6} {t.closed:9} {t.other:8} {t.unanswered:10}  {dict(t.codes.most_common())}")
        out.append(f"{'POST /api/predict':<42} {'4xx':>6} {'':>9} {'2xx':>8} {'none/5xx':>10}  statuses")
        for name, t in self.uploads.items():
            out.append(f"  {name:<40} {t.error:6} {'':>9} {t.other:8} {t.unanswered:10}  {dict(t.codes.most_common())}")
        for b in self.bodies:
            out.append(
                f"  {self.body_mb:g} MB body, {b.name}: status {b.status}{' (JSON error)' if b.json_error else ''} after "
                f"{b.answer_s:.2f} s, {b.mb_sent:.1f} MB sent by then, connection "
                f"{'closed' if b.closed else 'left open'}; another socket's slowest round trip meanwhile "
                f"{b.probe_max_ms:.0f} ms"
            )
        e, c, o, u = self.answered
        out += [
            f"in all: {e} answered with an error, {c} closed as documented, {o} accepted, {u} unanswered; "
            f"sockets still predicting afterwards: {self.sockets_ok}/{self.sockets_used}",
            "RSS MB after each phase: " + ", ".join(label for label, _ in self.rss_phases),
            *(
                f"  {name:<20} " + " ".join(f"{rss.get(name, 0) / 1024:7.1f}" for _, rss in self.rss_phases)
                for name in self.rss_before
            ),
            "RSS after the warm-up pass vs the end (judged):",
            *rss_lines(self.rss_before, self.rss_after, ("warm", "end")),
            verdict(self.failures, "every input answered with an error or a documented close, no crash or restart, RSS <= +10%"),
        ]
        return out


def _upload_round(stack: Stack, uploads: dict[str, Tally]) -> None:
    for name, method, headers, body in hostile_uploads():
        status, text, is_error = _http(stack.port, method, "/api/predict", headers, body, timeout=30)
        t = uploads.setdefault(name, Tally())
        t.codes[f"{status} {json.loads(text).get('code', '') if is_error else text[:40]!r}"] += 1
        if 400 <= status < 500 and is_error:
            t.error += 1
        elif 200 <= status < 300:
            t.other += 1
        else:
            t.unanswered += 1


def fuzz(
    stack: Stack,
    *,
    frames: int = 2000,
    sockets: int = 8,
    upload_rounds: int = 1,
    body_mb: float = 100,
    seed: int = 0,
    timeout: float = 10.0,
) -> FuzzReport:
    """A warm-up pass (frames of each kind on every socket at once, each upload, each big body), then
    `frames` hostile frames over `sockets` sockets, each hostile upload `upload_rounds` times, each
    big body again.

    Growth is judged from the warm-up's end, as in the soak: the first big frames or bodies arriving
    together raise a process's allocator high-water mark once; a leak keeps growing after it."""
    pids, rss_start = stack_pids(stack), rss_sample(stack)
    started = time.perf_counter()
    warm_frames, all_frames = fuzz_frames(len(GENERATORS) * sockets, seed), fuzz_frames(frames, seed + 1)
    tallies = {frame.category: Tally() for frame in warm_frames}  # in the generators' order
    uploads: dict[str, Tally] = {}
    bodies: list[BigBody] = []

    async def frames_run(frames_: list[Frame], n: int) -> list[bool]:
        # 12 ms apart: the per-socket message budget (100/s) is not what this measures
        return await asyncio.gather(
            *(_fuzz_socket(stack.url, frames_[i::n], tallies, timeout=timeout, interval=0.012) for i in range(n))
        )

    def bodies_run() -> None:
        bodies.extend(big_body(stack.port, kind=kind, total=int(body_mb * 2**20)) for kind in BODY_KINDS)

    phases = [("start", rss_start)]
    ok = run_async(frames_run(warm_frames, sockets))
    phases.append(("warm-up frames", rss_sample(stack)))
    _upload_round(stack, uploads)
    phases.append(("warm-up uploads", rss_sample(stack)))
    bodies_run()
    time.sleep(1.0)
    phases.append(("warm-up bodies", rss_sample(stack)))
    ok += run_async(frames_run(all_frames, sockets))
    phases.append(("frames", rss_sample(stack)))
    for _ in range(upload_rounds):
        _upload_round(stack, uploads)
    phases.append(("uploads", rss_sample(stack)))
    bodies_run()
    time.sleep(1.0)  # let anything still in flight finish before the last RSS sample
    phases.append(("bodies (end)", rss_sample(stack)))
    return FuzzReport(
        frames + len(warm_frames),
        sockets,
        tallies,
        uploads,
        bodies,
        sum(ok),
        len(ok),
        body_mb,
        phases,
        crash_failures(stack, pids),
        time.perf_counter() - started,
    )


# ---- flood


def _flooder(port: int, source: str, threads: int, body: bytes, headers: dict[str, str], ready: Any, stop: Any, out: Any) -> None:
    """A process of its own (the measured clients' event loop must not share a GIL with it): half the
    threads upload, half check health, each request on a new connection, as fast as they can."""
    import threading

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(kind: str) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
            try:
                if kind == "upload":
                    conn.request("POST", "/api/predict", body=body, headers=headers)
                else:
                    conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                key = f"{kind} {resp.status}"
            except OSError as exc:
                key = f"{kind} {type(exc).__name__}"
            finally:
                conn.close()
            with lock:
                counts[key] += 1

    workers = [threading.Thread(target=hammer, args=("upload" if i % 2 == 0 else "health",), daemon=True) for i in range(threads)]
    ready.set()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts["cpu_ms"] = int(time.process_time() * 1000)  # what flooding cost this machine's cores itself
    out.put(dict(counts))


@dataclass
class FloodReport:
    clients: int
    seconds: float
    quiet: LoadResult
    flooded: LoadResult
    flood: Counter[str]  # "<upload|health> <status>" -> requests
    flood_s: float  # how long the flooder ran
    flood_cpu_ms: int  # the flooder's own CPU time (it shares the machine's cores with the service)
    crashes: list[str]

    @property
    def ratio(self) -> float:
        return self.flooded.latency(95) / self.quiet.latency(95)

    @property
    def throttled(self) -> int:
        return sum(n for key, n in self.flood.items() if key.endswith(" 429"))

    @property
    def failures(self) -> list[str]:
        f = list(self.crashes)
        for name, r in (("unloaded", self.quiet), ("flooded", self.flooded)):
            if r.stats.errors or r.stats.lost:
                f.append(f"{name}: {len(r.stats.errors)} errors {sorted(set(r.stats.errors))}, {r.stats.lost} lost")
        if not self.ratio <= P95_RATIO_MAX:
            f.append(f"p95 {self.ratio:.2f}x unloaded")
        if not self.throttled:
            f.append("the flooder was never throttled (no 429)")
        return f

    def lines(self) -> list[str]:
        total = sum(self.flood.values())
        return [
            f"flood: {self.clients} page-paced clients (127.0.0.1), {self.seconds:g} s unloaded then {self.seconds:g} s "
            f"while {FLOODER} floods uploads and health checks",
            f"  unloaded: p50 {self.quiet.latency(50):.1f} ms, p95 {self.quiet.latency(95):.1f} ms "
            f"({len(self.quiet.stats.latencies)} drawings, {len(self.quiet.stats.errors)} errors, {self.quiet.stats.lost} lost)",
            f"  flooded:  p50 {self.flooded.latency(50):.1f} ms, p95 {self.flooded.latency(95):.1f} ms "
            f"({len(self.flooded.stats.latencies)} drawings, {len(self.flooded.stats.errors)} errors, "
            f"{self.flooded.stats.lost} lost)",
            f"  p95 ratio {self.ratio:.2f}x; flooder: {total} requests in {self.flood_s:.1f} s "
            f"({total / self.flood_s:.0f}/s), {self.throttled} got 429: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(self.flood.items())),
            f"  the flooder's own CPU: {self.flood_cpu_ms / 1000:.1f} s in {self.flood_s:.1f} s "
            f"({self.flood_cpu_ms / 10 / self.flood_s:.0f}% of one core, on the service's machine)",
            verdict(self.failures, f"others' p95 <= {P95_RATIO_MAX:g}x unloaded, the flooder throttled (429), no crash"),
        ]


def flood(
    stack: Stack, *, clients: int = 5, seconds: float = 20.0, threads: int = 8, data_dir: Path = DEFAULT_MNIST_DIR, seed: int = 0
) -> FloodReport:
    """Others' final-prediction p95 unloaded, then while FLOODER floods (the stack must run its default limits)."""
    pids = stack_pids(stack)
    drawings = make_drawings(data_dir, max(60, 4 * clients), seed)
    quiet = run_async(load_run(stack.url, drawings, clients=clients, duration=seconds, seed=seed))
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + _png(112, 112)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_flooder,
        daemon=True,
        args=(
            stack.port,
            FLOODER,
            threads,
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            ready,
            stop,
            out,
        ),
    )
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the flooder did not start")
        flood_started = time.perf_counter()
        time.sleep(1.0)  # the flood is on before the measurement starts
        flooded = run_async(load_run(stack.url, drawings, clients=clients, duration=seconds, seed=seed + 1))
    finally:
        stop.set()
    flood_s = time.perf_counter() - flood_started
    counts: Counter[str] = Counter(out.get(timeout=30))
    cpu_ms = counts.pop("cpu_ms", 0)
    proc.join(10)
    return FloodReport(clients, seconds, quiet, flooded, counts, flood_s, cpu_ms, crash_failures(stack, pids))


# ---- the command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("soak", help="clients drawing and submitting for a long time")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, help="seconds before the reference RSS sample (default min(60, seconds/4))")
    p.add_argument("--submit-every", type=int, default=5)
    p = sub.add_parser("fuzz", help="hostile frames, uploads and bodies")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--sockets", type=int, default=8)
    p.add_argument("--upload-rounds", type=int, default=3)
    p.add_argument("--body-mb", type=float, default=100.0)
    p = sub.add_parser("flood", help="others' latency while one address floods")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=8)
    for p in sub.choices.values():
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    print(machine_line(ROOT), flush=True)
    from bench.e2e import free_port
    from scripts.stack import redis_prefix_clear

    with throwaway_database() as db_url:
        env = {"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **({} if args.scenario == "flood" else ONE_ADDRESS)}
        stack = Stack(
            port=free_port(),
            redis_url=redis_url,
            env=env,
            supervise=True,
            log_dir=Path(os.environ.get("TMPDIR", "/tmp")) / f"reliability-{prefix[:-1]}",
        )
        try:
            stack.start(timeout=120)
            deadline = time.monotonic() + 60
            while not stack.spares_ready() and time.monotonic() < deadline:
                time.sleep(0.5)  # the workers' warm spares boot (torch) before anything is measured
            print(
                f"stack: {', '.join(f'{n} pid {p}' for n, p in stack_pids(stack).items())}; logs in {stack.log_dir}", flush=True
            )
            report: SoakReport | FuzzReport | FloodReport
            if args.scenario == "soak":
                report = soak(
                    stack,
                    clients=args.clients,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    submit_every=args.submit_every,
                    data_dir=Path(args.data_dir),
                    seed=args.seed,
                )
            elif args.scenario == "fuzz":
                report = fuzz(
                    stack,
                    frames=args.frames,
                    sockets=args.sockets,
                    upload_rounds=args.upload_rounds,
                    body_mb=args.body_mb,
                    seed=args.seed,
                )
            else:
                report = flood(
                    stack,
                    clients=args.clients,
                    seconds=args.seconds,
                    threads=args.threads,
                    data_dir=Path(args.data_dir),
                    seed=args.seed,
                )
            print("\n".join(report.lines()), flush=True)
        finally:
            stack.stop()
            redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
