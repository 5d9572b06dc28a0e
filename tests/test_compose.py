"""docker-compose.yml is valid and runs the same commands as `make run` (no Docker engine here)."""
import shlex
from pathlib import Path

import yaml

from scripts.stack import web_command, worker_command

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_five_services_wired_to_redis_and_postgres():
    services = load()["services"]
    assert set(services) == {"web", "worker-preprocess", "worker-inference", "redis", "postgres"}
    for name in ("web", "worker-preprocess", "worker-inference"):
        svc = services[name]
        assert svc["build"] == "." and svc["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert svc["environment"]["DATABASE_URL"].startswith("postgres://")
        assert {k: v["condition"] for k, v in svc["depends_on"].items()} == {
            "redis": "service_healthy", "postgres": "service_healthy"}
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]


def test_workers_are_scalable_and_run_the_make_run_commands():
    services = load()["services"]
    for queue in ("preprocess", "inference"):
        svc = services[f"worker-{queue}"]
        assert "container_name" not in svc and "ports" not in svc  # --scale needs neither
        assert shlex.split(svc["command"]) == ["celery", *worker_command(queue)[1:]]


def test_web_runs_daphne_like_make_run_after_migrating():
    command = load()["services"]["web"]["command"]
    assert "manage.py migrate --noinput" in command
    daphne = shlex.split(command.split("exec ", 1)[1].rstrip('"'))
    assert daphne == ["daphne", *web_command("0.0.0.0", 8000)[1:]]
