"""The one Celery app: reads CELERY_-prefixed Django settings and discovers worker.tasks.

Loaded by every process (digitsite/__init__.py), so that the ecosystem's tools work on the stack as
shipped (docs/operations.md):
- the Celery command line (`celery -A digitsite status|inspect|control|purge|events|flower`) reads this
  checkout's key like manage.py does (.secret_key, made once) when DJANGO_SECRET_KEY is unset; the
  web server and anything else importing the settings still refuse to start without one;
- redis:// URLs are served by digitsite.broker's transport, registered under kombu's own alias, so the
  broker URL keeps its scheme (Flower decides what it can show by it);
- the task queues are declared (contract.jobs), so that `celery purge` empties both, not the default one.
"""

import os
import sys

from celery import Celery
from kombu import Exchange, Queue

from contract.jobs import QUEUES
from digitsite.broker import use_as_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")
if "celery.bin.celery" in sys.modules:  # the `celery` command (workers too), not the web server or tests
    from digitsite.secret import use_checkout_key

    use_checkout_key()
use_as_redis_transport()

app = Celery("digitsite")
# The settings module itself, not django.conf.settings: Celery reads its configuration on every
# publish, and each key Django's lazy settings object lacks costs an exception inside it.
app.config_from_object(os.environ["DJANGO_SETTINGS_MODULE"], namespace="CELERY")
# msgpack: drawings' points and images travel as they are (bytes stay bytes, no base64 or JSON text).
# Set here by their new names: as CELERY_-prefixed settings they read as Celery 3's deprecated ones.
# task_queues: the queues Celery would make from the routes (a direct exchange of the queue's name),
# declared so that the tools know them all (`celery purge` purged only the default queue).
app.conf.update(
    task_serializer="msgpack",
    accept_content=["msgpack"],
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
)
app.autodiscover_tasks(["worker"])
