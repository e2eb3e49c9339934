"""Regenerate data/adding/train.npz and test.npz: the "adding problem".

NumPy only::

    python data/adding/make_adding.py [--T 50] [--n-train 4000] [--n-test 1000] [--seed 0]

Each sequence has T steps and 2 input features per step:

- feature 0: a value drawn uniformly from [0, 1);
- feature 1: a marker, 1 at exactly two steps and 0 elsewhere. One marked
  step is drawn uniformly from the first half (steps 0 .. T//2 - 1), the other
  uniformly from the second half (steps T//2 .. T-1).

The target is the sum of the two marked values (so it lies in [0, 2)).
One generator, numpy.random.default_rng(seed), makes the training set first
and then the test set. Each .npz file holds ``X`` with shape (N, T, 2) and
``y`` with shape (N, 1), both float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(n: int, T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if T < 2:
        raise ValueError("T must be at least 2")
    half = T // 2
    values = rng.uniform(0.0, 1.0, size=(n, T))
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    X = np.stack([values, markers], axis=-1).astype(np.float32)
    # Sum the float32 values that are actually stored in X.
    y = (X[rows, first, 0] + X[rows, second, 0]).reshape(n, 1).astype(np.float32)
    return X, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=50, help="sequence length (default 50)")
    parser.add_argument("--n-train", type=int, default=4000, help="training sequences (default 4000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test sequences (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for numpy.random.default_rng (default 0)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", args.n_train), ("test", args.n_test)):
        X, y = make(n, args.T, rng)
        np.savez_compressed(args.out_dir / f"{name}.npz", X=X, y=y)
        mse_one = float(np.mean((y - 1.0) ** 2))
        print(f"{name}: X {X.shape} y {y.shape}, MSE of always predicting 1.0: {mse_one:.4f}")


if __name__ == "__main__":
    main()
