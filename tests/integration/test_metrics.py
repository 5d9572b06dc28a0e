"""/metrics on the real stack: after a drawing and an upload, every figure an operator needs is there
(queue depth, rates, batch sizes, latency per phase, errors, sockets, workers, their model and memory);
refused to anyone else without the token."""

from __future__ import annotations

import http.client
import io
import time

import pytest
import requests
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import METRICS_TOKEN
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.integration

EVERY_FAMILY = {
    "digits_queue_depth",
    "digits_workers",
    "digits_worker_model",
    "digits_worker_rss_bytes",
    "digits_redis_up",
    "digits_answers",
    "digits_predictions",
    "digits_errors",
    "digits_phase_seconds",
    "digits_batch_size",
    "digits_batches_published",
    "digits_jobs_published",
    "digits_open_sockets",
    "digits_worker_busy_seconds",
}


def get(stack, source: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def total(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def seven_png() -> bytes:
    img = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_every_figure_is_there_after_a_drawing_and_an_upload(stack, ws):
    last = ws.stream(digit_strokes(4), drawing="metrics")
    ws.prediction_for(last)
    ws.send(type="stroke", drawing="metrics", stroke=9, points=[[1, 2]], final=True, canvas=[0, 0], brush=16)
    assert ws.until(lambda m: m["type"] == "error")[-1]["code"] == "bad_message"
    assert (
        requests.post(f"{stack.url}/api/predict", files={"image": ("7.png", seven_png(), "image/png")}, timeout=30).status_code
        == 200
    )
    time.sleep(1.2)  # the workers' heartbeats carry their memory

    status, text = get(stack, "127.0.0.1")
    assert status == 200
    seen = families(text)
    assert set(seen) >= EVERY_FAMILY, EVERY_FAMILY - set(seen)
    assert {s.labels["queue"] for s in seen["digits_queue_depth"]} == {"preprocess", "inference"}
    assert total(seen["digits_workers"], "digits_workers", queue="inference") == 1
    assert total(seen["digits_workers"], "digits_workers", queue="preprocess") == 1
    assert {s.labels["model"] for s in seen["digits_worker_model"]} == {stack_model(stack)}
    assert all(100 * 2**20 < s.value < 8 * 2**30 for s in seen["digits_worker_rss_bytes"])
    assert len(seen["digits_worker_rss_bytes"]) == 2
    for phase in ("queue", "preprocess", "inference", "answer", "end_to_end"):
        assert total(seen["digits_phase_seconds"], "digits_phase_seconds_count", phase=phase) > 0, phase
    assert total(seen["digits_predictions"], "digits_predictions_total", source="drawing") > 0
    assert total(seen["digits_predictions"], "digits_predictions_total", source="upload") > 0
    assert total(seen["digits_batch_size"], "digits_batch_size_count", task="worker.tasks.predict") > 0
    assert total(seen["digits_errors"], "digits_errors_total", code="bad_message") > 0
    assert total(seen["digits_open_sockets"], "digits_open_sockets") >= 1  # this test's own


def stack_model(stack) -> str:
    return requests.get(f"{stack.url}/healthz", timeout=10).json()["model"]


def test_metrics_are_refused_to_others_without_the_token(stack):
    assert get(stack, "127.0.0.2")[0] == 403
    assert get(stack, "127.0.0.2", {"Authorization": "Bearer not-it"})[0] == 403
    status, text = get(stack, "127.0.0.2", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200 and "digits_queue_depth" in text
