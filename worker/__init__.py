"""Celery tasks (preprocessing, inference) and per-process model loading."""
