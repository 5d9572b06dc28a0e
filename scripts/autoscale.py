"""Grow and shrink each queue's Celery workers while the service runs, between bounds.

AUTOSCALE="inference:1-2,preprocess:1-1" (what `make run` uses unless AUTOSCALE or <QUEUE>_WORKERS
says otherwise; AUTOSCALE=off: fixed counts) gives each named queue a lower and an upper bound; the
stack starts the lower bound and an `Autoscaler` thread samples Redis every AUTOSCALE_INTERVAL_S:

- utilisation, the main signal: each live worker's busy clock (seconds spent in tasks, stamped with
  its heartbeat: worker.heartbeat) read twice AUTOSCALE_WINDOW_S apart, Δbusy/Δt averaged over the
  queue's workers. The web processes keep their jobs while their batches are out (recognizer/batching.py),
  so the inference list in Redis stays short however heavy the load: its length alone says little;
- depth, the second one: the length of the queue's Redis list (uploads, heat maps and fills do pile up
  on `preprocess`).

A queue is *hot* when utilisation reaches AUTOSCALE_UP_UTILISATION (0.6) or more than
AUTOSCALE_UP_DEPTH (4) messages wait per worker; hot for AUTOSCALE_UP_AFTER_S (1 s) it gets one more
worker, not before AUTOSCALE_COOLDOWN_S (5 s) after the last change and never while a worker it added
is still booting. It is *idle* when nothing waits and the utilisation its workers would have with one
worker fewer, averaged over the last AUTOSCALE_IDLE_S (30 s), stays under AUTOSCALE_DOWN_UTILISATION
(0.4: the gap to 0.6 is the hysteresis that keeps it from adding the worker back at once); then it
retires one worker, not sooner than AUTOSCALE_IDLE_S after the last change.

Below its upper bound a queue keeps one standby (AUTOSCALE_STANDBY=1, the default): a spare of the
worker it would add next, started only while the queue is quiet (a load takes a core for seconds),
which an add wakes (about 2 s, against 10 s for a new process on a busy 2-core machine).

Retiring drains (Stack.retire_worker): the worker is told to stop consuming (Celery remote control,
`cancel_consumer`; a solo worker answers between tasks, so its answer means it has no task under way),
then gets SIGTERM (warm shutdown), and it is taken out of supervision first so that nothing restarts it.

Pure decision logic (`QueueScaler`) is separate from the sampling thread (`Autoscaler`), so that it is
tested without processes (tests/scripts/test_autoscale.py). Measured figures: docs/autoscaling.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from kombu import Connection


class Scalable(Protocol):
    """What the autoscaler needs of a running service (scripts.stack.Stack is one)."""

    redis_url: str

    def effective_env(self) -> dict[str, str]: ...
    def worker_names(self, queue: str) -> list[str]: ...
    def standby_loading(self, queue: str) -> bool: ...
    def scale_up(self, queue: str) -> str | None: ...
    def retire_worker(self, queue: str, wait: bool = False) -> str | None: ...
    def keep_standby(self, queue: str, wanted: bool, may_start: bool = True) -> None: ...


log = logging.getLogger(__name__)

Bounds = tuple[int, int]  # (fewest, most) workers of one queue

# What `make run` scales when AUTOSCALE is unset: on 2 cores with one web process a third inference
# worker gets no batch of its own (BATCHES_IN_FLIGHT=2 per web process), docs/autoscaling.md.
DEFAULT_AUTOSCALE = "inference:1-2,preprocess:1-1"


def parse_autoscale(spec: str, queues: tuple[str, ...] | None = None) -> dict[str, Bounds]:
    """ "inference:1-4,preprocess:1-2" -> {"inference": (1, 4), "preprocess": (1, 2)}; "q:2" is "q:2-2";
    "" or "off": no autoscaling. ValueError for anything else (an unknown queue among `queues` too)."""
    spec = spec.strip()
    if spec.lower() in ("", "off", "0", "false", "no"):
        return {}
    bounds: dict[str, Bounds] = {}
    for part in spec.split(","):
        queue, sep, counts = part.strip().partition(":")
        queue = queue.strip()
        if not sep or not queue:
            raise ValueError(f"AUTOSCALE: {part!r} is not queue:low-high")
        if queues is not None and queue not in queues:
            raise ValueError(f"AUTOSCALE: unknown queue {queue!r} (queues: {', '.join(queues)})")
        low_s, _, high_s = counts.partition("-")
        try:
            low, high = int(low_s), int(high_s or low_s)
        except ValueError:
            raise ValueError(f"AUTOSCALE: {part!r} is not queue:low-high") from None
        if not 1 <= low <= high:
            raise ValueError(f"AUTOSCALE: {part!r} needs 1 <= low <= high")
        bounds[queue] = (low, high)
    return bounds


@dataclass(frozen=True)
class Policy:
    """When to add and when to retire a worker (the environment's AUTOSCALE_* override each)."""

    up_utilisation: float = 0.6  # busy fraction of the queue's workers that calls for one more
    up_depth: int = 4  # or this many messages waiting in Redis per live worker
    up_after_s: float = 1.0  # hot this long before adding
    cooldown_s: float = 5.0  # no change sooner than this after the last one
    down_utilisation: float = 0.4  # busy fraction the others would have without one: under it, one can go
    idle_s: float = 30.0  # idle this long before retiring one
    window_s: float = 3.0  # utilisation over this much of the busy clocks' history
    interval_s: float = 0.5  # how often the thread samples Redis
    standby: bool = True  # keep a loaded spare per queue below its upper bound, woken to scale up

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Policy:
        def number(name: str, default: float) -> float:
            return float(env.get(f"AUTOSCALE_{name}") or default)

        d = cls()
        return cls(
            up_utilisation=number("UP_UTILISATION", d.up_utilisation),
            up_depth=int(number("UP_DEPTH", d.up_depth)),
            up_after_s=number("UP_AFTER_S", d.up_after_s),
            cooldown_s=number("COOLDOWN_S", d.cooldown_s),
            down_utilisation=number("DOWN_UTILISATION", d.down_utilisation),
            idle_s=number("IDLE_S", d.idle_s),
            window_s=number("WINDOW_S", d.window_s),
            interval_s=number("INTERVAL_S", d.interval_s),
            standby=env.get("AUTOSCALE_STANDBY", "1" if d.standby else "0").lower() in ("1", "true", "yes", "on"),
        )


@dataclass
class QueueScaler:
    """The decisions for one queue: `step` is given one sample and says +1, -1 or 0 (pure: no I/O,
    time given by the caller)."""

    bounds: Bounds
    policy: Policy = field(default_factory=Policy)
    history: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)  # (time, busy clocks)
    hot_since: float | None = None
    last_change: float = float("-inf")
    fresh_from: float = float("-inf")  # the short window starts no earlier (a standby was loading before)
    reason: str = ""  # why the last non-zero decision was taken

    def utilisation(self, span: float | None = None) -> float | None:
        """Busy fraction over the last `span` s, averaged over the workers seen at both ends of it.
        None (the default): over the short window, or what there is of it; a longer span needs
        samples that cover all of it (else None)."""
        if len(self.history) < 2:
            return None
        t1, last = self.history[-1]
        since = t1 - (self.policy.window_s if span is None else span)
        if span is None:
            since = max(since, self.fresh_from)
        before = [sample for sample in self.history if sample[0] <= since + 1e-9]
        if before:
            t0, first = before[-1]
        elif span is None:
            t0, first = next(sample for sample in self.history if sample[0] >= since)
        else:
            return None
        both = [w for w in last if w in first]
        if t1 - t0 <= 0 or not both:
            return None
        return sum(min(1.0, max(0.0, (last[w] - first[w]) / (t1 - t0))) for w in both) / len(both)

    def step(self, now: float, busy: Mapping[str, float], depth: int, workers: int, settling: bool = False) -> int:
        """`busy`: each live worker of the queue -> its busy clock (s); `depth`: messages waiting in
        Redis; `workers`: how many the stack runs on it (booting ones included, retiring ones not);
        `settling`: a standby of the queue is loading. Its CPU would read as load (the busy clocks run
        in wall time, and on 2 cores the workers wait for the CPU it takes): hold, and start the
        short window afresh once it has loaded."""
        self.history.append((now, dict(busy)))
        keep = max(self.policy.window_s, self.policy.idle_s) + 2 * self.policy.interval_s
        while len(self.history) > 2 and now - self.history[1][0] >= keep:
            self.history.popleft()
        low, high = self.bounds
        if workers < low or workers > high:  # back within bounds at once (e.g. after a failed start)
            return self._change(now, 1 if workers < low else -1, f"{workers} workers, bounds {low}-{high}")
        if settling:
            self.fresh_from, self.hot_since = now, None
            return 0
        live = len(busy)
        if live < workers:  # one is booting, restarting or late to beat: hold (its load is not seen)
            return 0
        util = self.utilisation()
        hot = (util is not None and util >= self.policy.up_utilisation) or depth > self.policy.up_depth * max(1, live)
        self.hot_since = (self.hot_since if self.hot_since is not None else now) if hot else None
        cooled = now - self.last_change >= self.policy.cooldown_s
        described = f"utilisation {util if util is not None else float('nan'):.2f}, depth {depth}, {workers} workers"
        if self.hot_since is not None and now - self.hot_since >= self.policy.up_after_s and workers < high and cooled:
            return self._change(now, 1, f"hot: {described}")
        # idle: over the whole of the last idle_s (one quiet moment is not enough; one busy one
        # does not start the wait again), and with one worker fewer the others would stay cool
        calm = self.utilisation(self.policy.idle_s) if now - self.last_change >= self.policy.idle_s else None
        if (
            calm is not None
            and depth == 0
            and not hot
            and live > 1
            and workers > low
            and cooled
            and calm * live / (live - 1) < self.policy.down_utilisation
        ):
            return self._change(now, -1, f"idle: utilisation {calm:.2f} over {self.policy.idle_s:g} s, {workers} workers")
        return 0

    def _change(self, now: float, delta: int, reason: str) -> int:
        self.last_change, self.hot_since, self.reason = now, None, reason
        return delta


