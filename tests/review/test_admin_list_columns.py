"""The admin's list of drawings fits a 1280 px screen: a few columns (what a reviewer needs at a
glance), the rest in the change view; "uncertain" is marked only on the rows that are."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.review.drawings import CHANGELIST, make

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(db) -> Client:
    c = Client()
    c.force_login(User.objects.create_superuser("boss", password="a-long-test-password"))
    return c


def _row(html: str, pk: int) -> str:
    """The list's <tr> of drawing pk."""
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html, flags=re.S)
    mine = [r for r in rows if f'name="_selected_action" value="{pk}"' in r]
    assert len(mine) == 1, f"no single row for {pk}"
    return mine[0]


def test_the_list_has_only_the_reviewers_columns(client: Client) -> None:
    make()
    columns = client.get(CHANGELIST).context["cl"].list_display
    assert list(columns) == [
        "action_checkbox",
        "id",
        "thumbnail",
        "predicted_digit",
        "confidence_pct",
        "uncertain_flag",
        "review_label",
        "reviewed",
        "created_at",
    ]
    for gone in ("person_label", "effective_label_col", "excluded", "model_name"):
        assert gone not in columns


def test_uncertain_is_marked_only_where_true(client: Client) -> None:
    unsure, sure = make(uncertain=True, reason="scribble"), make(uncertain=False)
    html = client.get(CHANGELIST).content.decode()
    unsure_row, sure_row = _row(html, unsure.pk), _row(html, sure.pk)
    assert "⚠ uncertain" in unsure_row and 'title="scribble"' in unsure_row
    assert "uncertain" not in sure_row.replace("field-uncertain_flag", "")
    for row in (unsure_row, sure_row):  # no red/green boolean icons for it
        cell = re.search(r'<td class="field-uncertain_flag">(.*?)</td>', row, flags=re.S)
        assert cell is not None and "icon-" not in cell.group(1)
    assert re.search(r'<td class="field-uncertain_flag">(\s|&nbsp;)*</td>', sure_row)


def test_the_change_view_keeps_what_the_list_dropped(client: Client) -> None:
    row = make(label=2, review_label=5, excluded=True, model_name="cnn-v5")
    html = client.get(reverse("admin:recognizer_drawing_change", args=[row.pk])).content.decode()
    for field in ("field-label", "field-effective_label_col", "field-excluded", "field-model_name"):
        assert field in html, field
    assert "cnn-v5" in html
