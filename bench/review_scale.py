"""The review side at scale: N realistic drawings (1M by default) in a PostgreSQL database of the
bench's own, then every review page timed as a superuser sees it (Django's test client, warm, median
of 3), the export command, the admin's download and a bulk action.

    .venv/bin/python bench/review_scale.py --fill --rows 1000000 [--db bench_1m]   # create, migrate, fill
    .venv/bin/python bench/review_scale.py --measure [--db bench_1m] [--export] [--download] [--bulk]
    .venv/bin/python bench/review_scale.py --migrate [--db bench_1m]   # apply new migrations to the filled table

The rows: a pool of real pen digits (the UJI dev digits, ../shared/data/uji-pen, fitted to the page's
canvas by digits.data.uji and rendered by the workers' own code: the 28x28 image and the PNG they store,
each digit also slightly scaled and shifted for more variety) is copied in by COPY, then N rows are
made from it in the database (INSERT ... SELECT over generate_series, 100,000 rows a statement): 80%
of predictions at least 99% sure, 2% under 50% (flagged uncertain), 30% labelled by the person, 5%
reviewed (a reviewer's label on 60% of those, 2% of them excluded), 1% still waiting for their
prediction (no image, no PNG), three models over 90 days (ids in the order the drawings were made).

The database is the bench's own (created if missing; `--db`, on the server of DATABASE_URL, or
127.0.0.1:5432 as postgres), never the service's. Prints figures only (no assertions).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.review_fill import MODELS, USERNAME, fill, migrate, server_url, setup_django  # noqa: E402

SLOW_S = 10.0  # a page slower than this is timed once
TIMEOUT_S = 60  # a query running longer is cancelled


# ---------------------------------------------------------------- measure


def timed(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    """The median of `runs` after a warm-up run; a page whose warm-up took over SLOW_S is timed once."""
    t = time.perf_counter()
    result = fn()  # warm
    if time.perf_counter() - t > SLOW_S:
        return time.perf_counter() - t, result
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def pages(db: str) -> list[tuple[str, str]]:
    """(what, URL) of every page timed."""
    from recognizer.models import Drawing

    last = Drawing.objects.order_by("-pk").values_list("pk", "client_id").first()
    pk, client_id = last if last else (1, "none")
    cl = "/admin/recognizer/drawing/"
    return [
        ("changelist, default page", cl),
        ("filter reviewed = yes", cl + "?reviewed=yes"),
        ("filter reviewed = no", cl + "?reviewed=no"),
        ("filter labelled by a reviewer", cl + "?labelled=reviewer"),
        ("filter labelled by the person", cl + "?labelled=person"),
        ("filter no label", cl + "?labelled=no"),
        ("filter label ≠ prediction", cl + "?agreement=wrong"),
        ("filter uncertain", cl + "?uncertain__exact=1"),
        ("filter confidence < 50%", cl + "?confidence=lt50"),
        ("filter confidence 95–99%", cl + "?confidence=95-99"),
        ("filter still waiting", cl + "?prediction=waiting"),
        ("filter label used = 7", cl + "?effective=7"),
        ("filter prediction = 7", cl + "?predicted_digit__exact=7"),
        ("filter excluded", cl + "?excluded__exact=1"),
        (f"filter model = {MODELS[0]} (oldest)", cl + f"?model_name={MODELS[0]}"),
        ("filter date: past 7 days", cl + "?created_at__gte={week}"),
        ("search client id", cl + f"?q={client_id}"),
        ("search numeric id", cl + f"?q={pk}"),
        ("Show counts (facets)", cl + "?_facets=True"),
        ("sort by confidence, least first", cl + "?o=4"),
        ("sort by confidence, most first", cl + "?o=-4"),
        ("triage queue, least sure first", "/review/api/queue?order=confidence&limit=50"),
        ("triage queue, oldest first", "/review/api/queue?order=oldest&limit=50"),
        ("dashboard", "/review/dashboard/"),
        ("confusion image", "/review/dashboard/confusion.png"),
        ("models page", "/review/models/"),
    ]


def measure(db: str, *, export: bool, download: bool, bulk: bool, runs: int, only: str) -> None:
    from django.contrib.auth import get_user_model
    from django.db import OperationalError, connection
    from django.test import Client
    from django.utils import timezone

    from recognizer.models import Drawing

    client = Client()
    with connection.cursor() as cursor:  # a page that never returns is cancelled, and said so
        cursor.execute(f"SET statement_timeout = '{TIMEOUT_S}s'")
    client.force_login(get_user_model().objects.get(username=USERNAME))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint, pg_size_pretty(pg_table_size('recognizer_drawing')) "
            "FROM pg_class WHERE relname = 'recognizer_drawing'"
        )
        rows, size = cursor.fetchone()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"database {db}: ~{rows:,} drawings, table {size}; median of {runs}, warm"
    )
    week = (timezone.now() - timedelta(days=7)).date().isoformat()
    for what, url in pages(db):
        if only and only not in what:
            continue
        url = url.replace("{week}", week)
        from django.db import reset_queries
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            try:
                elapsed, response = timed(lambda u=url: client.get(u), runs)
            except OperationalError as exc:  # cancelled by the statement timeout
                print(f"  {what:42} > {TIMEOUT_S} s: cancelled ({str(exc).splitlines()[0]})", flush=True)
                continue
        n = len(queries) // (runs + 1 if elapsed < SLOW_S else 1)
        print(f"  {what:42} {elapsed * 1000:8.0f} ms  {n:3} queries  HTTP {response.status_code}", flush=True)
        reset_queries()
    save_pk = Drawing.objects.filter(reviewed_at__isnull=True, excluded=False).order_by("-pk").values_list("pk", flat=True)[:10]
    pks = list(save_pk)
    digits = iter(range(100))

    def save() -> Any:
        return client.post(
            f"/review/api/drawings/{pks[next(digits) % len(pks)]}",
            data=json.dumps({"action": "label", "digit": 3}),
            content_type="application/json",
        )

    if not only or "save" in only:
        elapsed, response = timed(save, runs)
        print(f"  {'triage save (a label)':42} {elapsed * 1000:8.0f} ms  HTTP {response.status_code}", flush=True)
    if export:
        export_command(db)
    if download:
        admin_download(db)
    if bulk:
        bulk_action(client)


def child_run(code: str, db: str) -> tuple[float, float, str]:
    """Run `code` in a fresh Python (with Django set up on `db`): (seconds, peak RSS MB, its output)."""
    env = {**os.environ, "DATABASE_URL": server_url(db), "PYTHONPATH": str(REPO)}
    prelude = (
        "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'digitsite.settings.local'); "
        "os.environ.setdefault('DJANGO_SECRET_KEY', 'x'); "
        "os.environ.setdefault('DJANGO_ALLOWED_HOSTS', 'testserver'); django.setup()\n"
    )
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True, cwd=REPO, check=False)
    elapsed = time.perf_counter() - started
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return elapsed, peak, (done.stdout + done.stderr).strip()


def export_command(db: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            f"from django.core.management import call_command\n"
            f"call_command('export_drawings', '--out', {tmp + '/d.npz'!r}, '--include-unreviewed')\n"
        )
        elapsed, peak, out = child_run(code, db)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MB" for p in sorted(Path(tmp).iterdir()))
    line = next((x for x in out.splitlines() if "exported" in x), out[-300:])
    print(f"  export_drawings --include-unreviewed: {elapsed:.1f} s, peak RSS {peak:.0f} MB ({line}; {sizes})", flush=True)


DOWNLOAD = """
import resource, time
from django.contrib.auth import get_user_model
from django.test import Client
c = Client(); c.force_login(get_user_model().objects.get(username={user!r}))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
r = c.post('/admin/recognizer/drawing/', {{'action': 'download_export_with_unreviewed', 'select_across': '1',
           'index': '0', '_selected_action': ['1']}})
