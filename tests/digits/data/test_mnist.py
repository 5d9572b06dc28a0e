"""IDX parsing (synthetic files) and the real MNIST files when they are present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from digits.data.mnist import IdxFormatError, load_idx_images, load_idx_labels, load_split

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"
needs_data = pytest.mark.usefixtures("mnist_dir")  # fails, never skips, without the data


def write_idx(path: Path, magic: int, array: np.ndarray) -> Path:
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def header_count(path: Path) -> int:
    with gzip.open(path, "rb") as f:
        return struct.unpack(">II", f.read(8))[1]


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_parses_synthetic_images_and_labels(tmp_path: Path, suffix: str) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28) % 256
    labels = np.array([7, 0, 9])
    got = load_idx_images(write_idx(tmp_path / f"img{suffix}", 2051, images))
    assert got.dtype == np.uint8 and got.shape == (3, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(load_idx_labels(write_idx(tmp_path / f"lbl{suffix}", 2049, labels)), labels)


def test_rejects_wrong_magic(tmp_path: Path) -> None:
    labels = write_idx(tmp_path / "l.gz", 2049, np.array([1, 2]))
    images = write_idx(tmp_path / "i.gz", 2051, np.zeros((2, 28, 28)))
    with pytest.raises(IdxFormatError, match="magic"):
        load_idx_images(labels)
    with pytest.raises(IdxFormatError, match="magic"):
        load_idx_labels(images)


def test_rejects_truncated_and_out_of_range(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "i", 2051, np.zeros((2, 28, 28)))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IdxFormatError, match="bytes"):
        load_idx_images(path)
    with pytest.raises(IdxFormatError, match="range"):
        load_idx_labels(write_idx(tmp_path / "l", 2049, np.array([3, 12])))


def test_split_rejects_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_split(tmp_path, "validation")  # type: ignore[arg-type]


@needs_data
@pytest.mark.parametrize(("split", "prefix"), [("train", "train"), ("test", "t10k")])
def test_real_split(split: str, prefix: str) -> None:
    images, labels = load_split(DATA_DIR, split)  # type: ignore[arg-type]
    n = header_count(DATA_DIR / f"{prefix}-images-idx3-ubyte.gz")
    assert n == header_count(DATA_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    if split == "test":
        assert n == 10_000
        assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    else:
        assert labels[:5].tolist() == [5, 0, 4, 1, 9]
