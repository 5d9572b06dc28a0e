"""Review in the admin, as a logged-in staff user against the real database: labels edited in place,
each bulk action and each filter by its effect on the rows, sorting by confidence, the thumbnail, the
zip download (reviewed drawings, or with the person's labels when asked; streamed from a file); and the
triage page's JSON API: test_triage_api.py. Who is refused what: test_permissions.py."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import warnings
import zipfile
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.handlers.asgi import ASGIHandler
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from recognizer.models import Drawing
from review import export_zip
from review.admin import DrawingAdmin
from review.downloads import StreamedZipResponse
from review.selectors import drawings_with_effective_label
from review.services import drawings_relabel
from tests.review.drawings import CHANGELIST, fresh, make

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db) -> User:
    """Staff with the drawing permissions a reviewer gets (not a superuser)."""
    user = User.objects.create_user("reviewer", password="a-long-test-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_drawing", "change_drawing"]))
    return user


@pytest.fixture
def client(staff: User) -> Client:
    c = Client()
    c.force_login(staff)
    return c


def listed(client: Client, **params: Any) -> list[int]:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200, response.content[:500]
    return [row.pk for row in response.context["cl"].result_list]


def act(client: Client, action: str, rows: list[Drawing]) -> Any:
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [r.pk for r in rows]})
    assert response.status_code in (200, 302), response.content[:500]
    return response


# ---------------------------------------------------------------- the model


def test_the_reviewers_label_wins_and_the_persons_is_kept() -> None:
    row = make(label=4)
    assert row.effective_label == 4
    drawings_relabel(drawings=Drawing.objects.filter(pk=row.pk), digit=9)
    row = fresh(row)
    assert (row.label, row.review_label, row.effective_label) == (4, 9, 9)
    assert drawings_with_effective_label().get(pk=row.pk).effective == 9
    assert make(label=None).effective_label is None


# ---------------------------------------------------------------- the list


def test_the_list_shows_review_columns_thumbnail_and_the_triage_link(client: Client) -> None:
    row = make(label=2, review_label=5)
    waiting = make(image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None)
    response = client.get(CHANGELIST)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="form-0-review_label"' in html  # editable in place
    assert "data:image/png;base64," in html and "waiting for its prediction" in html
    assert reverse("review:triage") in html
    shown = {r.pk: r for r in response.context["cl"].result_list}
    assert shown[row.pk].effective == 5 and shown[waiting.pk].effective is None


def test_a_label_edited_in_place_is_stored_as_the_reviewers_and_marks_the_row_reviewed(client: Client, staff: User) -> None:
    rows = [make(label=1), make(label=2)]
    page = client.get(CHANGELIST).context["cl"].formset
    data = {f"form-{k}": v for k, v in page.management_form.initial.items()}
    for i, form in enumerate(page.forms):
        data[f"form-{i}-id"] = form.instance.pk
        data[f"form-{i}-review_label"] = "7" if form.instance.pk == rows[0].pk else ""
    response = client.post(CHANGELIST, {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["cl"].formset.errors if response.context else ""
    edited, untouched = fresh(rows[0]), fresh(rows[1])
    assert (edited.label, edited.review_label, edited.reviewed_by, edited.effective_label) == (1, 7, staff, 7)
    assert edited.reviewed_at is not None
    assert untouched.review_label is None and untouched.reviewed_at is None


def test_the_change_form_marks_a_relabelled_drawing_reviewed(client: Client, staff: User) -> None:
    row = make(label=1)
    url = reverse("admin:recognizer_drawing_change", args=[row.pk])
    assert "28×28 image the model saw" in client.get(url).content.decode()
    response = client.post(url, {"review_label": "8", "excluded": "on"})
    assert response.status_code == 302
    row = fresh(row)
    assert (row.review_label, row.excluded, row.reviewed_by, row.label) == (8, True, staff, 1)


def test_sorting_by_confidence(client: Client) -> None:
    for c in (0.7, 0.2, 0.99, 0.5):
        make(confidence=c)
    column = client.get(CHANGELIST).context["cl"].list_display.index("confidence_pct")  # after the checkbox
    up = [Drawing.objects.get(pk=pk).confidence for pk in listed(client, o=str(column))]
    down = [Drawing.objects.get(pk=pk).confidence for pk in listed(client, o=f"-{column}")]
    assert up == [0.2, 0.5, 0.7, 0.99] and down == [0.99, 0.7, 0.5, 0.2]


# ---------------------------------------------------------------- actions


def test_mark_reviewed_keeps_the_labels(client: Client, staff: User) -> None:
    chosen, other = make(label=4), make(label=4)
    act(client, "mark_reviewed", [chosen])
    chosen, other = fresh(chosen), fresh(other)
    assert chosen.reviewed_at is not None and chosen.reviewed_by == staff
    assert (chosen.label, chosen.review_label, chosen.excluded) == (4, None, False)
    assert other.reviewed_at is None


def test_confirm_the_prediction_as_the_label(client: Client, staff: User) -> None:
    right = make(predicted_digit=6, label=None)
    pending = make(predicted_digit=None, confidence=None, predicted_at=None, image28=None, png=None)
    act(client, "confirm_prediction", [right, pending])
    right, pending = fresh(right), fresh(pending)
    assert (right.review_label, right.effective_label, right.reviewed_by) == (6, 6, staff)
    assert pending.review_label is None and pending.reviewed_at is None  # nothing to confirm


@pytest.mark.parametrize("digit", range(10))
def test_relabel_as_each_digit(client: Client, staff: User, digit: int) -> None:
    rows = [make(label=(digit + 1) % 10), make(label=None, excluded=True)]
    untouched = make(label=(digit + 1) % 10)
    act(client, f"relabel_as_{digit}", rows)
    for row in map(fresh, rows):
        assert (row.review_label, row.effective_label, row.excluded, row.reviewed_by) == (digit, digit, False, staff)
    assert fresh(rows[0]).label == (digit + 1) % 10  # the person's word is kept
    assert fresh(untouched).review_label is None


def test_exclude_from_training_and_include_again(client: Client, staff: User) -> None:
    row, other = make(label=3), make(label=3)
    act(client, "exclude_from_training", [row])
    assert fresh(row).excluded and fresh(row).reviewed_by == staff and fresh(row).label == 3
    assert not fresh(other).excluded
    act(client, "include_in_training", [row])
    assert not fresh(row).excluded


@pytest.fixture
def exporter(staff: User) -> User:
    staff.user_permissions.add(Permission.objects.get(codename="export_drawing"))
    return User.objects.get(pk=staff.pk)  # the permission cache starts afresh


def summary_of(response: Any) -> str:
    """The export's summary: the streamed zip's comment (read to its end)."""
    with zipfile.ZipFile(io.BytesIO(response.content_read)) as zf:
        return zf.comment.decode()


def downloaded(response: Any) -> tuple[dict[str, np.ndarray], list[dict], list[dict[str, str]]]:
    """The zip streamed as it is made (never built in the response's memory): npz, strokes, manifest."""
    assert response.streaming and isinstance(response, StreamedZipResponse)
    response.content_read = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(response.content_read)) as zf:
        assert sorted(zf.namelist()) == ["drawings.csv", "drawings.npz", "drawings.strokes.jsonl"]
        with np.load(io.BytesIO(zf.read("drawings.npz"))) as npz:
            data = {k: npz[k] for k in npz.files}
        lines = [json.loads(line) for line in zf.read("drawings.strokes.jsonl").decode().splitlines()]
        manifest = list(csv.DictReader(io.StringIO(zf.read("drawings.csv").decode())))
    return data, lines, manifest


