"""The validation split of the training part, and the seeds of the sets every layer rebuilds alike.

A model's card records its split (seed and fraction); :func:`stratified_split` rebuilds it wherever
the model is trained, fine-tuned or evaluated, so its validation images stay unseen by training.
"""

from __future__ import annotations

import numpy as np

TEST_SEED = 10_007  # canvas-style test set (from the MNIST test set)
VAL_SEED = 20_011  # canvas-style validation set (from the training part's validation split)
STYLE_SEED = 3000  # + the model's seed: the styled copies' seed (the canvas-style training copies use 1000 +)
CANVAS_SEED = 1000  # + the model's seed (+ 7919 per further variant): the canvas-style training copies


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``val_fraction`` of each class goes to validation, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_val = round(len(idx) * val_fraction)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def split_description(seed: int, val_fraction: float) -> str:
    """How the validation split was drawn, as recorded in the card (same text = same split)."""
    return f"stratified {val_fraction:.0%} of the training part (seed {seed})"
