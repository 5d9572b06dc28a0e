"""BROKER_URL: Celery's broker is Redis unless it names another; PUBLISH_VIA and the task routes (digitsite/celery.py)
follow it, and the push into Redis lists is refused where the broker has none. Each case loads the settings in a fresh process,
as a server would from its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
AMQP = "amqp://guest:guest@127.0.0.1:5672/somewhere"
SHOW = (
    "import json; from django.conf import settings as s; from digitsite.celery import app; "
    "print(json.dumps({'broker': s.CELERY_BROKER_URL, "
    "'redis': s.BROKER_IS_REDIS, 'via': s.PUBLISH_VIA, 'options': s.CELERY_BROKER_TRANSPORT_OPTIONS, "
    "'mode': getattr(s, 'CELERY_TASK_DEFAULT_DELIVERY_MODE', None), 'routes': app.conf.task_routes}))"
)


def settings_with(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "PUBLISH_VIA", "REDIS_PREFIX", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "DJANGO_SETTINGS_MODULE": "digitsite.settings.local", "REDIS_URL": "redis://127.0.0.1:6379/3", **env},
    )


def test_without_broker_url_the_broker_is_redis_with_the_direct_push() -> None:
    done = settings_with(REDIS_PREFIX="p:")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert (got["broker"], got["redis"], got["via"]) == ("redis://127.0.0.1:6379/3", True, "redis")
    assert got["options"] == {"ack_emulation": False, "global_keyprefix": "p:"} and got["mode"] is None
    assert all(set(route) == {"queue"} for route in got["routes"].values())


def test_rabbitmq_as_broker_publishes_through_celery_with_amqp_options() -> None:
    done = settings_with(BROKER_URL=AMQP, REDIS_PREFIX="p:")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert (got["broker"], got["redis"], got["via"]) == (AMQP, False, "celery")
    assert got["options"] == {"confirm_publish": True}  # no Redis-only options
    assert got["mode"] == "transient"
    assert got["routes"]["worker.tasks.fill_drawings"] == {"queue": "preprocess", "delivery_mode": "persistent"}


def test_the_redis_push_with_another_broker_is_refused_with_a_reason() -> None:
    done = settings_with(BROKER_URL=AMQP, PUBLISH_VIA="redis")
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "PUBLISH_VIA=celery" in done.stderr, done.stderr


def test_an_unknown_publish_way_is_refused() -> None:
    done = settings_with(PUBLISH_VIA="carrier-pigeon")
    assert done.returncode != 0 and "ImproperlyConfigured" in done.stderr and "carrier-pigeon" in done.stderr
