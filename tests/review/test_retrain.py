"""retrain, the loop end to end at tiny sizes: import_uji -> export_drawings -> retrain. A new version
is written with its card, current.json is left as it was, the held-out writers' (or newest) drawings
are never trained on, drawings nobody reviewed only when asked for, and both models' figures are
recorded."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from digits.data import uji
from digits.training import finetune
from recognizer.models import Drawing
from tests.digits.training.test_finetune import BASE, models_with_base, tiny_mnist
from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.django_db

WRITERS = ("W01", "W02", "W03")


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """Three writers' UJI digits imported as stored drawings, then exported."""
    rows = [r for r in json.loads((uji.DEFAULT_DIR / uji.DEV_FILE).read_text()) if r["writer"] in WRITERS]
    (tmp_path / uji.DEV_FILE).write_text(json.dumps(rows))
    call_command("import_uji", "--path", str(tmp_path), "--no-queue", stdout=io.StringIO())
    out = tmp_path / "collected.npz"
    call_command("export_drawings", "--out", str(out), stdout=io.StringIO())
    return out


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {"models": models_with_base(tmp_path / "models"), "mnist": tiny_mnist(tmp_path / "mnist"), "cache": tmp_path / "cache"}


def retrain(data: Path, dirs: dict[str, Path], *args: str) -> str:
    out = io.StringIO()
    call_command(
        "retrain",
        "--data",
        str(data),
        "--models-dir",
        str(dirs["models"]),
        "--data-dir",
        str(dirs["mnist"]),
        "--cache-dir",
        str(dirs["cache"]),
        "--epochs",
        "1",
        "--mnist-per-epoch",
        "0",
        "--outlier-count",
        "40",
        *args,
        stdout=out,
    )
    return out.getvalue()


