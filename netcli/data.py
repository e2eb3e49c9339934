"""Arrays -> network-ready splits: preprocessing with statistics from the training split;
seeded minibatches. Reading the files (CSV, Parquet, NPZ, NPY, stdin) is `netcli.readers`;
read_table and Table are re-exported here.

Errors name the file, the row and the column (rows counted as in the file, header = row 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from netcli.encoding import encode
from netcli.errors import DataError
from netcli.readers import Table, read_table

__all__ = ["Table", "read_table", "Preprocessing", "Split", "make_split", "batches", "split_indices",
           "class_labels", "one_hot", "check_finite", "check_fits", "check_table_finite"]


# -- preprocessing -------------------------------------------------------------

@dataclass
class Preprocessing:
    """What turns raw features into network input and network output back into answers;
    fitted on the training split, saved with the run, reapplied by eval and predict."""

    normalize: str = "none"
    offset: np.ndarray | None = None
    scale: np.ndarray | None = None
    classes: np.ndarray | None = None      # sorted labels of a classification task
    input_shape: tuple = ()
    impute: str = "error"                  # data.impute: how empty feature cells were filled
    fill: np.ndarray | None = None         # (numeric features,) the training mean or median
    categories: dict[str, list[str]] | None = None   # category column -> its sorted labels (one-hot)

    def encode(self, table: Table) -> Table:
        """Raw columns as read -> X the network's numbers (netcli.encoding)."""
        return encode(table, self.fill, self.categories)

    @classmethod
    def fit(cls, X: np.ndarray, normalize: str, classes=None, input_shape=()) -> "Preprocessing":
        prep = cls(normalize, classes=classes, input_shape=tuple(input_shape))
        flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if normalize == "standard":
            prep.offset, prep.scale = flat.mean(axis=0), flat.std(axis=0)
        elif normalize == "minmax":
            prep.offset, prep.scale = flat.min(axis=0), np.ptp(flat, axis=0)
        elif normalize == "minmax_global":  # one range for all features: images keep their contrast
            d = flat.shape[1]
            prep.offset, prep.scale = np.full(d, flat.min()), np.full(d, np.ptp(flat))
        if prep.scale is not None:
            prep.scale[prep.scale == 0] = 1.0  # constant features stay constant
        return prep

    def inputs(self, X: np.ndarray, dtype, source: str = "", rows: np.ndarray | None = None) -> np.ndarray:
        """Raw rows -> (m, *input_shape) in dtype, normalized. rows: the file's row of each
        row of X, for messages (default: X's own row numbers)."""
        X = np.asarray(X)
        m = len(X)
        if tuple(X.shape[1:]) != self.input_shape:
            if int(np.prod(X.shape[1:])) != int(np.prod(self.input_shape)):
                raise DataError(f"{source}: rows have {int(np.prod(X.shape[1:]))} feature values "
                                f"(shape {list(X.shape[1:])}), but model.input {list(self.input_shape)} "
                                f"needs {int(np.prod(self.input_shape))}")
            X = X.reshape(m, *self.input_shape)
        with np.errstate(over="ignore"):   # an overflow is reported by check_fits
            # C order whatever the caller's (a Fortran-ordered array would change GEMM's last bits)
            out = X.astype(dtype, order="C", copy=self.offset is not None)  # normalizing writes into it
        check_fits(X, out, source, rows=rows)
        if self.offset is not None:
            flat = out.reshape(m, -1)
            flat -= self.offset.astype(dtype)
            flat /= self.scale.astype(dtype)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        d = {"meta.normalize": np.array(self.normalize), "meta.input_shape": np.array(self.input_shape)}
        if self.offset is not None:
            d["meta.offset"], d["meta.scale"] = self.offset, self.scale
        if self.classes is not None:
            d["meta.classes"] = self.classes
        if self.impute != "error":
            d["meta.impute"] = np.array(self.impute)
        if self.fill is not None:
            d["meta.fill"] = self.fill
        if self.categories:
            d["meta.categories"] = np.array(json.dumps(self.categories))
        return d

    @classmethod
    def from_arrays(cls, arrays) -> "Preprocessing":
        categories = json.loads(str(arrays["meta.categories"])) if "meta.categories" in arrays else None
        return cls(str(arrays["meta.normalize"]), arrays.get("meta.offset"), arrays.get("meta.scale"),
                   arrays.get("meta.classes"), tuple(int(v) for v in arrays["meta.input_shape"]),
                   str(arrays.get("meta.impute", "error")), arrays.get("meta.fill"), categories)


def class_labels(target: np.ndarray) -> np.ndarray:
    """Sorted distinct labels; numeric labels that are whole numbers become integers."""
    labels = np.unique(target)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    return labels


def _number_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def one_hot(target: np.ndarray, classes: np.ndarray, source: str, dtype) -> np.ndarray:
    """Labels -> (m, k) one-hot rows over `classes`; a label never seen in training is an error."""
    known = ", ".join(map(str, classes))
    if target.dtype.kind in "US" and classes.dtype.kind in "iuf":   # a text label among numbers
        classes, t = classes.astype(np.float64), np.array([_number_or_nan(c) for c in target])
    else:
        t = target.astype(classes.dtype) if classes.dtype.kind in "iu" and target.dtype.kind == "f" else target
    idx = np.searchsorted(classes, t)
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != t
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(f"{source}: row {row + 2}: class label {target[row].item()!r} was not seen in training "
                        f"(known: {known})")
    out = np.zeros((len(t), len(classes)), dtype=dtype)
    out[np.arange(len(t)), idx] = 1
    return out


