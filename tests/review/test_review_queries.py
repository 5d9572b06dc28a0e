"""The review side's queries keep their shape at a million drawings (docs/scale.md): each page runs a
bounded number of queries whatever the filter, none that reads the whole table for the sidebar (no
SELECT DISTINCT, no date hierarchy, no facet counts, no LIKE search), and on PostgreSQL the queries
that would otherwise scan are answered from their index (EXPLAIN with sequential scans priced out:
the test tables are small, so the planner would rightly scan them; what is checked is that the
query is written so that the index CAN answer it: same expression, a condition that implies the
partial index's). Actions over a large selection write it in chunks.

The figures at 1M drawings: bench/review_scale.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recognizer.models import Drawing
from review import admin as drawing_admin
from review import admin_list, selectors, services
from tests.review.drawings import CHANGELIST, make

pytestmark = pytest.mark.django_db
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="EXPLAIN of PostgreSQL's plans")

# the filters of the list, each as its link sends it
FILTERS: list[dict[str, str]] = [
    {},
    {"reviewed": "yes"},
    {"reviewed": "no"},
    {"labelled": "yes"},
    {"labelled": "person"},
    {"labelled": "reviewer"},
    {"labelled": "no"},
    {"agreement": "wrong"},
    {"agreement": "right"},
    {"uncertain__exact": "1"},
    {"confidence": "lt50"},
    {"confidence": "99+"},
    {"prediction": "waiting"},
    {"effective": "7"},
    {"predicted_digit__exact": "7"},
    {"label__exact": "7"},
    {"excluded__exact": "1"},
    {"model_name": "cnn-v6"},
    {"o": "4"},
    {"o": "-4"},
    {"q": "d1"},
    {"q": "12"},
    {"_facets": "True"},
]
# session, user, the page's rows, its count (PostgreSQL: EXPLAIN, then maybe an exact count under a timeout,
# set and reset), the serving choices for the model filter, the list_editable formset: a page is a dozen
# queries whatever the filter, and never one per row
LIST_QUERIES = 14


@pytest.fixture
def superuser(db: Any) -> User:
    return User.objects.create_superuser("admin", password="a-long-test-password")


@pytest.fixture
def su_client(superuser: User) -> Client:
    c = Client()
    c.force_login(superuser)
    return c


@pytest.fixture
def rows(db: Any) -> list[Drawing]:
    out = [
        make(
            label=d % 10,
            predicted_digit=(d * 3) % 10,
            confidence=0.3 + d / 40,
            model_name=f"cnn-v{5 + d % 2}",
            reviewed_at=timezone.now() if d % 4 == 0 else None,
            excluded=d == 5,
        )
        for d in range(20)
    ]
    out.append(make(predicted_at=None, predicted_digit=None, confidence=None, model_name=""))
    return out


@pytest.fixture
def no_seqscan(rows: list[Drawing]) -> None:
    """Sequential scans priced out for the test's transaction (PostgreSQL), the rows' statistics fresh."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recognizer_drawing")
        cursor.execute("SET LOCAL enable_seqscan = off")


@pytest.fixture
def index_order(no_seqscan: None) -> None:
    """Bitmap scans priced out too: what is left is an index scan, in the index's order where the
    query's order is the index's."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_bitmapscan = off")


def only_indexes(prefix: str) -> None:
    """Every other index of the drawings dropped for the test's transaction (rolled back after it),
    but the primary key and the unique constraint's: on a table of a few rows the planner picks any
    index; what is checked is that the query CAN be answered from the ones named (its condition
    implies theirs, its columns are theirs)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'recognizer_drawing'")
        for (name,) in cursor.fetchall():
            if not name.startswith(prefix) and not name.endswith("_pkey") and name != "drawing_once_per_content":
                cursor.execute(f'DROP INDEX "{name}"')


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(r[0] for r in cursor.fetchall())


def the_query(queries: CaptureQueriesContext, pattern: str) -> str:
    """The one captured query matching `pattern` (a regular expression)."""
    found = [q["sql"] for q in queries.captured_queries if re.search(pattern, q["sql"], re.S)]
    assert len(found) == 1, (pattern, [q["sql"][:200] for q in queries.captured_queries])
    return found[0]


