"""MNIST-style normalisation: 28x28, longer side 20, centre of mass at (14, 14), invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from digits.inference.normalize import mnist_normalize


def disc(img: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    return img


def shapes() -> dict[str, np.ndarray]:
    ring = disc(np.zeros((120, 90)), 60, 45, 40)
    ring[(np.mgrid[:120, :90][0] - 60) ** 2 + (np.mgrid[:120, :90][1] - 45) ** 2 < 30**2] = 0
    ell = np.zeros((200, 300))
    ell[20:180, 30:50] = 1.0
    ell[160:180, 30:250] = 1.0  # an L: mass far from the box centre
    seven = np.zeros((64, 64))
    seven[5:12, 10:55] = 1.0
    for i in range(12, 60):
        seven[i, int(55 - (i - 12) * 0.6) - 4 : int(55 - (i - 12) * 0.6) + 3] = 1.0
    bar = np.zeros((300, 300))
    bar[30:270, 140:152] = 1.0
    return {"ring": ring, "L": ell, "seven": seven, "bar": bar, "dot": disc(np.zeros((9, 9)), 4, 4, 3)}


def bbox(img: np.ndarray, eps: float = 1e-3) -> tuple[int, int]:
    rows, cols = np.flatnonzero((img > eps).any(1)), np.flatnonzero((img > eps).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("name", ["ring", "L", "seven", "bar", "dot"])
def test_shape_box_and_centre_of_mass(name: str) -> None:
    out = mnist_normalize(shapes()[name])
    assert out is not None and out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert abs(max(bbox(out)) - 20) <= 1
    cy, cx = ndimage.center_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6  # integer placement, as MNIST


def test_nothing_cut_off_when_mass_is_off_centre() -> None:
    img = np.zeros((100, 200))
    img[48:52, 0:200] = 1.0  # a thin line...
    img[0:100, 160:200] = 1.0  # ...with nearly all the mass at its right end
    out = mnist_normalize(img)
    assert out is not None
    assert bbox(out) == (10, 20)  # clamped into the frame rather than cut
    assert out[:, 0].sum() > 0 or out[:, -1].sum() > 0  # pushed against a border


def test_aspect_ratio_is_kept() -> None:
    out = mnist_normalize(shapes()["bar"])  # 240 x 12 bar
    h, w = bbox(out)
    assert h == 20 and w <= 2


def test_empty_input_gives_none() -> None:
    assert mnist_normalize(np.zeros((50, 40))) is None
    assert mnist_normalize(np.full((10, 10), 1e-4)) is None
    assert mnist_normalize(np.full((5, 5), np.nan)) is None


def test_size_and_position_invariance() -> None:
    small = np.zeros((100, 100))
    small[20:60, 30:36] = 1
    small[20:26, 30:60] = 1  # a "7"-ish corner
    big = np.zeros((400, 300))
    big[200:360, 100:124] = 1  # the same drawing, 4x larger, elsewhere
    big[200:224, 100:220] = 1
    a, b = mnist_normalize(small), mnist_normalize(big)
    assert a is not None and b is not None
    assert np.abs(a - b).mean() < 0.02
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_mnist_digits_are_a_fixed_point() -> None:
    img = np.zeros((28, 28), dtype=np.float32)
    img[4:24, 12:17] = 1.0  # already 20 tall, centred like MNIST
    out = mnist_normalize(img)
    assert out is not None
    np.testing.assert_allclose(ndimage.center_of_mass(out), (13.5, 14.0), atol=0.51)
