"""Reading data files right: compressed CSV, BOM, delimiters, Parquet, headerless files,
columns taken by name, and messages that name the file, row and column of a bad cell."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import numpy as np
import pandas as pd
import pytest

from netcli.errors import DataError
from netcli.readers import Table, read_table

from helpers import DIGITS_TRAIN

HEADER = "a,b,y\n"
ROWS = "1,2,0\n3,4.5,1\n-5,6e2,0\n"
X = [[1, 2], [3, 4.5], [-5, 600]]


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _error(path, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_table(str(path), *args, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# -- compression, BOM, delimiters -------------------------------------------------

@pytest.mark.parametrize("suffix,compress", [(".csv.gz", gzip.compress), (".csv.bz2", bz2.compress),
                                             (".csv.xz", lzma.compress)])
def test_compressed_csv(tmp_path, suffix, compress):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(compress((HEADER + ROWS).encode()))
    t = read_table(str(path), "y")
    np.testing.assert_array_equal(t.X, X)
    np.testing.assert_array_equal(t.target, [0, 1, 0])
    assert t.columns == ["a", "b"]


def test_zipped_csv(tmp_path):
    path = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train.csv", HEADER + ROWS)
    np.testing.assert_array_equal(read_table(str(path), "y").X, X)


def test_a_bad_cell_in_a_compressed_csv_is_named(tmp_path):
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress((HEADER + ROWS + "7,x,1\n").encode()))
    assert "row 5, column 2 ('b'): not a number: 'x'" in _error(path, "y")


def test_a_truncated_gzip_file_is_a_data_error(tmp_path):
    path = tmp_path / "train.csv.gz"
    data = gzip.compress((HEADER + ROWS * 200).encode())
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(path, "y")


def test_a_bom_before_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"label,a\n1,2\n0,3\n")
    t = read_table(str(path), "label")
    np.testing.assert_array_equal(t.X, [[2], [3]])
    assert t.target_name == "label"


def test_tsv_is_read_with_tabs(tmp_path):
    path = _write(tmp_path / "train.tsv", (HEADER + ROWS).replace(",", "\t"))
    np.testing.assert_array_equal(read_table(path, "y").X, X)


def test_a_semicolon_delimiter(tmp_path):
    path = _write(tmp_path / "train.csv", (HEADER + ROWS).replace(",", ";"))
    np.testing.assert_array_equal(read_table(path, "y", delimiter=";").X, X)
    with pytest.raises(DataError, match="header has: a;b;y"):   # one column named 'a;b;y'
        read_table(path, "y")


def test_a_delimiter_is_one_character(tmp_path):
    path = _write(tmp_path / "train.csv", HEADER + ROWS)
    with pytest.raises(DataError, match="one character"):
        read_table(path, "y", delimiter=";;")


# -- Parquet ----------------------------------------------------------------------

@pytest.fixture
def parquet_file(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"id": ["p", "q", "r"], "a": [1.0, 3.0, -5.0], "b": [2, 4, 6],
                       "animal": ["cat", "dog", "cat"]})
    path = tmp_path / "train.parquet"
    df.to_parquet(path)
    return path, df


def test_parquet_round_trip(parquet_file):
    path, df = parquet_file
    t = read_table(str(path), "animal", ["a", "b"])
    np.testing.assert_array_equal(t.X, df[["a", "b"]].to_numpy(float))
    np.testing.assert_array_equal(t.target, ["cat", "dog", "cat"])
    assert t.columns == ["a", "b"] and t.target_name == "animal"
    assert list(t.extra) == ["id"] and list(t.extra["id"]) == ["p", "q", "r"]


def test_parquet_columns_by_name_and_a_text_feature(parquet_file):
    path, df = parquet_file
    t = read_table(str(path), "animal", columns=["b", "a"])
    np.testing.assert_array_equal(t.X, df[["b", "a"]].to_numpy(float))
    with pytest.raises(DataError, match=r"column 1 \('id'\) holds .* not numbers"):
        read_table(str(path), "animal", drop=["b"])


def test_parquet_nan_is_named(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "nan.pq"
    pd.DataFrame({"a": [1.0, np.nan], "y": [0, 1]}).to_parquet(path)
    assert "row 1 (counting from 0), column 1 ('a'): value is nan" in _error(path, "y")


def test_parquet_on_stdin(parquet_file):
    path, df = parquet_file
    t = read_table("-", "animal", ["a"], stdin=io.BytesIO(path.read_bytes()))
    np.testing.assert_array_equal(t.X[:, 0], df["a"])


def test_parquet_without_pyarrow_names_the_extra(parquet_file, monkeypatch):
    import sys
    path, _ = parquet_file
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)   # import fails as if not installed
    assert "pip install 'netcli[parquet]'" in _error(path, "animal")


def test_a_corrupt_parquet_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really")
    assert "cannot read it as Parquet" in _error(path)


# -- headers ------------------------------------------------------------------------

def test_a_headerless_file_is_refused_with_the_fix(tmp_path):
    path = _write(tmp_path / "nohead.csv", ROWS)
    message = _error(path)
    assert "no header row" in message and "data.header: false" in message


def test_header_false_reads_every_row(tmp_path):
    path = _write(tmp_path / "nohead.csv", ROWS)
    t = read_table(path, header=False)
    np.testing.assert_array_equal(t.X, X)
    np.testing.assert_array_equal(t.target, [0, 1, 0])
    assert t.columns == ["0", "1"] and t.target_name == "2"
    t = read_table(path, 0, header=False)
    np.testing.assert_array_equal(t.target, [1, 3, -5])
    assert t.columns == ["1", "2"]
    assert "named by index" in _error(path, "label", header=False)


def test_header_false_names_a_ragged_row_against_the_first_row(tmp_path):
    path = _write(tmp_path / "nohead.csv", ROWS + "1,2\n")
    assert "row 4 has 2 columns, the first row has 3" in _error(path, header=False)


def test_a_header_of_column_indices_is_a_header(tmp_path):
    """pandas writes an unnamed frame's columns as 0,1,2: that row is a header, not data."""
    path = _write(tmp_path / "indexed.csv", "0,1,2\n" + ROWS)
    t = read_table(path, "2")
    np.testing.assert_array_equal(t.X, X)


