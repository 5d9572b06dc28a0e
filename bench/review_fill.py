"""bench/review_scale.py's database: made on the server of DATABASE_URL (the bench's own, never the service's),
migrated, and filled with N realistic drawings from a pool of rendered UJI pen digits (bench/review_scale.py's
docstring says what the rows are like)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

BATCH = 100_000
MODELS = ("cnn-v6", "cnn-v7", "cnn-v8")  # one after the other, a third of the 90 days each
DAYS = 90
USERNAME = "bench-admin"


def server_url(db: str) -> str:
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(base)
    return parts._replace(path=f"/{db}").geturl()


def setup_django(db: str) -> None:
    os.environ["DATABASE_URL"] = server_url(db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
    os.environ.setdefault("DJANGO_SECRET_KEY", "the-bench-signs-nothing")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    import django

    django.setup()


def pool_rows() -> list[tuple[int, str, bytes, bytes, str]]:
    """(label, strokes JSON, image28, PNG, probabilities JSON) of the UJI dev digits, three variants each."""
    import numpy as np

    from digits.data.uji import BRUSH, CANVAS, fit_to_canvas, load_dev
    from digits.inference.render import drawing_png, strokes_to_mnist

    rng = np.random.default_rng(0)
    out = []
    for digit in load_dev():
        for fill in (0.6, 0.7, 0.8):
            strokes = fit_to_canvas(digit.strokes, CANVAS, fill)
            shift = rng.uniform(-15, 15, 2)
            strokes = [
                [[round(min(max(x + shift[0], 0), 280), 1), round(min(max(y + shift[1], 0), 280), 1)] for x, y in s]
                for s in strokes
            ]
            image = strokes_to_mnist(strokes, CANVAS, BRUSH)
            image28 = (
                np.zeros(784, np.uint8) if image is None else np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
            ).tobytes()
            png = drawing_png(strokes, CANVAS, BRUSH)
            p = rng.dirichlet(np.full(10, 0.05))
            p[digit.label] += 1.0
            p /= p.sum()
            out.append(
                (
                    digit.label,
                    json.dumps(strokes, separators=(",", ":")),
                    image28,
                    png,
                    json.dumps([round(float(v), 6) for v in p]),
                )
            )
    return out


def create_database(db: str) -> None:
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(f'CREATE DATABASE "{db}"')


FILL_SQL = """
INSERT INTO recognizer_drawing (client_id, content_hash, strokes, canvas_width, canvas_height, brush, image28, png,
    predicted_digit, confidence, probabilities, uncertain, reason, model_name, label, review_label, reviewed_at,
    reviewed_by_id, excluded, latency_ms, created_at, predicted_at, prediction_attempts)
SELECT
    'page-' || md5(g::text), md5(g::text) || md5((-g)::text), p.strokes::jsonb, 280, 280, 15.8,
    CASE WHEN waiting THEN NULL ELSE p.image28 END, CASE WHEN waiting THEN NULL ELSE p.png END,
    CASE WHEN waiting THEN NULL WHEN wrong THEN (p.label + 1 + floor(r5 * 9)::int) %% 10 ELSE p.label END,
    CASE WHEN waiting THEN NULL ELSE conf END,
    CASE WHEN waiting THEN NULL ELSE p.probabilities::jsonb END,
    NOT waiting AND conf < 0.5, CASE WHEN NOT waiting AND conf < 0.5 THEN 'low confidence' ELSE '' END,
    CASE WHEN waiting THEN '' ELSE (%(models)s::text[])[1 + least(2, floor(3 * (g - 1)::float8 / %(n)s)::int)] END,
    CASE WHEN r6 < 0.30 THEN CASE WHEN r7 < 0.02 THEN (p.label + 5) %% 10 ELSE p.label END END,
    CASE WHEN reviewed AND r8 < 0.6 THEN p.label END,
    CASE WHEN reviewed THEN made + interval '1 day' END,
    CASE WHEN reviewed THEN %(reviewer)s::int END,
    reviewed AND r8 > 0.98,
    CASE WHEN waiting THEN NULL ELSE 20 + 200 * r5 END,
    made, CASE WHEN waiting THEN NULL ELSE made + interval '0.2 seconds' END, CASE WHEN waiting THEN 0 ELSE 1 END
FROM (
    SELECT g, r5, r6, r7, r8, r1 < 0.01 AS waiting, r9 < 0.05 AS reviewed,
        %(start)s::timestamptz + (g - 1) * (interval '1 day' * %(days)s / %(n)s) + r5 * interval '1 second' AS made,
        conf, r4 < (1 - conf) AS wrong
    FROM (
        SELECT g, random() AS r1, random() AS r4, random() AS r5, random() AS r6, random() AS r7, random() AS r8,
            random() AS r9,
            CASE WHEN r2 < 0.80 THEN 0.99 + 0.00999 * r3 WHEN r2 < 0.82 THEN 0.15 + 0.35 * r3
                 ELSE 0.5 + 0.49 * r3 END AS conf
        FROM (SELECT g, random() AS r2, random() AS r3 FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g) a
    ) b
) s
JOIN bench_pool p ON p.k = s.g %% %(pool)s
ORDER BY g
"""


def fill(db: str, rows: int) -> None:
    import psycopg
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    create_database(db)
    setup_django(db)
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_staff": True, "is_superuser": True})
    user.is_staff = user.is_superuser = True
    user.set_password("bench")
    user.save()
    started = time.perf_counter()
    pool = pool_rows()
    print(f"pool: {len(pool)} rendered UJI digits in {time.perf_counter() - started:.1f} s")
    with psycopg.connect(server_url(db), autocommit=True) as conn:
        conn.execute("TRUNCATE recognizer_drawing RESTART IDENTITY")
        conn.execute("DROP TABLE IF EXISTS bench_pool")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_pool (k int, label int, strokes text, image28 bytea, png bytea, probabilities text)"
        )
        with conn.cursor().copy("COPY bench_pool FROM STDIN") as copy:
            for k, row in enumerate(pool):
                copy.write_row((k, *row))
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
        for lo in range(1, rows + 1, BATCH):
            hi = min(rows, lo + BATCH - 1)
            t = time.perf_counter()
            conn.execute(
                FILL_SQL,
                {
                    "lo": lo,
                    "hi": hi,
                    "n": rows,
                    "pool": len(pool),
                    "start": start,
                    "days": DAYS,
                    "models": list(MODELS),
                    "reviewer": user.pk,
                },
            )
            print(f"rows {lo:,}-{hi:,}: {time.perf_counter() - t:.1f} s", flush=True)
        conn.execute("DROP TABLE bench_pool")
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE recognizer_drawing")
        print(f"VACUUM ANALYZE: {time.perf_counter() - t:.1f} s")
        size = conn.execute(
            "SELECT pg_size_pretty(pg_table_size('recognizer_drawing')), "
            "pg_size_pretty(pg_indexes_size('recognizer_drawing')), "
            "pg_relation_size('recognizer_drawing') / greatest(1, count(*)) FROM recognizer_drawing"
        ).fetchone()
    print(
        f"filled {rows:,} rows in {time.perf_counter() - started:.0f} s; table {size[0]} (heap {size[2]} B a row), "
        f"indexes {size[1]}"
    )


def migrate(db: str) -> None:
    from django.core.management import call_command

    setup_django(db)
    started = time.perf_counter()
    call_command("migrate", verbosity=1)
    print(f"migrated in {time.perf_counter() - started:.1f} s")