# ---------------------------------------------------------------- the admin's list


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_every_list_page_is_a_few_queries_none_reading_the_table_for_the_sidebar(
    su_client: Client, rows: list[Drawing], params: dict[str, str]
) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = su_client.get(CHANGELIST, params)
    assert response.status_code == 200
    sqls = [q["sql"] for q in queries.captured_queries]
    assert len(sqls) <= LIST_QUERIES, sqls
    for sql in sqls:
        assert "DISTINCT" not in sql.upper(), sql  # the model filter's choices: from the cards
        assert not re.search(r"DATE_TRUNC|django_date", sql, re.I), sql  # no date hierarchy
        assert not re.search(r"UPPER\(|LIKE", sql), sql  # search: exact matches only
        assert "FILTER (WHERE" not in sql, sql  # no facets
    counts = [s for s in sqls if re.search(r"SELECT COUNT\(\*\)", s, re.I) and "recognizer_drawing" in s]
    assert len(counts) <= 1, counts  # no full-table count beside the filtered one (show_full_result_count)


def test_the_count_is_the_planners_estimate_when_large(
    su_client: Client, rows: list[Drawing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_list, "EXACT_COUNT_UP_TO", -1)  # every list "large"
    with CaptureQueriesContext(connection) as queries:
        response = su_client.get(CHANGELIST)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if re.search(r"COUNT\(\*\)", q["sql"], re.I)]
    if connection.vendor == "postgresql":
        assert counts == [] and any(q["sql"].startswith("EXPLAIN") for q in queries.captured_queries)
        assert response.context["cl"].paginator.estimated
    else:  # other databases count exactly
        assert response.context["cl"].result_count == len(rows)


def test_a_small_filtered_list_is_counted_exactly(su_client: Client, rows: list[Drawing]) -> None:
    response = su_client.get(CHANGELIST, {"reviewed": "yes"})
    assert response.context["cl"].result_count == Drawing.objects.filter(reviewed_at__isnull=False).count() == 5
    assert not response.context["cl"].paginator.estimated


def test_search_is_an_exact_id_or_client_id_and_says_so(su_client: Client, rows: list[Drawing]) -> None:
    one = rows[3]
    by_client = su_client.get(CHANGELIST, {"q": one.client_id})
    assert [r.pk for r in by_client.context["cl"].result_list] == [one.pk]
    by_id = su_client.get(CHANGELIST, {"q": str(one.pk)})
    assert one.pk in [r.pk for r in by_id.context["cl"].result_list]
    assert [r.pk for r in su_client.get(CHANGELIST, {"q": one.client_id[:-1] + "x"}).context["cl"].result_list] == []
    assert b"no partial matches" in by_client.content  # the search box's help
    assert "date_hierarchy" not in by_client.context or not by_client.context["cl"].date_hierarchy


def test_the_model_filter_offers_the_models_of_the_cards(su_client: Client, rows: list[Drawing]) -> None:
    response = su_client.get(CHANGELIST)
    model_filter = next(f for f in response.context["cl"].filter_specs if getattr(f, "parameter_name", "") == "model_name")
    offered = {value for value, _ in model_filter.lookup_choices}
    assert {v.name for v in selectors.model_versions()} <= offered


@postgres_only
@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"o": "4"}, "drawing_confidence"),
        ({"o": "-4"}, "drawing_confidence"),
        ({"excluded__exact": "1"}, "drawing_excluded"),
    ],
)
def test_the_list_reads_its_index(
    su_client: Client, rows: list[Drawing], index_order: None, params: dict[str, str], index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drawing_admin.DrawingAdmin, "list_per_page", 2)  # a page of a longer list: LIMIT 2
    with CaptureQueriesContext(connection) as queries:
        su_client.get(CHANGELIST, params)
    page = the_query(queries, r'^SELECT "recognizer_drawing"\."id".*ORDER BY')
    assert index in plan(page), plan(page)


