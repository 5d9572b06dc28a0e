"""What the web side and the workers agree on about a job (the dict passed between them)."""
from typing import Any

JOB_EXPIRES_S = 30  # a job nobody can wait for any more is dropped, not run


def job_repr(job: dict[str, Any]) -> str:
    """What Celery logs for a job's arguments: its id. Without it Celery repr()s every point of
    the drawing on each publish, which cost about 1 ms a task."""
    return f"(<job {job['id']}>,)"
