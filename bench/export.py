"""Export timing: `manage.py export_drawings` over N stored drawings (issue 13's target: 10,000 in
<= 10 s).

    DATABASE_URL=postgres://... .venv/bin/python bench/export.py [--drawings 10000] [--pending 0.05] [--runs 3]
        [--processes N]

Works in a throwaway database of its own (Django's test database machinery: created, then dropped),
never in the service's. Drawings are page-like: 1-3 strokes of 40-120 points in CSS px on a 280 px
canvas; all labelled and reviewed (an export takes reviewed drawings only by default), a share of
them still waiting for their prediction (no stored 28x28 image, so
the export renders them; `--pending 1` is the worst case). Each run times the command as an operator
runs it (the export decides whether processes render), or with `--processes N` review.export's
export_to_files with N render processes (0: all rendered in the exporting process). Printed with the
figures: the date (UTC) and the cores; for each run the load average before it (other work on the
cores slows the export) and the CPU time it took: this process's, its render processes', and the
database server's when it runs on this machine. Prints figures only (no assertions).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
# Nothing here is signed or served; the settings only refuse to start without some key.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-export-only-signs-nothing")


def page_strokes(rng: np.random.Generator) -> list[list[list[float]]]:
    """Smooth random pen paths, rounded to 0.01 px as the page sends them."""
    strokes = []
    for _ in range(rng.integers(1, 4)):
        n = int(rng.integers(40, 121))
        heading = np.cumsum(rng.normal(0, 0.25, n))
        steps = np.stack([np.cos(heading), np.sin(heading)], axis=1) * rng.uniform(1.5, 3.5)
        points = np.clip(rng.uniform(60, 220, 2) + np.cumsum(steps, axis=0), 0, 280)
        strokes.append(np.round(points, 2).tolist())
    return strokes


def fill(n: int, pending: float, seed: int) -> None:
    from django.utils import timezone

    from recognizer.models import Drawing

    rng = np.random.default_rng(seed)
    now = timezone.now()
    rows = []
    for i in range(n):
        waiting = rng.random() < pending
        rows.append(
            Drawing(
                client_id=f"bench{i}",
                content_hash=f"{i:064x}",
                strokes=page_strokes(rng),
                canvas_width=280.0,
                canvas_height=280.0,
                brush=16.0,
                label=int(rng.integers(0, 10)),
                image28=None if waiting else rng.integers(0, 256, 784, dtype=np.uint8).tobytes(),
                png=None if waiting else b"\x89PNG" + bytes(2000),  # about a drawing's PNG; never read by the export
                predicted_digit=None if waiting else int(rng.integers(0, 10)),
                confidence=None if waiting else float(rng.random()),
                model_name="" if waiting else "cnn-v6",
                predicted_at=None if waiting else now,
                reviewed_at=now,  # exports take reviewed drawings only (by default): every row is exported
            )
        )
    Drawing.objects.bulk_create(rows, batch_size=1000)


def cpu_seconds(server_pid: int | None) -> tuple[float, float, float]:
    """CPU time (user + system) of this process, of its children that have ended, and of the database
    server's process serving this connection (PostgreSQL on this machine; else 0)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    server = 0.0
    try:
        fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        pass
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=10_000)
    parser.add_argument("--pending", type=float, default=0.05, help="share still waiting for a prediction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="render with this many processes (0: in the exporting process); default: the command's choice",
    )
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from review.export import export_to_files
    from review.selectors import drawings_for_export

    how = "the command" if args.processes is None else f"export_to_files(processes={args.processes})"
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; database: {connection.vendor}; "
        f"{args.drawings} drawings, {args.pending:.0%} waiting for a prediction; {how}"
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        started = time.perf_counter()
        fill(args.drawings, args.pending, args.seed)
        print(f"stored in {time.perf_counter() - started:.1f} s (not part of the figure)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "drawings.npz"
            server_pid = None
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    server_pid = cursor.fetchone()[0]
            for run in range(1, args.runs + 1):
                load = "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
                stdout = io.StringIO()
                cpu = cpu_seconds(server_pid)
                started = time.perf_counter()
                if args.processes is None:
                    call_command("export_drawings", "--out", str(out), stdout=stdout)
                else:
                    stdout.write(export_to_files(drawings_for_export(), out, processes=args.processes).describe())
                elapsed = time.perf_counter() - started
                cpu = tuple(after - before for after, before in zip(cpu_seconds(server_pid), cpu))
                sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MB" for p in sorted(Path(tmp).iterdir()))
                print(
                    f"run {run}: {elapsed:.2f} s, CPU {cpu[0]:.2f} s here + {cpu[1]:.2f} s render processes "
                    f"+ {cpu[2]:.2f} s database server "
                    f"({load}; {stdout.getvalue().splitlines()[0]}; {sizes})"
                )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
