"""Data files -> a Table of raw features and targets: CSV / TSV (plain, or .gz .bz2 .xz .zip),
Parquet, NPZ, NPY (memory-mapped), and '-' for stdin.

A CSV file is parsed by pandas' C parser, the whole file in one read (pandas 3.1 parses a large
file on disk on several threads), each feature column as numbers. Only when that fails (a cell
that is not a number, an empty cell, NaN or Inf, a ragged row) does a second read, chunk by
chunk, find the first chunk at fault, and the csv module walk the file to name the exact cell.
Errors name the file, the row as it is in the file (header = row 1; blank lines are skipped but
counted, as an editor counts them) and the column (its number and its header name).

Columns are taken by name: the header names the features, the target and the rest (returned
in Table.extra). A header name twice among the columns used is an error, not a guess.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import io
import lzma
import math
import os
import re
import sys
import warnings
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netcli.errors import DataError

NPY_MAGIC, ZIP_MAGIC, PARQUET_MAGIC = b"\x93NUMPY", b"PK\x03\x04", b"PAR1"
STDIN_COMPRESSIONS = {b"\x1f\x8b": gzip.decompress, b"BZh": bz2.decompress, b"\xfd7zXZ\x00": lzma.decompress}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}   # as pandas infers them
FILE_MAGIC = {b"\x1f\x8b": ".gz", b"BZh": ".bz2", b"\xfd7zXZ\x00": ".xz", ZIP_MAGIC: ".zip"}
PARQUET_SUFFIXES = (".parquet", ".pq")
TAB_SUFFIXES = (".tsv", ".tab")
PARQUET_INSTALL = "pip install 'netcli[parquet]'"

# What netcli reads as a number in a CSV cell: what pandas' C parser reads (ASCII digits, an
# optional exponent, inf / infinity / nan in any case, spaces around), nothing Python's float()
# adds ('1_000', Arabic-Indic digits). The C parser reads the feature columns; this names the
# cell at fault once it failed, and tells numeric targets from class labels read as text.
NUMBER = re.compile(r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\s*", re.I | re.A)
PLAIN_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.A)
SELECTION_KEYS = ("target", "features", "need_target", "n_features", "drop", "columns")
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
SAMPLE_ROWS = 1000                 # rows that tell a column of text (categories) from numbers
MAX_AUTO_CATEGORIES = 100          # more labels than this in a text column is not taken as categories unasked
CELLS_PER_CHUNK = 1 << 20          # a chunk of rows once the whole read failed: 8 MiB of float64
# What a broken file can make pandas or a decompressor raise (corrupt, truncated, undecodable).
READ_FAILURES = (ValueError, TypeError, OverflowError, OSError, EOFError, zlib.error, lzma.LZMAError,
                 zipfile.BadZipFile, csv.Error, Warning)


@dataclass
class Table:
    """Raw features and targets as read. X: (m, D) or (m, ...) numbers; target: (m, ...) or None.

    columns: the feature names, in X's column order: from the header (CSV) or the schema
      (Parquet); "0".."D-1" for a CSV read with header=False; None where the file names no
      columns (NPY, NPZ), so nothing can be taken by name later.
    extra: the file's other columns (neither features nor target), by header name: the cells
      as read (object arrays of str) for a CSV, the column's values for Parquet; empty for
      NPY and NPZ. A name the header repeats keeps its first column.
    categorical: the feature columns read as category labels, by name: (m,) arrays of str,
      stripped, '' for an empty cell. X then holds the other feature columns, in `columns`'
      order; netcli.encoding turns both into the network's numbers.
    """

    X: np.ndarray
    target: np.ndarray | None
    source: str
    columns: list[str] | None = None
    target_name: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, np.ndarray] = field(default_factory=dict)


def read_table(path: str, target=None, features=None, need_target: bool = True, stdin=None,
               n_features: int | None = None, drop=(), *, header: bool = True,
               delimiter: str | None = None, columns: list[str] | None = None,
               categories: dict[str, list[str] | None] | None = None, auto_categories: bool = False,
               missing: bool = False, positional_names: list[str] | None = None) -> Table:
    """Read a data file: CSV / TSV (maybe compressed), Parquet, NPZ, NPY, or '-' for stdin bytes.

    target: column name / index (CSV, Parquet; default: the last column), key (NPZ; default y),
      .npy path or column (NPY); 'input' means no target column (autoencoders).
    features: NPZ key (default X), or CSV / Parquet column names or indices (default: all but the
      target and `drop`). need_target=False: a missing target is fine; with n_features, a CSV of
      exactly that many columns (besides `drop`) is taken as features only.
    header: False for a CSV without a header row: every row is data, the columns are named by
      index ("0", "1", ...). delimiter: one character; default ',' (tab for .tsv / .tab).
    columns: the feature names a run was trained on (eval, predict): taken by name from the
      header, in that order, other columns ignored (features, drop and n_features then unused).
      NPY and NPZ files name no columns: theirs are taken by position, whatever columns says.
    categories: feature columns (CSV, Parquet) read as category labels, by name -> the labels
      they may hold (a cell outside them is an error naming its row), or None (any label).
      auto_categories: also every feature column whose cells are all text (in its first
      SAMPLE_ROWS rows), with at most MAX_AUTO_CATEGORIES labels.
    missing: an empty cell (or NaN) in a numeric feature column is read as NaN, not an error
      (it is imputed later); in a category column it is ''.
    positional_names: for a CSV without a header read for a run: the names the run gave its
      features, given to this file's features in their order (the file may lack the target
      column, which shifts the index names), so that `categories` and Table.columns match the run's.
    """
    if delimiter is not None and len(delimiter) != 1:
        raise DataError(f"{path}: the delimiter must be one character, got {delimiter!r}")
    how = dict(target=target, features=features, need_target=need_target, n_features=n_features,
               drop=drop, columns=columns, categories=categories or {}, auto_categories=auto_categories,
               missing=missing)
    if path == "-":
        return _read_stdin((stdin or sys.stdin.buffer).read(), header, delimiter, how, positional_names)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: data file not found" if not p.exists() else f"{path}: not a file")
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _from_arrays(_np_load(p, path), path, target, features, need_target, n_features, categories)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(p, path, how)
    compression = COMPRESSIONS.get(suffix)
    if compression is None:     # what the bytes say, whatever the name: a gzip file called data.csv
        try:
            with open(p, "rb") as f:
                magic = f.read(8)
        except OSError as e:   # no permission, an I/O error of the disk
            raise DataError(f"{path}: cannot read the data file ({e.strerror or e})") from None
        if magic.startswith(NPY_MAGIC):
            return _from_arrays(_np_load(p, path), path, target, features, need_target, n_features, categories)
        if magic.startswith(PARQUET_MAGIC):
            return _read_parquet(p, path, how)
        compression = next((COMPRESSIONS[s] for m, s in FILE_MAGIC.items() if magic.startswith(m)), None)
    inner = Path(p.stem).suffix.lower() if suffix in COMPRESSIONS else suffix   # .csv of train.csv.gz
    if inner in (".npy", ".npz") and compression in ("gzip", "bz2", "xz"):
        return _read_compressed_arrays(p, path, compression, target, features, need_target, n_features,
                                       categories)
    sep = delimiter or ("\t" if inner in TAB_SUFFIXES else ",")
    return CsvFile(p, path, sep, header, compression).read(**how, positional_names=positional_names)


def _read_compressed_arrays(p: Path, source, compression, target, features, need_target, n_features,
                            categories) -> Table:
    """A compressed NPY or NPZ file (train.npy.gz): decompressed into memory, then loaded."""
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[compression]
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except READ_FAILURES as e:
        raise DataError(f"{source}: cannot decompress it ({type(e).__name__}: {e}); "
                        f"is it truncated or corrupt?") from None
    return _from_arrays(_np_load(io.BytesIO(raw), source), source, target, features, need_target, n_features,
                        categories)


def _read_stdin(raw: bytes, header, delimiter, how, positional_names=None) -> Table:
    """Bytes on standard input: NPY / NPZ / Parquet by their magic, gzip / bz2 / xz undone
    first, anything else CSV text."""
    source = "<stdin>"
    if not raw:
        raise DataError(f"{source}: no data on standard input")
    for magic, decompress in STDIN_COMPRESSIONS.items():
        if raw.startswith(magic):
            try:
                raw = decompress(raw)
            except READ_FAILURES as e:
                raise DataError(f"{source}: cannot decompress it ({type(e).__name__}: {e}); "
                                f"is it truncated or corrupt?") from None
            break
    if raw.startswith((NPY_MAGIC, ZIP_MAGIC)):
        return _from_arrays(_np_load(io.BytesIO(raw), source), source, how["target"], how["features"],
                            how["need_target"], how["n_features"], how["categories"])
    if raw.startswith(PARQUET_MAGIC):
        return _read_parquet(raw, source, how)
    return CsvFile(raw, source, delimiter or ",", header).read(**how, positional_names=positional_names)


# -- NPY and NPZ ---------------------------------------------------------------

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


def _from_arrays(loaded, source, target, features, need_target, n_features, categories=None) -> Table:
    if categories:
        raise DataError(f"{source}: an NPY or NPZ file names no columns, so it has no category column "
                        f"{next(iter(categories))!r}; categories come from CSV or Parquet files")
    if isinstance(loaded, dict):
        return _read_npz(loaded, source, target, features, need_target)
    return _from_npy(loaded, source, target, need_target, n_features)


def _read_npz(arrays: dict, source, target, features, need_target) -> Table:
    x_key = features if isinstance(features, str) else "X"
    y_key = "y" if target in (None, "input") else str(target)
    if x_key not in arrays:
        raise DataError(f"{source}: no array {x_key!r}{_did_you_mean(x_key, list(arrays))} (set "
                        f"data.features); the file has: {', '.join(arrays) or 'nothing'}")
    y = None
    if target != "input":
        if y_key in arrays:
            y = arrays[y_key]
        elif need_target:
            raise DataError(f"{source}: no target array {y_key!r}{_did_you_mean(y_key, list(arrays))} "
                            f"(set data.target); the file has: {', '.join(arrays)}")
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
    named = isinstance(target, str) and not target.lstrip("-").isdigit()   # a CSV column name
    if named and need_target:
        raise DataError(f"{source}: an NPY array has no column named {target!r}; set data.target to a "
                        f"column index or a target .npy file")
    if not need_target and (target is None or isinstance(target, int) or named):
        if named:
            target = None
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


# -- which columns: features, target, the rest (CSV and Parquet) ---------------

@dataclass
class Selection:
    """Column positions in the file: features in X's order, the target, and the rest; `text`,
    the feature columns read as category labels (not in `features`, not in X)."""

    features: list[int]
    target: int | None
    rest: list[int]
    text: list[int] = field(default_factory=list)

    def with_text(self, text: list[int]) -> "Selection":
        return Selection([c for c in self.features if c not in text], self.target, self.rest, text)


def select_columns(names: list[str], source: str, target=None, features=None, need_target=True,
                   n_features=None, drop=(), columns=None, indexed=False) -> Selection:
    """The file's column names -> which columns are features and which is the target.
    indexed: the names are the columns' indices (a CSV without a header row)."""
    ncol = len(names)

    def find(key, what):
        return _column_index(key, names, source, what, indexed)

    target_col = None
    if columns is not None:
        feature_cols = _columns_by_name(columns, names, source, indexed)
        if target == "input":
            pass
        elif target is None:   # the last column, as in training, unless it is a feature here
            target_col = ncol - 1 if need_target and ncol - 1 not in feature_cols else None
        elif need_target or isinstance(target, int) or target in names:
            target_col = find(target, "target")
        if need_target and target != "input" and target_col is None:
            raise DataError(f"{source}: no target column: its last column {names[-1]!r} is one of the "
                            f"run's features; name the target in data.target")
    else:
        dropped = {c for c in range(ncol) if names[c] in drop or c in drop}
        features_only = not need_target and features is None and ncol - len(dropped) == n_features
        if target != "input" and not features_only:
            if not need_target and target is not None and target not in names and not isinstance(target, int):
                target_col = None  # data to predict on, without the target column
            else:
                target_col = find(target if target is not None else ncol - 1, "target")
        if features is None:
            feature_cols = [c for c in range(ncol) if c != target_col and c not in dropped]
        else:
            keys = [features] if isinstance(features, (str, int)) else features
            feature_cols = [find(f, "feature") for f in keys]
    if not feature_cols:
        raise DataError(f"{source}: no feature columns left (header: {_listing(names)})")
    if target_col is not None and target_col in feature_cols:
        raise DataError(f"{source}: the target column {names[target_col]!r} is also a feature; a model that "
                        f"sees its target learns nothing (take it out of data.features)")
    _check_unique(names, feature_cols + ([] if target_col is None else [target_col]), source)
    used = {*feature_cols, target_col}
    return Selection(feature_cols, target_col, [c for c in range(ncol) if c not in used])


