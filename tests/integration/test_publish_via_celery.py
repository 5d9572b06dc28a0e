"""PUBLISH_VIA=celery (Celery's send_task, for a broker other than Redis): batches published that way
are run by the real workers too (live strokes on the inference queue, an upload on the preprocess
queue). The default, PUBLISH_VIA=redis, is what every other integration test runs."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image, ImageDraw

from tests.conftest import stack_of_its_own
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_batches_sent_with_celerys_send_task_are_answered_by_the_workers(stack, tmp_path):
    with stack_of_its_own("send", {**stack.env, "PUBLISH_VIA": "celery"}, tmp_path) as service:
        client = ProtocolClient(service.url)
        try:
            last = client.stream(digit_strokes(5), drawing="sent", batch=8)
            assert client.prediction_for(last)[0]["digit"] == 5
        finally:
            client.close()
        img = Image.new("L", (112, 112), 255)
        ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        resp = requests.post(f"{service.url}/api/predict", files={"image": ("d.png", buf.getvalue(), "image/png")}, timeout=30)
        assert resp.status_code == 200 and resp.json()["digit"] == 7