def test_retrain_writes_a_new_version_and_never_makes_it_current(
    export: Path, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    current = (dirs["models"] / "current.json").read_bytes()
    held_images: set[bytes] = {a.tobytes() for a in _images_of(export, "W02")}
    trained_on: set[bytes] = set()
    original = finetune.loop.train_one_epoch

    def recording(model, x, y, *rest):  # type: ignore[no-untyped-def]
        trained_on.update(np.rint(a * 255).astype(np.uint8).tobytes() for a in x[:, 0].numpy())
        return original(model, x, y, *rest)

    monkeypatch.setattr(finetune.loop, "train_one_epoch", recording)
    out = retrain(export, dirs, "--holdout-writers", "W02", "--name", "cnn-v6-uji")

    assert (dirs["models"] / "current.json").read_bytes() == current
    card = json.loads((dirs["models"] / "cnn-v6-uji.json").read_text())
    assert (dirs["models"] / "cnn-v6-uji.pt").stat().st_size == card["weights"]["bytes"]
    assert card["fine_tuned_from"]["name"] == BASE
    c = card["data"]["collected"]
    assert c["file"] == str(export) and (c["count"], c["train_count"], c["held_out_count"]) == (60, 40, 20)
    assert c["held_out_writers"] == ["W02"] and c["train_writers"] == ["W01", "W03"]
    w02 = Drawing.objects.filter(client_id__startswith="uji-W02-").values_list("pk", flat=True)
    assert sorted(c["held_out_ids"]) == sorted(w02)
    assert held_images and not held_images & trained_on  # the held-out writer never trained on
    assert {a.tobytes() for a in _images_of(export, "W01")} <= trained_on
    for side in ("before", "after"):
        figs = card["comparison"][side]
        assert figs["held_out_collected"]["count"] == 20
        assert 0 <= figs["val_accuracy"] <= 1 and 0 <= figs["canvas_val_accuracy"] <= 1
    assert card["comparison"]["before"]["model"] == BASE
    assert "call_command('retrain'" in card["training"]["command"]
    assert "held-out collected drawings: cnn-v6 " in out and "-> cnn-v6-uji " in out


def test_without_known_writers_the_newest_drawings_are_held_out(tmp_path: Path, dirs: dict[str, Path]) -> None:
    start = timezone.now()
    for n in range(20):  # drawings from the page: no writer in their client ids; the label let stand by a reviewer
        Drawing.objects.create(
            client_id=f"page-{n}",
            content_hash=f"h{n}",
            strokes=digit_strokes(n % 10),
            canvas_width=280.0,
            canvas_height=280.0,
            brush=15.8,
            label=n % 10,
            reviewed_at=timezone.now(),
        )
    for n in range(20):
        Drawing.objects.filter(client_id=f"page-{n}").update(created_at=start + timedelta(minutes=n))
    out = tmp_path / "page.npz"
    call_command("export_drawings", "--out", str(out), stdout=io.StringIO())

    retrain(out, dirs, "--holdout-fraction", "0.25")  # by time: no writer is known
    card = json.loads((dirs["models"] / f"{BASE}-ft1.json").read_text())
    c = card["data"]["collected"]
    newest = Drawing.objects.filter(client_id__in=[f"page-{n}" for n in range(15, 20)]).values_list("pk", flat=True)
    assert c["held_out_by"] == "time" and sorted(c["held_out_ids"]) == sorted(newest)
    assert c["held_out_writers"] == [] and c["unknown_writer_count"] == 20


def test_drawings_nobody_reviewed_are_trained_on_only_when_asked_for(
    tmp_path: Path, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spam labelled by whoever drew it reaches an export only with --include-unreviewed, and even then
    a retrain leaves it out unless asked too; the card counts it either way."""
    for n in range(20):  # reviewed
        Drawing.objects.create(
            client_id=f"page-{n}",
            content_hash=f"h{n}",
            strokes=digit_strokes(n % 10),
            canvas_width=280.0,
            canvas_height=280.0,
            brush=15.8,
            label=n % 10,
            reviewed_at=timezone.now(),
        )
    spam = [
        Drawing.objects.create(
            client_id=f"spam-{n}",
            content_hash=f"s{n}",
            strokes=digit_strokes(n % 10, 0.45, (40.0, 30.0)),
            canvas_width=280.0,
            canvas_height=280.0,
            brush=30.0,
            label=(n + 1) % 10,
        )
        for n in range(10)
    ]
    out = tmp_path / "all.npz"
    call_command("export_drawings", "--out", str(out), "--include-unreviewed", stdout=io.StringIO())
    with np.load(out) as npz:
        spam_ids = {d.pk for d in spam}
        spam_images = {a.tobytes() for a, pk in zip(npz["images"], npz["ids"]) if pk in spam_ids}
    assert len(spam_images) == 10
    trained_on: set[bytes] = set()
    original = finetune.loop.train_one_epoch

    def recording(model, x, y, *rest):  # type: ignore[no-untyped-def]
        trained_on.update(np.rint(a * 255).astype(np.uint8).tobytes() for a in x[:, 0].numpy())
        return original(model, x, y, *rest)

    monkeypatch.setattr(finetune.loop, "train_one_epoch", recording)

    log = retrain(out, dirs, "--holdout-fraction", "0.25", "--name", "reviewed-only")
    c = json.loads((dirs["models"] / "reviewed-only.json").read_text())["data"]["collected"]
    assert (c["count"], c["unreviewed_left_out"], c["unreviewed_count"], c["include_unreviewed"]) == (20, 10, 0, False)
    assert not spam_ids & set(c["held_out_ids"]) and not spam_images & trained_on
    assert "left out 10 drawings of the export labelled by the person alone" in log

    trained_on.clear()
    retrain(out, dirs, "--holdout-fraction", "0.25", "--name", "with-spam", "--include-unreviewed")
    c = json.loads((dirs["models"] / "with-spam.json").read_text())["data"]["collected"]
    assert (c["count"], c["unreviewed_left_out"], c["unreviewed_count"], c["include_unreviewed"]) == (30, 0, 10, True)
    assert spam_images & trained_on  # asked for: trained on (those not held out)


def test_an_export_of_unreviewed_drawings_alone_trains_nothing(tmp_path: Path, dirs: dict[str, Path]) -> None:
    for n in range(5):
        Drawing.objects.create(
            client_id=f"spam-{n}",
            content_hash=f"s{n}",
            strokes=digit_strokes(n),
            canvas_width=280.0,
            canvas_height=280.0,
            brush=15.8,
            label=n,
        )
    out = tmp_path / "spam.npz"
    call_command("export_drawings", "--out", str(out), "--include-unreviewed", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no reviewed drawings"):
        retrain(out, dirs)
    assert sorted(p.name for p in dirs["models"].iterdir()) == ["cnn-v6.json", "cnn-v6.pt", "current.json"]


def test_bad_requests_are_refused(export: Path, dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such export"):
        retrain(tmp_path / "missing.npz", dirs)
    with pytest.raises(CommandError, match="W09"):
        retrain(export, dirs, "--holdout-writers", "W09")
    with pytest.raises(CommandError, match="exclude each other"):
        retrain(export, dirs, "--holdout-writers", "W01", "--by", "time")
    with pytest.raises(CommandError, match="exists"):
        retrain(export, dirs, "--name", BASE)
    assert sorted(p.name for p in dirs["models"].iterdir()) == ["cnn-v6.json", "cnn-v6.pt", "current.json"]


def _images_of(export: Path, writer: str) -> np.ndarray:
    ids = set(Drawing.objects.filter(client_id__startswith=f"uji-{writer}-").values_list("pk", flat=True))
    with np.load(export) as npz:
        return npz["images"][[i for i, pk in enumerate(npz["ids"]) if pk in ids]]
