"""Celery task messages as kombu's Redis transport stores them, built directly and pushed with one
LPUSH by contract.publish (the web processes' batches and fills, the workers' own next hop).
Celery's `apply_async`/`send_task` costs about 1 ms of CPU a message on this machine (the message is
built through several layers, kombu's producer looks up bindings and serializers); the message has
one fixed shape: Celery's task protocol 2 inside kombu's Redis envelope, msgpack body, base64 as
kombu's Redis transport carries it. The workers consume it like any other task
(tests/contract/test_publish.py compares it with what Celery writes; integration tests run it
against real workers).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import uuid
from typing import Any

import msgpack

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(
    task: str, queue: str, args: tuple[Any, ...], *, argsrepr: str, expires_s: float | None = None, task_id: str | None = None
) -> bytes:
    """A Celery (protocol 2) task message as kombu's Redis transport stores it in the queue's list."""
    task_id = task_id or str(uuid.uuid4())
    expires = None
    if expires_s is not None:
        expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires_s)).isoformat()
    body = msgpack.packb([list(args), {}, _EMBED], use_bin_type=True)
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-msgpack",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": expires,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "origin": _ORIGIN,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()
