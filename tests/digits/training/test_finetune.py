"""Fine-tuning on collected drawings, at tiny sizes (300 MNIST images, UJI digits of a few writers,
1 epoch): hold-outs keep writers whole or take the newest drawings, held-out drawings are never
trained on, a new version is written with a card recording both data sources and both models'
figures measured the same way, and current.json is never touched."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from digits.data import uji
from digits.data.mnist import load_split
from digits.data.splits import stratified_split
from digits.evaluation.metrics import summarize
from digits.inference.predictor import load_predictor
from digits.training import collected as co
from digits.training import finetune as ft
from digits.training import loop

ROOT = Path(__file__).resolve().parents[3]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
BASE = "cnn-v6"


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


def tiny_mnist(out: Path, n: int = 300) -> Path:
    """The first ``n`` training images of MNIST as an IDX directory (no test files: never read)."""
    images, labels = load_split(MNIST_DIR, "train")
    out.mkdir(parents=True, exist_ok=True)
    write_idx(out / "train-images-idx3-ubyte.gz", 2051, images[:n])
    write_idx(out / "train-labels-idx1-ubyte.gz", 2049, labels[:n])
    return out


def models_with_base(out: Path) -> Path:
    """A models directory holding the served model and a current.json naming it."""
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".pt"):
        shutil.copy(ROOT / "models" / f"{BASE}{suffix}", out / f"{BASE}{suffix}")
    (out / "current.json").write_text(json.dumps({"model": BASE}) + "\n")
    return out


def write_export(
    out: Path, client_ids: list[str], images: np.ndarray, labels: np.ndarray, created: list[str] | None = None
) -> Path:
    """An export as export_drawings writes it, as far as fine-tuning reads it (npz + manifest)."""
    ids = np.arange(100, 100 + len(client_ids), dtype=np.int64)
    np.savez_compressed(out, images=images, labels=labels.astype(np.uint8), ids=ids)
    created = created or [f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}+00:00" for i in range(len(ids))]
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "id", "label", "client_id", "created_at"])
        for i, (pk, cid) in enumerate(zip(ids, client_ids)):
            w.writerow([i, int(pk), int(labels[i]), cid, created[i]])
    return out


def uji_export(out: Path, writers: tuple[str, ...]) -> Path:
    digits = [d for d in uji.load_dev(uji.DEFAULT_DIR) if d.writer in writers]
    images = np.clip(np.rint(uji.render(digits) * 255), 0, 255).astype(np.uint8)
    return write_export(out, [f"uji-{d.writer}-{d.label}-{d.sample}" for d in digits], images, uji.labels(digits))


def collected_of(writers: list[str | None], created: list[str] | None = None) -> co.Collected:
    n = len(writers)
    return co.Collected(
        Path("x.npz"),
        np.zeros((n, 28, 28), np.uint8),
        np.arange(n) % 10,
        np.arange(n, dtype=np.int64),
        tuple(writers),
        tuple(created or [f"2026-11-{1 + i:02d}" for i in range(n)]),
    )


def test_a_client_id_names_its_writer_only_for_imported_drawings() -> None:
    assert co.writer_of("uji-W07-3-trn_UJI_W07-01") == "W07"
    assert co.writer_of("5f2c0e1a-page-drawing") is None


def test_holding_out_writers_keeps_each_writer_on_one_side() -> None:
    c = collected_of(["W01", "W02", "W03", None, "W02", "W01"])
    split = co.holdout_writers(c, ["W02"])
    assert split.held_out.tolist() == [1, 4] and split.train.tolist() == [0, 2, 3, 5]
    assert split.by == "writer" and split.writers == ("W02",)
    with pytest.raises(ValueError, match="W09"):
        co.holdout_writers(c, ["W09"])


def test_a_held_out_share_is_whole_writers_when_known_else_the_newest() -> None:
    c = collected_of([f"W{1 + i % 10:02d}" for i in range(40)])
    split = co.holdout_share(c, 0.2, seed=3)
    assert split.by == "writer" and len(split.writers) == 2
    held = {c.writers[i] for i in split.held_out}
    assert held == set(split.writers) and not held & {c.writers[i] for i in split.train}
    assert co.holdout_share(c, 0.2, seed=3).writers == split.writers  # seeded

    dates = ["2026-11-03", "2026-11-01", "2026-11-05", "2026-11-02", "2026-11-04"]
    mixed = collected_of(["W01", None, "W02", "W01", "W02"], dates)  # one unknown writer: by time
    split = co.holdout_share(mixed, 0.4)
    assert split.by == "time" and split.held_out.tolist() == [2, 4]  # the two newest
    assert split.train.tolist() == [0, 1, 3]


def test_a_manifest_out_of_step_with_the_images_is_refused(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.npz", ["a", "b"], np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))
    rows = path.with_suffix(".csv").read_text().splitlines()
    path.with_suffix(".csv").write_text("\n".join([rows[0], rows[2], rows[1]]) + "\n")
    with pytest.raises(ValueError, match="row for row"):
        co.load_collected(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny fine-tune, recording what every epoch was given to train on."""
    tmp = tmp_path_factory.mktemp("finetune")
    models = models_with_base(tmp / "models")
    export = uji_export(tmp / "uji.npz", ("W01", "W02", "W03"))
    current = (models / "current.json").read_bytes()
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    original = loop.train_one_epoch

    def recording(model, x, y, opt, sched, cfg, aug, epoch, extras=loop.NO_EXTRAS):  # type: ignore[no-untyped-def]
        seen.append((x.clone(), None if extras.canvas is None else extras.canvas.clone()))
        return original(model, x, y, opt, sched, cfg, aug, epoch, extras)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "train_one_epoch", recording)
    try:
        cfg = ft.FinetuneConfig(
            data=export,
            models_dir=models,
            data_dir=tiny_mnist(tmp / "mnist"),
            holdout_writers=("W02",),
            epochs=1,
            mnist_per_epoch=0,
            outlier_count=40,
            cache_dir=None,
            command="test",
        )
        card = ft.finetune(cfg, log=lambda line: None)
    finally:
        mp.undo()
    return {"card": card, "models": models, "export": export, "current": current, "seen": seen, "mnist": cfg.data_dir}


