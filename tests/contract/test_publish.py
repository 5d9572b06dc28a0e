"""Publishing (contract.publish): the task message pushed straight into Redis is the message Celery
would have sent; PUBLISH_VIA=celery hands the same payload to Celery's send_task."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import msgpack
import pytest
import redis

from contract.jobs import Batch, DrawingJob, FillRequest, HeatMapJob, Strokes
from contract.publish import FILL_CONFIRM_TIMEOUT_S, PUBLISH_CONFIRM_TIMEOUT_S, PUBLISH_RETRY, Publisher, RedisTransport
from contract.task_messages import task_message
from contract.tasks import FILL_TASK, HEAT_MAP_TASK, JOB_EXPIRES_S, PREDICT_QUEUE, PREDICT_TASK, PREPROCESS_QUEUE
from tests.conftest import TEST_REDIS_URL

# Fields that differ per message by nature (ids, the moment it expires, the sender; the body is
# compared decoded, apart from the moment it was sent).
PER_MESSAGE = {"id", "root_id", "expires", "origin", "correlation_id", "delivery_tag", "reply_to", "body"}


def batch() -> Batch:
    job = DrawingJob(id="j1", client="c1", reply="r1", strokes=Strokes([[[1.0, 2.0], [3.0, 4.0]]], (280, 280), 16))
    return Batch("b1", [job])


def decode(raw: bytes) -> tuple[dict, list]:
    envelope = json.loads(raw)
    args, kwargs, embed = msgpack.unpackb(base64.b64decode(envelope["body"]), raw=False)
    return envelope, [args, kwargs, embed]


def same_shape(ours: dict, celerys: dict, path: str = "") -> None:
    assert set(ours) >= set(celerys) - {"argsrepr", "expiration"}, (path, set(celerys) - set(ours))
    for key, value in celerys.items():
        if key in PER_MESSAGE or key not in ours:
            continue
        if isinstance(value, dict):
            same_shape(ours[key], value, f"{path}.{key}")
        elif key != "ignore_result":  # Celery writes None here when unset; True says what we mean
            assert ours[key] == value, (f"{path}.{key}", ours[key], value)


@pytest.fixture
def prefix():
    prefix = f"test-publish-{uuid.uuid4().hex[:8]}:"
    yield prefix
    r = redis.Redis.from_url(TEST_REDIS_URL)
    for key in r.scan_iter(match=f"{prefix}*"):
        r.delete(key)


def test_the_pushed_message_matches_celerys_send_task(prefix) -> None:
    from digitsite.celery import app

    r = redis.Redis.from_url(TEST_REDIS_URL)
    with app.connection_for_write(TEST_REDIS_URL, transport_options={"global_keyprefix": prefix}) as conn:
        wire = batch().to_wire(1.0)
        app.send_task(PREDICT_TASK, args=(wire,), queue=PREDICT_QUEUE, connection=conn, expires=30, argsrepr="(<batch of 1>,)")
    [celerys_raw] = r.lrange(f"{prefix}{PREDICT_QUEUE}", 0, -1)
    asyncio.run(Publisher(redis=RedisTransport(TEST_REDIS_URL, prefix), clock=lambda: 1.0).publish_async(batch()))
    ours_raw, _ = r.lrange(f"{prefix}{PREDICT_QUEUE}", 0, -1)  # LPUSH: the newest first
    ours, ours_body = decode(ours_raw)
    celerys, celerys_body = decode(celerys_raw)
    same_shape(ours, celerys)
    assert ours_body == celerys_body


def test_synchronous_code_pushes_the_same_message_into_the_queues_list(prefix) -> None:
    """The workers' next hop and the stored drawings' fills: one LPUSH on a plain client."""
    publisher = Publisher(redis=RedisTransport(TEST_REDIS_URL, prefix), heat_map_expires_s=2.0)
    heat = HeatMapJob(id="h", client="c", reply="r", image=bytes(784), digit=3)
    publisher.publish(Batch("b2", [heat]))
    publisher.publish(FillRequest((4, 5)))
    fill_raw, heat_raw = redis.Redis.from_url(TEST_REDIS_URL).lrange(f"{prefix}{PREPROCESS_QUEUE}", 0, -1)
    envelope, (args, kwargs, _) = decode(heat_raw)
    assert envelope["headers"]["task"] == HEAT_MAP_TASK and envelope["headers"]["expires"]
    assert envelope["properties"]["delivery_info"]["routing_key"] == PREPROCESS_QUEUE
    assert Batch.from_wire(args[0]).jobs[0].image == heat.image and kwargs == {}
    envelope, (args, _, _) = decode(fill_raw)
    assert envelope["headers"]["task"] == FILL_TASK and envelope["headers"]["expires"] is None and args == [[4, 5]]


def test_publishing_changes_nothing_in_the_batch(prefix) -> None:
    b = batch()
    Publisher(redis=RedisTransport(TEST_REDIS_URL, prefix), clock=lambda: 123.0).publish(b)
    assert b == batch() and b.jobs[0].sent_at == 0.0


def test_via_celery_the_payload_goes_to_send_task() -> None:
    calls: list[tuple[tuple, dict]] = []
    publisher = Publisher(send_task=lambda *a, **kw: calls.append((a, kw)), heat_map_expires_s=2.0, clock=lambda: 7.0)
    assert publisher.blocking
    publisher.publish(batch())
    publisher.publish(FillRequest((9,)))
    (live_args, live), (fill_args, fill) = calls
    assert live_args == (PREDICT_TASK,) and live["args"] == (batch().to_wire(7.0),) and live["queue"] == PREDICT_QUEUE
    assert live["expires"] == JOB_EXPIRES_S and live["retry_policy"] == PUBLISH_RETRY
    assert live["confirm_timeout"] == PUBLISH_CONFIRM_TIMEOUT_S and live["argsrepr"] == "(<batch of 1>,)"
    assert fill_args == (FILL_TASK,) and fill["args"] == ([9],) and fill["expires"] is None
    assert fill["confirm_timeout"] == FILL_CONFIRM_TIMEOUT_S
    with pytest.raises(RuntimeError):
        asyncio.run(publisher.publish_async(batch()))


def test_a_broker_that_does_not_answer_fails_the_publish_within_seconds() -> None:
    publisher = Publisher(redis=RedisTransport("redis://127.0.0.1:1/0"))  # nothing listens there

    async def go() -> None:
        await asyncio.wait_for(publisher.publish_async(batch()), 5)

    with pytest.raises(redis.exceptions.ConnectionError):  # refused, not the 5 s wait_for's TimeoutError
        asyncio.run(go())


def test_messages_expire_and_name_their_task() -> None:
    envelope, _ = decode(task_message(PREDICT_TASK, PREDICT_QUEUE, ({"id": "b"},), argsrepr="x", expires_s=30))
    assert envelope["headers"]["task"] == PREDICT_TASK and envelope["headers"]["expires"]
    assert envelope["properties"]["delivery_info"]["routing_key"] == PREDICT_QUEUE


def test_publish_via_chooses_the_redis_push_or_celerys_send_task(settings) -> None:
    from digitsite.celery import app, publisher
    from recognizer.job_client import batch_publish

    settings.PUBLISH_VIA = "redis"
    redis_way = publisher()
    assert redis_way.redis is not None and publisher() is redis_way
    assert batch_publish(redis_way) == redis_way.publish_async
    settings.PUBLISH_VIA = "celery"
    celery_way = publisher()
    assert celery_way.blocking and celery_way._send_task == app.send_task
    assert batch_publish(celery_way) == celery_way.publish
