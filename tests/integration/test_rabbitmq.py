"""The stack with RabbitMQ as Celery's broker (BROKER_URL=amqp://...; Redis stays the channel layer):
live strokes, an upload, a heat map, a stored drawing filled in, the queues' depth in /metrics, the
Celery command line, and a job taken by a consumer that died with it, delivered again by the broker.

Each stack gets a RabbitMQ virtual host of its own (made with rabbitmqctl, deleted afterwards), so test
runs sharing the machine's RabbitMQ never take each other's jobs. RabbitMQ runs beside Redis and
PostgreSQL on this machine and on CI: without it these tests fail, they are not skipped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from kombu import Connection
from PIL import Image, ImageDraw

from contract.tasks import JOB_EXPIRES_S, PREDICT_QUEUE, QUEUES
from recognizer.models import Drawing
from scripts.stack import UNTHROTTLED, Stack
from tests.conftest import METRICS_TOKEN, TEST_REDIS_URL, database_url, stack_of_its_own
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")  # no vhost
RABBITMQ_USER = os.environ.get("TEST_RABBITMQ_USER", "guest")
CELERY = str(Path(sys.executable).parent / "celery")
ROOT = Path(__file__).resolve().parent.parent.parent


def rabbitmqctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not os.path.exists(ctl):
        pytest.fail("rabbitmqctl not found: these tests need the machine's RabbitMQ (apt-get install rabbitmq-server)")
    done = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def rabbitmq_vhost(name: str) -> Iterator[str]:
    """A virtual host of its own on the machine's RabbitMQ, as a broker URL; deleted afterwards."""
    vhost = f"test-{name}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
        yield f"{RABBITMQ_URL}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def rabbit(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole service with RabbitMQ as the broker, on a virtual host of its own (BROKER_URL). A
    prediction the web side waits for is never asked again within a test (WS_PREDICTION_TIMEOUT_S):
    what arrives came from the broker."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {
        "DATABASE_URL": db_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        **UNTHROTTLED,
        "METRICS_TOKEN": METRICS_TOKEN,
        "METRICS_ALLOWED_NETWORKS": "127.0.0.1/32",
        "WS_PREDICTION_TIMEOUT_S": "600",
    }
    with (
        rabbitmq_vhost("stack") as broker_url,
        stack_of_its_own("rabbit", {**env, "BROKER_URL": broker_url}, tmp_path_factory.mktemp("rabbit-logs")) as service,
    ):
        yield service


