"""Under supervision (what `make run` does) the service comes back by itself after any of its
processes is killed, and WEB_PROCESSES daphne processes share the port and all serve.

One supervised stack with two web processes: the inference worker, the preprocess worker and the
web process holding a client's socket are each killed with SIGKILL, and the time from the kill
until the path through the killed process answers again (a drawing streamed over the WebSocket;
for the preprocess worker, which decodes uploads, POST /api/predict), and until /healthz says
200, must stay within 5 s. The consumer resends an unanswered job after WS_PREDICTION_TIMEOUT_S,
set to 2 s here, so a job lost with its worker cannot hold the client back past the target
either; without supervision no worker comes back and nothing answers at all.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from PIL import Image, ImageDraw
from websockets.exceptions import ConnectionClosed

from contract.tasks import FILL_TASK, TASK_QUEUES
from edge.watchdog import EXIT_STUCK
from recognizer.models import Drawing
from scripts.stack import Stack
from tests.conftest import stack_of_its_own
from tests.support.dblock import drawings_locked, queue_fill, stored_drawing
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TARGET_S = 5.0  # issue 12: back within 5 s of a kill
RETRY_S = 2  # WS_PREDICTION_TIMEOUT_S for this stack
TASK_LIMIT_S = 5  # WORKER_TASK_TIME_LIMIT_S for this stack (tasks here take milliseconds)


@pytest.fixture(scope="module")
def supervised(stack, tmp_path_factory):
    env = {
        **stack.env,
        "WS_PREDICTION_TIMEOUT_S": str(RETRY_S),
        "WORKER_TASK_TIME_LIMIT_S": str(TASK_LIMIT_S),
        "DRAWING_FILL_LOCK_WAIT_S": "600",
    }  # a fill on a locked table hangs: the watchdog's case
    with stack_of_its_own("sup", env, tmp_path_factory.mktemp("supervised-logs"), web_processes=2, supervise=True) as service:
        yield service


def _proc(service: Stack, name: str) -> subprocess.Popen:
    [proc] = [p for n, p in service.procs if n == name]
    return proc


def _web_pids(service: Stack) -> dict[int, str]:
    return {p.pid: n for n, p in service.procs if n.startswith("web")}


def _owner(client: ProtocolClient, pids: set[int]) -> int | None:
    """Which of `pids` holds the server side of the client's TCP connection (from /proc)."""
    client_port = client.ws.socket.getsockname()[1]
    server_port = client.ws.socket.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _owner_eventually(client: ProtocolClient, pids: set[int]) -> int:
    deadline = time.monotonic() + 5  # the accepting process may not have registered it yet
    while (pid := _owner(client, pids)) is None:
        assert time.monotonic() < deadline, "no web process holds the client's connection"
        time.sleep(0.02)
    return pid


def _predicts(client: ProtocolClient, digit: int, timeout: float) -> bool:
    """Stream one new drawing; True once its final prediction arrives, False on an error or none."""
    last = client.stream(digit_strokes(digit), drawing=uuid.uuid4().hex, batch=1000)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        if msg["type"] == "error":
            return False  # "unavailable": no worker answered the job nor its resend
        if msg["type"] == "prediction" and msg["seq"] >= last:
            assert msg["digit"] == digit, msg
            return True
    return False


