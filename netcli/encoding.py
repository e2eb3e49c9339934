"""Raw feature columns -> the network's numbers: empty cells filled with a statistic of the
training rows (data.impute: mean or median), category columns one-hot encoded with the
categories of the training file. Both are fitted once, saved with the run (Preprocessing), and
reapplied to validation, test and prediction files.

A table's features, in their column order, become the network's inputs in the same order, each
category column replaced in place by one 0/1 input per category (sorted); an empty category
cell (allowed with data.impute) is all zeros.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from netcli.errors import DataError
from netcli.readers import Table

IMPUTE = ("error", "mean", "median")


def fit_categories(table: Table) -> dict[str, list[str]]:
    """Each category column's sorted labels ('' for an empty cell is not one)."""
    return {name: sorted(set(cells.tolist()) - {""}) for name, cells in table.categorical.items()}


def fit_fill(table: Table, rows: np.ndarray | None, impute: str) -> np.ndarray | None:
    """(numeric features,) the mean or median of each numeric feature over the training rows,
    ignoring empty cells; None for impute 'error' (or no numeric features)."""
    if impute == "error" or table.X.ndim != 2 or table.X.shape[1] == 0:
        return None
    X = np.asarray(table.X if rows is None else table.X[rows], dtype=np.float64)
    empty = np.isnan(X).all(axis=0)
    if empty.any():
        names = numeric_names(table)
        j = int(np.argmax(empty))
        what = f"column {names[j]!r}" if names else f"feature {j} (counting from 0)"
        raise DataError(f"{table.source}: {what} has no values in the training rows to impute its "
                        f"{impute} from; fill it in or leave the column out")
    with np.errstate(invalid="ignore"):
        return np.nanmean(X, axis=0) if impute == "mean" else np.nanmedian(X, axis=0)


def count_gaps(table: Table, chunk: int = 65536) -> int:
    """Empty cells in the table's features: NaN in X, '' in its category columns."""
    X = table.X
    gaps = sum(int(np.isnan(X[s:s + chunk]).sum()) for s in range(0, len(X), chunk)) if X.dtype.kind == "f" else 0
    return gaps + sum(int((cells == "").sum()) for cells in table.categorical.values())


def numeric_names(table: Table) -> list[str] | None:
    """The names of X's columns: the features that are not category columns."""
    if table.columns is None:
        return None
    return [n for n in table.columns if n not in table.categorical]


def encode(table: Table, fill: np.ndarray | None, categories: dict[str, list[str]] | None) -> Table:
    """The table with X the network's numbers, (m, D_encoded) float64: gaps filled, categories
    one-hot, in column order. A table that needs neither is returned as it is (a memory-mapped
    NPY file stays on disk)."""
    categories = categories or {}
    if not table.categorical and (fill is None or not _has_gaps(table.X)):
        return table
    X = np.array(table.X, dtype=np.float64)     # a copy: the gaps are filled in place
    if fill is not None:
        if X.ndim != 2 or X.shape[1] != len(fill):
            raise DataError(f"{table.source}: rows have {X.shape[1]} numeric features, the run imputes {len(fill)}")
        gaps = np.isnan(X)
        X[gaps] = np.broadcast_to(fill, X.shape)[gaps]
    if not table.categorical:
        return replace(table, X=X)
    blocks, j = [], 0
    for name in table.columns:
        if name in table.categorical:
            labels = categories[name]
            cells = table.categorical[name]
            blocks.append((cells[:, None] == np.asarray(labels, dtype=str)[None, :]).astype(np.float64))
        else:
            blocks.append(X[:, j:j + 1])
            j += 1
    out = np.concatenate(blocks, axis=1) if blocks else np.empty((len(X), 0))
    return replace(table, X=out, categorical={})


def _has_gaps(X: np.ndarray, chunk: int = 65536) -> bool:
    """Whether float data holds NaN, scanned in chunks (no data-sized mask; memory-mapped too)."""
    return X.dtype.kind == "f" and any(np.isnan(X[s:s + chunk]).any() for s in range(0, len(X), chunk))