def test_download_export_gives_a_zip_of_the_selected_kept_reviewed_drawings(exporter: User) -> None:
    client = Client()
    client.force_login(exporter)
    now = timezone.now()
    kept, relabelled = make(label=1, reviewed_at=now), make(label=5, review_label=6, reviewed_at=now)
    excluded, unreviewed, unchosen = make(label=2, excluded=True, reviewed_at=now), make(label=4), make(label=3)
    response = act(client, "download_export", [kept, relabelled, excluded, unreviewed])
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="drawings-')
    data, lines, manifest = downloaded(response)
    assert "1 not reviewed" in summary_of(response)
    assert data["ids"].tolist() == [kept.pk, relabelled.pk] and data["labels"].tolist() == [1, 6]
    assert bytes(data["images"][0]) == bytes(kept.image28)
    assert [line["id"] for line in lines] == [kept.pk, relabelled.pk]
    assert [r["label_source"] for r in manifest] == ["person-reviewed", "reviewer"]
    assert unchosen.pk not in data["ids"] and unreviewed.pk not in data["ids"]


@pytest.mark.django_db(transaction=True)  # the blocks are made in the ASGI handler's thread: committed rows
def test_under_asgi_the_download_is_sent_a_block_at_a_time(exporter: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """What daphne does with the response: Django's ASGI handler iterates it asynchronously, a block
    as soon as it is made. A plain synchronous iterator would be read whole into a list first (with a
    warning): the zip in memory, and nothing sent until the export is done."""
    monkeypatch.setattr(export_zip, "STREAM_BLOCK", 200)  # many blocks for a small zip
    monkeypatch.setattr(export_zip, "COPY_BUFFER", 200)  # the npz copied into the zip 200 bytes at a time
    rows = [make(label=n % 10, reviewed_at=timezone.now()) for n in range(20)]
    request = RequestFactory().post(CHANGELIST)
    request.user = exporter
    response = DrawingAdmin(Drawing, admin.site).download_export(request, Drawing.objects.filter(label__isnull=False))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    handler = ASGIHandler()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="StreamingHttpResponse must consume synchronous iterators")
        asyncio.run(handler.send_response(response, send))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert len(bodies) >= 5
    with zipfile.ZipFile(io.BytesIO(b"".join(bodies))) as zf, np.load(io.BytesIO(zf.read("drawings.npz"))) as npz:
        assert npz["ids"].tolist() == [r.pk for r in rows]