@dataclass
class Event:
    """One change the autoscaler made: when (time.monotonic()), which queue, +1/-1, which worker, why."""

    at: float
    queue: str
    delta: int
    worker: str | None
    reason: str


class Autoscaler:
    """A thread that samples the stack's Redis and adds or retires workers through the stack."""

    def __init__(
        self,
        stack: Scalable,
        bounds: Mapping[str, Bounds],
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = stack.effective_env()
        self.stack = stack
        self.policy = policy or Policy.from_env(env)
        self.scalers = {queue: QueueScaler(b, self.policy) for queue, b in bounds.items()}
        self.prefix = env.get("REDIS_PREFIX", "")
        # Another broker than Redis (BROKER_URL, docs/brokers.md): the depth is its queues' ready messages
        broker = env.get("BROKER_URL") or ""
        self._broker_url = broker if broker and broker.partition("://")[0] not in ("redis", "rediss") else None
        self._broker: Any = None
        self.events: list[Event] = []
        self._clock = clock
        self._client = redis.Redis.from_url(stack.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-autoscaler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._client.close()
        if self._broker is not None:
            self._broker.release()

    def _run(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            try:
                self.sample_once()
            except redis.RedisError as exc:  # Redis away: sample again when it is back
                log.debug("autoscaler: %s", exc)
            except Exception as exc:  # keep scaling; say what went wrong
                _log(f"autoscaler error: {exc!r}")

    def _depths(self) -> dict[str, int]:
        """Messages waiting in each scaled queue: its Redis list's length, or (another broker) the ready
        messages a passive declare reports (a queue not declared yet holds none)."""
        if self._broker_url is None:
            pipe = self._client.pipeline(transaction=False)
            for queue in self.scalers:
                pipe.llen(f"{self.prefix}{queue}")
            return {q: int(n) for q, n in zip(self.scalers, pipe.execute(), strict=True)}
        depths = {}
        for queue in self.scalers:
            if self._broker is None:
                self._broker = Connection(self._broker_url, connect_timeout=2)
            try:
                depths[queue] = int(self._broker.default_channel.queue_declare(queue, passive=True).message_count)
            except self._broker.channel_errors:  # no such queue yet: the broker closed the channel
                self._broker.release()
                self._broker = None
                depths[queue] = 0
        return depths

    def sample_once(self) -> None:
        from contract.heartbeats import heartbeat_key, worker_details

        details = worker_details(self._client, heartbeat_key(self.prefix))
        depths = self._depths()
        now = self._clock()
        for queue, scaler in self.scalers.items():
            names = set(self.stack.worker_names(queue))
            busy = {d.name: d.busy_s for d in details if d.name in names and d.busy_s is not None}
            settling = self.policy.standby and self.stack.standby_loading(queue)
            delta = scaler.step(now, busy, int(depths[queue]), len(names), settling=settling)
            if self._stop.is_set():
                return
            if delta:
                worker = self.stack.scale_up(queue) if delta > 0 else self.stack.retire_worker(queue)
                self.events.append(Event(now, queue, delta, worker, scaler.reason))
                _log(f"autoscale {queue} {'+1' if delta > 0 else '-1'} ({worker or 'none'}): {scaler.reason}")
            if self.policy.standby:  # a new one only while the queue is quiet: loading takes a core for seconds
                util = scaler.utilisation()
                self.stack.keep_standby(
                    queue,
                    wanted=len(names) + delta < scaler.bounds[1],
                    may_start=delta == 0 and len(busy) == len(names) and util is not None and util < self.policy.down_utilisation,
                )


def _log(message: str) -> None:
    import sys

    print(f"stack: {message}", file=sys.stderr, flush=True)


def env_bounds(env: Mapping[str, str] | None = None) -> str:
    """The AUTOSCALE spec `make run` uses: AUTOSCALE, else the default for the queues whose
    <QUEUE>_WORKERS is unset (a count given by hand is kept fixed)."""
    env = os.environ if env is None else env
    if "AUTOSCALE" in env:
        return env["AUTOSCALE"]
    parts = [p for p in DEFAULT_AUTOSCALE.split(",") if not env.get(f"{p.split(':')[0].upper()}_WORKERS")]
    return ",".join(parts)
