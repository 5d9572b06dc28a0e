"""The ecosystem's Celery tools on the stack as shipped (docs/operations.md): `celery -A digitsite`
status, inspect, control and purge from a fresh checkout with no DJANGO_SECRET_KEY in the environment,
and Flower (requirements-ops.txt, part of the dev dependencies) showing the workers, their queues and
the queues' depths, and the tasks once task events are switched on."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery.utils.nodenames import host_format

from scripts.stack import QUEUES, Stack, worker_command
from tests.conftest import TEST_REDIS_URL, free_port
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
# What a checkout has that is not code: git's, the developer's and the test runs' files.
NOT_IN_A_FRESH_CHECKOUT = {
    ".git",
    ".venv",
    ".secret_key",
    "db.sqlite3",
    "test-artifacts",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "staticfiles",
}


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:.0f} s: {check}")
        time.sleep(every)


@pytest.fixture(scope="module")
def fresh_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's code without its .secret_key (or .git, or database): digitsite/ copied, since
    digitsite/secret.py keeps the key beside the package it is in; the rest linked."""
    checkout = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name in NOT_IN_A_FRESH_CHECKOUT or entry.name.startswith((".test-db", "db.sqlite3")):
            continue
        if entry.name == "digitsite":
            shutil.copytree(entry, checkout / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (checkout / entry.name).symlink_to(entry)
    return checkout


def tool_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of someone at a shell: none of the test run's Django variables (no key)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "CELERY_"))}
    return {**base, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, **extra}


def stack_env(stack: Stack, **extra: str) -> dict[str, str]:
    return tool_env(stack.redis_url, stack.env["REDIS_PREFIX"], DATABASE_URL=stack.env["DATABASE_URL"], **extra)


def celery(checkout: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CELERY, "-A", "digitsite", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"celery {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def node(queue: str, index: int = 0) -> str:
    """A worker's node name as scripts.stack names it (`<queue><index>@%h`)."""
    command = worker_command(queue, index)
    return host_format(command[command.index("-n") + 1])


def stack_workers(stack: Stack) -> dict[str, str]:
    """Node name -> queue of each worker process the stack runs (`worker-<queue><index>`)."""
    workers = {}
    for name, _ in stack.procs:
        if name.startswith("worker-"):
            queue_index = name.removeprefix("worker-")
            queue = queue_index.rstrip("0123456789")
            workers[node(queue, int(queue_index[len(queue) :]))] = queue
    return workers


def test_status_and_inspect_list_every_worker_and_its_queue_from_a_fresh_checkout_without_a_key(
    stack: Stack, fresh_checkout: Path
) -> None:
    env = stack_env(stack)
    assert "DJANGO_SECRET_KEY" not in env and not (fresh_checkout / ".secret_key").exists()

    workers = stack_workers(stack)
    assert set(workers.values()) == set(QUEUES)

    status = celery(fresh_checkout, env, "status")
    assert {line.split()[1].rstrip(":") for line in status.stdout.splitlines() if line.startswith("->")} == set(workers)
    assert f"{len(workers)} nodes online." in status.stdout

    queues = json.loads(celery(fresh_checkout, env, "inspect", "active_queues", "--json").stdout)
    assert {name: [q["name"] for q in qs] for name, qs in queues.items()} == {name: [q] for name, q in workers.items()}

    # the Celery command line made the checkout's own key, as manage.py does, readable by its owner only
    key = fresh_checkout / ".secret_key"
    assert len(key.read_text().strip()) >= 50 and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_purge_empties_every_task_queue(fresh_checkout: Path) -> None:
    prefix = f"test-purge-{uuid.uuid4().hex[:8]}:"  # a broker of its own: no worker takes the messages
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        for n, queue in enumerate(QUEUES, start=2):
            broker.lpush(f"{prefix}{queue}", *[b"x"] * n)
        purged = celery(fresh_checkout, tool_env(TEST_REDIS_URL, prefix), "purge", "-f")
        assert f"Purged 5 messages from {len(QUEUES)} known task queues." in purged.stdout
        assert [broker.llen(f"{prefix}{queue}") for queue in QUEUES] == [0] * len(QUEUES)
    finally:
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)


def test_the_events_setting_turns_task_events_on_for_workers_and_producers() -> None:
    code = "from digitsite.celery import app; print(app.conf.worker_send_task_events, app.conf.task_send_sent_event)"

    def conf(**env: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**tool_env(TEST_REDIS_URL, ""), "DJANGO_SECRET_KEY": "k" * 50, **env},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert conf() == "False False"
    assert conf(CELERY_EVENTS="1") == "True True"


def test_the_broker_url_keeps_its_redis_scheme_and_is_served_by_the_shared_client_transport() -> None:
    from digitsite.broker import Transport
    from digitsite.celery import app

    with app.connection() as conn:  # tools read the scheme (Flower: which broker it can show)
        assert isinstance(conn.transport, Transport) and conn.as_uri().startswith("redis://")


@contextlib.contextmanager
def running(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # also ends a stopped one
        proc.wait()


def test_flower_shows_the_workers_their_queues_depths_and_tasks_once_events_are_on(
    stack: Stack, ws: Any, fresh_checkout: Path, tmp_path: Path
) -> None:
    env = stack_env(stack)
    prefix = stack.env["REDIS_PREFIX"]
    broker = redis.Redis.from_url(stack.redis_url)
    # A worker of the test's own on a queue of its own, so that the test can hold it and fill its queue.
    probe = worker_command("probe")
    probe[probe.index("-n") + 1] = "probe0@%h"
    port = free_port()
    flower = [CELERY, "-A", "digitsite", "flower", "--address=127.0.0.1", f"--port={port}", "--enable_events=False"]
    api = f"http://127.0.0.1:{port}"
    nodes = stack_workers(stack) | {host_format("probe0@%h"): "probe"}

    with running(probe, fresh_checkout, env, tmp_path / "probe.log") as probe_proc:
        wait_until(
            lambda: (
                host_format("probe0@%h")
                in subprocess.run(
                    [CELERY, "-A", "digitsite", "inspect", "ping"],
                    cwd=fresh_checkout,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
            ),
            timeout=90,
            every=1,
        )
        with running(flower, fresh_checkout, {**env, "FLOWER_UNAUTHENTICATED_API": "1"}, tmp_path / "flower.log"):

            def get(path: str) -> Any:
                try:
                    response = requests.get(f"{api}{path}", timeout=10)
                except requests.ConnectionError:
                    return None
                return response.json() if response.status_code == 200 else None

            # the API (inspect): every worker with its queue
            def inspected() -> Any:
                workers = get("/api/workers?refresh=1") or {}
                queues = {name: [q["name"] for q in info.get("active_queues", [])] for name, info in workers.items()}
                return queues if queues == {name: [queue] for name, queue in nodes.items()} else None

            wait_until(inspected, timeout=60, every=1)
            # the workers page (events: the workers' heartbeats), every worker online
            wait_until(
                lambda: {w["hostname"] for w in (get("/workers?json=1") or {"data": []})["data"] if w["status"]} == set(nodes),
                timeout=30,
            )

            # the queues' depths, read in Redis under the service's key prefix: hold the probe worker, fill its queue
            os.killpg(probe_proc.pid, signal.SIGSTOP)
            broker.lpush(f"{prefix}probe", *[b"held"] * 5)

            def settled() -> int | None:  # a BRPOP the worker had waiting may still take one (1 s timeout)
                before = broker.llen(f"{prefix}probe")
                time.sleep(1.5)
                return before if broker.llen(f"{prefix}probe") == before else None

            held = wait_until(settled, timeout=30, every=0)
            assert held >= 4
            depths = {q["name"]: q["messages"] for q in get("/api/queues/length")["active_queues"]}
            assert depths == {"probe": held, **{q: broker.llen(f"{prefix}{q}") for q in QUEUES}}  # idle: 0
            broker.delete(f"{prefix}probe")

            # task events: off by default; switched on at run time, Flower lists the tasks
            enabled = celery(fresh_checkout, env, "control", "enable_events", "--json")
            try:
                answers = json.loads(enabled.stdout)
                assert {
                    name: reply
                    for answer in answers
                    for name, reply in answer.items()
                    if name in nodes and name != host_format("probe0@%h")
                } == {name: {"ok": "task events enabled"} for name in stack_workers(stack)}
                last = ws.stream(digit_strokes(4), drawing="flower")
                ws.prediction_for(last)
                wait_until(
                    lambda: any(
                        t["name"] == "worker.tasks.predict" and t["state"] == "SUCCESS"
                        for t in (get("/api/tasks") or {}).values()
                    ),
                    timeout=30,
                )
            finally:
                celery(fresh_checkout, env, "control", "disable_events")
