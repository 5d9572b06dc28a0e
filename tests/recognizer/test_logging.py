"""A 503 from /healthz is the check's answer, not a server error: Django's error record is dropped."""

import logging

from django.test import RequestFactory

from digitsite.logfilters import HealthCheckAnswers


def _record(path: str, status: int) -> logging.LogRecord:
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Service Unavailable: %s", (path,), None)
    record.status_code = status
    record.request = RequestFactory().get(path)
    return record


def test_healthz_503_is_not_logged_as_an_error() -> None:
    assert HealthCheckAnswers().filter(_record("/healthz", 503)) is False


def test_other_server_errors_are_still_logged() -> None:
    keep = HealthCheckAnswers()
    assert keep.filter(_record("/healthz", 500)) is True
    assert keep.filter(_record("/api/predict", 503)) is True
    assert keep.filter(logging.LogRecord("django.request", logging.ERROR, __file__, 1, "boom", (), None)) is True


def test_the_filter_is_installed_on_django_request() -> None:
    from django.conf import settings

    assert "health_answers" in settings.LOGGING["loggers"]["django.request"]["filters"]
    assert any(isinstance(f, HealthCheckAnswers) for f in logging.getLogger("django.request").filters)
