"""Permissions that hold: a staff user with no permissions, a view-only user, a reviewer (view and
change), an exporter and a model switcher, against every staff page, API and admin action that reads
or writes drawings. A refused write leaves every row as it was; what a user holds the permission for
is never refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from recognizer.models import Drawing, ServingModel
from review.admin import DrawingAdmin
from tests.review.test_models_page import write_model

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/recognizer/drawing/"
WRITING_ACTIONS = [
    "mark_reviewed",
    "confirm_prediction",
    *[f"relabel_as_{d}" for d in range(10)],
    "exclude_from_training",
    "include_in_training",
]
DOWNLOADS = ["download_export", "download_export_with_unreviewed"]
READ_PAGES = ["review:triage", "review:queue", "review:dashboard", "review:confusion-png"]
_ids = itertools.count()


def user_with(*codenames: str) -> Client:
    user = User.objects.create_user(f"u{next(_ids)}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rows() -> list[Drawing]:
    made = []
    for n in range(3):
        made.append(
            Drawing.objects.create(
                client_id=f"p{n}",
                content_hash=f"h{n}",
                strokes=[[[1.0, 1.0], [50.0, 60.0]]],
                canvas_width=280.0,
                canvas_height=280.0,
                brush=16.0,
                image28=bytes(784),
                predicted_digit=3,
                confidence=0.9,
                model_name="cnn-v6",
                predicted_at=timezone.now(),
                label=4,
                excluded=n == 2,
                reviewed_at=timezone.now() if n == 1 else None,
            )
        )
    return made


@pytest.fixture
def models(settings: Any, tmp_path: Path) -> Path:
    write_model(tmp_path, "old-a", created="2026-11-01T10:00:00+00:00", test_accuracy=0.98)
    write_model(tmp_path, "new-b", created="2026-11-20T10:00:00+00:00", test_accuracy=0.99)
    (tmp_path / "current.json").write_text('{"model": "old-a"}')
    settings.MODELS_DIR = tmp_path
    return tmp_path


def snapshot() -> list[tuple[Any, ...]]:
    return list(
        Drawing.objects.order_by("pk").values_list("pk", "label", "review_label", "excluded", "reviewed_at", "reviewed_by")
    )


def post_action(client: Client, action: str, rows: list[Drawing]) -> Any:
    return client.post(CHANGELIST, {"action": action, "index": "0", "_selected_action": [r.pk for r in rows]})


def offered(client: Client) -> set[str]:
    """The actions the admin's list offers this user."""
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def review(client: Client, row: Drawing, body: dict[str, Any]) -> Any:
    return client.post(reverse("review:review", args=[row.pk]), json.dumps(body), content_type="application/json")


# ---------------------------------------------------------------- staff without any permission


def test_staff_without_permissions_get_403_on_every_page_api_and_action(rows: list[Drawing], models: Path) -> None:
    staff = user_with()
    before = snapshot()
    for name in READ_PAGES:
        assert staff.get(reverse(name)).status_code == 403, name
    assert staff.get(reverse("review:models")).status_code == 403
    for body in ({"action": "label", "digit": 7}, {"action": "confirm"}, {"action": "exclude"}):
        response = review(staff, rows[0], body)
        assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert staff.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 403
    assert staff.post(reverse("review:roll-back")).status_code == 403
    assert staff.get(CHANGELIST).status_code == 403
    for action in WRITING_ACTIONS + DOWNLOADS:
        assert post_action(staff, action, rows).status_code == 403, action
    assert snapshot() == before and not ServingModel.objects.exists()


# ---------------------------------------------------------------- view only


def test_a_view_only_user_reads_every_page_and_writes_nothing(rows: list[Drawing], models: Path) -> None:
    viewer = user_with("view_drawing")
    before = snapshot()
    for name in READ_PAGES:
        assert viewer.get(reverse(name)).status_code == 200, name
    models_page = viewer.get(reverse("review:models"))
    assert models_page.status_code == 200 and "Make current" not in models_page.content.decode()
    triage = viewer.get(reverse("review:triage")).content.decode()
    assert 'id="read-only"' in triage  # told why labels will not be taken
    assert len(viewer.get(reverse("review:queue")).json()["items"]) == 1

    for body in ({"action": "label", "digit": 7}, {"action": "confirm"}, {"action": "exclude"}):
        assert review(viewer, rows[0], body).status_code == 403
    assert viewer.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 403
    assert viewer.post(reverse("review:roll-back")).status_code == 403
    assert snapshot() == before and not ServingModel.objects.exists()


