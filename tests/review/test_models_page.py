"""The models page: versions with their cards and their accuracy on reviewed drawings, "make current"
and "roll back" (staff with the permission, POST, CSRF checked), and the rules behind them. Seeing the
page needs a permission too (view drawings, or view or switch serving models)."""

from __future__ import annotations

import hashlib
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
from recognizer.selectors import serving_model_name
from review import model_cards, selectors, services

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count()


def write_model(
    directory: Path, name: str, *, created: str, test_accuracy: float, weights: bytes | None = None, sha256: str | None = None
) -> None:
    weights = weights if weights is not None else name.encode() * 10
    (directory / f"{name}.pt").write_bytes(weights)
    (directory / f"{name}.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": "1.0.0",
                "created": created,
                "architecture": {"description": f"the {name} net", "parameters": 1234},
                "data": {"description": f"{name}'s training data", "train_count": 100},
                "training": {"command": f"python -m digits.train --name {name}"},
                "metrics": {"test_accuracy": test_accuracy, "canvas_test_accuracy": 0.9, "inference_median_ms_1_thread": 0.3},
                "weights": {"file": f"{name}.pt", "sha256": sha256 or hashlib.sha256(weights).hexdigest(), "bytes": len(weights)},
            }
        )
    )


@pytest.fixture
def models(settings, tmp_path: Path) -> Path:
    """A models directory of its own: old-a (current.json), new-b, and broken-c (weights that fail their sha256)."""
    write_model(tmp_path, "old-a", created="2026-11-01T10:00:00+00:00", test_accuracy=0.98)
    write_model(tmp_path, "new-b", created="2026-11-20T10:00:00+00:00", test_accuracy=0.99)
    write_model(tmp_path, "broken-c", created="2026-11-21T10:00:00+00:00", test_accuracy=0.97, sha256="0" * 64)
    (tmp_path / "current.json").write_text('{"model": "old-a"}')
    settings.MODELS_DIR = tmp_path
    return tmp_path


def reviewed(model: str, predicted: int, label: int, **fields: Any) -> Drawing:
    n = next(_ids)
    return Drawing.objects.create(
        **{
            "client_id": f"m{n}",
            "content_hash": f"h{n}",
            "strokes": [[[1.0, 1.0]]],
            "canvas_width": 280.0,
            "canvas_height": 280.0,
            "brush": 16.0,
            "predicted_digit": predicted,
            "confidence": 0.9,
            "model_name": model,
            "predicted_at": timezone.now(),
            "review_label": label,
            "reviewed_at": timezone.now(),
            **fields,
        }
    )


