"""The batch message pushed straight into Redis is the message Celery would have sent."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import msgpack
import pytest
import redis

from contract.jobs import PREDICT_QUEUE, PREDICT_TASK, Batch, Job, Saliency, Strokes
from contract.task_messages import task_message
from recognizer.publish import TaskPusher
from tests.conftest import TEST_REDIS_URL

# Fields that differ per message by nature (ids, the moment it expires, the sender; the body is
# compared decoded, apart from the moment it was sent).
PER_MESSAGE = {"id", "root_id", "expires", "origin", "correlation_id", "delivery_tag", "reply_to", "body"}


def batch() -> Batch:
    job = Job(
        id="j1", client="c1", reply="r1", strokes=Strokes([[[1.0, 2.0], [3.0, 4.0]]], (280, 280), 16), saliency=Saliency.NONE
    )
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


def test_the_pushed_message_matches_celerys_send_task(settings) -> None:
    from digitsite.celery import app

    prefix = f"test-publish-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(TEST_REDIS_URL)
    with app.connection_for_write(TEST_REDIS_URL, transport_options={"global_keyprefix": prefix}) as conn:
        wire = batch().to_wire()
        app.send_task(PREDICT_TASK, args=(wire,), queue=PREDICT_QUEUE, connection=conn, expires=30, argsrepr="(<batch of 1>,)")
    try:
        [celerys_raw] = r.lrange(f"{prefix}{PREDICT_QUEUE}", 0, -1)
        asyncio.run(TaskPusher(TEST_REDIS_URL, prefix)(PREDICT_TASK, batch()))
        ours_raw, _ = r.lrange(f"{prefix}{PREDICT_QUEUE}", 0, -1)  # LPUSH: the newest first
    finally:
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
    ours, ours_body = decode(ours_raw)
    celerys, celerys_body = decode(celerys_raw)
    same_shape(ours, celerys)
    assert ours_body[1:] == celerys_body[1:]
    [ours_wire], [celerys_wire] = ours_body[0], celerys_body[0]
    ours_wire["jobs"][0].pop("sent_at"), celerys_wire["jobs"][0].pop("sent_at")
    assert ours_wire == celerys_wire


def test_a_broker_that_does_not_answer_fails_the_publish_within_seconds() -> None:
    pusher = TaskPusher("redis://127.0.0.1:1/0")  # nothing listens there

    async def go() -> None:
        await asyncio.wait_for(pusher(PREDICT_TASK, batch()), 5)

    with pytest.raises(Exception) as failed:
        asyncio.run(go())
    assert not isinstance(failed.value, asyncio.TimeoutError)


def test_messages_expire_and_name_their_task() -> None:
    envelope, _ = decode(task_message(PREDICT_TASK, PREDICT_QUEUE, ({"id": "b"},), argsrepr="x", expires_s=30))
    assert envelope["headers"]["task"] == PREDICT_TASK and envelope["headers"]["expires"]
    assert envelope["properties"]["delivery_info"]["routing_key"] == PREDICT_QUEUE


def test_publish_via_chooses_the_pusher_or_celerys_send_task(settings, monkeypatch) -> None:
    from recognizer import jobs

    monkeypatch.setattr(jobs, "_pusher", None)
    settings.PUBLISH_VIA = "redis"
    assert isinstance(jobs.default_publish(), TaskPusher)
    settings.PUBLISH_VIA = "celery"
    assert jobs.default_publish() is jobs.celery_publish