# -- columns by name ----------------------------------------------------------------

def test_reversed_columns_taken_by_name_give_the_same_rows(tmp_path):
    original = read_table(str(DIGITS_TRAIN), "label")
    header, *lines = DIGITS_TRAIN.read_text().splitlines()
    reversed_csv = tmp_path / "reversed.csv"
    reversed_csv.write_text("\n".join(",".join(line.split(",")[::-1]) for line in [header, *lines]) + "\n")
    t = read_table(str(reversed_csv), "label", columns=original.columns)
    np.testing.assert_array_equal(t.X, original.X)
    np.testing.assert_array_equal(t.target, original.target)
    assert t.columns == original.columns


def test_extra_columns_are_ignored_and_returned(tmp_path):
    path = _write(tmp_path / "more.csv", "id,b,note,a,y\nq1,2,hi,1,0\nq2,4,,3,1\n")
    t = read_table(path, "y", columns=["a", "b"])
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])
    assert list(t.extra) == ["id", "note"]
    assert list(t.extra["id"]) == ["q1", "q2"] and list(t.extra["note"]) == ["hi", ""]


def test_predicting_without_the_target_column(tmp_path):
    path = _write(tmp_path / "x.csv", "b,a\n2,1\n4,3\n")
    t = read_table(path, "y", need_target=False, columns=["a", "b"])
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])
    assert t.target is None
    assert "no target column 'y'" in _error(path, "y", columns=["a", "b"])


def test_a_missing_column_says_which_and_did_you_mean(tmp_path):
    path = _write(tmp_path / "x.csv", "Age,income,y\n1,2,0\n")
    message = _error(path, "y", columns=["Age", "incme", "zzz"])
    assert "2 of the 3 feature columns the run was trained on are not in the file" in message
    assert "'incme' (did you mean 'income'?), 'zzz';" in message
    assert message.endswith("the header has: Age, income, y")
    assert "'age' (did you mean 'Age'?)" in _error(path, "y", columns=["age"])


def test_did_you_mean_for_target_and_features(tmp_path):
    path = _write(tmp_path / "x.csv", "sepal_length,petal_width,species\n1,2,cat\n")
    assert "no target column 'specis' (did you mean 'species'?)" in _error(path, "specis")
    assert "no feature column 'sepal_lenght' (did you mean 'sepal_length'?)" in _error(
        path, "species", ["sepal_lenght"])