def _column_index(key, names, source, what, indexed=False) -> int:
    if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit() and key not in names):
        index = int(key)
        if not -len(names) <= index < len(names):
            raise DataError(f"{source}: {what} column index {index} is outside the {len(names)} columns")
        return index % len(names)
    if key not in names:
        if indexed:
            raise DataError(f"{source}: no {what} column {key!r}: the file is read without a header row "
                            f"(data.header: false), so its {len(names)} columns are named by index, "
                            f"0 to {len(names) - 1}")
        raise DataError(f"{source}: no {what} column {key!r}{_did_you_mean(key, names)}; the header has: "
                        f"{_listing(names)}")
    return names.index(key)


def _columns_by_name(wanted: list[str], names: list[str], source: str, indexed: bool) -> list[int]:
    missing = [w for w in wanted if w not in names]
    if missing:
        shown = ", ".join(f"{w!r}{_did_you_mean(w, names)}" for w in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        has = (f"it is read without a header row (data.header: false), so its columns are named "
               f"0 to {len(names) - 1}" if indexed else f"the header has: {_listing(names)}")
        raise DataError(f"{source}: {len(missing)} of the {len(wanted)} feature columns the run was trained "
                        f"on {'is' if len(missing) == 1 else 'are'} not in the file: {shown}{more}; {has}")
    return [names.index(w) for w in wanted]


def _check_unique(names: list[str], used: list[int], source: str) -> None:
    counts = Counter(names)
    for c in used:
        if counts[names[c]] > 1:
            where = [i + 1 for i, n in enumerate(names) if n == names[c]]
            times = "twice" if len(where) == 2 else f"{len(where)} times"
            raise DataError(f"{source}: the header names {names[c]!r} {times} (columns "
                            f"{', '.join(map(str, where))}); netcli takes columns by name, so rename them")


def _did_you_mean(key, names: list[str]) -> str:
    text = str(key)
    folded = [n for n in names if n.strip().casefold() == text.strip().casefold()]
    close = folded or difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: list[str], most: int = 30) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def _shown(cell: str, most: int = 40) -> str:
    return repr(cell) if len(cell) <= most else repr(cell[:most]) + f"... ({len(cell):,} characters)"


