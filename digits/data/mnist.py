"""Reading MNIST in its original (gzip-compressed) IDX format.

The image count is always taken from the file header: the offline copy of the training part
holds only the first 24,345 of the 60,000 official images.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Literal

import numpy as np

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class IdxFormatError(ValueError):
    """The file is not a well-formed IDX file of the expected kind."""


def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read()


def _parse(data: bytes, magic: int, ndim: int, path: Path) -> np.ndarray:
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(f"{path}: too short for an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise IdxFormatError(f"{path}: magic number {found} (expected {magic})")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims))
    payload = data[header_size:]
    if len(payload) != expected:
        raise IdxFormatError(f"{path}: header says {expected} bytes of data, file has {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def load_idx_images(path: Path) -> np.ndarray:
    """Images as uint8 (N, rows, cols); 0 = background, 255 = ink."""
    return _parse(_read_bytes(path), IMAGES_MAGIC, 3, path)


def load_idx_labels(path: Path) -> np.ndarray:
    """Labels as uint8 (N,), values 0-9."""
    labels = _parse(_read_bytes(path), LABELS_MAGIC, 1, path)
    if labels.size and labels.max() > 9:
        raise IdxFormatError(f"{path}: label {labels.max()} out of range 0-9")
    return labels


def load_split(data_dir: Path, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,28,28), labels uint8 (N,)) of one MNIST split."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_FILES)}")
    image_file, label_file = SPLIT_FILES[split]
    images = load_idx_images(Path(data_dir) / image_file)
    labels = load_idx_labels(Path(data_dir) / label_file)
    if len(images) != len(labels):
        raise IdxFormatError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels
