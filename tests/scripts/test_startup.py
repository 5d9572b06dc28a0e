"""`make run`'s start-up: a short summary once the service is healthy (the site, the admin, the
workers per queue, the model served), the workers without Celery's banner, the migrations quiet, and
no "No directory at: .../staticfiles/" warning from WhiteNoise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts.processes import worker_command
from scripts.stack import Stack
from scripts.summary import startup_summary

ROOT = Path(__file__).resolve().parents[2]


def test_the_summary_names_the_site_the_admin_the_workers_and_the_model() -> None:
    report = {"status": "ok", "workers_per_queue": {"preprocess": 1, "inference": 2}, "model": "cnn-v16"}
    text = startup_summary("http://127.0.0.1:8000", report, web_processes=1, autoscale={"inference": (1, 2)})
    lines = [line.strip() for line in text.strip().splitlines()]
    assert "Digit recognizer running at http://127.0.0.1:8000/" in lines
    assert "admin:    http://127.0.0.1:8000/admin/" in lines
    assert "workers:  preprocess 1, inference 2 (scaled 1-2 on load)" in lines
    assert "model:    cnn-v16" in lines and "web:      1 process" in lines
    assert len(lines) <= 8  # short
    assert "none answering yet" in startup_summary("http://x", {}, web_processes=2)


def test_a_quiet_stack_starts_its_workers_without_the_banner() -> None:
    quiet = Stack(quiet=True).worker_command("inference", 0)
    assert quiet[quiet.index("--quiet") + 1] == "worker"  # a global option of celery: before the subcommand
    assert Stack().worker_command("inference", 0) == worker_command("inference", 0)  # the manifests' command
    assert "--quiet" not in worker_command("inference", 0)


def test_make_migrate_is_quiet() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\nmigrate:", 1)[1].split("\n\n", 1)[0]
    assert "manage.py migrate --noinput -v 0" in recipe


def test_whitenoise_does_not_warn_about_a_missing_static_root(tmp_path: Path) -> None:
    static_root = tmp_path / "staticfiles"  # as in a fresh checkout: none yet
    code = (
        "import django; django.setup()\n"
        "from whitenoise.middleware import WhiteNoiseMiddleware\n"
        "WhiteNoiseMiddleware(lambda request: None)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "digitsite.settings.local",
        "DJANGO_DEBUG": "1",
        "DJANGO_STATIC_ROOT": str(static_root),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No directory at" not in done.stderr and static_root.is_dir()
