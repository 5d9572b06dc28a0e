"""The models page is one table with the same columns for every model (blank where a card lacks a
figure), and "Make current" only for the models whose card says they are meant to serve; the switch
refuses the others too."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from recognizer.selectors import serving_model_name
from review import model_cards, services

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _write(directory: Path, name: str, metrics: dict, **extra: object) -> None:
    weights = name.encode() * 10
    (directory / f"{name}.pt").write_bytes(weights)
    card = {
        "name": name,
        "created": "2026-11-20T10:00:00+00:00",
        "architecture": {"parameters": 1234},
        "data": {"train_count": 21911},
        "metrics": metrics,
        "weights": {"file": f"{name}.pt", "sha256": hashlib.sha256(weights).hexdigest(), "bytes": len(weights)},
        **extra,
    }
    (directory / f"{name}.json").write_text(json.dumps(card))


@pytest.fixture
def models(settings, tmp_path: Path) -> Path:
    uploads = {"variants": {"a": {"accuracy": 0.9, "refused": 0}, "b": {"accuracy": 0.8, "refused": 0}}}
    _write(tmp_path, "full", {"test_accuracy": 0.99, "canvas_test_accuracy": 0.98, "uploads": uploads, "uji_dev_accuracy": 0.97})
    _write(tmp_path, "sparse", {"canvas_test_accuracy": 0.95, "test_accuracy": 0.96})  # another order, fewer figures
    _write(tmp_path, "teacher", {"test_accuracy": 0.995}, serves=False)
    (tmp_path / "current.json").write_text('{"model": "sparse"}')
    settings.MODELS_DIR = tmp_path
    return tmp_path


@pytest.fixture
def client(db) -> Client:
    c = Client()
    c.force_login(User.objects.create_superuser("boss", password="a-long-test-password"))
    return c


def _rows(html: str) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for name in ("full", "sparse", "teacher"):
        row = html.split(f'data-model="{name}"')[1].split("</tr>")[0]
        out[name] = re.findall(r'<td class="fig fig-([a-z_0-9]+)">([^<]*)</td>', row)
    return out


def test_every_model_has_the_same_columns_in_the_same_order(models: Path, client: Client) -> None:
    html = client.get(reverse("review:models")).content.decode()
    rows = _rows(html)
    keys = [key for key, _, _ in model_cards.COLUMNS]
    assert all([k for k, _ in cells] == keys for cells in rows.values()), rows
    full, sparse = dict(rows["full"]), dict(rows["sparse"])
    assert (full["test_accuracy"], full["canvas_test_accuracy"], full["uji_dev_accuracy"]) == ("99.00%", "98.00%", "97.00%")
    assert full["uploads"] == "85.00%" and full["train_count"] == "21,911"
    assert (sparse["test_accuracy"], sparse["canvas_test_accuracy"]) == ("96.00%", "95.00%")
    assert sparse["uploads"] == "" and sparse["uji_dev_accuracy"] == ""  # blank where the card has none
    headers = re.findall(r'<th class="fig-([a-z_0-9]+)">', html)
    assert headers == keys


def test_make_current_only_for_models_meant_to_serve(models: Path, client: Client) -> None:
    html = client.get(reverse("review:models")).content.decode()
    row = lambda name: html.split(f'data-model="{name}"')[1].split("</tr>")[0]  # noqa: E731
    assert "Make current" in row("full")
    assert "Make current" not in row("teacher") and "not meant to serve" in row("teacher")
    response = client.post(reverse("review:make-current"), {"name": "teacher"}, follow=True)
    assert "not meant to serve" in response.content.decode()
    assert serving_model_name() == "sparse"
    with pytest.raises(model_cards.UnservableModel, match="not meant to serve"):
        services.serving_model_set(name="teacher")


def test_the_teacher_card_in_the_repository_does_not_serve() -> None:
    assert model_cards.model_version(ROOT / "models" / "teacher-wide-v1.json").serves is False
    assert model_cards.model_version(ROOT / "models" / "cnn-v6.json").serves is True  # absent: serves
