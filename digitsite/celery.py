"""The one Celery app: reads CELERY_-prefixed Django settings and discovers worker.tasks."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")

app = Celery("digitsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"])
