"""HTTP: the page, image upload prediction, health."""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from contract.errors import error_message
from contract.jobs import ErrorAnswer, PredictionAnswer, UploadJob
from edge import draining
from recognizer import metrics
from recognizer.health import health_report
from recognizer.job_client import job_client, new_job_id
from recognizer.model_choice import wanted_model_name
from recognizer.protocol import upload_prediction

log = logging.getLogger(__name__)
UPLOAD_TIMEOUT_S = 10.0


def _error(status: int, code: str, message: str) -> JsonResponse:
    metrics.observe_error(code)
    return JsonResponse(error_message(code, message), status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    try:
        model = wanted_model_name()
    except (OSError, ValueError, KeyError):
        model = ""
    return render(request, "recognizer/index.html", {"model_name": model})


@csrf_exempt  # a stateless API: it changes nothing and reads no session
async def api_predict(request: HttpRequest) -> JsonResponse:
    """Predict the digit in an uploaded PNG, JPEG, WebP or GIF (multipart field `image`)."""
    if request.method != "POST":
        return _error(405, "method_not_allowed", "POST a multipart form with an 'image' file")
    started = time.perf_counter()
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.UPLOAD_MAX_BYTES + 64 * 1024:
        return _error(400, "too_large", f"images up to {settings.UPLOAD_MAX_BYTES // 2**20} MB")
    upload = request.FILES.get("image")
    if upload is None:
        return _error(400, "no_image", "send the image as multipart form field 'image'")
    assert upload.size is not None  # set by Django's upload handlers (None only for a file made by hand)
    if upload.size > settings.UPLOAD_MAX_BYTES:
        return _error(400, "too_large", f"images up to {settings.UPLOAD_MAX_BYTES // 2**20} MB")
    data = upload.read()
    if not data:
        return _error(400, "bad_image", "the file is empty")
    jobs = await job_client()
    job_id = new_job_id()
    job = UploadJob(job_id, job_id, jobs.reply, upload=data, heat_map=True)
    try:
        async with asyncio.timeout(UPLOAD_TIMEOUT_S):
            answer = await jobs.run(job)
    except TimeoutError:
        return _error(503, "unavailable", "the recogniser did not answer in time; retry later")
    except Exception:  # the broker refused the job
        log.warning("could not queue upload %s", job_id, exc_info=True)
        return _error(503, "unavailable", "the recogniser is unavailable; retry later")
    if isinstance(answer, ErrorAnswer):
        status = 500 if answer.error.code == "internal" else 400
        return _error(status, answer.error.code, answer.error.message)
    assert isinstance(answer, PredictionAnswer) and answer.image is not None
    body = upload_prediction(
        answer.prediction,
        image=answer.image,
        heat_map=answer.heat_map,
        timings=answer.timings,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    metrics.observe_end_to_end("upload", time.perf_counter() - started)
    return JsonResponse(body)


_last_health: str | None = None  # this process's last answer, to log changes rather than every poll


@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    """Liveness: this web process answers (restart it if not). Readiness is /healthz."""
    return JsonResponse({"status": "ok"})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Readiness: every part the service needs is there (send it traffic if so)."""
    global _last_health
    if draining.draining():  # shutting down: send new traffic elsewhere
        return JsonResponse({"status": "draining"}, status=503)
    report = health_report()
    if report["status"] != _last_health:
        _last_health = report["status"]
        if report["status"] == "ok":
            log.info("healthy: %s", report)
        else:
            log.warning("not healthy: %s", report)
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
