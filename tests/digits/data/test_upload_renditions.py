"""Training digits as the upload path hands them to the model (digits.data.upload_renditions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.data import upload_renditions
from digits.data.canvas_style import data_hash
from digits.data.uploadset import VARIANTS, make_upload
from digits.evaluation.evaluate import upload_input

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"


@pytest.fixture(scope="module")
def train_digits() -> tuple[np.ndarray, np.ndarray]:
    from digits.data.mnist import load_split

    images, labels = load_split(DATA_DIR, "train")
    return images[:8], labels[:8]


def test_each_rendition_is_an_upload_read_back_by_the_service_path(train_digits) -> None:
    images, labels = train_digits
    out = upload_renditions.build(images, labels, copies=2, cache_dir=None, progress=False)
    assert out.shape == (2, 8, 28, 28) and out.dtype == np.uint8
    # copy 1 of image 5, remade by hand: one of the upload set's recipes, then the service's upload path
    rng = np.random.default_rng([upload_renditions.SEED, 1, 5])
    variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
    upload = make_upload(images[5], int(labels[5]), 5, variant, seed=upload_renditions.SEED + 7919)
    np.testing.assert_array_equal(out[1, 5], np.rint(upload_input(upload.data) * 255).astype(np.uint8))
    assert not np.array_equal(out[0], out[1])  # the copies differ
    assert not np.array_equal(out[0], images)  # and are not the images themselves
    # every rendition still holds its digit where MNIST puts it: ink, centred by mass in the 28 px frame
    for img in out.reshape(-1, 28, 28):
        ys, xs = np.nonzero(img > 64)
        assert len(ys) > 20 and 9 < ys.mean() < 19 and 9 < xs.mean() < 19


def test_processes_chunks_and_the_cache_do_not_change_the_result(train_digits, tmp_path: Path) -> None:
    images, labels = train_digits
    ref = upload_renditions.build(images, labels, cache_dir=None, progress=False)
    par = upload_renditions.build(images, labels, cache_dir=tmp_path, workers=2, chunk=3, progress=False)
    np.testing.assert_array_equal(par, ref)
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and data_hash(images) in cached[0].name
    with np.load(cached[0]) as z:  # a second build reads the cache
        np.testing.assert_array_equal(z["images"], ref[0])
    np.testing.assert_array_equal(upload_renditions.build(images, labels, cache_dir=tmp_path, progress=False), ref)
    assert not np.array_equal(upload_renditions.build(images, labels, seed=1, cache_dir=None, progress=False), ref)
