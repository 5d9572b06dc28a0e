"""The fuzz scenario: hostile frames, uploads and big bodies, each answered with an error or a documented close,
no process crashed, memory flat after a warm-up pass."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from bench.load import run_async
from bench.scenarios.frames import GENERATORS, Frame, Tally, fuzz_frames, fuzz_socket
from bench.scenarios.health import MEMORY_GROWTH_MAX, crash_failures, growth, rss_lines, rss_sample, stack_pids, verdict
from bench.scenarios.uploads import BODY_KINDS, BigBody, big_body, hostile_uploads, http_exchange
from scripts.stack import Stack


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
        status, text, is_error = http_exchange(stack.port, method, "/api/predict", headers, body, timeout=30)
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
            *(fuzz_socket(stack.url, frames_[i::n], tallies, timeout=timeout, interval=0.012) for i in range(n))
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