def queue_state(broker_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue on the broker: a passive declare fails if there is none."""
    with Connection(broker_url, connect_timeout=5) as conn:
        ok = conn.channel().queue_declare(queue=queue, passive=True)
        return ok.message_count, ok.consumer_count


def metric(body: str, name: str, **labels: str) -> float | None:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + selector + '}') if selector else ''} (\S+)$"
    found = re.search(pattern, body, re.M)
    return float(found.group(1)) if found else None


def scrape(service: Stack) -> str:
    resp = requests.get(f"{service.url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_the_workers_consume_from_rabbitmq_and_nothing_queues_in_redis(rabbit: Stack) -> None:
    broker_url = rabbit.env["BROKER_URL"]
    assert broker_url.startswith("amqp://")
    for queue in QUEUES:
        assert queue_state(broker_url, queue)[1] == 1, f"no worker consumes {queue} on RabbitMQ"
    client = ProtocolClient(rabbit.url)
    try:
        last = client.stream(digit_strokes(5), drawing="through-rabbitmq", batch=8)
        final, seen = client.prediction_for(last)
        assert final["digit"] == 5 and not [m for m in seen if m["type"] == "error"], seen
    finally:
        client.close()
    prefix = rabbit.env["REDIS_PREFIX"]
    assert not redis.Redis.from_url(TEST_REDIS_URL).exists(*(f"{prefix}{queue}" for queue in QUEUES))


def test_an_upload_is_decoded_and_predicted(rabbit: Stack) -> None:
    img = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(img).line([(20, 20), (90, 20), (45, 100)], fill=0, width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    resp = requests.post(f"{rabbit.url}/api/predict", files={"image": ("d.png", buf.getvalue(), "image/png")}, timeout=30)
    assert resp.status_code == 200 and resp.json()["digit"] == 7, resp.text


def test_a_heat_map_follows_the_prediction_at_pen_up(rabbit: Stack) -> None:
    client = ProtocolClient(rabbit.url)
    try:
        last = client.stream(digit_strokes(3), drawing="heat")
        final, _ = client.prediction_for(last)
        heat = client.until(lambda m: m["type"] == "saliency")[-1]
        assert (heat["drawing"], heat["seq"]) == ("heat", final["seq"])
        pixels = base64.b64decode(heat["saliency"])
        assert len(pixels) == 784 and max(pixels) == 255
    finally:
        client.close()


def test_a_submitted_drawing_is_filled_in_by_a_worker(rabbit: Stack) -> None:
    client = ProtocolClient(rabbit.url)
    try:
        client.stream(digit_strokes(4), drawing="kept", batch=1000)
        seq = client.send(type="submit", drawing="kept", label=4)
        stored = client.until(lambda m: m["type"] in ("stored", "error"))[-1]
        assert stored["type"] == "stored" and stored["seq"] == seq, stored
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while (row := Drawing.objects.get(pk=stored["id"])).predicted_at is None:
        assert time.monotonic() < deadline, "the stored drawing was never filled in"
        time.sleep(0.1)
    assert row.predicted_digit == 4 and bytes(row.png).startswith(b"\x89PNG")


def test_celery_inspect_ping_reaches_every_worker_through_rabbitmq(rabbit: Stack) -> None:
    env = {
        **os.environ,
        "BROKER_URL": rabbit.env["BROKER_URL"],
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_PREFIX": rabbit.env["REDIS_PREFIX"],
        "DATABASE_URL": rabbit.env["DATABASE_URL"],
    }
    done = subprocess.run(
        [CELERY, "-A", "digitsite", "inspect", "ping", "--timeout", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("pong") == len(QUEUES), done.stdout
    for queue in QUEUES:
        assert f"{queue}0@" in done.stdout, done.stdout


def test_a_job_taken_by_a_consumer_that_dies_is_delivered_again(rabbit: Stack) -> None:
    """The inference worker is killed; a job queues (its depth shows in /metrics), is taken by a
    consumer that goes away without acknowledging it (a worker dying mid-task), and the broker
    delivers it again to a new worker. The web side never asks again here (WS_PREDICTION_TIMEOUT_S):
    the answer is the redelivered job's."""
    broker_url = rabbit.env["BROKER_URL"]
    body = scrape(rabbit)
    assert metric(body, "digits_broker_up") == 1.0
    assert metric(body, "digits_queue_depth", queue=PREDICT_QUEUE) == 0.0

    [(name, worker)] = [(n, p) for n, p in rabbit.procs if n.startswith(f"worker-{PREDICT_QUEUE}")]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    rabbit.procs.remove((name, worker))
    deadline = time.monotonic() + 15
    while queue_state(broker_url, PREDICT_QUEUE)[1]:
        assert time.monotonic() < deadline, "RabbitMQ still counts the killed worker as a consumer"
        time.sleep(0.1)

    client = ProtocolClient(rabbit.url)
    try:
        last = client.stream(digit_strokes(7), drawing="taken-and-lost", batch=1000)
        deadline = time.monotonic() + 15
        while metric(scrape(rabbit), "digits_queue_depth", queue=PREDICT_QUEUE) != 1.0:
            assert time.monotonic() < deadline, "the job waiting in the inference queue never showed in /metrics"
            time.sleep(0.1)

        with Connection(broker_url, connect_timeout=5) as conn:
            channel = conn.channel()
            message = channel.basic_get(queue=PREDICT_QUEUE, no_ack=False)
            assert message is not None
            # expires as Celery's `expires` says, in the broker too; not written to its disk
            assert message.properties["expiration"] == str(JOB_EXPIRES_S * 1000), message.properties
            assert message.properties["delivery_mode"] == 1, message.properties
            assert queue_state(broker_url, PREDICT_QUEUE)[0] == 0
        deadline = time.monotonic() + 15  # ...gone without an ack: the broker puts the job back
        while queue_state(broker_url, PREDICT_QUEUE)[0] != 1:
            assert time.monotonic() < deadline, "the job taken without an ack was not put back"
            time.sleep(0.1)

        rabbit.add_worker(PREDICT_QUEUE)
        final, seen = client.prediction_for(last, timeout=60)
        assert not [m for m in seen if m["type"] == "error"], seen
        assert final["seq"] == last and final["digit"] == 7
    finally:
        client.close()
