"""Send answers to the web processes from synchronous worker code (through the channel layer).

The channel layer is channels_redis' pub/sub layer on one Redis host, where sending a message is a
single PUBLISH of the layer's own serialisation to the channel's name. A worker does exactly that
with a plain synchronous client, instead of `async_to_sync(layer.send)`, which would build an event
loop and a connection pool per call (and a loop thread costs two thread switches per message).
("Publish" in this project means putting a task message on a queue: contract.publish.)
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

from contract.jobs import Answer, Answers, Job

_lock = threading.Lock()
_state: tuple[int, redis.Redis, Any] | None = None  # (pid, client, layer): a forked child makes its own


def _client_and_layer() -> tuple[redis.Redis, Any]:
    global _state
    with _lock:
        if _state is None or _state[0] != os.getpid():
            layer = get_channel_layer()
            # Channels' settings: free-form (mypy would infer a narrower type from the literal in the settings)
            layers: dict[str, dict[str, Any]] = settings.CHANNEL_LAYERS
            hosts = layers["default"]["CONFIG"]["hosts"]
            if not isinstance(layer, RedisPubSubChannelLayer) or len(hosts) != 1:
                raise RuntimeError("worker.replies expects the Redis pub/sub channel layer on one host")
            client = redis.Redis.from_url(hosts[0]["address"], socket_timeout=5, socket_connect_timeout=5)
            _state = (os.getpid(), client, layer)
        return _state[1], _state[2]


def send(channel: str, message: dict[str, Any]) -> None:
    """Deliver `message` to `channel` (a web process's reply channel) through the layer."""
    client, layer = _client_and_layer()
    client.publish(channel, layer.serialize(message))


def send_answers(jobs: Sequence[Job], answers: Sequence[Answer], *, batch: str = "") -> None:
    """One message per web process for all of its answers among `answers` (`jobs` says where
    each job's answer goes; `batch` names the batch they complete, if they do)."""
    if not answers:
        return
    reply = {job.id: job.reply for job in jobs}
    by_channel: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_channel[reply[answer.id]].append(answer)
    now = time.time()
    for channel, share in by_channel.items():
        send(channel, Answers(share, batch).to_wire(now))