def _upload_predicts(url: str, digit: int) -> bool:
    """POST a drawn digit as a PNG; True once it comes back predicted."""
    img = Image.new("L", (280, 280), 255)
    for stroke in digit_strokes(digit):
        ImageDraw.Draw(img).line([tuple(p) for p in stroke], fill=0, width=18, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    try:
        resp = requests.post(f"{url}/api/predict", files={"image": ("digit.png", buf.getvalue())}, timeout=15)
    except requests.RequestException:
        return False
    return resp.status_code == 200 and resp.json()["digit"] == digit


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def _healthy_after(url: str, killed_at: float) -> float:
    """Seconds from the kill until /healthz says 200 (from now on)."""
    while not _healthy(url):
        assert time.monotonic() - killed_at < 3 * TARGET_S, "/healthz never said 200 again"
        time.sleep(0.05)
    return time.monotonic() - killed_at


def _read_until_closed(client: ProtocolClient) -> None:
    """Read until the socket closes (raises ConnectionClosed): messages still on their way (a heat map) come first."""
    while True:
        client.recv(timeout=5)


def _kill(proc: subprocess.Popen) -> float:
    """SIGKILL, and wait until it is gone: a job the dying worker still takes from Redis would be
    lost with it, which is the consumer's resend's business (test_worker_loss), not this test's."""
    os.killpg(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait()
    return killed_at


def test_several_web_processes_share_the_port_and_all_serve(supervised):
    pids = set(_web_pids(supervised))
    assert len(pids) == 2
    clients: list[ProtocolClient] = []
    try:
        # The kernel hands each connection to whichever process accepts first: open clients until
        # both processes hold some (a handful is enough in practice; 40 bound a bad day, and on a
        # loaded machine the second process may still be starting: a pause between tries, 30 s in all).
        owners: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(set(owners.values())) < 2 and len(clients) < 40 and time.monotonic() < deadline:
            clients.append(ProtocolClient(supervised.url))
            owners[len(clients) - 1] = _owner_eventually(clients[-1], pids)
            if len(set(owners.values())) < 2:
                time.sleep(0.5)
        while len(clients) < 6:
            clients.append(ProtocolClient(supervised.url))
        assert set(owners.values()) == pids, f"all {len(clients)} connections went to one web process"
        with ThreadPoolExecutor(len(clients)) as pool:  # all drawing at once
            answered = list(pool.map(lambda c: _predicts(c[1], c[0] % 10, timeout=20), enumerate(clients)))
        assert all(answered), answered
    finally:
        for client in clients:
            client.close()


@pytest.mark.timeout(240)
def test_the_service_comes_back_within_5_s_after_any_process_is_killed(supervised):
    client = ProtocolClient(supervised.url)
    recovered: dict[str, tuple[float, float]] = {}
    try:
        assert _predicts(client, 3, timeout=15)
        deadline = time.monotonic() + 90
        while not supervised.spares_ready():  # warm spares load some seconds after the start
            assert time.monotonic() < deadline, "the workers' spares never became ready"
            time.sleep(0.2)

        assert _upload_predicts(supervised.url, 4)
        answers = {  # a request that goes through the worker on that queue
            "worker-inference0": lambda: _predicts(client, 4, timeout=2 * RETRY_S + 1),  # 2 resends, then an error
            "worker-preprocess0": lambda: _upload_predicts(supervised.url, 4),
        }
        for name, answer in answers.items():
            killed = _proc(supervised, name)
            killed_at = _kill(killed)
            while not answer():
                assert time.monotonic() - killed_at < 3 * TARGET_S, f"no prediction since {name} was killed"
            recovered[name] = (time.monotonic() - killed_at, _healthy_after(supervised.url, killed_at))
            assert _proc(supervised, name).pid != killed.pid and supervised.restarts(name) == 1

        # The web process holding the client's socket: the client sees it close and reconnects.
        pids = _web_pids(supervised)
        name = pids[_owner_eventually(client, set(pids))]
        killed = _proc(supervised, name)
        killed_at = _kill(killed)
        with pytest.raises(ConnectionClosed):
            _read_until_closed(client)
        client.close()
        # Back means the killed process's replacement serves again: reconnect until a connection
        # lands on it (the other web process answers meanwhile), and draw there.
        while True:
            assert time.monotonic() - killed_at < 3 * TARGET_S, f"{name} was not replaced in time"
            replacement = _proc(supervised, name)
            if replacement.pid == killed.pid or replacement.poll() is not None:
                time.sleep(0.05)
                continue
            try:
                client = ProtocolClient(supervised.url)
            except OSError:
                time.sleep(0.05)
                continue
            if _owner_eventually(client, {p.pid for n, p in supervised.procs if n.startswith("web")}) == replacement.pid:
                assert _predicts(client, 5, timeout=10)
                break
            client.close()
        recovered[name] = (time.monotonic() - killed_at, _healthy_after(supervised.url, killed_at))
        assert supervised.restarts(name) == 1
    finally:
        client.close()
    report = ", ".join(f"{n}: answered {a:.2f} s, then /healthz 200 {h:.2f} s" for n, (a, h) in recovered.items())
    print(f"\nrecovery after SIGKILL: {report}")  # noqa: T201 - the measurement, shown by pytest -s
    for name, (_, back) in recovered.items():
        assert back <= TARGET_S, f"{name} not back within {TARGET_S} s: {report}"


@dataclass
class _Drawer:
    """One of the clients drawing and submitting through the kills (a thread of its own)."""

    url: str
    index: int
    predicted_at: list[float] = field(default_factory=list)  # time.monotonic() of each right prediction
    stored: dict[str, int] = field(default_factory=dict)  # acknowledged submits: drawing id -> row id
    connects: int = 0
    failures: list[str] = field(default_factory=list)  # what went wrong (all of it recovered from)

    def run(self, stop: threading.Event) -> None:
        client: ProtocolClient | None = None
        n = 0
        while not stop.is_set():
            try:
                if client is None:
                    client = ProtocolClient(self.url)
                    self.connects += 1
                n += 1
                digit, drawing = (self.index + n) % 10, f"kill-{self.index}-{n}-{uuid.uuid4().hex[:6]}"
                last = client.stream(digit_strokes(digit), drawing=drawing, batch=20)
                answer = client.until(lambda m: m.get("seq", 0) >= last and m["type"] in ("prediction", "error"), 10)[-1]
                if answer["type"] == "error":
                    self.failures.append(answer["code"])
                    continue
                assert answer["digit"] == digit, answer
                self.predicted_at.append(time.monotonic())
                seq = client.send(type="submit", drawing=drawing, label=digit)
                ack = client.until(lambda m: m.get("seq") == seq and m["type"] in ("stored", "error"), 10)[-1]
                if ack["type"] == "stored":
                    self.stored[drawing] = ack["id"]
                else:
                    self.failures.append(ack["code"])
                time.sleep(0.2)
            except (ConnectionClosed, TimeoutError, OSError) as exc:  # the page reconnects
                self.failures.append(type(exc).__name__)
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.1)
        if client is not None:
            client.close()


def test_ten_clients_drawing_and_submitting_through_kills_lose_no_acknowledged_submit(supervised):
    """Issue 12: SIGKILL of each worker and a web process with 10 clients drawing and submitting:
    every client predicting again within 5 s, every `stored` a row (and one row per drawing)."""
    drawers = [_Drawer(supervised.url, i) for i in range(10)]
    stop = threading.Event()
    threads = [threading.Thread(target=d.run, args=(stop,), daemon=True) for d in drawers]
    for t in threads:
        t.start()
    kills: list[tuple[str, float]] = []
    try:
        deadline = time.monotonic() + 30
        while not all(d.predicted_at for d in drawers) or not supervised.spares_ready():
            assert time.monotonic() < deadline, "the clients never all predicted"
            time.sleep(0.1)
        for name in ("worker-inference0", "worker-preprocess0", "web0"):
            restarts = supervised.restarts(name)
            kills.append((name, _kill(_proc(supervised, name))))
            time.sleep(TARGET_S + 2)
            assert supervised.restarts(name) == restarts + 1, name
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    last_kill = kills[-1][1]
    gaps = {}
    for d in drawers:
        assert d.predicted_at and d.predicted_at[-1] > last_kill, f"client {d.index} not predicting since the kills"
        times = [kills[0][1] - 1.0, *[t for t in d.predicted_at if t > kills[0][1] - 1.0]]
        gaps[d.index] = max(b - a for a, b in itertools.pairwise(times))
    stored = {drawing: row for d in drawers for drawing, row in d.stored.items()}
    rows = dict(Drawing.objects.filter(client_id__in=list(stored)).values_list("client_id", "pk"))
    counts = Counter(Drawing.objects.filter(client_id__in=list(stored)).values_list("client_id", flat=True))
    print(  # noqa: T201 - the measurement, shown by pytest -s
        f"\n10 clients through {', '.join(n for n, _ in kills)}: {sum(len(d.predicted_at) for d in drawers)} "
        f"predictions, {len(stored)} submits acknowledged, {len(rows)} rows; longest wait for a prediction "
        f"{max(gaps.values()):.2f} s; reconnects {sum(d.connects - 1 for d in drawers)}; recovered from: "
        f"{dict(Counter(f for d in drawers for f in d.failures))}"
    )
    assert stored and rows == stored, "acknowledged submits missing from the database"
    assert max(counts.values()) == 1
    # the longest a client went without a prediction, drawing (~0.5 s a drawing) included
    assert max(gaps.values()) <= TARGET_S + 1.0, gaps


@pytest.mark.timeout(150)
def test_a_worker_stuck_in_a_task_ends_itself_and_its_replacement_serves(supervised):
    """The solo pool enforces no Celery time limit. A stored drawing's fill that a hung database
    holds (its own lock wait lifted for this stack) past WORKER_TASK_TIME_LIMIT_S ends its worker;
    the supervisor's replacement reads uploads again while the database still hangs, and the row
    is filled in by the sweep once the database is back: nothing stuck, nothing lost."""
    name = "worker-preprocess0"
    queue = f"{supervised.env['REDIS_PREFIX']}{TASK_QUEUES[FILL_TASK]}"
    broker = redis.Redis.from_url(supervised.redis_url)
    deadline = time.monotonic() + 90
    while broker.llen(queue):  # the worker free first: the fills of earlier tests' submits done
        assert time.monotonic() < deadline, "the earlier tests' fills never drained"
        time.sleep(0.2)
    broker.close()
    row = stored_drawing(6, "stuck")
    stuck = _proc(supervised, name)
    with drawings_locked():
        queue_fill(supervised, row.pk)
        queued = time.monotonic()
        try:
            status = stuck.wait(timeout=TASK_LIMIT_S + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still stuck {TASK_LIMIT_S + 10} s after its task began")
        ended = time.monotonic() - queued
        assert status == EXIT_STUCK, status
        while not _upload_predicts(supervised.url, 4):
            assert time.monotonic() - queued < TASK_LIMIT_S + 30, "no upload read since the stuck worker ended"
        served = time.monotonic() - queued
    assert _proc(supervised, name).pid != stuck.pid
    deadline = time.monotonic() + 40  # the replacement's sweep runs every DRAWING_SWEEP_S (10 s)
    while row.predicted_at is None and time.monotonic() < deadline:
        time.sleep(0.2)
        row.refresh_from_db()
    assert row.predicted_at is not None and row.predicted_digit == 6, (row.predicted_at, row.predicted_digit)
    print(  # noqa: T201 - the measurement, shown by pytest -s
        f"\na fill held by a locked table: {name} ended {ended:.1f} s after its task was queued (limit {TASK_LIMIT_S} s), "
        f"an upload read {served:.1f} s after it was queued, the row filled in once the table was free"
    )


def test_every_web_process_watches_its_event_loop(supervised):
    """A web process whose event loop stops turning ends itself for a fresh one (the mechanism:
    tests/digitsite/test_watchdog.py); here, that each web process the stack starts arms it."""
    logs = sorted(supervised.log_dir.glob("web*.log"))
    assert len(logs) == 2
    for log in logs:
        assert "event loop watched: a stall of 30 s ends this process" in log.read_text(errors="replace"), log.name
