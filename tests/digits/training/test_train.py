"""Training smoke test: the whole command on a tiny synthetic-IDX copy of MNIST, in seconds."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from digits.data.mnist import load_split
from digits.inference.predictor import load_predictor
from digits.training import loop
from digits.training.augment import Augment, random_affine
from digits.training.distill import distillation_loss
from digits.training.recipe import Recipe
from digits.training.train import main

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """200 training and 50 test images: real MNIST ones when available, else random ones."""
    out = tmp_path / "data"
    out.mkdir()
    for split, prefix, n in (("train", "train", 200), ("test", "t10k", 50)):
        if DATA_DIR.exists():
            images, labels = load_split(DATA_DIR, split)  # type: ignore[arg-type]
            images, labels = images[:n], labels[:n]
        else:
            rng = np.random.default_rng(0)
            images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        write_idx(out / f"{prefix}-images-idx3-ubyte.gz", 2051, images)
        write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)
    return out


def test_random_affine_keeps_shape_and_range() -> None:
    x = torch.rand(6, 1, 28, 28)
    y = random_affine(x, Augment(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


def test_train_one_epoch_end_to_end(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    card = main(
        [
            "--data-dir",
            str(tiny_data),
            "--epochs",
            "1",
            "--seed",
            "0",
            "--out",
            str(out),
            "--name",
            "smoke",
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert set(card) == {"name", "version", "architecture", "framework", "data", "training", "metrics", "weights", "created"}
    assert card["data"]["train_count"] == 180 and card["data"]["val_count"] == 20
    assert card["data"]["test_count"] == 50
    assert set(card["metrics"]) == {"val_accuracy", "test_accuracy"}
    assert json.loads((out / "current.json").read_text()) == {"model": "smoke"}
    assert json.loads((out / "smoke.json").read_text()) == card
    assert (out / ".ckpt" / "smoke.pt").exists()
    predictor = load_predictor(out)
    assert predictor.name == "smoke"
    assert predictor.predict(np.zeros((2, 28, 28), np.float32)).shape == (2, 10)


def test_channels_are_recorded_and_loaded_back(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    card = main(
        [
            "--data-dir",
            str(tiny_data),
            "--epochs",
            "1",
            "--seed",
            "0",
            "--out",
            str(out),
            "--name",
            "wide",
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--no-progress",
            "--channels",
            "8,16,24,40",
            "--no-set-current",
        ]
    )
    assert card["architecture"]["channels"] == [8, 16, 24, 40]
    assert "conv(24)-conv(40, valid)" in card["architecture"]["description"]
    predictor = load_predictor(out, "wide")
    assert [c.out_channels for c in predictor._model.convs] == [8, 16, 24, 40]
    assert predictor.predict(np.zeros((1, 28, 28), np.float32)).shape == (1, 10)


def test_distillation_loss_is_zero_only_when_the_student_matches_the_teacher() -> None:
    teacher = torch.tensor([[4.0, 1.0, -2.0], [0.0, 3.0, 1.0]])
    assert distillation_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(teacher + 5.0, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)  # shift-free
    assert distillation_loss(-teacher, teacher, 3.0).item() > 0.1
    student = torch.zeros(2, 3, requires_grad=True)
    distillation_loss(student, teacher, 3.0).backward()
    assert (student.grad.argmin(dim=1) == teacher.argmax(dim=1)).all()  # descent raises the teacher's class


def test_distilled_model_records_its_teacher(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    args = [
        "--data-dir",
        str(tiny_data),
        "--epochs",
        "1",
        "--seed",
        "0",
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--no-progress",
        "--no-set-current",
    ]
    teacher = main([*args, "--name", "big", "--channels", "8,16,24,40"])
    card = main([*args, "--name", "small", "--channels", "4,8,8,8", "--teacher", "big", "--teacher-dir", str(out)])
    assert card["training"]["distillation"]["teacher"] == "big"
    assert card["training"]["distillation"]["teacher_sha256"] == teacher["weights"]["sha256"]
    assert load_predictor(out, "small").predict(np.zeros((1, 28, 28), np.float32)).shape == (1, 10)
    with pytest.raises(SystemExit, match="another validation split"):
        main([*args, "--seed", "1", "--name", "other", "--teacher", "big", "--teacher-dir", str(out)])


def test_swa_keeps_the_average_of_the_weights_after_each_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    def set_weights(model: torch.nn.Module, *args: object, **kwargs: object) -> float:
        epoch = args[6]  # train_one_epoch(model, x, y, opt, sched, cfg, aug, epoch, ...)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(1.0 + 2.0 * float(epoch))  # 1, 3, 5 after epochs 0, 1, 2
        return 0.0

    monkeypatch.setattr(loop, "train_one_epoch", set_weights)
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    cfg = Recipe(epochs=3, swa=True, threads=1, progress=False)
    model, _, last = loop.fit(cfg, (x, y), (x, y), Augment(), log=lambda _: None)
    assert last == 3  # the whole run, not an epoch chosen on validation
    for p in model.parameters():
        assert torch.allclose(p, torch.full_like(p, 3.0))


def test_a_model_trained_on_from_another_records_where_it_started(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    args = [
        "--data-dir",
        str(tiny_data),
        "--seed",
        "0",
        "--out",
        str(out),
        "--channels",
        "4,8,8,8",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--no-progress",
        "--no-set-current",
    ]
    base = main([*args, "--epochs", "1", "--name", "base"])
    card = main(
        [*args, "--epochs", "2", "--name", "averaged", "--init", "base", "--teacher-dir", str(out), "--swa", "--lr", "1e-4"]
    )
    assert card["training"]["init"] == {"from": "base", "sha256": base["weights"]["sha256"]}
    assert "average of the weights" in card["training"]["selection"]
    assert card["training"]["lr_schedule"].startswith("constant")
    assert load_predictor(out, "averaged").predict(np.zeros((1, 28, 28), np.float32)).shape == (1, 10)
    with pytest.raises(SystemExit, match="another validation split"):
        main([*args, "--seed", "1", "--epochs", "1", "--name", "other", "--init", "base", "--teacher-dir", str(out)])