def test_a_new_version_is_written_with_its_card_and_current_json_untouched(run: dict) -> None:
    models, card = run["models"], run["card"]
    assert card["name"] == f"{BASE}-ft1"
    assert (models / "current.json").read_bytes() == run["current"]  # never promotes itself
    on_disk = json.loads((models / f"{BASE}-ft1.json").read_text())
    assert on_disk == card
    assert hashlib.sha256((models / f"{BASE}-ft1.pt").read_bytes()).hexdigest() == card["weights"]["sha256"]
    new = load_predictor(models, card["name"])  # loads, checked against its card
    base = load_predictor(models, BASE)
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    assert not np.allclose(new.predict(x), base.predict(x))  # it did train
    assert card["fine_tuned_from"]["name"] == BASE
    assert card["training"]["seed"] == 2 and card["training"]["val_fraction"] == 0.1  # the base's split


def test_the_card_records_both_data_sources(run: dict) -> None:
    data = run["card"]["data"]
    labels = load_split(run["mnist"], "train")[1]
    train, val = stratified_split(labels, 0.1, 2)  # the base's split of the tiny MNIST part
    assert (data["train_count"], data["val_count"]) == (len(train), len(val)) == (271, 29)
    c = data["collected"]
    assert c["file"] == str(run["export"])
    assert c["sha256"] == hashlib.sha256(run["export"].read_bytes()).hexdigest()
    assert (c["count"], c["train_count"], c["held_out_count"]) == (60, 40, 20)
    assert c["held_out_by"] == "writer" and c["held_out_writers"] == ["W02"]
    assert c["train_writers"] == ["W01", "W03"]
    with np.load(run["export"]) as npz:
        assert c["held_out_ids"] == npz["ids"][20:40].tolist()  # W02's rows (file order: W01, W02, W03)


def test_held_out_drawings_are_never_trained_on(run: dict) -> None:
    with np.load(run["export"]) as npz:
        images = npz["images"]
    held = {images[i].tobytes() for i in range(20, 40)}
    trained = {images[i].tobytes() for i in [*range(20), *range(40, 60)]}
    assert run["seen"], "no epoch ran"
    for x, canvas in run["seen"]:
        given = {bytes(np.rint(a * 255).astype(np.uint8).tobytes()) for a in x[:, 0].numpy()}
        if canvas is not None:
            given |= {bytes(np.rint(a * 255).astype(np.uint8).tobytes()) for a in canvas[0, :, 0].numpy()}
        assert not held & given
        assert trained <= given  # every training drawing was in the epoch


def test_both_models_are_measured_the_same_way(run: dict) -> None:
    card, models = run["card"], run["models"]
    before, after = card["comparison"]["before"], card["comparison"]["after"]
    assert before["model"] == BASE and after["model"] == card["name"]
    for figs in (before, after):
        assert set(figs) >= {"val_accuracy", "canvas_val_accuracy", "held_out_collected"}
        held = figs["held_out_collected"]
        assert held["count"] == 20 and set(held["per_class_accuracy"]) == {str(d) for d in range(10)}
        assert np.asarray(held["confusion"]).sum() == 20
    assert card["metrics"]["held_out_collected"] == after["held_out_collected"]
    assert card["metrics"]["val_accuracy"] == after["val_accuracy"]
    # the "before" figures are the base model's own reading of the held-out drawings
    with np.load(run["export"]) as npz:
        images, labels = npz["images"][20:40], npz["labels"][20:40].astype(np.int64)
    probs = load_predictor(models, BASE).predict(images.astype(np.float32) / 255)
    assert before["held_out_collected"]["accuracy"] == summarize(probs, labels)["accuracy"]
    probs = load_predictor(models, card["name"]).predict(images.astype(np.float32) / 255)
    assert after["held_out_collected"]["accuracy"] == summarize(probs, labels)["accuracy"]


def test_an_existing_version_is_never_overwritten(run: dict) -> None:
    cfg = ft.FinetuneConfig(data=run["export"], models_dir=run["models"], name=run["card"]["name"])
    with pytest.raises(FileExistsError):
        ft.finetune(cfg, log=lambda line: None)
    assert ft.next_name(run["models"], BASE) == f"{BASE}-ft2"