def test_a_duplicated_header_name_is_an_error_not_a_target_leak(tmp_path):
    """a,label,label used to take the second 'label' as a feature of the first."""
    path = _write(tmp_path / "dup.csv", "a,label,label\n1,0,0\n2,1,1\n")
    message = _error(path, "label")
    assert "'label' twice (columns 2, 3)" in message
    path = _write(tmp_path / "dup2.csv", "a,b,a,y\n1,2,3,0\n")
    assert "'a' twice" in _error(path, "y", columns=["a", "b"])
    assert "'a' twice" in _error(path, "y")


def test_duplicates_among_ignored_columns_are_fine(tmp_path):
    path = _write(tmp_path / "dup.csv", "x,a,x,y\nu,1,v,0\n")
    t = read_table(path, "y", columns=["a"])
    assert list(t.extra) == ["x"] and list(t.extra["x"]) == ["u"]     # the first of the two


def test_the_target_is_not_a_feature(tmp_path):
    path = _write(tmp_path / "x.csv", HEADER + ROWS)
    assert "target column 'y' is also a feature" in _error(path, "y", ["a", "y"])
    assert "target column 'y' is also a feature" in _error(path, "y", columns=["a", "y"])


# -- messages: bad cell, NaN, ragged rows ----------------------------------------------

@pytest.mark.parametrize("cell,says", [
    ("x", "not a number: 'x'"),
    ("", "empty cell"),
    (" ", "empty cell"),
    ("nan", "value is nan; remove NaN before training, or set data.impute: mean or median"),
    ("-Infinity", "value is -Infinity; remove Inf before training"),
    ("1e400", "value '1e400' is beyond float64"),
    ("1_000", "not a number: '1_000'"),
    ("0x10", "not a number: '0x10'"),
    ("\u0661\u0662", "not a number"),
    ("True", "not a number: 'True'"),
    ('"1,5"', "not a number: '1,5'"),
])
def test_a_bad_cell_is_named_by_file_row_column_and_name(tmp_path, cell, says):
    path = _write(tmp_path / "bad.csv", HEADER + ROWS + f"7,{cell},1\n")
    message = _error(path, "y")
    assert message.startswith(f"{path}: row 5, column 2 ('b'): {says}"), message


@pytest.mark.parametrize("cell,value", [(" 3 ", 3.0), ('"2"', 2.0), ("+.5", 0.5), ("1e-400", 0.0)])
def test_cells_read_as_numbers(tmp_path, cell, value):
    path = _write(tmp_path / "ok.csv", HEADER + f"7,{cell},1\n")
    assert read_table(path, "y").X[0, 1] == value


def test_a_bad_cell_far_down_a_file_of_many_chunks(tmp_path, monkeypatch):
    import netcli.readers as readers
    monkeypatch.setattr(readers, "CELLS_PER_CHUNK", 2048)   # 1024 rows a chunk
    lines = [f"{i},{i * 2},{i % 2}" for i in range(5000)]
    lines[4321] = "1,oops,0"
    path = _write(tmp_path / "long.csv", HEADER + "\n".join(lines) + "\n")
    assert f"{path}: row 4323, column 2 ('b'): not a number: 'oops'" == _error(path, "y")
    lines[4321] = "1,2,0"
    t = read_table(_write(tmp_path / "long.csv", HEADER + "\n".join(lines) + "\n"), "y")
    assert t.X.shape == (5000, 2) and t.X.flags.c_contiguous and t.X[4999, 1] == 9998


def test_blank_lines_are_skipped_and_counted(tmp_path):
    path = _write(tmp_path / "blank.csv", HEADER + "1,2,0\n\n  \n3,x,1\n")
    assert "row 5, column 2" in _error(path, "y")
    t = read_table(_write(tmp_path / "ok.csv", "\n" + HEADER + "1,2,0\n\n3,4,1\n\n"), "y")
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])