first = None; total = 0
for chunk in r.streaming_content:
    if first is None: first = time.perf_counter() - t
    total += len(chunk)
done = time.perf_counter() - t
print(f'HTTP {{r.status_code}}, first byte after {{first:.2f}} s, all {{total / 2**20:.0f}} MB after {{done:.1f}} s, '
      f'memory growth {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base:.0f}} MB')
"""


def admin_download(db: str) -> None:
    _elapsed, peak, out = child_run(DOWNLOAD.format(user=USERNAME), db)
    line = next((x for x in reversed(out.splitlines()) if x.startswith("HTTP")), out[-300:])
    print(f"  admin download, every labelled row: {line} (peak RSS {peak:.0f} MB)", flush=True)


def bulk_action(client: Any) -> None:
    """'Include in training again' (writes every row, changes nothing the other figures read) over the
    ~100,000 drawings predicted as 7, while another connection saves one of them every 50 ms: its
    longest wait is the longest lock the action held."""
    import psycopg

    from recognizer.models import Drawing

    selected = Drawing.objects.filter(predicted_digit=7)
    # a different row each time, spread over the selection (a row saved once moves to the table's
    # end, where the action's scan would reach it last)
    probes = list(selected.order_by("pk").values_list("pk", flat=True)[::200])
    random.Random(0).shuffle(probes)  # in no order: some before the action's scan, some behind it
    probe_pk = probes[0]
    waits: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            for pk in probes:
                if stop.is_set():
                    break
                t = time.perf_counter()
                conn.execute("UPDATE recognizer_drawing SET excluded = false WHERE id = %s", (pk,))
                waits.append(time.perf_counter() - t)
                time.sleep(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    t = time.perf_counter()
    response = client.post(
        "/admin/recognizer/drawing/?predicted_digit__exact=7",
        {"action": "include_in_training", "select_across": "1", "index": "0", "_selected_action": [str(probe_pk)]},
    )
    elapsed = time.perf_counter() - t
    stop.set()
    thread.join()
    print(
        f"  bulk action over {selected.count():,} rows: {elapsed:.1f} s, HTTP {response.status_code}; "
        f"a concurrent save of one of them waited at most {max(waits) * 1000:.0f} ms ({len(waits)} saves)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="bench_1m")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fill", action="store_true")
    parser.add_argument("--migrate", action="store_true")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--export", action="store_true", help="also time export_drawings (full)")
    parser.add_argument("--download", action="store_true", help="also the admin's download of every row")
    parser.add_argument("--bulk", action="store_true", help="also a bulk action over ~100,000 rows")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="only the pages whose name contains this")
    args = parser.parse_args(argv)
    if args.fill:
        fill(args.db, args.rows)
    if args.migrate:
        migrate(args.db)
    if args.measure or not (args.fill or args.migrate):
        setup_django(args.db)
        measure(args.db, export=args.export, download=args.download, bulk=args.bulk, runs=args.runs, only=args.only)


if __name__ == "__main__":
    main()