def test_download_with_unreviewed_says_whose_label_each_is(exporter: User) -> None:
    client = Client()
    client.force_login(exporter)
    kept, unreviewed = make(label=1, reviewed_at=timezone.now()), make(label=4)
    response = act(client, "download_export_with_unreviewed", [kept, unreviewed])
    assert "-with-unreviewed.zip" in response["Content-Disposition"]
    data, _, manifest = downloaded(response)
    assert "1 of them with the person's label alone" in summary_of(response)
    assert data["ids"].tolist() == [kept.pk, unreviewed.pk] and data["labels"].tolist() == [1, 4]
    assert [r["label_source"] for r in manifest] == ["person-reviewed", "person-unreviewed"]


# ---------------------------------------------------------------- filters


def test_filter_reviewed_or_not(client: Client) -> None:
    done, todo = make(reviewed_at=timezone.now()), make()
    assert listed(client, reviewed="yes") == [done.pk]
    assert listed(client, reviewed="no") == [todo.pk]


def test_filter_labelled_or_not(client: Client) -> None:
    person, reviewer, both, none = make(label=1), make(review_label=2), make(label=3, review_label=4), make()
    assert set(listed(client, labelled="yes")) == {person.pk, reviewer.pk, both.pk}
    assert set(listed(client, labelled="person")) == {person.pk, both.pk}
    assert set(listed(client, labelled="reviewer")) == {reviewer.pk, both.pk}
    assert listed(client, labelled="no") == [none.pk]


def test_filter_label_against_prediction(client: Client) -> None:
    wrong = make(predicted_digit=3, label=5)
    fixed = make(predicted_digit=3, label=3, review_label=8)  # the reviewer's label counts
    right = make(predicted_digit=3, label=3)
    make(predicted_digit=3, label=None)
    make(predicted_digit=None, confidence=None, label=4)
    assert set(listed(client, agreement="wrong")) == {wrong.pk, fixed.pk}
    assert listed(client, agreement="right") == [right.pk]


def test_filter_by_the_label_used(client: Client) -> None:
    person, reviewer = make(label=5), make(label=2, review_label=5)
    make(label=5, review_label=2)
    assert set(listed(client, effective="5")) == {person.pk, reviewer.pk}


def test_filter_uncertain(client: Client) -> None:
    flagged, sure = make(uncertain=True, reason="scribble"), make()
    assert listed(client, uncertain__exact="1") == [flagged.pk]
    assert listed(client, uncertain__exact="0") == [sure.pk]


@pytest.mark.parametrize(
    ("band", "inside", "outside"),
    [
        ("lt50", [0.1, 0.4999], [0.5, 0.9]),
        ("50-80", [0.5, 0.79], [0.4999, 0.8]),
        ("80-95", [0.8, 0.9499], [0.79, 0.95]),
        ("95-99", [0.95, 0.985], [0.9499, 0.99]),
        ("99+", [0.99, 1.0], [0.985, 0.5]),
    ],
)
def test_filter_confidence_bands(client: Client, band: str, inside: list[float], outside: list[float]) -> None:
    wanted = {make(confidence=c).pk for c in inside}
    for c in outside:
        make(confidence=c)
    make(confidence=None, predicted_digit=None, predicted_at=None)
    assert set(listed(client, confidence=band)) == wanted


def test_filter_by_model(client: Client) -> None:
    v6, v5 = make(model_name="cnn-v6"), make(model_name="cnn-v5")
    assert listed(client, model_name="cnn-v5") == [v5.pk]
    assert listed(client, model_name="cnn-v6") == [v6.pk]


def test_filter_by_date(client: Client) -> None:
    old, new = make(), make()
    Drawing.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    # the parameters the filter's "Today" and "Past 7 days" links send
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert listed(client, created_at__gte=today.isoformat(), created_at__lt=(today + timedelta(days=1)).isoformat()) == [new.pk]
    assert listed(client, created_at__lt=(today - timedelta(days=7)).isoformat()) == [old.pk]


def test_filter_excluded_and_waiting(client: Client) -> None:
    out, waiting = make(excluded=True), make(predicted_at=None, predicted_digit=None, confidence=None)
    assert listed(client, excluded__exact="1") == [out.pk]
    assert listed(client, prediction="waiting") == [waiting.pk]


def test_an_action_applies_to_every_row_of_a_filter_with_select_across(client: Client) -> None:
    wrong = [make(predicted_digit=3, label=5) for _ in range(3)]
    right = make(predicted_digit=3, label=3)
    response = client.post(
        f"{CHANGELIST}?agreement=wrong",
        {"action": "mark_reviewed", "select_across": "1", "index": "0", "_selected_action": [wrong[0].pk]},
    )
    assert response.status_code == 302
    assert all(fresh(r).reviewed_at is not None for r in wrong) and fresh(right).reviewed_at is None
