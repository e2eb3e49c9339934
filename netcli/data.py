"""Data files -> arrays: CSV (header row), NPZ, NPY (memory-mapped) and '-' for stdin;
preprocessing with statistics from the training split; seeded minibatches.

Errors name the file, the row and the column (rows counted as in the file, header = row 1).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netcli.errors import DataError

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


@dataclass
class Table:
    """Raw features and targets as read. X: (m, ...) numbers; target: (m, ...) or None."""

    X: np.ndarray
    target: np.ndarray | None
    source: str
    columns: list[str] = field(default_factory=list)
    target_name: str = ""


# -- reading -------------------------------------------------------------------

def read_table(path: str, target=None, features=None, need_target: bool = True,
               stdin=None, n_features: int | None = None, drop=()) -> Table:
    """Read a data file. target: column name/index (CSV), key (NPZ), .npy path or column (NPY);
    'input' means no target column (autoencoders). need_target=False: a missing target is fine;
    with n_features, a CSV of exactly that many columns is taken as features only."""
    if path == "-":
        raw = (stdin or sys.stdin.buffer).read()
        if not raw:
            raise DataError("<stdin>: no data on standard input")
        if raw.startswith((NPY_MAGIC, ZIP_MAGIC)):
            return _from_arrays(_np_load(io.BytesIO(raw), "<stdin>"), "<stdin>", target, features,
                                need_target, n_features)
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return _read_csv(text, "<stdin>", target, features, need_target, n_features, drop)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: data file not found" if not p.exists() else f"{path}: not a file")
    if p.suffix.lower() in (".npy", ".npz"):
        return _from_arrays(_np_load(p, path), path, target, features, need_target, n_features)
    try:
        text = p.read_text(errors="replace")
    except OSError as e:   # no permission, an I/O error of the disk
        raise DataError(f"{path}: cannot read the data file ({e.strerror or e})") from None
    return _read_csv(text, path, target, features, need_target, n_features, drop)


def _np_load(file, source: str):
    """An NPY file (memory-mapped when on disk) or the arrays of an NPZ file, without pickles.
    Whatever is wrong with the bytes becomes one DataError naming the file."""
    try:
        loaded = np.load(file, mmap_mode="r" if isinstance(file, Path) else None, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        return loaded
    except Exception as e:  # truncated, corrupt, pickled, encrypted, ...: all the file's fault
        raise DataError(f"{source}: cannot read it as NPY or NPZ ({type(e).__name__}: {e}); "
                        f"is it truncated or corrupt?") from None


def _from_arrays(loaded, source, target, features, need_target, n_features) -> Table:
    if isinstance(loaded, dict):
        return _read_npz(loaded, source, target, features, need_target)
    return _from_npy(loaded, source, target, need_target, n_features)


def _read_npz(arrays: dict, source, target, features, need_target) -> Table:
    x_key = features if isinstance(features, str) else "X"
    y_key = "y" if target in (None, "input") else str(target)
    if x_key not in arrays:
        raise DataError(f"{source}: no array {x_key!r} (set data.features); the file has: "
                        f"{', '.join(arrays) or 'nothing'}")
    y = None
    if target != "input":
        if y_key in arrays:
            y = arrays[y_key]
        elif need_target:
            raise DataError(f"{source}: no target array {y_key!r} (set data.target); the file has: "
                            f"{', '.join(arrays)}")
    X = arrays[x_key]
    _check_numeric(X, source, x_key)
    if y is not None:
        _check_numeric(y, source, y_key)
    if y is not None and len(y) != len(X):
        raise DataError(f"{source}: {x_key!r} has {len(X)} rows but {y_key!r} has {len(y)}")
    return Table(X, y, source, target_name=y_key)


def _from_npy(array, source, target, need_target, n_features=None) -> Table:
    _check_numeric(array, source, "array")
    if target == "input":
        return Table(array, None, source)
    if isinstance(target, str) and target.endswith(".npy"):
        y = _np_load(Path(target), target)
        if isinstance(y, dict):
            raise DataError(f"{target}: data.target names an NPZ file; name a .npy array")
        _check_numeric(y, target, "array")
        if len(y) != len(array):
            raise DataError(f"{target}: has {len(y)} rows but {source} has {len(array)}")
        return Table(array, y, source, target_name=target)
    if not need_target and (target is None or isinstance(target, int)):
        width = int(np.prod(array.shape[1:]))
        if n_features is None or width == n_features or array.ndim != 2 or width != n_features + 1:
            return Table(array, None, source)  # features only; else the target column is dropped below
    if array.ndim != 2:
        raise DataError(f"{source}: an NPY file of shape {array.shape} holds no target column; "
                        f"name a target .npy file in data.target, or use NPZ with X and y")
    col = -1 if target is None else int(target)
    if not -array.shape[1] <= col < array.shape[1]:
        raise DataError(f"{source}: target column {col} is outside its {array.shape[1]} columns")
    col %= array.shape[1]
    keep = [c for c in range(array.shape[1]) if c != col]
    X = array[:, :col] if col == array.shape[1] - 1 else array[:, keep]
    return Table(X, array[:, col], source, target_name=f"column {col}")


def _check_numeric(array, source, key):
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: array {key!r} has dtype {array.dtype}; netcli reads numeric arrays")
    if array.ndim == 0 or len(array) == 0:
        raise DataError(f"{source}: array {key!r} has shape {list(array.shape)}; it needs one row per "
                        f"example and at least one row")


def _read_csv(text: str, source: str, target, features, need_target, n_features=None, drop=()) -> Table:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long cell is the data's problem, not csv's
    rows = list(csv.reader(io.StringIO(text)))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise DataError(f"{source}: empty file; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise DataError(f"{source}: only a header row, no data rows")
    ncol = len(header)
    target_col = None
    dropped = {c for c in range(ncol) if header[c] in drop or c in drop}
    features_only = not need_target and features is None and ncol - len(dropped) == n_features
    if target != "input" and not features_only:
        if not need_target and target is not None and target not in header and not isinstance(target, int):
            target_col = None  # data to predict on, without the target column
        else:
            target_col = _column_index(target if target is not None else ncol - 1, header, source, "target")
    if features is None:
        feature_cols = [c for c in range(ncol) if c != target_col and c not in dropped]
    else:
        names = [features] if isinstance(features, (str, int)) else features
        feature_cols = [_column_index(f, header, source, "feature") for f in names]
    if not feature_cols:
        raise DataError(f"{source}: no feature columns left (header: {', '.join(header)})")
    X = np.empty((len(rows) - 1, len(feature_cols)), dtype=np.float64)
    target_cells = []
    for r, row in enumerate(rows[1:]):
        line = r + 2
        if len(row) != ncol:
            raise DataError(f"{source}: row {line} has {len(row)} columns, the header has {ncol}")
        for j, c in enumerate(feature_cols):
            try:
                X[r, j] = value = float(row[c])
            except ValueError:
                raise DataError(f"{source}: row {line}, column {c + 1} ({header[c]!r}): "
                                f"not a number: {row[c]!r}") from None
            if not math.isfinite(value):
                raise DataError(f"{source}: row {line}, column {c + 1} ({header[c]!r}): value is "
                                f"{row[c].strip()}; remove or impute NaN and Inf before training")
        if target_col is not None:
            target_cells.append(row[target_col].strip())
    y = None
    if target_col is not None:
        y = _parse_target(target_cells)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            r = int(np.argmax(~np.isfinite(y)))
            raise DataError(f"{source}: row {r + 2}, column {target_col + 1} ({header[target_col]!r}): "
                            f"target is {target_cells[r]}; remove or impute NaN and Inf")
    return Table(X, y, source, [header[c] for c in feature_cols],
                 header[target_col] if target_col is not None else "")


def _column_index(key, header, source, what) -> int:
    if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit() and key not in header):
        index = int(key)
        if not -len(header) <= index < len(header):
            raise DataError(f"{source}: {what} column index {index} is outside the {len(header)} columns")
        return index % len(header)
    if key not in header:
        raise DataError(f"{source}: no {what} column {key!r}; the header has: {', '.join(header)}")
    return header.index(key)


def _parse_target(cells: list[str]) -> np.ndarray:
    """Numbers when every cell is one, else the strings themselves (class labels)."""
    try:
        return np.array([float(c) for c in cells])
    except ValueError:
        return np.array(cells, dtype=str)


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
            out = X.astype(dtype, copy=self.offset is not None)  # normalizing writes into it
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
        return d

    @classmethod
    def from_arrays(cls, arrays) -> "Preprocessing":
        return cls(str(arrays["meta.normalize"]), arrays.get("meta.offset"), arrays.get("meta.scale"),
                   arrays.get("meta.classes"), tuple(int(v) for v in arrays["meta.input_shape"]))


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
