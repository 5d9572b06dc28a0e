"""digits.data.splits: the validation split every layer rebuilds from a model's card."""

from __future__ import annotations

import numpy as np

from digits.data.splits import split_description, stratified_split


def test_stratified_split_is_deterministic_and_disjoint() -> None:
    labels = np.arange(1000) % 10
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [10] * 10
    np.testing.assert_array_equal(val, stratified_split(labels, 0.1, seed=3)[1])


def test_the_split_description_names_fraction_and_seed() -> None:
    assert split_description(2, 0.1) == "stratified 10% of the training part (seed 2)"
