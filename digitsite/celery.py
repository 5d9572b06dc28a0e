"""The one Celery app: reads CELERY_-prefixed Django settings and discovers worker.tasks.

Loaded by every process (digitsite/__init__.py), so that the ecosystem's tools work on the stack as
shipped (docs/operations.md):
- the Celery command line (`celery -A digitsite status|inspect|control|purge|events|flower`) reads this
  checkout's key like manage.py does (.secret_key, made once) when DJANGO_SECRET_KEY is unset; the
  web server and anything else importing the settings still refuse to start without one;
- redis:// URLs are served by digitsite.broker's transport, registered under kombu's own alias, so the
  broker URL keeps its scheme (Flower decides what it can show by it);
- the task queues and routes are declared here from contract.tasks (the one place they are written),
  so that `celery purge` empties both queues, not the default one.

`publisher()` is this process's one Publisher (contract.publish), as PUBLISH_VIA says: web processes
and workers alike put their task messages on the queues through it.
"""

import os
import sys

from celery import Celery
from kombu import Exchange, Queue

from contract.publish import Publisher, RedisTransport
from contract.tasks import QUEUES, task_routes
from digitsite.broker import use_as_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
if "celery.bin.celery" in sys.modules:  # the `celery` command (workers too), not the web server or tests
    from digitsite.secret import use_checkout_key

    use_checkout_key()
use_as_redis_transport()


def _broker_is_redis(url: str) -> bool:
    return url.partition("://")[0] in ("redis", "rediss")


app = Celery("digitsite")
# The settings module itself, not django.conf.settings: Celery reads its configuration on every
# publish, and each key Django's lazy settings object lacks costs an exception inside it.
app.config_from_object(os.environ["DJANGO_SETTINGS_MODULE"], namespace="CELERY")
# msgpack: drawings' points and images travel as they are (bytes stay bytes, no base64 or JSON text).
# Set here by their new names: as CELERY_-prefixed settings they read as Celery 3's deprecated ones.
# task_routes: each task to its queue; with a broker other than Redis (live jobs transient), stored
# drawings' fills persistent (kept across a broker restart).
# task_queues: the queues Celery would make from the routes (a direct exchange of the queue's name),
# declared so that the tools know them all (`celery purge` purged only the default queue).
app.conf.update(
    task_serializer="msgpack",
    accept_content=["msgpack"],
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
)
app.autodiscover_tasks(["worker"])


@app.on_after_configure.connect
def _routes(sender: Celery, **_: object) -> None:
    """Set once the configuration is read (the broker decides whether fills are persistent)."""
    sender.conf.task_routes = task_routes(durable_fills=not _broker_is_redis(str(sender.conf.broker_url or "")))


_publishers: dict[tuple[str, str, str, float], Publisher] = {}


def publisher() -> Publisher:
    """This process's publisher: PUBLISH_VIA "redis" pushes task messages straight into the Celery queues'
    Redis lists; "celery" uses Celery's send_task (any broker Celery supports: the default when BROKER_URL
    is not Redis, and the only way there). One per configuration (tests change the settings)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    key = (settings.PUBLISH_VIA, settings.CELERY_BROKER_URL, settings.REDIS_PREFIX, float(settings.HEAT_EXPIRES_S))
    found = _publishers.get(key)
    if found is not None:
        return found
    if settings.PUBLISH_VIA == "celery":
        made = Publisher(send_task=app.send_task, heat_map_expires_s=settings.HEAT_EXPIRES_S)
    elif not settings.BROKER_IS_REDIS:
        raise ImproperlyConfigured(
            f"PUBLISH_VIA={settings.PUBLISH_VIA!r} needs a Redis broker, not "
            f"{settings.CELERY_BROKER_URL.partition('://')[0]}://; use PUBLISH_VIA=celery"
        )
    else:
        transport = RedisTransport(settings.CELERY_BROKER_URL, settings.REDIS_PREFIX)
        made = Publisher(redis=transport, heat_map_expires_s=settings.HEAT_EXPIRES_S)
    return _publishers.setdefault(key, made)