def test_a_view_only_user_is_offered_no_writing_action_and_a_posted_one_is_refused(rows: list[Drawing]) -> None:
    viewer = user_with("view_drawing")
    assert offered(viewer) == set()
    before = snapshot()
    for action in WRITING_ACTIONS + DOWNLOADS:
        response = post_action(viewer, action, rows)
        assert response.status_code == 403, action
        assert not response.streaming  # no zip
    # select-across (every row of the list) and an action posted without its form index
    response = viewer.post(
        CHANGELIST, {"action": "relabel_as_3", "select_across": "1", "index": "0", "_selected_action": [rows[0].pk]}
    )
    assert response.status_code == 403
    assert viewer.post(CHANGELIST, {"action": "exclude_from_training", "_selected_action": [rows[0].pk]}).status_code == 403
    assert snapshot() == before


def test_a_view_only_user_cannot_change_a_drawing_in_its_form_or_in_the_list(rows: list[Drawing]) -> None:
    viewer = user_with("view_drawing")
    before = snapshot()
    url = reverse("admin:recognizer_drawing_change", args=[rows[0].pk])
    assert viewer.get(url).status_code == 200  # seen, read only
    assert viewer.post(url, {"review_label": "8", "excluded": "on"}).status_code == 403
    listed = viewer.get(CHANGELIST)
    assert 'name="form-0-review_label"' not in listed.content.decode()  # not editable in place
    viewer.post(
        CHANGELIST,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(rows[0].pk),
            "form-0-review_label": "8",
            "_save": "Save",
        },
    )
    assert snapshot() == before


# ---------------------------------------------------------------- a reviewer


def test_a_reviewer_is_offered_every_writing_action_but_not_the_download(rows: list[Drawing]) -> None:
    reviewer = user_with("view_drawing", "change_drawing")
    assert offered(reviewer) == set(WRITING_ACTIONS)
    for action in DOWNLOADS:
        assert post_action(reviewer, action, rows).status_code == 403
    response = post_action(reviewer, "relabel_as_3", rows[:1])
    assert response.status_code == 302
    assert Drawing.objects.get(pk=rows[0].pk).review_label == 3


def test_a_reviewer_labels_through_the_triage_api(rows: list[Drawing]) -> None:
    reviewer = user_with("view_drawing", "change_drawing")
    page = reviewer.get(reverse("review:triage"))
    assert page.status_code == 200 and 'id="read-only"' not in page.content.decode()
    assert review(reviewer, rows[0], {"action": "label", "digit": 7}).status_code == 200
    assert review(reviewer, rows[1], {"action": "exclude"}).status_code == 200
    a, b = Drawing.objects.get(pk=rows[0].pk), Drawing.objects.get(pk=rows[1].pk)
    assert a.review_label == 7 and a.reviewed_at is not None and b.excluded


def test_change_alone_reads_as_the_admin_lets_it(rows: list[Drawing]) -> None:
    """As in the admin, a right to change drawings is a right to see them."""
    changer = user_with("change_drawing")
    for name in READ_PAGES:
        assert changer.get(reverse(name)).status_code == 200, name
    assert review(changer, rows[0], {"action": "confirm"}).status_code == 200


# ---------------------------------------------------------------- export and model switching


def test_the_download_needs_the_export_permission_and_no_other_write(rows: list[Drawing]) -> None:
    exporter = user_with("view_drawing", "export_drawing")
    assert offered(exporter) == set(DOWNLOADS)
    before = snapshot()
    for action in DOWNLOADS:
        response = post_action(exporter, action, rows)
        assert response.status_code == 200 and response.streaming, action
        assert b"".join(response.streaming_content).startswith(b"PK")  # a zip (read to its end: closes its file)
    for action in WRITING_ACTIONS:
        assert post_action(exporter, action, rows).status_code == 403, action
    assert snapshot() == before


def test_switching_models_needs_the_serving_models_permission(rows: list[Drawing], models: Path) -> None:
    reviewer = user_with("view_drawing", "change_drawing", "export_drawing")
    assert reviewer.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 403
    assert not ServingModel.objects.exists()
    switcher = user_with("add_servingmodel")
    assert switcher.get(reverse("review:models")).status_code == 200
    assert switcher.get(reverse("review:dashboard")).status_code == 403  # drawings are not theirs to see
    assert switcher.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 302
    assert ServingModel.objects.get().name == "new-b"


def test_every_action_of_the_admin_declares_its_permissions() -> None:
    """A new action without permissions would be offered to view-only users."""
    from django.contrib import admin

    model_admin = DrawingAdmin(Drawing, admin.site)
    for func, name, _ in model_admin._get_base_actions():
        expected = ["export"] if name in DOWNLOADS else ["delete"] if name == "delete_selected" else ["change"]
        assert getattr(func, "allowed_permissions", None) == expected, name