def check_finite(X: np.ndarray, source: str, what: str = "value", first_row: int = 0) -> None:
    """A NaN or Inf in an array (NPZ, NPY) is named by its row index and flat feature index
    (CSV cells are checked as they are read, by row and column of the file)."""
    flat = np.asarray(X).reshape(len(X), -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{source}: row {first_row + row} (counting from 0), feature {col} "
                        f"(counting from 0): {what} is {flat[row, col]}; remove or impute NaN and "
                        f"Inf before training")


def check_fits(original: np.ndarray, cast: np.ndarray, source: str, what: str = "value",
               rows: np.ndarray | None = None, chunk: int = 65536) -> None:
    """A finite value that became Inf when cast to the training dtype (float64 data above
    float32's 3.4e38) is named by its row (rows[i]: the file's row of row i) and feature."""
    if original.dtype.kind != "f" or cast.dtype.kind != "f" or \
            np.finfo(original.dtype).max <= np.finfo(cast.dtype).max:
        return
    flat = cast.reshape(len(cast), -1)
    for start in range(0, len(flat), chunk):
        bad = ~np.isfinite(flat[start:start + chunk])
        if bad.any():
            row, col = np.argwhere(bad)[0]
            value = np.asarray(original).reshape(len(original), -1)[start + row, col]
            file_row = start + row if rows is None else int(rows[start + row])
            raise DataError(f"{source}: row {file_row} (counting from 0), feature {col} (counting "
                            f"from 0): {what} {value:g} is too large for {cast.dtype} (largest "
                            f"{np.finfo(cast.dtype).max:.3g}); rescale the data or set dtype: float64")


def check_table_finite(table: Table, chunk: int = 65536) -> None:
    """NaN / Inf anywhere in a table's features, named by row; scanned in chunks so no
    data-sized mask is built. Memory-mapped data is skipped here: Split.take checks each batch."""
    for start in range(0, len(table.X), chunk):
        check_finite(table.X[start:start + chunk], table.source, first_row=start)


# -- splitting and batches -----------------------------------------------------

def split_indices(n: int, fraction: float, rng: np.random.Generator,
                  labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices; stratified by label when labels are given."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    val = []
    for g in groups:
        g = rng.permutation(g)
        val.append(g[:int(round(fraction * len(g)))])
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(n, bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def batches(n: int, batch_size: int | str, rng: np.random.Generator | None):
    """Index arrays covering 0..n-1 once; shuffled when rng is given. 'full' is one batch."""
    size = n if batch_size == "full" else int(batch_size)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start:start + size]


# -- from a config's data section to network-ready splits ----------------------

@dataclass(frozen=True)
class Columns:
    """The training file's feature columns by name (None: an array file, taken by position) and
    its target column's name: how eval and predict find them in another file, by name."""

    features: list[str] | None = None
    target: str | None = None


@dataclass
class Split:
    """Rows ready for the network. take(idx) -> (X (b, *input_shape), y (b, ...)).

    In-memory data is preprocessed once; memory-mapped NPY data stays on disk and
    is preprocessed one batch at a time, so it can be larger than memory.
    """

    X: np.ndarray
    y: np.ndarray | None
    source: str
    labels: np.ndarray | None = None
    prep: Preprocessing | None = None      # set only for lazy (memory-mapped) splits
    dtype: object = np.float32
    extra: dict = field(default_factory=dict)   # columns carried through to predictions (--keep)

    def __len__(self):
        return len(self.X)

    def take(self, idx: np.ndarray):
        X = self.X[idx]
        if self.prep is not None:
            file_rows = self.X.rows[idx] if isinstance(self.X, _RowView) else np.asarray(idx)
            if not np.all(np.isfinite(X)):  # memory-mapped data is checked batch by batch
                bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
                k = int(np.argmax(bad))
                check_finite(X[k:k + 1], self.source, first_row=int(file_rows[k]))
            X = self.prep.inputs(X, self.dtype, self.source, rows=file_rows)
        if self.y is self.X:  # autoencoder: the target is the (preprocessed) input
            return X, X
        return X, (None if self.y is None else self.y[idx])


def make_split(table: Table, prep: Preprocessing, task, dtype, rows=None) -> Split:
    """A read table (optionally a subset of its rows) -> a Split with targets shaped for the loss."""
    X, target = table.X, table.target
    if rows is not None:
        X = X[rows] if not isinstance(X, np.memmap) else X
        target = None if target is None else target[rows]
    lazy = isinstance(X, np.memmap)
    if lazy and rows is not None:
        X = _RowView(X, rows)
    if not lazy:
        X = prep.inputs(X, dtype, table.source)
    y = labels = None
    if task.reconstructs:
        y = X
    elif target is not None:
        if task.labelled:
            labels = target
            y = one_hot(target, prep.classes, table.source, dtype)
        elif prep.classes is not None:   # a binary task's two text labels: the second is 1
            labels = target
            y = one_hot(target, prep.classes, table.source, dtype)[:, 1:]
        else:
            if np.asarray(target).dtype.kind not in "biuf":
                raise DataError(f"{table.source}: the target column {table.target_name!r} holds text "
                                f"labels; use loss: cross_entropy for classification")
            check_finite(np.asarray(target).reshape(len(target), -1), table.source, "target")
            with np.errstate(over="ignore"):   # an overflow is reported by check_fits
                y = np.asarray(target, dtype=dtype)
            check_fits(np.asarray(target), y, table.source, "target")
            if y.ndim == 1:
                y = y[:, None]
    return Split(X, y, table.source, labels, prep if lazy else None, dtype)


class _RowView:
    """Rows `rows` of a memory-mapped array, indexed lazily (no copy of the whole array)."""

    def __init__(self, array, rows):
        self.array, self.rows = array, rows
        self.shape = (len(rows), *array.shape[1:])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, idx):
        return self.array[self.rows[idx]]