@postgres_only
def test_the_model_filter_starts_at_the_models_newest_drawing(su_client: Client, rows: list[Drawing], index_order: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = su_client.get(CHANGELIST, {"model_name": "cnn-v5"})
    assert {r.model_name for r in response.context["cl"].result_list} == {"cnn-v5"}
    newest = the_query(queries, r'MAX\("recognizer_drawing"\."id"\)')
    assert "Index Only Scan Backward using drawing_model_id" in plan(newest) or "drawing_model_id" in plan(newest)
    page = the_query(queries, r'^SELECT "recognizer_drawing"\."id".*ORDER BY')
    newest_pk = max(r.pk for r in rows if r.model_name == "cnn-v5")
    assert f'"recognizer_drawing"."id" <= {newest_pk}' in page


@postgres_only
def test_search_by_id_reads_the_primary_key(su_client: Client, rows: list[Drawing], no_seqscan: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        su_client.get(CHANGELIST, {"q": str(rows[2].pk)})
    page = the_query(queries, r'^SELECT "recognizer_drawing"\."id".*ORDER BY')
    assert re.search(r"BitmapOr.*drawing_once_per_content.*recognizer_drawing_pkey", plan(page), re.S), plan(page)


@postgres_only
def test_search_by_client_id_reads_its_unique_index(su_client: Client, rows: list[Drawing], index_order: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        su_client.get(CHANGELIST, {"q": rows[2].client_id})
    page = the_query(queries, r'^SELECT "recognizer_drawing"\."id".*ORDER BY')
    assert "Index Scan using drawing_once_per_content" in plan(page), plan(page)


# ---------------------------------------------------------------- actions in chunks


def test_an_action_over_a_large_selection_writes_it_in_chunks(
    su_client: Client, rows: list[Drawing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "ACTION_CHUNK", 4)
    unreviewed = Drawing.objects.filter(reviewed_at__isnull=True).count()
    with CaptureQueriesContext(connection) as queries:
        response = su_client.post(
            f"{CHANGELIST}?reviewed=no",
            {"action": "relabel_as_7", "select_across": "1", "index": "0", "_selected_action": [rows[1].pk]},
        )
    assert response.status_code == 302
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == -(-unreviewed // 4)  # one UPDATE per chunk of 4 rows
    assert all(sql.count("%s") == 0 and "IN (" in sql for sql in updates)
    assert Drawing.objects.filter(review_label=7, reviewed_at__isnull=False).count() == unreviewed
    assert not Drawing.objects.filter(reviewed_at__isnull=True).exists()


def test_confirming_in_chunks_still_says_how_many_had_no_prediction(
    su_client: Client, rows: list[Drawing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "ACTION_CHUNK", 3)
    response = su_client.post(
        CHANGELIST,
        {"action": "confirm_prediction", "select_across": "1", "index": "0", "_selected_action": [rows[0].pk]},
        follow=True,
    )
    assert "20 predictions confirmed as labels (1 without a prediction left alone)" in response.content.decode()


# ---------------------------------------------------------------- triage


def test_the_queue_and_a_save_are_a_few_queries(
    su_client: Client, rows: list[Drawing], django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(5):  # session, user, the page, the remaining count (a capped one)
        page = su_client.get("/review/api/queue", {"order": "confidence", "limit": 5}).json()
    assert page["remaining"] == Drawing.objects.filter(reviewed_at__isnull=True, excluded=False).count() == 15
    assert page["remaining_estimated"] is False
    with django_assert_max_num_queries(6):  # session, user, the UPDATE, the row, the remaining count
        saved = su_client.post(
            f"/review/api/drawings/{page['items'][0]['id']}",
            json.dumps({"action": "label", "digit": 4}),
            content_type="application/json",
        )
    assert saved.status_code == 200 and saved.json()["remaining"] == 14


def test_a_large_queue_is_counted_by_estimate(su_client: Client, rows: list[Drawing], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "COUNT_UP_TO", 3)
    page = su_client.get("/review/api/queue", {"order": "confidence", "limit": 5}).json()
    if connection.vendor == "postgresql":
        assert page["remaining_estimated"] is True and page["remaining"] >= 4  # at least what it counted
    else:
        assert page["remaining_estimated"] is False and page["remaining"] == 15


@postgres_only
@pytest.mark.parametrize("order", ["confidence", "oldest"])
def test_the_queue_reads_the_partial_index_of_the_rows_waiting_for_review(
    su_client: Client, rows: list[Drawing], index_order: None, order: str
) -> None:
    with CaptureQueriesContext(connection) as queries:
        first = su_client.get("/review/api/queue", {"order": order, "limit": 3}).json()
        su_client.get("/review/api/queue", {"order": order, "limit": 3, "after": first["next"]})
    pages = [q["sql"] for q in queries.captured_queries if re.search(r'FROM "recognizer_drawing".*LIMIT 3', q["sql"])]
    assert len(pages) == 2
    if order == "confidence":  # read in the queue's order from its index, never sorted
        for sql in pages:
            assert "Index Scan using drawing_triage" in plan(sql) and "Sort" not in plan(sql), plan(sql)
        # the next page starts where the cursor is, rather than filtering every row before it
        assert "Index Cond: (COALESCE" in plan(pages[1]), plan(pages[1])
    else:  # the primary key or the partial index: never the table
        assert all("Seq Scan" not in plan(sql) for sql in pages)


@postgres_only
def test_the_remaining_count_reads_only_the_partial_index(rows: list[Drawing], no_seqscan: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        selectors.remaining_to_review()
    only_indexes("drawing_triage")
    assert "drawing_triage" in plan(queries.captured_queries[0]["sql"])


# ---------------------------------------------------------------- dashboard and models page


def test_the_dashboard_is_three_grouped_queries(su_client: Client, rows: list[Drawing]) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert su_client.get("/review/dashboard/").status_code == 200
    grouped = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"]]
    assert len(grouped) == 3, grouped
    with CaptureQueriesContext(connection) as queries:
        assert su_client.get("/review/dashboard/confusion.png").status_code == 200
    assert len([q for q in queries.captured_queries if "recognizer_drawing" in q["sql"]]) == 1


@postgres_only
@pytest.mark.parametrize("url", ["/review/dashboard/", "/review/dashboard/confusion.png", "/review/models/"])
def test_the_scores_are_index_only_scans(su_client: Client, rows: list[Drawing], index_order: None, url: str) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert su_client.get(url).status_code == 200
    grouped = [q["sql"] for q in queries.captured_queries if "recognizer_drawing" in q["sql"]]
    assert grouped
    only_indexes("drawing_scored")
    for sql in grouped:
        explained = plan(sql)
        assert "Index Only Scan using drawing_scored" in explained, explained


# ---------------------------------------------------------------- the migrations


@pytest.mark.parametrize("name", ["0007_review_at_scale", "0008_effective_label_index"])
def test_the_indexes_are_built_concurrently_outside_a_transaction(name: str) -> None:
    """A million rows stay writable while the indexes are built (CREATE INDEX CONCURRENTLY, which
    cannot run in a transaction); other databases get a plain CREATE INDEX."""
    from importlib import import_module

    from django.contrib.postgres.operations import AddIndexConcurrently

    migration = import_module(f"recognizer.migrations.{name}").Migration
    assert migration.atomic is False
    assert migration.operations and all(isinstance(op, AddIndexConcurrently) for op in migration.operations)


def test_the_rows_are_narrow_on_postgresql_and_old_ones_compacted_in_batches(rows: list[Drawing]) -> None:
    """Migration 0009: the bulky columns leave the row from 256 bytes on (PostgreSQL's
    toast_tuple_target); compact_drawings rewrites the rows stored before, a batch of ids at a time."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command("compact_drawings", "--batch", "5", "--pause", "0", stdout=out)
    if connection.vendor != "postgresql":
        assert "nothing to do" in out.getvalue()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'recognizer_drawing'")
        assert "toast_tuple_target=256" in cursor.fetchone()[0]
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    top = max(r.pk for r in rows)
    assert len(updates) == -(-top // 5)  # one short UPDATE per 5 ids
    assert f"{Drawing.objects.filter(png__isnull=False).count()} drawings rewritten" in out.getvalue()