@pytest.fixture
def switcher() -> User:
    user = User.objects.create_user("switcher", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_servingmodel"))
    return user


def logged_in(user: User, **kw: Any) -> Client:
    c = Client(**kw)
    c.force_login(user)
    return c


# ---------------------------------------------------------------- the rules


def test_the_cards_are_listed_newest_first_with_figures_data_and_date(models: Path) -> None:
    versions = selectors.model_versions()
    assert [v.name for v in versions] == ["broken-c", "new-b", "old-a"]
    b = versions[1]
    assert b.created is not None and b.created.date().isoformat() == "2026-11-20"
    assert b.figures == [("test_accuracy", "99.00%"), ("canvas_test_accuracy", "90.00%")]
    assert b.other_figures == [("inference_median_ms_1_thread", "0.3 ms")]
    assert ("description", "new-b's training data") in b.data and b.servable


def test_make_current_refuses_what_the_workers_could_not_load(models: Path) -> None:
    for name in ("no-such-model", "../old-a", "broken-c"):
        with pytest.raises(model_cards.UnservableModel):
            services.serving_model_set(name=name)
    (models / "new-b.pt").unlink()
    with pytest.raises(model_cards.UnservableModel, match="no weights"):
        services.serving_model_set(name="new-b")
    assert not ServingModel.objects.exists() and serving_model_name() == "old-a"


def test_roll_back_returns_to_the_model_before_and_a_second_undoes_it(models: Path) -> None:
    with pytest.raises(model_cards.UnservableModel):  # nothing chosen yet: nothing to go back to
        services.serving_model_roll_back()
    services.serving_model_set(name="new-b")
    assert serving_model_name() == "new-b" and selectors.serving_previous_name() == "old-a"
    row = services.serving_model_roll_back()
    assert row.rolled_back and serving_model_name() == "old-a"
    services.serving_model_roll_back()
    assert serving_model_name() == "new-b"
    assert list(ServingModel.objects.values_list("name", flat=True)) == ["new-b", "old-a", "new-b"]


def test_the_real_models_directory_serves_the_current_model(settings) -> None:
    settings.MODELS_DIR = ROOT / "models"
    current = json.loads((ROOT / "models" / "current.json").read_text())["model"]
    model_cards.check_servable(current)  # its sha256 checked, as the switch checks it


# ---------------------------------------------------------------- the page


def test_the_page_lists_each_version_with_its_accuracy_on_reviewed_drawings(models: Path, switcher: User) -> None:
    for predicted, label in [(1, 1), (2, 2), (3, 5)]:
        reviewed("new-b", predicted, label)
    reviewed("old-a", 4, 4)
    reviewed("new-b", 7, 1, reviewed_at=None)  # not reviewed: not counted
    reviewed("new-b", 7, 1, excluded=True)  # excluded: not counted
    reviewed("gone-z", 0, 0)  # a model no longer in the directory
    page = logged_in(switcher).get(reverse("review:models"))
    assert page.status_code == 200
    html = page.content.decode()
    rows = {name: html.split(f'data-model="{name}"')[1].split("</tr>")[0] for name in ("old-a", "new-b", "broken-c")}
    assert "66.7%" in rows["new-b"] and "(2 of 3)" in rows["new-b"]
    assert "100.0%" in rows["old-a"] and "current" in rows["old-a"]
    assert "none reviewed" in rows["broken-c"] and "sha256 mismatch" in rows["broken-c"]  # listed, not offered
    assert "Make current" not in rows["broken-c"] and "sha256 ok" in rows["new-b"]
    assert "2026-11-20" in rows["new-b"] and '<td class="fig fig-test_accuracy">99.00%</td>' in rows["new-b"]
    assert "new-b&#x27;s training data" in rows["new-b"]
    assert "Make current" in rows["new-b"] and "Make current" not in rows["old-a"]
    assert "gone-z (1 of 1 right)" in html


def test_make_current_and_roll_back_by_post_switch_the_served_model(models: Path, switcher: User) -> None:
    client = logged_in(switcher)
    response = client.post(reverse("review:make-current"), {"name": "new-b"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("review:models")
    assert serving_model_name() == "new-b"
    assert "Now current: new-b." in response.content.decode()
    assert ServingModel.objects.get().chosen_by == switcher
    assert 'id="roll-back"' in response.content.decode() and "Roll back to old-a" in response.content.decode()

    response = client.post(reverse("review:make-current"), {"name": "broken-c"}, follow=True)
    assert "do not match the sha256" in response.content.decode() and serving_model_name() == "new-b"

    client.post(reverse("review:roll-back"))
    assert serving_model_name() == "old-a" and ServingModel.objects.first().rolled_back


def test_switching_is_post_only_csrf_checked_and_needs_the_permission(models: Path, switcher: User) -> None:
    assert logged_in(switcher).get(reverse("review:make-current"), {"name": "new-b"}).status_code == 405
    strict = logged_in(switcher, enforce_csrf_checks=True)
    assert strict.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 403
    page = strict.get(reverse("review:models"))
    token = page.cookies["csrftoken"].value
    assert strict.post(reverse("review:make-current"), {"name": "new-b", "csrfmiddlewaretoken": token}).status_code == 302
    assert serving_model_name() == "new-b"

    looker = User.objects.create_user("looker", is_staff=True)
    looker.user_permissions.add(Permission.objects.get(codename="view_drawing"))
    viewer = logged_in(looker)
    assert viewer.get(reverse("review:models")).status_code == 200
    assert "Make current" not in viewer.get(reverse("review:models")).content.decode()
    assert viewer.post(reverse("review:make-current"), {"name": "old-a"}).status_code == 403
    assert viewer.post(reverse("review:roll-back")).status_code == 403
    assert serving_model_name() == "new-b"


def test_only_staff_see_the_page(models: Path) -> None:
    anonymous = Client().get(reverse("review:models"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    not_staff = logged_in(User.objects.create_user("visitor"))
    assert not_staff.get(reverse("review:models")).status_code == 302
    assert not_staff.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 302
    assert not ServingModel.objects.exists()


def test_staff_without_a_permission_are_refused_the_page_and_the_switch(models: Path) -> None:
    staff = logged_in(User.objects.create_user("bare", is_staff=True))
    assert staff.get(reverse("review:models")).status_code == 403
    assert staff.post(reverse("review:make-current"), {"name": "new-b"}).status_code == 403
    assert staff.post(reverse("review:roll-back")).status_code == 403
    assert not ServingModel.objects.exists()
    assert 'id="review-loop"' not in staff.get(reverse("admin:index")).content.decode()


def test_the_admin_index_links_to_the_pages_each_user_may_see(switcher: User) -> None:
    html = logged_in(switcher).get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("review:models")}"' in html and f'href="{reverse("review:dashboard")}"' not in html
    switcher.user_permissions.add(Permission.objects.get(codename="view_drawing"))
    html = logged_in(User.objects.get(pk=switcher.pk)).get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("review:models")}"' in html and f'href="{reverse("review:dashboard")}"' in html
    assert f'href="{reverse("review:triage")}"' in html
