"""Fine-tuning on MNIST with styled copies (digits.data.stroke_styles), no collected drawings, at a tiny
size (300 MNIST images, 1 epoch): styled copies replace some 1s, 4s, 5s and 7s and learn from their
labels alone (the teacher distils on the others), both models are measured on the UJI dev writers
(never trained on), the card says how, current.json is untouched."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest

from digits.data import stroke_styles as ss
from digits.data import style_pool, uji
from digits.data.mnist import load_split
from digits.data.splits import STYLE_SEED, stratified_split
from digits.paths import MODELS_DIR
from digits.training import finetune as ft
from digits.training import loop
from tests.digits.training.test_finetune import BASE, models_with_base, tiny_mnist


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("finetune-styles")
    models = models_with_base(tmp / "models")
    for suffix in (".json", ".pt"):
        shutil.copy(MODELS_DIR / f"teacher-wide-v1{suffix}", models / f"teacher-wide-v1{suffix}")
    current = (models / "current.json").read_bytes()
    seen: list[tuple] = []
    original = loop.train_one_epoch

    def recording(model, x, y, opt, sched, cfg, aug, epoch, extras=loop.NO_EXTRAS):  # type: ignore[no-untyped-def]
        canvas = None if extras.canvas is None else extras.canvas.clone()
        seen.append((x.clone(), y.clone(), canvas, extras.teacher, extras.distill_mask))
        return original(model, x, y, opt, sched, cfg, aug, epoch, extras)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "train_one_epoch", recording)
    try:
        cfg = ft.FinetuneConfig(
            models_dir=models,
            data_dir=tiny_mnist(tmp / "mnist"),
            name="styled",
            epochs=1,
            mnist_per_epoch=0,
            outlier_count=40,
            cache_dir=tmp / "cache",
            styles=0.6,
            style_variants=2,
            canvas_variants=2,
            uji_dir=uji.DEFAULT_DIR,
            command="test",
            teacher="teacher-wide-v1",
            note="a note",
        )
        card = ft.finetune(cfg, log=lambda line: None)
    finally:
        mp.undo()
    return {"card": card, "models": models, "current": current, "seen": seen, "cfg": cfg}


def test_styled_copies_replace_some_of_the_digits_of_their_class(run: dict) -> None:
    cfg = run["cfg"]
    images, labels = load_split(cfg.data_dir, "train")
    train, _ = stratified_split(labels, 0.1, 2)
    pool = style_pool.build_pool(
        images[train], labels[train], STYLE_SEED + 2, variants=2, cache_dir=cfg.cache_dir, progress=False
    )  # cached by the run: the same copies
    styled = {p.tobytes(): int(labels[train][s]) for p, s in zip(pool.images, pool.source)}
    ((x, y, canvas, teacher, mask),) = run["seen"]
    given = np.rint(x[:, 0].numpy() * 255).astype(np.uint8)
    hits = [i for i, a in enumerate(given) if a.tobytes() in styled]
    eligible = int(np.isin(y.numpy(), list(ss.MIX)).sum())
    # styles (0.6) of those that have styled copies (a 1 that is not a plain bar has none)
    assert 0.3 * eligible <= len(hits) <= 0.75 * eligible
    for i in hits:
        assert int(y[i]) == styled[given[i].tobytes()]  # labelled as the digit they were made from
        np.testing.assert_array_equal(canvas[0, i], x[i])  # a styled copy is its own canvas-style copy
    # the teacher never saw styles: the styled copies learn from their labels alone, the rest distil
    assert teacher is not None and mask is not None and len(mask) == len(x)
    assert set(np.flatnonzero(~mask.numpy()).tolist()) == set(hits)


def test_both_models_are_measured_on_the_uji_writers_and_the_card_says_how(run: dict) -> None:
    card = run["card"]
    assert (run["models"] / "current.json").read_bytes() == run["current"]
    assert card["fine_tuned_from"]["name"] == BASE and "collected" not in card["data"]
    assert "seven-cross" in card["data"]["stroke_styles"] and "0.6" in card["data"]["stroke_styles"]
    assert "never trained on" in card["data"]["uji_dev"]
    assert "2 canvas-style copies" in card["data"]["canvas_style"]
    for figs in (card["comparison"]["before"], card["comparison"]["after"]):
        pen = figs["uji_dev"]
        assert pen["count"] == 400 and np.asarray(pen["confusion"]).sum() == 400
        assert figs["uji_dev_accuracy"] == pen["accuracy"] and "val_ece" in figs
    assert card["comparison"]["before"]["uji_dev_accuracy"] == 0.98  # cnn-v6, as evaluate reports it
    assert card["metrics"]["uji_dev"] == card["comparison"]["after"]["uji_dev"]
    assert card["training"]["note"] == "a note"
    kd = card["training"]["distillation"]
    assert kd["teacher"] == "teacher-wide-v1" and "not styled" in kd["loss"] and len(kd["teacher_sha256"]) == 64


def test_nothing_to_train_on_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to fine-tune on"):
        ft.finetune(ft.FinetuneConfig(models_dir=models_with_base(tmp_path / "models")), log=lambda line: None)


def test_the_command_line_takes_styles_without_collected_drawings() -> None:
    p = argparse.ArgumentParser()
    ft.add_arguments(p, styles=True)
    cfg = ft.config_from(vars(p.parse_args(["--styles", "0.4", "--style-variants", "3", "--uji-dir", "u"])), "c")
    assert cfg.data is None and cfg.styles == 0.4 and cfg.style_variants == 3 and cfg.uji_dir == Path("u")
    retrain = argparse.ArgumentParser()
    ft.add_arguments(retrain)  # manage.py retrain: --data stays required, no style options
    with pytest.raises(SystemExit):
        retrain.parse_args(["--styles", "0.4"])
