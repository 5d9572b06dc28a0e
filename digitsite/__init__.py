"""The Django project: settings, ASGI app, URLs and the Celery app."""

from digitsite.celery import app as celery_app

__all__ = ("celery_app",)
