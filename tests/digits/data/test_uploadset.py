"""The upload test set: each variant is what its name says, deterministic, built from the validation
split only, and the service's upload path reads each variant's worst case."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from digits.data import uploadset
from digits.evaluation.evaluate import upload_report, upload_set
from digits.inference.predictor import Predictor, load_predictor
from digits.training.train import stratified_split

MODELS = Path(__file__).resolve().parents[3] / "models"
SAMPLE = 20  # validation digits per variant in the worst-case tests
# The upload path's weakest variant at its hard end: a deep shadow (45%) across a page photographed
# at a slant, the digit at 30% of the frame (92.5% of 200 read, 2026-11-25, README Model). Held to
# this at its worst and to >= 90% typically; all other variants: >= 90% and 0 refused at worst.
WEAK = {"photo-shadow": 0.8}


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.set_num_threads(1)
    return load_predictor(MODELS)


@pytest.fixture(scope="module")
def validation(mnist_dir: Path, predictor: Predictor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    training = predictor.card["training"]
    return uploadset.validation_digits(mnist_dir, seed=int(training["seed"]), val_fraction=float(training["val_fraction"]))


def decoded(upload: uploadset.Upload) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(upload.data, np.uint8), cv2.IMREAD_GRAYSCALE)


def test_the_variants_cover_formats_sizes_polarities_framings_and_scenes() -> None:
    grid = {(v.fmt, v.side, v.dark_ink, v.framing) for v in uploadset.VARIANTS if v.scene == "clean"}
    assert len(grid) == 24  # PNG/JPEG x 28/112/560 x both polarities x tight/margin
    scenes = {v.scene for v in uploadset.VARIANTS}
    assert {"paper", "ruled", "squared", "blurred", "photo", "photo-ruled", "photo-shadow", "board"} <= scenes
    assert len(uploadset.VARIANT_BY_NAME) == len(uploadset.VARIANTS)


@pytest.mark.parametrize("worst", [False, True])
def test_each_upload_is_the_variant_its_name_says(validation, worst: bool) -> None:
    images, labels, sources = validation
    for v in uploadset.VARIANTS:
        for u in uploadset.build(images, labels, sources, variants=[v], count=5, worst=worst):
            assert u.data[:4] == b"\x89PNG" if v.fmt == "PNG" else u.data[:3] == b"\xff\xd8\xff"
            img = decoded(u)
            assert max(img.shape) == v.side, v.name
            if v.scene != "clean":
                continue  # lit, shaded and textured: no one threshold separates ink from ground
            x = img.astype(np.float32) if v.dark_ink else 255.0 - img  # dark ink from here on
            ground, fg = float(np.percentile(x, 99)), float(x.min())
            assert ground - fg > 100 and (x < (ground + fg) / 2).mean() < 0.5, v.name  # polarity as named
            ink = x < ground - 0.03 * (ground - fg)  # the faintest rim of the ink counts
            ys, xs = np.nonzero(ink)
            gaps = (ys.min(), xs.min(), img.shape[0] - 1 - ys.max(), img.shape[1] - 1 - xs.max())
            if v.framing == "tight":  # ink within 0-2 px of the frame (and of both sides of the longer axis)
                long_axis = (0, 2) if img.shape[0] >= img.shape[1] else (1, 3)
                assert max(gaps[i] for i in long_axis) <= 3, (v.name, gaps)
            elif v.side > 28:  # wide margins: the digit spans at most half of the frame
                assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 0.75 * min(img.shape), (v.name, img.shape)
            if worst and v.framing == "tight":
                assert min(gaps[i] for i in long_axis) == 0, v.name  # the hard end: ink on the border


def test_the_set_is_deterministic_and_seeded(validation) -> None:
    images, labels, sources = validation
    first = list(uploadset.build(images, labels, sources, count=3))
    again = list(uploadset.build(images, labels, sources, count=3))
    assert [u.data for u in first] == [u.data for u in again]
    other = list(uploadset.build(images, labels, sources, count=3, seed=uploadset.SEED + 1))
    assert sum(a.data != b.data for a, b in zip(first, other)) > 0.9 * len(first)
    # a variant's images do not depend on which other variants are built
    photo = uploadset.VARIANT_BY_NAME["photo"]
    alone = list(uploadset.build(images, labels, sources, variants=[photo], count=3))
    assert [u.data for u in alone] == [u.data for u in first if u.variant == "photo"]


def test_the_set_comes_from_the_validation_split_and_never_from_the_test_set(
    mnist_dir: Path, predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    load = uploadset.load_split

    def recording(data_dir: Path, split: str):  # type: ignore[no-untyped-def]
        asked.append(split)
        return load(data_dir, split)  # type: ignore[arg-type]

    monkeypatch.setattr(uploadset, "load_split", recording)
    uploads = list(upload_set(mnist_dir, predictor.card, 40))  # what `evaluate` builds
    assert asked == ["train"]
    train_images, train_labels = load(mnist_dir, "train")
    training = predictor.card["training"]
    fit, val = stratified_split(train_labels, float(training["val_fraction"]), int(training["seed"]))
    sources = {u.source for u in uploads}
    assert len(sources) == 40 and sources <= set(val.tolist()) and not sources & set(fit.tolist())
    assert all(u.label == train_labels[u.source] for u in uploads)
    # the plain 28 px light-on-dark frame is the validation image itself, up to the ground/ink levels
    plain = next(u for u in uploads if u.variant == "png-28-light-margin")
    source = train_images[plain.source].astype(np.float32)
    assert np.corrcoef(decoded(plain).astype(np.float32).ravel(), source.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("variant", [v.name for v in uploadset.VARIANTS])
def test_the_worst_case_of_each_variant_is_read(variant: str, validation, predictor: Predictor) -> None:
    images, labels, sources = validation
    v = uploadset.VARIANT_BY_NAME[variant]
    worst = upload_report(predictor, uploadset.build(images, labels, sources, variants=[v], count=SAMPLE, worst=True))
    r = worst[variant]
    assert r["count"] == SAMPLE and r["refused"] == 0, r
    if variant in WEAK:
        typical = upload_report(predictor, uploadset.build(images, labels, sources, variants=[v], count=SAMPLE))
        assert typical[variant]["refused"] == 0 and typical[variant]["accuracy"] >= 0.9, typical
    assert r["accuracy"] >= WEAK.get(variant, 0.9), r
