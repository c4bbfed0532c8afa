"""Small, bundled data sets for the course (numpy only: no torch, no downloads).

The 8x8 handwritten digits of scikit-learn (1797 images, 10 classes, UCI "optdigits" test set) ship inside
the scikit-learn wheel, so they load offline in milliseconds: the right size for training a CNN on a laptop
in seconds and for running it on a simulated accelerator.
"""
from __future__ import annotations

import numpy as np

DIGITS_MAX = 16.0            # sklearn's digit pixels are integers 0..16 (counts of set pixels in 4x4 blocks)


def load_digits_split(test_fraction: float = 0.25, seed: int = 0):
    """(X_train, y_train, X_test, y_test): the bundled 8x8 digits, stratified and deterministic.

    Images are float32 (N, 1, 8, 8) scaled to [0, 1] (pixel / 16), labels int64 (N,). Each class sends
    round(test_fraction * its count) images to the test split, chosen by a numpy Generator seeded with
    `seed`; both splits keep the original sample order, so the same arguments always give the same arrays.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no network access

    digits = load_digits()
    X = (digits.images.astype(np.float32) / np.float32(DIGITS_MAX))[:, None, :, :]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):                             # stratified: the same fraction of every class
        idx = np.flatnonzero(y == c)
        n_test = int(round(test_fraction * len(idx)))
        if not 0 < n_test < len(idx):
            raise ValueError(f"test_fraction={test_fraction} leaves class {c} ({len(idx)} images) with an empty split")
        test[rng.permutation(idx)[:n_test]] = True
    return X[~test], y[~test], X[test], y[test]
