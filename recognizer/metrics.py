"""The service's figures in the Prometheus format (prometheus-client), served at /metrics.

Measured where the work is seen whole, in the web processes: every answer a worker sends passes
through a web process's ReplyHub with the worker's timings (queue wait, rendering or decoding, the
forward pass, the batch it was in), every batch leaves through its JobBatcher, and every socket and
error a person meets is the web's. So the workers keep no metrics server; what only Redis knows is
read at scrape time: each queue's depth (the length of its Redis list), the workers alive per queue,
the model each serves and each worker's RSS (worker.heartbeat stamps them every second).

Several web processes on one machine (`make run`'s WEB_PROCESSES) share their figures through
prometheus-client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR (scripts/stack.py sets it) holds one
file per process and a scrape of any of them sums them all. In a cluster each web pod is scraped on
its own and Prometheus sums them.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.heartbeats import heartbeat_key, worker_details
from contract.tasks import QUEUES

log = logging.getLogger(__name__)

# Latency buckets in seconds: a live prediction takes 5-50 ms, a slow upload or heat map up to seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PHASES = ("queue", "preprocess", "inference", "answer", "end_to_end")

ANSWERS = Counter(
    "digits_answers",
    "Answers the workers sent back, by kind (prediction, upload, heat) and outcome (ok or the error code)",
    ["kind", "outcome"],
)
PREDICTIONS = Counter("digits_predictions", "Predictions delivered to a person (live drawings and uploads)", ["source"])
ERRORS = Counter("digits_errors", "Errors a client was told, by code (protocol, limits, the workers')", ["code"])
PHASE = Histogram(
    "digits_phase_seconds",
    "Time per phase of a job: queue (waiting in Redis for a worker), "
    "preprocess (rendering a drawing or decoding an upload), inference (the batch's forward pass), "
    "answer (worker to web process), end_to_end (asked to answered, in the web process)",
    ["phase"],
    buckets=BUCKETS,
)
BATCH_SIZE = Histogram(
    "digits_batch_size", "Jobs per batch published to a queue", ["task"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
BATCHES = Counter("digits_batches_published", "Batches published to the queues, by task", ["task"])
JOBS = Counter("digits_jobs_published", "Jobs published to the queues, by task", ["task"])
SOCKETS = Gauge("digits_open_sockets", "Open drawing WebSockets", multiprocess_mode="livesum")


def observe_answer(kind: str, error_code: str | None, timings: dict[str, float]) -> None:
    """One answer that reached this web process (ReplyHub), with the worker's timings (ms)."""
    ANSWERS.labels(kind, error_code or "ok").inc()  # errors told to a client count in ERRORS where they are told
    queued = timings.get("queue_preprocess", 0.0) + timings.get("queue_inference", 0.0)
    if "queue_preprocess" in timings or "queue_inference" in timings:
        PHASE.labels("queue").observe(queued / 1000)
    for phase in ("preprocess", "inference"):
        if phase in timings:
            PHASE.labels(phase).observe(timings[phase] / 1000)
    if "push" in timings:
        PHASE.labels("answer").observe(timings["push"] / 1000)


def observe_batch(task: str, size: int) -> None:
    BATCHES.labels(task).inc()
    JOBS.labels(task).inc(size)
    BATCH_SIZE.labels(task).observe(size)


def observe_end_to_end(source: str, seconds: float) -> None:
    """A prediction delivered to a person, `seconds` after it was asked for."""
    PREDICTIONS.labels(source).inc()
    PHASE.labels("end_to_end").observe(seconds)


def observe_error(code: str) -> None:
    ERRORS.labels(code).inc()


# ---------------------------------------------------------------- what Redis knows, read at scrape

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _client


def queue_key(queue: str) -> str:
    """The Redis list a Celery queue's messages wait in (kombu's Redis transport; REDIS_PREFIX is its
    global_keyprefix)."""
    return f"{settings.REDIS_PREFIX}{queue}"


def broker_queue_depths(queues: Iterable[str]) -> list[int]:
    """Messages ready in each queue of a broker other than Redis (RabbitMQ): a passive queue_declare's
    message_count, on a connection of the Celery app's pool (connected once, kept between scrapes; one
    channel a scrape). A queue the broker does not have yet (no worker declared it) holds nothing."""
    from digitsite.celery import app

    depths = []
    pool: Any = app.pool  # kombu's connection pool (celery-types has it as a pool of producers)
    with pool.acquire(block=True, timeout=1) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=1)
        channel = conn.channel()
        try:
            for queue in queues:
                try:
                    depths.append(int(channel.queue_declare(queue=queue, passive=True).message_count))
                except conn.channel_errors:  # 404: no such queue; the broker closed the channel
                    depths.append(0)
                    channel = conn.channel()
        finally:
            channel.close()
    return depths


