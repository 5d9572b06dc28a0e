"""Logging filters referenced from settings.LOGGING."""

from __future__ import annotations

import logging


class HealthCheckAnswers(logging.Filter):
    """Drop Django's "Service Unavailable: /healthz" records: a 503 there is the check's answer
    (say, while the workers start), not a server error; the view logs what is down itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return not (getattr(record, "status_code", None) == 503 and getattr(request, "path", None) == "/healthz")
