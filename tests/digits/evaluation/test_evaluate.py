"""The evaluation command on a tiny copy of MNIST: all figures present, PNGs written, fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data.uploadset import VARIANT_BY_NAME, Upload, encode
from digits.evaluation.evaluate import evaluate, upload_input, upload_report
from tests.digits.training.test_train import tiny_data  # noqa: F401  (fixture: 200 train / 50 test IDX images)

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_evaluate_on_tiny_data(tmp_path: Path, tiny_data: Path) -> None:  # noqa: F811
    models = tmp_path / "models"
    models.mkdir()
    name = json.loads((MODELS / "current.json").read_text())["model"]
    for suffix in (".pt", ".json"):
        shutil.copy(MODELS / f"{name}{suffix}", models / f"{name}{suffix}")
    (models / "current.json").write_text(json.dumps({"model": name}))
    lines: list[str] = []
    report = evaluate(
        None,
        models_dir=models,
        data_dir=tiny_data,
        out=tmp_path / "eval",
        write_card=True,
        speed_runs=5,
        progress=False,
        cache_dir=None,
        upload_count=3,
        log=lines.append,
    )
    for key in ("val", "canvas_val", "test", "canvas_test"):
        r = report[key]
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["ece"] <= 1.0
        assert np.asarray(r["confusion"]).sum() == r["count"]
        assert set(r["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert report["test"]["count"] == 50 and report["val"]["count"] == 20
    assert report["inference"]["median_ms"] > 0 and report["inference"]["threads"] == 1
    assert set(report["uploads"]) == set(VARIANT_BY_NAME)  # every variant, 3 validation digits each
    assert 0.0 <= report["upload_set"]["direct_accuracy"] <= 1.0
    for r in report["uploads"].values():
        assert r["count"] == 3 and 0 <= r["refused"] <= 3 and 0.0 <= r["accuracy"] <= 1.0
    uji_dev = report["uji_dev"]
    assert uji_dev["count"] == 400 and set(uji_dev["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert 0.0 <= uji_dev["ece"] <= 1.0 and "ece_uncalibrated" in uji_dev
    text = "\n".join(lines)
    assert "MNIST test" in text and "canvas-style test" in text and "true\\pred" in text
    assert "UJI dev writers" in text and "per-class accuracy, UJI dev writers" in text
    assert "photo-shadow" in text and "refused" in text
    out = tmp_path / "eval"
    assert (out / f"{name}.json").exists()
    assert Image.open(out / f"{name}-confusion-test.png").format == "PNG"
    assert Image.open(out / f"{name}-confusion-canvas-test.png").format == "PNG"
    card = json.loads((models / f"{name}.json").read_text())
    assert card["metrics"]["canvas_test_accuracy"] == report["canvas_test"]["accuracy"]
    assert card["metrics"]["uji_dev_accuracy"] == uji_dev["accuracy"]
    assert card["metrics"]["uji_dev_per_class_accuracy"] == uji_dev["per_class_accuracy"]
    assert card["metrics"]["uji_dev_ece"] == uji_dev["ece"]
    assert card["metrics"]["uploads"]["variants"]["png-28-dark-tight"] == {
        "accuracy": report["uploads"]["png-28-dark-tight"]["accuracy"],
        "refused": report["uploads"]["png-28-dark-tight"]["refused"],
    }
    assert card["weights"]["sha256"]  # the weights entry is kept


def test_manage_py_evaluate_command(tmp_path: Path, tiny_data: Path) -> None:  # noqa: F811
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "evaluate",
        "--models-dir",
        str(MODELS),
        "--data-dir",
        str(tiny_data),
        "--out",
        str(tmp_path),
        "--speed-runs",
        "3",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--upload-count",
        "1",
        "--no-progress",
        stdout=out,
    )
    text = out.getvalue()
    assert "canvas-style test" in text and "inference, 1 thread" in text
    assert "UJI dev writers" in text and "paper" in text  # UJI_DIR from the settings, and the uploads
    assert list(tmp_path.glob("*-confusion-canvas-test.png"))


def test_upload_report_counts_refusals_as_not_read_and_reads_like_the_service() -> None:
    class Fixed:  # a model that always says 7
        def predict(self, images: np.ndarray) -> np.ndarray:
            return np.tile(np.eye(10)[7], (len(images), 1))

    seven = np.full((60, 60), 255, np.uint8)
    seven[12:16, 14:46] = 0
    seven[16:50, 40:44] = 0
    blank = np.full((60, 60), 255, np.uint8)
    uploads = [
        Upload("v", 0, 7, encode(seven, "PNG")),
        Upload("v", 1, 3, encode(seven, "PNG")),
        Upload("v", 2, 7, encode(blank, "PNG")),
        Upload("v", 3, 7, b"not an image"),
    ]
    r = upload_report(Fixed(), uploads)["v"]  # type: ignore[arg-type]
    assert (r["count"], r["accuracy"], r["refused"]) == (4, 0.25, 2)
    assert r["refusal_codes"] == {"empty_image": 1, "bad_image": 1}
    image = upload_input(encode(seven, "PNG"))  # the service's bytes: 256 levels
    assert image.shape == (28, 28) and np.array_equal(image, np.rint(image * 255) / 255)