class RedisCollector(Collector):
    """Queue depths, workers per queue, the model each worker serves and each worker's RSS."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "digits_queue_depth",
            "Messages waiting in each queue (Redis list length, or the broker's ready messages when BROKER_URL is not Redis)",
            labels=["queue"],
        )
        workers = GaugeMetricFamily("digits_workers", "Workers alive per queue (heartbeats)", labels=["queue"])
        model = GaugeMetricFamily("digits_worker_model", "1 for the model each live worker serves", labels=["worker", "model"])
        rss = GaugeMetricFamily("digits_worker_rss_bytes", "Resident memory of each live worker", labels=["worker", "queue"])
        busy = CounterMetricFamily(
            "digits_worker_busy_seconds",
            "Seconds each live worker has spent in tasks (its utilisation is the rate of this)",
            labels=["worker", "queue"],
        )
        up = GaugeMetricFamily("digits_redis_up", "Whether Redis answered this scrape")
        try:
            client = _redis()
            lengths: list[int] | None = None
            if settings.BROKER_IS_REDIS:
                pipe = client.pipeline(transaction=False)
                for queue in QUEUES:
                    pipe.llen(queue_key(queue))
                lengths = pipe.execute()
            details = worker_details(client, heartbeat_key(settings.REDIS_PREFIX))
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        if lengths is None:  # another broker (RabbitMQ)
            broker_up = GaugeMetricFamily("digits_broker_up", "Whether the broker (BROKER_URL) answered this scrape")
            try:
                lengths = broker_queue_depths(QUEUES)
            except Exception as exc:  # kombu's connection and channel errors, a full pool (no depth then)
                log.warning("metrics: the broker did not answer (%s)", exc)
            broker_up.add_metric([], 0 if lengths is None else 1)
            yield broker_up
        for queue, length in zip(QUEUES, lengths or []):
            depth.add_metric([queue], float(length))
        per_queue = dict.fromkeys(QUEUES, 0)
        for worker in details:
            for queue in worker.queues:
                per_queue[queue] = per_queue.get(queue, 0) + 1
            if worker.model:
                model.add_metric([worker.name, worker.model], 1)
            if worker.rss_bytes:
                rss.add_metric([worker.name, ",".join(worker.queues)], float(worker.rss_bytes))
            if worker.busy_s is not None:
                busy.add_metric([worker.name, ",".join(worker.queues)], worker.busy_s)
        for queue, count in per_queue.items():
            workers.add_metric([queue], float(count))
        yield from (depth, workers, model, rss, busy, up)


_REDIS = RedisCollector()


class _ThisProcess:
    """This process's own metrics (no PROMETHEUS_MULTIPROC_DIR: one web process) and Redis's."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()
        yield from _REDIS.collect()


def registry() -> CollectorRegistry | _ThisProcess:
    """What a scrape of this process shows: every web process's figures on this machine (multiprocess
    mode) or this process's, and Redis's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return _ThisProcess()
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    reg.register(_REDIS)
    return reg


# ---------------------------------------------------------------- who may scrape


def _networks(spec: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(s.strip(), strict=False) for s in spec if s.strip()]


def may_scrape(address: str, authorization: str, *, token: str, networks: Iterable[str]) -> bool:
    """A scrape is let in with the token (`Authorization: Bearer <METRICS_TOKEN>`) or from an allowed
    network (METRICS_ALLOWED_NETWORKS; the client address is the one edge.proxies settled on)."""
    if token and hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(networks))


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_scrape(
        request.META.get("REMOTE_ADDR", ""),
        request.headers.get("Authorization", ""),
        token=settings.METRICS_TOKEN,
        networks=settings.METRICS_ALLOWED_NETWORKS,
    ):
        return HttpResponse(
            "metrics need the token (Authorization: Bearer ...) or an allowed network\n", status=403, content_type="text/plain"
        )
    started = time.perf_counter()
    body = generate_latest(registry())
    log.debug("metrics scrape took %.1f ms", (time.perf_counter() - started) * 1000)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