# -- CSV -------------------------------------------------------------------------

def cell_problem(cell: str, missing: bool = False) -> str | None:
    """What is wrong with a feature cell, in the words of the message; None for a finite number
    (or, with missing, an empty cell or NaN: a value to impute)."""
    if missing and (not cell.strip() or cell.strip().lower() == "nan"):
        return None
    if not cell.strip():
        return "empty cell; fill in or remove missing values, or set data.impute: mean or median"
    if not NUMBER.fullmatch(cell):
        return f"not a number: {_shown(cell)}"
    value = float(cell)
    if math.isfinite(value):
        return None
    word = cell.strip().lstrip("+-").lower()
    if word.startswith("nan"):
        return f"value is {cell.strip()}; remove NaN before training, or set data.impute: mean or median"
    if word.startswith("inf"):
        return f"value is {cell.strip()}; remove Inf before training (it is not a missing value)"
    return (f"value {_shown(cell.strip())} is beyond float64 (largest {np.finfo(np.float64).max:.4g}); "
            f"rescale the data")


class CsvFile:
    """One CSV / TSV file (a path, maybe compressed, or the bytes of stdin) and its readers:
    pandas' C parser for the data (the whole file; chunk by chunk once that failed), the csv
    module to name a bad cell."""

    def __init__(self, file: Path | bytes, source: str, sep: str = ",", header: bool = True,
                 compression: str | None = None):
        self.file, self.source, self.sep, self.header, self.compression = file, source, sep, header, compression
        self.missing = False     # empty cells and NaN in numeric features read as NaN (data.impute)

    def read(self, target=None, features=None, need_target=True, n_features=None, drop=(), columns=None,
             categories=None, auto_categories=False, missing=False, positional_names=None) -> Table:
        self.missing = missing
        names = self.names()
        cols = select_columns(names, self.source, target, features, need_target, n_features, drop, columns,
                              indexed=not self.header)
        called = {c: names[c] for c in cols.features}      # a feature's name in the Table
        if positional_names is not None and not self.header and len(positional_names) == len(cols.features):
            called = dict(zip(cols.features, positional_names))
        feature_names = [called[c] for c in cols.features]
        categories = categories or {}
        _check_category_names(categories, feature_names, self.source)
        text_cols = {c for c in cols.features if called[c] in categories}
        auto = self._text_columns(names, cols.features) - text_cols if auto_categories else set()
        text_cols |= auto
        cols = cols.with_text(sorted(text_cols))
        X, text = self._read_data(names, cols)
        y, target_col = None, cols.target
        if target_col is not None:
            y = self._target(text[target_col], names, cols, need_target)
            if y is None:
                target_col = None
        self._check_short_rows(text, names, cols)
        extra = {}
        for c in cols.rest + ([cols.target] if cols.target is not None and target_col is None else []):
            extra.setdefault(names[c], text[c])
        labels = {}
        for c in cols.text:
            cells = np.array([str(v).strip() for v in text[c]], dtype=str)
            problem = _category_problem(cells, categories.get(called[c]), missing)
            if problem is not None:
                r, what = problem
                raise DataError(f"{self.source}: row {self._row_of(names, cols, r)}, column {c + 1} "
                                f"({names[c]!r}): {what}")
            if c in auto:
                _check_auto_categories(cells, names[c], c, self.source)
            labels[called[c]] = cells
        return Table(X, y, self.source, feature_names, names[target_col] if target_col is not None else "",
                     extra, labels)

    def _text_columns(self, names, feature_cols) -> set[int]:
        """The feature columns whose non-empty cells are all text in the first SAMPLE_ROWS rows."""
        import pandas as pd
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample = self._pandas(header=0 if self.header else None, names=list(range(len(names))),
                                      nrows=SAMPLE_ROWS, dtype=object)
        except (pd.errors.EmptyDataError, *READ_FAILURES):
            return set()          # the full read names what is wrong
        found = set()
        for c in feature_cols:
            cells = [v.strip() for v in sample[c] if isinstance(v, str) and v.strip()]
            if cells and not any(NUMBER.fullmatch(v) for v in cells):
                if all(DECIMAL_COMMA.fullmatch(v) for v in cells):
                    raise DataError(f"{self.source}: column {c + 1} ({names[c]!r}) holds numbers with decimal "
                                    f"commas ({_shown(cells[0])}); netcli reads a decimal point (set "
                                    f"data.delimiter if ';' separates the cells, and convert the commas)")
                found.add(c)
        return found

    # -- the header ----------------------------------------------------------------

    def names(self) -> list[str]:
        """The column names: the header row's cells, stripped; "0".."n-1" with header=False."""
        import pandas as pd
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first = self._pandas(header=None, nrows=1, dtype=object)
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.source}: empty file; expected a header row and data rows") from None
        except READ_FAILURES as e:
            raise self._unreadable(e) from None
        if first.empty:
            raise DataError(f"{self.source}: empty file; expected a header row and data rows")
        cells = ["" if not isinstance(v, str) else v for v in first.iloc[0]]
        if not self.header:
            return [str(i) for i in range(len(cells))]
        names = [c.strip() for c in cells]
        names[0] = names[0].lstrip("\ufeff").strip()
        if all(PLAIN_NUMBER.fullmatch(n) for n in names) and names != [str(i) for i in range(len(names))]:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise DataError(f"{self.source}: the first row ({shown}) is all numbers, so the file looks like it "
                            f"has no header row; set data.header: false to read every row as data (its "
                            f"columns are then named by index: 0, 1, ...), or add a header row")
        return names

    # -- the data, fast ----------------------------------------------------------------

    def _read_data(self, names, cols: Selection) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(X (m, D) float64 in the selection's feature order, {column: its cells} for the rest;
        the target's cells are numbers where the C parser reads its whole column as numbers).

        One pandas read of the whole file (pandas 3.1 parses a large file on disk in parallel);
        if a feature column is not all finite numbers, or pandas raises, a second read, chunk by
        chunk, finds the first chunk at fault and the csv module the cell."""
        try:
            frame = self._whole(names, cols)
        except READ_FAILURES:
            frame = None
        result = None if frame is None else self._from_frame(frame, cols)
        del frame
        if result is None:
            result = self._read_chunks(names, cols)    # raises the located error, as a rule
        X, text = result
        if cols.target is not None and text[cols.target].dtype == object and \
                not all(isinstance(v, str) for v in text[cols.target]):
            text[cols.target] = self._column_text(cols.target, len(names))   # numbers here, words there
        return X, text

    def _whole(self, names, cols: Selection):
        import pandas as pd
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                      # DtypeWarning: a mixed column fails below
            # "Length of header or names does not match length of data": a long first row
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return self._pandas(header=0 if self.header else None, names=list(range(len(names))),
                                dtype=_text_dtypes(cols.rest + cols.text))

    def _from_frame(self, frame, cols: Selection, rows_per_block: int = 1 << 19):
        """The whole file's frame -> (X, text), or None when a feature column is not all finite
        numbers. X is filled a block of rows at a time (no second frame-sized copy)."""
        m = len(frame)
        if m == 0:
            raise DataError(f"{self.source}: only a header row, no data rows")
        columns = []
        for c in cols.features:
            column = frame[c]
            if column.dtype.kind not in "iuf":     # text, bools, empty cells, 'nan' (na_filter is off)
                column = _numbers_with_gaps(column) if self.missing else None
                if column is None:
                    return None
            columns.append(column.to_numpy(dtype=np.float64))
        X = np.empty((m, len(columns)))                   # C order: rows are examples
        step = max(256, rows_per_block // max(1, len(columns)))
        usable = _usable(self.missing)

        def fill(start) -> bool:     # NumPy copies without the GIL: blocks fill on several cores
            block = X[start:start + step]
            np.stack([col[start:start + step] for col in columns], axis=1, out=block)
            return usable(block)

        starts = range(0, m, step) if columns else ()
        workers = min(len(starts), os.cpu_count() or 1, 4)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                finite = all(list(pool.map(fill, starts)))
        else:
            finite = all(fill(start) for start in starts)
        if not finite:
            return None
        del columns
        features = set(cols.features)
        return X, {c: _numbers_or_objects(frame[c]) for c in range(frame.shape[1]) if c not in features}

    def _read_chunks(self, names, cols: Selection, nrows: int | None = None
                     ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The same read, chunk by chunk: the first chunk that fails is handed to the csv module.
        nrows: read only that many data records (those before blank rows at the end)."""
        import pandas as pd
        ncol = len(names)
        text_cols = [c for c in range(ncol) if c not in set(cols.features)]
        parts, text = [], {c: [] for c in text_cols}
        done = 0       # data rows read without a problem
        usable = _usable(self.missing)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")                  # DtypeWarning: a mixed column fails below
                warnings.simplefilter("error", pd.errors.ParserWarning)
                with self._pandas(header=0 if self.header else None, names=list(range(ncol)),
                                  dtype=_text_dtypes(cols.rest + cols.text), nrows=nrows,
                                  chunksize=max(1024, CELLS_PER_CHUNK // ncol)) as reader:
                    for chunk in reader:
                        if len(chunk) == 0:
                            continue
                        block = chunk[cols.features]
                        for c, dt in zip(cols.features, block.dtypes):
                            if dt.kind not in "iuf":
                                numbers = _numbers_with_gaps(block[c]) if self.missing else None
                                if numbers is None:
                                    raise _BadChunk(f"column {c + 1} ({names[c]!r}) reads as {dt}, not numbers")
                                block[c] = numbers
                        part = block.to_numpy(dtype=np.float64)    # often a transposed view: no copy
                        del block
                        if not usable(part):
                            raise _BadChunk("a value is NaN or Inf")
                        parts.append(part)
                        for c in text_cols:
                            text[c].append(_numbers_or_objects(chunk[c]))
                        done += len(chunk)
        except (_BadChunk, *READ_FAILURES) as e:
            found = self._locate(names, cols.features, done, e)
            if isinstance(found, DataError) or nrows is not None:
                raise (found if isinstance(found, DataError) else self._unreadable(e)) from None
        else:
            found = None
        if found is not None:
            return self._read_chunks(names, cols, nrows=found)
        if done == 0:
            raise DataError(f"{self.source}: only a header row, no data rows")
        X = np.empty((done, len(cols.features)))
        np.concatenate(parts, axis=0, out=X)
        del parts
        return X, {c: np.concatenate(v) if len({p.dtype for p in v}) == 1 else np.concatenate(
            [p.astype(object) for p in v]) for c, v in text.items()}

    def _column_text(self, c: int, ncol: int) -> np.ndarray:
        """One column's cells as strings (a second read; the first one checked the rows)."""
        return self._pandas(header=0 if self.header else None, names=list(range(ncol)), usecols=[c],
                            dtype=object)[c].to_numpy(dtype=object)

    def _target(self, cells: np.ndarray, names, cols: Selection, need_target: bool) -> np.ndarray | None:
        """Numbers when every cell is one, else the strings themselves (class labels); an empty
        cell, NaN or Inf is an error (without need_target, it means the file has no target)."""
        c = cols.target
        if cells.dtype.kind == "f":     # read as numbers by the C parser: no empty cell, no 'nan'
            bad = ~np.isfinite(cells)
            if not bad.any():
                return cells
            if not need_target:
                return None
            r = int(np.argmax(bad))
            row = self._row_of(names, cols, r)
            raise DataError(f"{self.source}: row {row}, column {c + 1} ({names[c]!r}): target is "
                            f"{cells[r]}; remove or impute NaN and Inf")
        stripped = [s.strip() for s in cells]
        empty = [i for i, s in enumerate(stripped) if not s]
        if empty and not need_target:   # data to predict on, its target column left blank
            return None
        if empty:
            row = self._row_of(names, cols, empty[0])
            raise DataError(f"{self.source}: row {row}, column {c + 1} ({names[c]!r}): empty cell, a missing "
                            f"target; fill it in or remove the row")
        y = _parse_target(stripped)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            if not need_target:
                return None
            r = int(np.argmax(~np.isfinite(y)))
            row = self._row_of(names, cols, r)
            raise DataError(f"{self.source}: row {row}, column {c + 1} ({names[c]!r}): target is "
                            f"{stripped[r]}; remove or impute NaN and Inf")
        return y

    def _check_short_rows(self, text, names, cols: Selection) -> None:
        """pandas pads a short row with empty cells; where the last column is not a feature (a
        feature's empty cell fails the fast path), an empty cell there may be a short row."""
        last = len(names) - 1
        if last in text:
            empty = np.flatnonzero(text[last] == "")
            if empty.size:
                self._row_of(names, cols, int(empty[-1]))   # raises at the first ragged row up to there

    def _pandas(self, **options):
        import pandas as pd
        source = io.BytesIO(self.file) if isinstance(self.file, bytes) else self.file
        return pd.read_csv(source, sep=self.sep, engine="c", compression=self.compression,
                           encoding="utf-8-sig", encoding_errors="replace", na_filter=False,
                           skip_blank_lines=True, index_col=False, **options)

    # -- the data, slowly, to name what is wrong -----------------------------------------

    def _locate(self, names, feature_cols, check_from: int, cause) -> DataError | int:
        """The error of the first bad row or cell from data record check_from on; or, when the
        only rows at fault are blank ones at the end (',,,' rows of a spreadsheet export), the
        number of data records before them."""
        found, _ = self._walk(names, feature_cols, check_from)
        return self._unreadable(cause) if found is None else found

    def _row_of(self, names, cols: Selection, record: int) -> int:
        """The file row of data record `record` (0-based); a ragged row up to it is raised."""
        error, row = self._walk(names, cols.features, None, until=record)
        if isinstance(error, DataError):
            raise error
        return row

    def _walk(self, names, feature_cols, check_from: int | None, until: int | None = None):
        """Walk the records with the csv module: the first ragged row, or, from data record
        `check_from` on, the first feature cell that is not a finite number.
        -> (DataError, or the count of records before trailing blank ones, or None;
            the file row of record `until`)."""
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long cell is the data's problem, not csv's
        ncol, order = len(names), sorted(feature_cols)
        width = "the header has" if self.header else "the first row has"
        record, line, header_seen = -1, 0, not self.header
        trailing = None         # (record, error) of a blank row at fault, while only blank rows follow
        try:
            with self._text() as f:
                reader = csv.reader(f, delimiter=self.sep)
                for cells in reader:
                    row, line = line + 1, reader.line_num
                    if not cells or (len(cells) == 1 and not cells[0].strip()):
                        continue        # a blank line, skipped (and counted)
                    if not header_seen:
                        header_seen = True
                        continue
                    record += 1
                    if trailing is not None:
                        if not any(cell.strip() for cell in cells):
                            continue
                        return trailing[1], None      # data after the blank row: its error stands
                    error = None
                    if len(cells) != ncol:
                        error = DataError(f"{self.source}: row {row} has {len(cells)} columns, {width} {ncol}")
                    elif check_from is not None and record >= check_from:
                        for c in order:
                            problem = cell_problem(cells[c], self.missing)
                            if problem:
                                error = DataError(f"{self.source}: row {row}, column {c + 1} "
                                                  f"({names[c]!r}): {problem}")
                                break
                    if error is not None:
                        if until is None and not any(cell.strip() for cell in cells):   # a blank row
                            trailing = (record, error)
                            continue
                        return error, row
                    if record == until:
                        return None, row
        except READ_FAILURES as e:
            return self._unreadable(e), None
        return (None if trailing is None else trailing[0]), None

    def _text(self):
        """The file as text for the csv module, decoded and decompressed as pandas does."""
        if isinstance(self.file, bytes):
            binary = io.BytesIO(self.file)
        elif self.compression == "zip":
            with zipfile.ZipFile(self.file) as archive:
                binary = io.BytesIO(archive.read(archive.namelist()[0]))
        else:
            opener = {None: open, "gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[self.compression]
            binary = opener(self.file, "rb")
        return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")

    def _unreadable(self, e) -> DataError:
        what = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        if isinstance(e, OSError) and e.errno is not None:   # no permission, an I/O error of the disk
            return DataError(f"{self.source}: cannot read the data file ({e.strerror or e})")
        hint = "; is it truncated or corrupt?" if self.compression else ""
        return DataError(f"{self.source}: cannot read it as CSV ({type(e).__name__}: {what}){hint}")


def _text_dtypes(columns: list[int]) -> dict | None:
    """read_csv's dtype: the columns read as text. Measured on 200,000 x 100 floats: pandas 3.1
    reads with a dtype mapping, even an empty one, in 380 MiB instead of 490; pandas 2.2 with
    any mapping in 920 MiB instead of 350 (and a second slower), so it gets none when it can."""
    import pandas as pd
    dtypes = {c: object for c in columns}
    return dtypes if dtypes or int(pd.__version__.split(".")[0]) >= 3 else None


def _usable(missing: bool):
    """The test a block of feature values passes: all finite, or, with missing, no Inf."""
    if missing:
        return lambda block: not np.isinf(block).any()
    return lambda block: bool(np.isfinite(block).all())


def _numbers_with_gaps(column):
    """A text column of numbers and empty cells (or 'nan') -> float64 with NaN in the gaps;
    None if a cell is something else (the slow walk names it)."""
    import pandas as pd
    cells = column.astype(str).str.strip()
    gaps = (cells == "") | (cells.str.lower() == "nan")
    numbers = pd.to_numeric(cells.mask(gaps, "nan"), errors="coerce")
    if (numbers.isna() & ~gaps).any() or not all(NUMBER.fullmatch(v) for v in cells[~gaps]):
        return None
    return numbers.astype(np.float64)


def _check_category_names(categories: dict, feature_names: list[str], source: str) -> None:
    for name in categories:
        if name not in feature_names:
            raise DataError(f"{source}: data.categorical names {name!r}, which is not a feature column"
                            f"{_did_you_mean(name, feature_names)} (features: {_listing(feature_names)})")


def _all_text(column) -> bool:
    """A frame's column of labels: not numbers, and (as a CSV column is judged) no number among
    its first SAMPLE_ROWS non-empty values."""
    if column.dtype.kind in "biufc":
        return False
    values = [str(v).strip() for v in column.head(SAMPLE_ROWS * 4).dropna()][:SAMPLE_ROWS]
    values = [v for v in values if v]
    return bool(values) and not any(NUMBER.fullmatch(v) for v in values)


def _check_auto_categories(cells: np.ndarray, name: str, c: int, source: str) -> None:
    """A text column taken as categories unasked must look like categories, not ids or free text."""
    count = len(np.unique(cells[cells != ""]))
    if count > MAX_AUTO_CATEGORIES:
        raise DataError(f"{source}: column {c + 1} ({name!r}) holds text with {count:,} different values; "
                        f"one-hot encoding it would add {count:,} inputs. Leave it out (data.drop), or "
                        f"list it in data.categorical to encode it anyway")


def _category_problem(cells: np.ndarray, known: list[str] | None, missing: bool) -> tuple[int, str] | None:
    """(row index, what is wrong) with a column of category labels, or None. known: the labels
    the run was trained on (None: any)."""
    if not missing:
        empty = np.flatnonzero(cells == "")
        if empty.size:
            return int(empty[0]), "empty cell; fill in or remove missing values, or set data.impute: mean or median"
    if known is not None:
        unknown = np.flatnonzero(~np.isin(cells, [*known, ""]))
        if unknown.size:
            cell = str(cells[unknown[0]])
            close = difflib.get_close_matches(cell, list(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return int(unknown[0]), (f"category {_shown(cell)}{hint} was not in the training data, which had "
                                     f"{len(known)}: {_listing(list(known), 12)}")
    return None


def _numbers_or_objects(column) -> np.ndarray:
    """A column of a frame: float64 where pandas read numbers, else an object array."""
    return column.to_numpy(dtype=np.float64 if column.dtype.kind in "iuf" else object)


class _BadChunk(Exception):
    """A chunk of rows the fast reader cannot take as it is; the slow walk names the cell."""


def _parse_target(cells: list[str]) -> np.ndarray:
    """Numbers when every cell is one (as the feature columns read them), else the strings
    themselves (class labels)."""
    values = np.empty(len(cells))
    for i, c in enumerate(cells):
        if not NUMBER.fullmatch(c):
            return np.array(cells, dtype=str)
        values[i] = float(c)
    return values


# -- Parquet ---------------------------------------------------------------------

def _read_parquet(file: Path | bytes, source: str, how: dict) -> Table:
    """A Parquet file (pandas with pyarrow): its schema names the columns; only the columns
    used are read. Rows in messages count from 0 (a Parquet file has no header row)."""
    try:
        import pandas as pd
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{source}: reading Parquet needs pyarrow: {PARQUET_INSTALL}") from None

    def opened():
        return io.BytesIO(file) if isinstance(file, bytes) else file

    try:
        schema = pq.read_schema(opened())
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        names = [str(n) for n in schema.names if n not in index]
    except Exception as e:   # not Parquet, truncated, corrupt: the file's fault
        raise DataError(f"{source}: cannot read it as Parquet ({type(e).__name__}: {e}); "
                        f"is it truncated or corrupt?") from None
    if not names:
        raise DataError(f"{source}: a Parquet file without columns")
    how = dict(how)
    cols = select_columns(names, source, **{k: how[k] for k in SELECTION_KEYS})
    wanted = sorted({*cols.features, *cols.rest, *([] if cols.target is None else [cols.target])})
    try:
        df = pd.read_parquet(opened(), columns=[names[c] for c in wanted])
    except Exception as e:
        raise DataError(f"{source}: cannot read it as Parquet ({type(e).__name__}: {e}); "
                        f"is it truncated or corrupt?") from None
    return _table_of_frame(df, names, cols, source, how["categories"], how["auto_categories"], how["missing"])


def read_frame(frame, target=None, features=None, need_target: bool = True, drop=(), *,
               columns: list[str] | None = None, categories: dict[str, list[str] | None] | None = None,
               auto_categories: bool = False, missing: bool = False, source: str = "<DataFrame>") -> Table:
    """A pandas DataFrame in memory, read as a Parquet file's columns are (the same arguments as
    read_table; rows in messages count from 0)."""
    names = [str(n) for n in frame.columns]
    if len(set(names)) != len(names) or names != list(frame.columns):
        frame = frame.set_axis(names, axis=1)
    cols = select_columns(names, source, target, features, need_target, None, drop, columns)
    return _table_of_frame(frame, names, cols, source, categories or {}, auto_categories, missing)


def _table_of_frame(df, names: list[str], cols: Selection, source: str, categories: dict, auto: bool,
                missing: bool) -> Table:
    """A frame of a Parquet file's (or the caller's) columns -> a Table, every cell checked."""
    _check_category_names(categories, [names[c] for c in cols.features], source)
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    text = [c for c in cols.features if names[c] in categories or (auto and _all_text(df[names[c]]))]
    feature_names, cols = [names[c] for c in cols.features], cols.with_text(text)
    X = np.empty((len(df), len(cols.features)))
    for j, c in enumerate(cols.features):
        column = df[names[c]]
        if column.dtype.kind not in "iuf":
            raise DataError(f"{source}: column {c + 1} ({names[c]!r}) holds {column.dtype} values, not "
                            f"numbers; netcli reads numeric feature columns (list it in data.categorical "
                            f"to one-hot encode it)")
        X[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(X[:, j]) if missing else ~np.isfinite(X[:, j])
        if bad.any():
            r = int(np.argmax(bad))
            raise DataError(f"{source}: row {r} (counting from 0), column {c + 1} ({names[c]!r}): value is "
                            f"{X[r, j]}; remove or impute NaN and Inf before training")
    labels = {}
    for c in cols.text:
        column = df[names[c]]
        gaps = column.isna().to_numpy()
        cells = np.array(["" if gap else str(v).strip() for v, gap in zip(column, gaps)], dtype=str)
        problem = _category_problem(cells, categories.get(names[c]), missing)
        if problem is not None:
            raise DataError(f"{source}: row {problem[0]} (counting from 0), column {c + 1} ({names[c]!r}): "
                            f"{problem[1]}")
        if names[c] not in categories:
            _check_auto_categories(cells, names[c], c, source)
        labels[names[c]] = cells
    y = None
    if cols.target is not None:
        y = _parquet_target(df[names[cols.target]], source, names, cols.target)
    extra = {}
    for c in cols.rest:
        extra.setdefault(names[c], df[names[c]].to_numpy())
    return Table(X, y, source, feature_names, names[cols.target] if cols.target is not None else "", extra, labels)


def _parquet_target(column, source, names, c) -> np.ndarray:
    """Numbers for a numeric column, else its values as strings; NaN, Inf or null is an error."""
    def at(r: int) -> str:
        return f"{source}: row {r} (counting from 0), column {c + 1} ({names[c]!r})"

    if column.dtype.kind in "iuf":
        y = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(y)
        if bad.any():
            r = int(np.argmax(bad))
            raise DataError(f"{at(r)}: target is {y[r]}; remove or impute NaN and Inf")
        return y
    missing = column.isna().to_numpy()
    if missing.any():
        raise DataError(f"{at(int(np.argmax(missing)))}: a missing target (null); fill it in or remove the row")
    return np.array([str(v) for v in column], dtype=str)
