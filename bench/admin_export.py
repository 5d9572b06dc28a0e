"""The admin's download of training data: how much the web process grows, and how soon the first byte
comes (issue "Hostile clients get nowhere": 10,000 drawings, RSS growth <= 50 MB).

    DATABASE_URL=postgres://... .venv/bin/python bench/admin_export.py [--drawings 10000] [--pending 0.05]
        [--big 0] [--ways asgi,client,memory]

Works in a throwaway database of its own (bench/database.py), never in the service's. Drawings are
page-like (bench/export.py's strokes: 1-3 strokes of 40-120 points on a 280 px canvas) with the 28x28
image the workers store (rendered by digits.inference.render, as the workers do) and a PNG-sized blob; all
reviewed (a third relabelled by the reviewer), a share still waiting for its prediction (no image:
the export renders it). `--big N` adds N hostile drawings at the stored maximum (~190 KB of strokes
each, protocol.MAX_STORED_BYTES).

Each way runs in a fresh process of its own, the web process: Django set up, a superuser logged in
(a session), one warm-up download of one drawing (imports, templates), then its resident set size
(RSS) is the baseline, sampled every 5 ms by a thread while the download runs; figures: the peak RSS
growth over the baseline, the time to the first byte of the response, the time to its last byte,
and its size.
- asgi: the admin action "download_export" on every drawing (select across) POSTed to Django's ASGI
  application, as daphne runs it (the session and CSRF cookies, the form's token), each body message
  counted and dropped;
- client: the same through Django's test client (the WSGI way: the response read block by block);
- memory: for comparison, the way the download built its zip before: the three files in memory
  (BytesIO, StringIO), then the zip's bytes in memory (today's review.export.export_write).
Prints figures only (no assertions), with the date (UTC), the cores and the load average.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
# Nothing here is signed or served; the settings only refuse to start without some key.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-admin-export-signs-nothing")

PAGE = os.sysconf("SC_PAGE_SIZE")
WAYS = ("asgi", "client", "memory")
LABELS = {
    "asgi": "admin download through ASGI (daphne's way)",
    "client": "admin download through the test client",
    "memory": "zip built in memory (the old download)",
}


def rss() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """The largest RSS seen while inside the block (a thread samples every `every` seconds)."""

    def __init__(self, every: float = 0.005) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def big_strokes(rng: np.random.Generator) -> list[list[list[float]]]:
    """A hostile drawing at the stored maximum: 10,000 points to 0.01 px (~190 KB of JSON)."""
    points = np.round(rng.uniform(0, 750, (10_000, 2)), 2)
    return [points[i : i + 1250].tolist() for i in range(0, 10_000, 1250)]


def fill(n: int, pending: float, big: int, seed: int) -> None:
    from django.utils import timezone

    from bench.export import page_strokes
    from digits.inference.render import strokes_json_to_mnist_bytes
    from recognizer.models import Drawing

    rng = np.random.default_rng(seed)
    now = timezone.now()
    batch: list[Drawing] = []
    for i in range(n + big):
        strokes = big_strokes(rng) if i >= n else page_strokes(rng)
        waiting = rng.random() < pending
        image = None if waiting else strokes_json_to_mnist_bytes([(json.dumps(strokes), 280.0, 280.0, 16.0)])
        label = int(rng.integers(0, 10))
        batch.append(
            Drawing(
                client_id=f"bench{i}",
                content_hash=f"{i:064x}",
                strokes=strokes,
                canvas_width=280.0,
                canvas_height=280.0,
                brush=16.0,
                label=label,
                review_label=(label + 1) % 10 if rng.random() < 1 / 3 else None,
                reviewed_at=now,
                image28=image,
                png=None if waiting else b"\x89PNG" + bytes(2000),  # about a drawing's PNG; never read by the export
                predicted_digit=None if waiting else int(rng.integers(0, 10)),
                confidence=None if waiting else float(rng.random()),
                model_name="" if waiting else "cnn-v6",
                predicted_at=None if waiting else now,
            )
        )
        if len(batch) == 500:
            Drawing.objects.bulk_create(batch)
            batch = []
    Drawing.objects.bulk_create(batch)


def in_memory_zip(drawings: Any) -> bytes:
    """The zip as the admin's download built it before it streamed: everything in memory."""
    import io
    import zipfile

    from review.export import ZIP_NAMES, export_write

    npz, strokes, manifest = io.BytesIO(), io.StringIO(), io.StringIO()
    export_write(drawings, npz=npz, strokes=strokes, manifest=manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(ZIP_NAMES[0], npz.getvalue(), compress_type=zipfile.ZIP_STORED)
        zf.writestr(ZIP_NAMES[1], strokes.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(ZIP_NAMES[2], manifest.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


@functools.cache
def asgi_app() -> Any:
    """The ASGI application daphne serves (digitsite.asgi would add the WebSocket routes around it)."""
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def asgi_download(client: Any, path: str, select: dict[str, Any], started: float) -> tuple[float, float, int]:
    """POST the download to Django's ASGI application as daphne would; (first byte s, last byte s, bytes)."""
    import asyncio
    from urllib.parse import urlencode

    from django.utils.crypto import get_random_string

    token = get_random_string(32)
    body = urlencode({"action": "download_export", "index": "0", "csrfmiddlewaretoken": token, **select}, doseq=True).encode()
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={token}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", cookie.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    status, first_byte, size = [0], [0.0], [0]

    async def run() -> None:
        sent_body = asyncio.Event()
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not sent_body.is_set():
                sent_body.set()
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message.get("body"):
                if not size[0]:
                    first_byte[0] = time.perf_counter() - started
                size[0] += len(message["body"])

        await asgi_app()(scope, receive, send)

    asyncio.run(run())
    assert status[0] == 200, status[0]
    return first_byte[0], time.perf_counter() - started, size[0]


def child(way: str) -> dict[str, Any]:
    """One way's figures, measured in this (fresh) process."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from recognizer.models import Drawing

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()
    client.force_login(User.objects.create_superuser(f"bench-{way}-{os.getpid()}", password="not-used-anywhere"))
    changelist = "/admin/recognizer/drawing/"
    first = Drawing.objects.order_by("pk").values_list("pk", flat=True).first()

    def download(select: dict[str, Any]) -> tuple[float, float, int]:
        started = time.perf_counter()
        if way == "asgi":
            return asgi_download(client, changelist, select, started)
        if way == "memory":
            data = in_memory_zip(Drawing.objects.all() if "select_across" in select else Drawing.objects.filter(pk=first))
            first_byte = time.perf_counter() - started
            size = len(data)
            del data
            return first_byte, time.perf_counter() - started, size
        response = client.post(changelist, {"action": "download_export", "index": "0", **select})
        assert response.status_code == 200 and response.streaming, (response.status_code, response.content[:300])
        chunks = iter(response.streaming_content)
        size = len(next(chunks))
        first_byte = time.perf_counter() - started
        for chunk in chunks:
            size += len(chunk)
        return first_byte, time.perf_counter() - started, size

    download({"_selected_action": [first]})  # warm-up: imports, templates, the first queries
    gc.collect()
    baseline = rss()
    with PeakRss() as peak:
        first_byte, total, size = download({"select_across": "1", "_selected_action": [first]})
    return {
        "way": way,
        "baseline_mb": baseline / 2**20,
        "growth_mb": (peak.peak - baseline) / 2**20,
        "first_byte_s": first_byte,
        "total_s": total,
        "zip_mb": size / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=10_000)
    parser.add_argument("--pending", type=float, default=0.05, help="share still waiting for a prediction")
    parser.add_argument("--big", type=int, default=0, help="hostile drawings at the stored maximum, added")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return

    from bench.database import throwaway_database

    with throwaway_database() as url:
        from django.db import connection

        print(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; database: {connection.vendor}; "
            f"{args.drawings} page-like drawings ({args.pending:.0%} waiting for a prediction) + {args.big} "
            f"at the stored maximum, all reviewed"
        )
        started = time.perf_counter()
        fill(args.drawings, args.pending, args.big, args.seed)
        connection.close()  # the children connect on their own
        print(f"stored in {time.perf_counter() - started:.1f} s (not part of the figures)")
        for way in args.ways.split(","):
            load = "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
            run = subprocess.run(
                [sys.executable, __file__, "--child", way],
                env={**os.environ, "DATABASE_URL": url},
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
            )
            if run.returncode != 0:
                print(f"{way}: failed\n{run.stdout[-2000:]}{run.stderr[-4000:]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"{LABELS[way]}: RSS growth {r['growth_mb']:.1f} MB (baseline {r['baseline_mb']:.0f} MB), first byte "
                f"after {r['first_byte_s']:.2f} s, last after {r['total_s']:.2f} s, zip {r['zip_mb']:.1f} MB ({load})"
            )


if __name__ == "__main__":
    main()
