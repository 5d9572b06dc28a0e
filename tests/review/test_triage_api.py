"""The triage page and its JSON API, as a logged-in staff user against the real database: the page is
for staff only, the queue pages through unreviewed drawings least sure first (a keyset cursor), the
API labels, confirms and excludes (CSRF checked), and refuses what is malformed. Who is refused what:
test_permissions.py; the queries' shape: test_review_queries.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from recognizer.models import Drawing
from review.services import drawings_relabel
from tests.review.drawings import fresh, make

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


# ---------------------------------------------------------------- the triage page and its API


def test_the_triage_page_is_for_staff_only(client: Client, django_user_model: type[User]) -> None:
    page = client.get(reverse("review:triage"))
    assert page.status_code == 200 and b'id="triage"' in page.content and b'id="read-only"' not in page.content
    outsider = Client()
    outsider.force_login(django_user_model.objects.create_user("someone", password="a-long-test-password"))
    assert outsider.get(reverse("review:triage")).status_code == 302  # to the admin's login
    assert outsider.get(reverse("review:queue")).status_code == 403
    row = make()
    assert (
        Client().post(reverse("review:review", args=[row.pk]), {"action": "exclude"}, content_type="application/json").status_code
        == 403
    )
    assert not fresh(row).excluded


def test_the_queue_pages_through_unreviewed_drawings_least_sure_first(client: Client) -> None:
    pending = make(confidence=None, predicted_digit=None, predicted_at=None, image28=None, png=None)
    rows = [make(confidence=c) for c in (0.9, 0.3, 0.6, 0.3)]
    make(confidence=0.1, reviewed_at=timezone.now())
    make(confidence=0.1, excluded=True)
    first = client.get(reverse("review:queue"), {"limit": 3}).json()
    assert first["remaining"] == 5
    assert [i["id"] for i in first["items"]] == [pending.pk, rows[1].pk, rows[3].pk]
    assert first["items"][0]["image28"] is None and first["items"][1]["image28"].startswith("data:image/png")
    drawings_relabel(drawings=Drawing.objects.filter(pk=rows[1].pk), digit=1)  # reviewed meanwhile: the cursor still holds
    second = client.get(reverse("review:queue"), {"limit": 3, "after": first["next"]}).json()
    assert [i["id"] for i in second["items"]] == [rows[2].pk, rows[0].pk] and second["next"] is None
    oldest = client.get(reverse("review:queue"), {"order": "oldest"}).json()
    assert [i["id"] for i in oldest["items"]] == [pending.pk, rows[0].pk, rows[2].pk, rows[3].pk]


def test_the_api_labels_confirms_and_excludes(client: Client, staff: User) -> None:
    a, b, c = make(label=2), make(predicted_digit=7), make(label=4)
    url = lambda row: reverse("review:review", args=[row.pk])  # noqa: E731
    answer = client.post(url(a), {"action": "label", "digit": 5}, content_type="application/json").json()
    assert answer["drawing"]["effective_label"] == 5 and answer["remaining"] == 2
    client.post(url(b), {"action": "confirm"}, content_type="application/json")
    client.post(url(c), {"action": "exclude"}, content_type="application/json")
    a, b, c = fresh(a), fresh(b), fresh(c)
    assert (a.label, a.review_label, a.reviewed_by) == (2, 5, staff)
    assert b.review_label == 7 and b.reviewed_at is not None
    assert c.excluded and c.label == 4


@pytest.mark.parametrize(
    "body",
    [
        {"action": "label", "digit": 10},
        {"action": "label", "digit": True},
        {"action": "label"},
        {"action": "rename"},
        ["label"],
        "nonsense",
    ],
)
def test_the_api_refuses_malformed_answers(client: Client, body: Any) -> None:
    row = make()
    payload = json.dumps(body) if not isinstance(body, str) else body
    response = client.post(reverse("review:review", args=[row.pk]), payload, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    assert fresh(row).reviewed_at is None


def test_the_api_says_when_there_is_nothing_to_confirm_or_no_such_drawing(client: Client) -> None:
    pending = make(predicted_digit=None, confidence=None, predicted_at=None)
    confirm = {"action": "confirm"}
    assert client.post(reverse("review:review", args=[pending.pk]), confirm, content_type="application/json").status_code == 409
    assert client.post(reverse("review:review", args=[10**9]), confirm, content_type="application/json").status_code == 404


def test_the_api_checks_csrf(staff: User) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    row = make()
    url = reverse("review:review", args=[row.pk])
    body = json.dumps({"action": "exclude"})
    assert strict.post(url, body, content_type="application/json").status_code == 403
    assert not fresh(row).excluded
    page = strict.get(reverse("review:triage"))
    token = page.content.decode().split('name="csrf-token" content="')[1].split('"')[0]
    assert strict.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token).status_code == 200
    assert fresh(row).excluded
