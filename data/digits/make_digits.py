"""Regenerate data/digits/train.csv and data/digits/test.csv.

Source: the UCI "Optical Recognition of Handwritten Digits" 8x8 data set, as
bundled with scikit-learn (``sklearn.datasets.load_digits``: 1797 samples,
64 integer features in 0..16, label 0-9).

scikit-learn is NOT a dependency of netcli; it is needed only to run this
script once. Install it somewhere throw-away, e.g.::

    pip install --target /tmp/skl scikit-learn
    PYTHONPATH=/tmp/skl python data/digits/make_digits.py

The split is stratified by label and seeded (numpy.random.default_rng(0)),
so it does not depend on the scikit-learn version beyond the data itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_TEST = 360
SEED = 0


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_idx, test_idx), each sorted, with per-class test counts
    proportional to class frequency (largest-remainder rounding so that the
    test set has exactly ``n_test`` rows)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_test / len(labels)
    n_per_class = np.floor(quota).astype(int)
    short = n_test - n_per_class.sum()
    # Give the remaining slots to the classes with the largest remainders
    # (ties broken by class order, stable sort).
    order = np.argsort(-(quota - n_per_class), kind="stable")
    n_per_class[order[:short]] += 1
    test_parts = []
    for cls, k in zip(classes, n_per_class):
        idx = np.flatnonzero(labels == cls)
        test_parts.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test_parts))
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    train_idx = np.flatnonzero(train_mask)
    return train_idx, test_idx


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"p{i}" for i in range(X.shape[1])] + ["label"])
    rows = np.column_stack([X, y]).astype(np.int64)
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()

    from sklearn.datasets import load_digits  # only needed here

    digits = load_digits()
    X = digits.data
    y = digits.target
    Xi = X.astype(np.int64)
    assert np.array_equal(Xi, X), "pixel values are expected to be integers"
    assert Xi.shape == (1797, 64) and Xi.min() >= 0 and Xi.max() <= 16

    train_idx, test_idx = stratified_split(y, args.n_test, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_dir / "train.csv", Xi[train_idx], y[train_idx])
    write_csv(args.out_dir / "test.csv", Xi[test_idx], y[test_idx])

    for name, idx in (("train", train_idx), ("test", test_idx)):
        counts = np.bincount(y[idx], minlength=10)
        print(f"{name}: {len(idx)} rows, class counts {counts.tolist()}")


if __name__ == "__main__":
    main()
