"""How the model is doing: accuracy on reviewed drawings per model and per week, agreement on every
labelled drawing, the confusion matrix (counts and its PNG), for staff who may view drawings."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from recognizer.models import Drawing
from review import dashboard, selectors
from review.selectors import Score

pytestmark = pytest.mark.django_db

_ids = itertools.count()
WEEK1 = datetime(2026, 11, 10, 12, tzinfo=UTC)  # a Tuesday: its week starts Monday 2026-11-09
WEEK2 = datetime(2026, 11, 18, 12, tzinfo=UTC)  # week of 2026-11-16


def make(
    model: str,
    predicted: int | None,
    *,
    label: int | None = None,
    review: int | None = None,
    reviewed: bool = True,
    at: datetime = WEEK2,
    **fields: Any,
) -> Drawing:
    n = next(_ids)
    row = Drawing.objects.create(
        **{
            "client_id": f"d{n}",
            "content_hash": f"h{n}",
            "strokes": [[[1.0, 1.0]]],
            "canvas_width": 280.0,
            "canvas_height": 280.0,
            "brush": 16.0,
            "predicted_digit": predicted,
            "confidence": 0.9,
            "model_name": model,
            "predicted_at": timezone.now() if predicted is not None else None,
            "label": label,
            "review_label": review,
            "reviewed_at": timezone.now() if reviewed else None,
            **fields,
        }
    )
    Drawing.objects.filter(pk=row.pk).update(created_at=at)  # auto_now_add: set afterwards
    return row


@pytest.fixture
def drawings() -> None:
    # cnn-v5, week 1: 3 reviewed, 2 right (a 7 read as 1)
    make("cnn-v5", 3, review=3, at=WEEK1)
    make("cnn-v5", 4, label=4, at=WEEK1)  # the person's label, let stand by the reviewer
    make("cnn-v5", 1, label=1, review=7, at=WEEK1)  # the reviewer's label wins: wrong
    # cnn-v6, week 2: 4 reviewed, 3 right (a 9 read as 4)
    for d in (0, 8, 8):
        make("cnn-v6", d, review=d)
    make("cnn-v6", 4, review=9)
    # in the agreement only: labelled by the person, never reviewed
    make("cnn-v6", 5, label=5, reviewed=False)
    make("cnn-v6", 2, label=3, reviewed=False)
    # in neither
    make("cnn-v6", 6, review=6, excluded=True)  # excluded from training
    make("cnn-v6", None, review=2)  # still waiting for its prediction
    make("cnn-v6", 1)  # reviewed, but no label at all


def test_accuracy_per_model_counts_reviewed_labelled_drawings_only(drawings: None) -> None:
    assert selectors.score_per_model(selectors.reviewed_drawings()) == {"cnn-v5": Score(3, 2), "cnn-v6": Score(4, 3)}
    assert selectors.score_total(selectors.reviewed_drawings()) == Score(7, 5)


def test_agreement_counts_every_labelled_drawing_reviewed_or_not(drawings: None) -> None:
    assert selectors.score_per_model(selectors.labelled_drawings()) == {"cnn-v5": Score(3, 2), "cnn-v6": Score(6, 4)}
    assert selectors.score_total(selectors.labelled_drawings()) == Score(9, 6)


def test_accuracy_per_week_and_model_newest_week_first(drawings: None) -> None:
    weeks = selectors.score_per_week(selectors.reviewed_drawings())
    assert [w.isoformat() for w in weeks] == ["2026-11-16", "2026-11-09"]
    assert list(weeks.values()) == [{"cnn-v6": Score(4, 3)}, {"cnn-v5": Score(3, 2)}]


def test_the_confusion_matrix_has_labels_in_rows_and_predictions_in_columns(drawings: None) -> None:
    cm = selectors.confusion(selectors.reviewed_drawings())
    expected = [[0] * 10 for _ in range(10)]
    for label, predicted in [(3, 3), (4, 4), (7, 1), (0, 0), (8, 8), (8, 8), (9, 4)]:
        expected[label][predicted] += 1
    assert cm == expected


def test_the_confusion_png_shows_right_answers_green_and_errors_red() -> None:
    cm = [[0] * 10 for _ in range(10)]
    cm[8][8], cm[9][4], cm[9][9] = 5, 1, 1
    img = Image.open(io.BytesIO(dashboard.confusion_png(cm, "t"))).convert("RGB")
    cell, margin, top = 44, 40, 60

    def colour(row: int, col: int) -> tuple[int, int, int]:
        return img.getpixel((margin + col * cell + 3, top + row * cell + 3))

    r, g, b = colour(8, 8)
    assert g > r and g > b  # all of row 8 right: green
    r, g, b = colour(9, 4)
    assert r == 255 and g < 200  # half of row 9 wrong: red
    assert colour(2, 5) == (255, 255, 255)  # nothing: white


# ---------------------------------------------------------------- the page


@pytest.fixture
def staff_client() -> Client:
    c = Client()
    user = User.objects.create_user("reviewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_drawing"))
    c.force_login(user)
    return c


def test_the_page_shows_totals_per_model_per_week_and_the_plot(drawings: None, staff_client: Client) -> None:
    response = staff_client.get(reverse("review:dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<strong id="accuracy">71.4%</strong>' in html and "(5 of 7)" in html
    assert '<strong id="agreement">66.7%</strong>' in html and "(6 of 9 labelled)" in html
    v6 = html.split('data-model="cnn-v6"')[1].split("</tr>")[0]
    assert [c.split(">")[-1] for c in v6.split("</td>")[:-1]] == ["4", "75.0%", "1", "6", "66.7%"]
    week1 = html.split('data-week="2026-11-09"')[1].split("</tr>")[0]
    assert "66.7%" in week1 and "(2/3)" in week1 and "–" in week1  # cnn-v5 that week; no cnn-v6
    assert f'src="{reverse("review:confusion-png")}"' in html

    chosen = staff_client.get(reverse("review:dashboard"), {"model": "cnn-v5"}).content.decode()
    assert f'src="{reverse("review:confusion-png")}?model=cnn-v5"' in chosen


def test_the_plot_is_a_png_of_the_reviewed_drawings_of_one_model_or_all(
    drawings: None, staff_client: Client, monkeypatch
) -> None:
    drawn: list[tuple[list[list[int]], str]] = []
    real = dashboard.confusion_png
    monkeypatch.setattr(dashboard, "confusion_png", lambda cm, title, **kw: drawn.append((cm, title)) or real(cm, title, **kw))
    response = staff_client.get(reverse("review:confusion-png"))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (492, 528)
    staff_client.get(reverse("review:confusion-png"), {"model": "cnn-v5"})
    (all_cm, all_title), (v5_cm, v5_title) = drawn
    assert sum(map(sum, all_cm)) == 7 and "7 reviewed drawings, accuracy 71.43%" in all_title
    assert sum(map(sum, v5_cm)) == 3 and v5_cm[7][1] == 1 and v5_title.startswith("cnn-v5: 3 reviewed")


def test_an_empty_dashboard_renders(staff_client: Client) -> None:
    html = staff_client.get(reverse("review:dashboard")).content.decode()
    assert "no reviewed drawings yet" in html and '<strong id="accuracy">–</strong>' in html
    assert staff_client.get(reverse("review:confusion-png")).status_code == 200


def test_only_staff_see_the_dashboard() -> None:
    for url in (reverse("review:dashboard"), reverse("review:confusion-png")):
        response = Client().get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        visitor = Client()
        visitor.force_login(User.objects.create_user(f"visitor{next(_ids)}"))
        assert visitor.get(url).status_code == 302
        bare_staff = Client()
        bare_staff.force_login(User.objects.create_user(f"staff{next(_ids)}", is_staff=True))
        assert bare_staff.get(url).status_code == 403
