"""PUBLISH_VIA=redis: batches pushed straight into the Celery queues' lists are run by the real
workers like any task (live strokes on the inference queue, an upload on the preprocess queue)."""
from __future__ import annotations

import io

import pytest
import requests
from PIL import Image, ImageDraw

from tests.conftest import stack_of_its_own
from tests.digit_paths import digit_strokes
from tests.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_batches_pushed_into_redis_are_answered_by_the_workers(stack, tmp_path):
    with stack_of_its_own("push", {**stack.env, "PUBLISH_VIA": "redis"}, tmp_path) as service:
        client = ProtocolClient(service.url)
        try:
            last = client.stream(digit_strokes(5), drawing="pushed", batch=8)
            assert client.prediction_for(last)[0]["digit"] == 5
        finally:
            client.close()
        img = Image.new("L", (112, 112), 255)
        ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        resp = requests.post(f"{service.url}/api/predict", files={"image": ("d.png", buf.getvalue(), "image/png")},
                             timeout=30)
        assert resp.status_code == 200 and resp.json()["digit"] == 7
