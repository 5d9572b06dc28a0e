"""What `make run` prints once the service answers healthy: where it is (the site, the admin), its
processes (web, workers per queue) and the model served, as /healthz reports them; one short block,
in place of the processes' banners (quieted: scripts.processes)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def health(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """The service's /healthz report ({} when it cannot be read)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as resp:
            report = json.loads(resp.read())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def startup_summary(
    url: str, report: dict[str, Any], *, web_processes: int, autoscale: dict[str, tuple[int, int]] | None = None
) -> str:
    """The block `make run` prints once the service is up."""
    autoscale = autoscale or {}
    per_queue = report.get("workers_per_queue") or {}
    workers = ", ".join(
        f"{queue} {count}" + (f" (scaled {autoscale[queue][0]}-{autoscale[queue][1]} on load)" if queue in autoscale else "")
        for queue, count in per_queue.items()
    )
    lines = [
        "",
        f"  Digit recognizer running at {url}/",
        f"  admin:    {url}/admin/",
        f"  web:      {web_processes} process{'es' if web_processes != 1 else ''}",
        f"  workers:  {workers or 'none answering yet'}",
        f"  model:    {report.get('model') or 'none (MODELS_DIR/current.json names none)'}",
        "  A process that dies is restarted. Ctrl-C stops it.",
        "",
    ]
    return "\n".join(lines)