@pytest.mark.parametrize("text,target,drop,says", [
    (HEADER + "1,2,0\n3,4\n", "y", (), "row 3 has 2 columns, the header has 3"),
    (HEADER + "1,2,0,9\n3,4,1\n", "y", (), "row 2 has 4 columns, the header has 3"),
    (HEADER + "1,2,0\n3,4,1,9\n", "y", (), "row 3 has 4 columns, the header has 3"),
    ("y,a,b\n1,2,3\n4,5\n", "y", (), "row 3 has 2 columns"),
    ("a,b,id\n1,2,x\n4,5\n", None, ["id"], "row 3 has 2 columns"),    # the short row pads a text column
])
def test_a_ragged_row_is_named(tmp_path, text, target, drop, says):
    path = _write(tmp_path / "ragged.csv", text)
    assert says in _error(path, target, drop=drop)


def test_target_cells(tmp_path):
    path = _write(tmp_path / "t.csv", HEADER + "1,2,nan\n")
    assert "row 2, column 3 ('y'): target is nan" in _error(path, "y")
    path = _write(tmp_path / "t.csv", HEADER + "1,2,cat\n3,4, \n")
    assert "row 3, column 3 ('y'): empty cell" in _error(path, "y")
    t = read_table(_write(tmp_path / "t.csv", HEADER + "1,2, cat\n3,4,1_000\n"), "y")
    assert list(t.target) == ["cat", "1_000"]         # labels, stripped; 1_000 is not a number


def test_stdin_bytes_plain_and_gzip():
    text = (HEADER + ROWS).encode()
    for raw in (text, gzip.compress(text), b"\xef\xbb\xbf" + text):
        t = read_table("-", "y", stdin=io.BytesIO(raw))
        np.testing.assert_array_equal(t.X, X)
        assert t.source == "<stdin>"
    with pytest.raises(DataError, match=r"^<stdin>: row 3, column 1 \('a'\): not a number"):
        read_table("-", "y", stdin=io.BytesIO(gzip.compress(b"a,y\n1,0\nx,1\n")))
    with pytest.raises(DataError, match=r"^<stdin>: cannot decompress"):
        read_table("-", "y", stdin=io.BytesIO(gzip.compress(text)[:20]))


def test_stdin_gzip_npy():
    buf = io.BytesIO()
    np.save(buf, np.arange(6.0).reshape(2, 3))
    t = read_table("-", stdin=io.BytesIO(gzip.compress(buf.getvalue())))
    np.testing.assert_array_equal(t.target, [2, 5])
    assert t.columns is None


def test_stdin_with_cr_line_endings():
    t = read_table("-", "y", stdin=io.BytesIO(b"a,b,y\r1,2,0\r3,4,1\r"))
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])


def test_npy_and_npz_name_no_columns(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 4)))
    assert read_table(str(tmp_path / "a.npy")).columns is None
    np.savez(tmp_path / "a.npz", X=np.ones((3, 2)), y=np.zeros(3))
    t = read_table(str(tmp_path / "a.npz"))
    assert isinstance(t, Table) and t.columns is None and t.extra == {}


def test_blank_rows_at_the_end_are_dropped(tmp_path):
    """A spreadsheet's export often ends in rows of empty cells; the old reader dropped them too."""
    t = read_table(_write(tmp_path / "x.csv", HEADER + ROWS + ",,\n,,\n , \n,\n"), "y")
    np.testing.assert_array_equal(t.X, X)
    np.testing.assert_array_equal(t.target, [0, 1, 0])
    path = _write(tmp_path / "y.csv", HEADER + "1,2,0\n,,\n3,4,1\n")
    assert "row 3, column 1 ('a'): empty cell" in _error(path, "y")


def test_what_the_bytes_say_wins_over_the_name(tmp_path):
    path = tmp_path / "train.csv"           # gzip data without .gz
    path.write_bytes(gzip.compress((HEADER + ROWS).encode()))
    np.testing.assert_array_equal(read_table(str(path), "y").X, X)
    np.save(tmp_path / "a.npy", np.ones((2, 3)))
    (tmp_path / "a.npy").rename(tmp_path / "a.dat")
    assert read_table(str(tmp_path / "a.dat")).X.shape == (2, 2)


def test_predicting_by_name_keeps_the_last_column_as_extra(tmp_path):
    """Without a target to find, the last column is not guessed to be one: it is passed through."""
    path = _write(tmp_path / "x.csv", "a,b,id\n1,2,q1\n3,4,q2\n")
    t = read_table(path, need_target=False, columns=["a", "b"])
    assert t.target is None and list(t.extra["id"]) == ["q1", "q2"]
