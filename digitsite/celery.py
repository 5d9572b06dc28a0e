"""The one Celery app: reads CELERY_-prefixed Django settings and discovers worker.tasks."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")

app = Celery("digitsite")
# The settings module itself, not django.conf.settings: Celery reads its configuration on every
# publish, and each key Django's lazy settings object lacks costs an exception inside it.
app.config_from_object(os.environ["DJANGO_SETTINGS_MODULE"], namespace="CELERY")
# msgpack: drawings' points and images travel as they are (bytes stay bytes, no base64 or JSON text).
# Set here by their new names: as CELERY_-prefixed settings they read as Celery 3's deprecated ones.
app.conf.update(task_serializer="msgpack", accept_content=["msgpack"])
app.autodiscover_tasks(["worker"])
