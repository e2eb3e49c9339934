"""Regenerate data/regression/train.csv and test.csv (synthetic regression).

NumPy only::

    python data/regression/make_regression.py

Eight features x0..x7 ~ N(0, 1), independent; the target is

    y = sin(x0) + 0.5*x1*x2 - 0.3*x3**2 + 0.2*x4 + eps,   eps ~ N(0, 0.1**2)

x5, x6, x7 do not enter y (distractors). One generator,
numpy.random.default_rng(seed), draws all features of the train and test rows
together (train first), then all the noise; the first n_train rows are the
training set and the rest the test set. Values are written with 6 significant
digits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_FEATURES = 8
NOISE_STD = 0.1


def target(X: np.ndarray) -> np.ndarray:
    """Noise-free target."""
    return np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] - 0.3 * X[:, 3] ** 2 + 0.2 * X[:, 4]


def make(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    X = rng.standard_normal((n, N_FEATURES))
    y = target(X) + rng.normal(0.0, NOISE_STD, size=n)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), fmt="%.6g", delimiter=",", header=header, comments="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    X_tr, y_tr, X_te, y_te = make(args.n_train, args.n_test, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_dir / "train.csv", X_tr, y_tr)
    write_csv(args.out_dir / "test.csv", X_te, y_te)
    for name, y in (("train", y_tr), ("test", y_te)):
        print(f"{name}: {len(y)} rows, y mean {y.mean():.4f}, y var {y.var():.4f}")


if __name__ == "__main__":
    main()
