"""/metrics: who may scrape it, what the answers' timings and the batches add to it, and what is read
from Redis at scrape time (queue depth, workers, their models and memory) against the real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from contract.heartbeats import heartbeat_key
from recognizer import metrics
from tests.conftest import TEST_REDIS_URL
from worker.heartbeat import beat


def scrape() -> dict[str, list]:
    text = generate_latest(metrics.registry()).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_scrape_needs_the_token_or_an_allowed_network() -> None:
    nets = ["127.0.0.0/8", "10.1.0.0/16"]
    assert metrics.may_scrape("127.0.0.1", "", token="", networks=nets)
    assert metrics.may_scrape("10.1.2.3", "", token="s3cret", networks=nets)
    assert not metrics.may_scrape("203.0.113.9", "", token="s3cret", networks=nets)
    assert not metrics.may_scrape("203.0.113.9", "Bearer wrong", token="s3cret", networks=nets)
    assert metrics.may_scrape("203.0.113.9", "Bearer s3cret", token="s3cret", networks=nets)
    assert not metrics.may_scrape("203.0.113.9", "Bearer ", token="", networks=nets)  # no token set: none works
    assert not metrics.may_scrape("not-an-ip", "", token="", networks=nets)


def test_answers_and_batches_fill_the_counters_and_phase_histograms() -> None:
    before = scrape()
    metrics.observe_answer(
        "prediction", None, {"queue_inference": 4.0, "preprocess": 1.0, "inference": 2.0, "batch": 3.0, "push": 0.5}
    )
    metrics.observe_answer("prediction", "bad_stroke", {})
    metrics.observe_batch("predict", 3)
    metrics.observe_end_to_end("drawing", 0.012)
    metrics.observe_error("rate_limited")
    after = scrape()

    def grew(family: str, name: str, by: float, **labels: str) -> None:
        assert value(after[family], name, **labels) - value(before.get(family, []), name, **labels) == pytest.approx(by)

    grew("digits_answers", "digits_answers_total", 1, kind="prediction", outcome="ok")
    grew("digits_answers", "digits_answers_total", 1, kind="prediction", outcome="bad_stroke")
    grew("digits_errors", "digits_errors_total", 1, code="rate_limited")
    for phase, seconds in (
        ("queue", 0.004),
        ("preprocess", 0.001),
        ("inference", 0.002),
        ("answer", 0.0005),
        ("end_to_end", 0.012),
    ):
        grew("digits_phase_seconds", "digits_phase_seconds_count", 1, phase=phase)
        grew("digits_phase_seconds", "digits_phase_seconds_sum", seconds, phase=phase)
    grew("digits_batch_size", "digits_batch_size_sum", 3, task="predict")
    grew("digits_jobs_published", "digits_jobs_published_total", 3, task="predict")
    grew("digits_predictions", "digits_predictions_total", 1, source="drawing")


def test_queue_depth_workers_models_and_memory_come_from_redis(settings) -> None:
    prefix = f"test-metrics-{uuid.uuid4().hex[:8]}:"
    settings.REDIS_URL, settings.REDIS_PREFIX = TEST_REDIS_URL, prefix
    metrics._client = None
    client = redis.Redis.from_url(TEST_REDIS_URL)
    key = heartbeat_key(prefix)
    try:
        client.rpush(f"{prefix}inference", *[b"m"] * 7)
        client.rpush(f"{prefix}preprocess", b"m")
        beat(client, key, ["inference0@h@inference"], worker="inference0@h", model="cnn-x", rss=123_000_000)
        beat(client, key, ["preprocess0@h@preprocess"], worker="preprocess0@h", model="cnn-x", rss=99_000_000, now=time.time())
        samples = scrape()
        assert value(samples["digits_queue_depth"], "digits_queue_depth", queue="inference") == 7
        assert value(samples["digits_queue_depth"], "digits_queue_depth", queue="preprocess") == 1
        assert value(samples["digits_workers"], "digits_workers", queue="inference") == 1
        assert value(samples["digits_worker_model"], "digits_worker_model", worker="inference0@h", model="cnn-x") == 1
        assert value(samples["digits_worker_rss_bytes"], "digits_worker_rss_bytes", worker="inference0@h") == 123_000_000
        assert value(samples["digits_redis_up"], "digits_redis_up") == 1
    finally:
        for k in client.scan_iter(match=f"{prefix}*"):
            client.delete(k)
        metrics._client = None


def test_a_scrape_with_redis_down_says_so_and_still_answers(settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    metrics._client = None
    try:
        samples = scrape()
        assert value(samples["digits_redis_up"], "digits_redis_up") == 0
        assert "digits_answers" in samples or "digits_phase_seconds" in samples
    finally:
        metrics._client = None
