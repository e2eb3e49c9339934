"""String feature columns (one-hot, categories saved with the run) and empty cells
(data.impute: error | mean | median), from training through eval, predict and the Python API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import assert_user_error, invoke, load_weights, write_config
from netcli.encoding import encode, fit_categories, fit_fill
from netcli.errors import DataError, NetcliError
from netcli.readers import read_frame, read_table

COLORS = ("blue", "green", "red")


def pets_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A label that depends on a text column and a number: colour red or a large size -> 'big'."""
    rng = np.random.default_rng(seed)
    color = rng.choice(COLORS, n)
    size = rng.normal(size=n).round(3)
    weight = rng.normal(size=n).round(3)
    label = np.where((color == "red") | (size > 0.8), "big", "small")
    return pd.DataFrame({"size": size, "color": color, "weight": weight, "label": label})


def config(train, **data) -> dict:
    return {"seed": 0, "data": {"train": str(train), "target": "label", "normalize": "standard", **data},
            "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                 {"type": "dense", "activation": "softmax"}]},
            "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.05},
            "training": {"epochs": 30, "batch_size": 16}}


def train(tmp_path, cfg, name="run"):
    """-> (the run directory, its log on stderr with the lines joined)."""
    result = invoke("train", write_config(tmp_path, cfg, name), "--run-dir", tmp_path / name)
    assert result.exit_code == 0, result.stderr
    return tmp_path / name, " ".join(result.stderr.split())


def refused(tmp_path, frame, fragment: str, **data) -> None:
    """Training on `frame` (written as train.csv) with config(**data) is a user error saying fragment."""
    frame.to_csv(tmp_path / "train.csv", index=False)     # a missing value as an empty cell
    cfg = config(tmp_path / "train.csv", **data)
    assert_user_error(invoke("train", write_config(tmp_path, cfg, "x"), "--run-dir", tmp_path / "run"), 2, fragment)


# -- encoding, exactly ---------------------------------------------------------------

def test_a_category_column_becomes_one_input_per_label_in_its_place():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "color": ["red", "blue", "red"], "b": [4.0, 5.0, 6.0]})
    table = read_frame(frame, "input", need_target=False, auto_categories=True)
    categories = fit_categories(table)
    assert categories == {"color": ["blue", "red"]}
    X = encode(table, None, categories).X
    np.testing.assert_array_equal(X, [[1, 0, 1, 4], [2, 1, 0, 5], [3, 0, 1, 6]])


def test_mean_and_median_come_from_the_training_rows_only():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 100.0], "b": [2.0, 2.0, np.nan, 8.0]})
    table = read_frame(frame, "input", need_target=False, missing=True)
    rows = np.array([0, 1, 2])                      # row 3 is a validation row
    np.testing.assert_allclose(fit_fill(table, rows, "mean"), [2.0, 2.0])
    np.testing.assert_allclose(fit_fill(table, None, "median"), [3.0, 2.0])
    X = encode(table, fit_fill(table, rows, "mean"), {}).X
    np.testing.assert_array_equal(X, [[1, 2], [2, 2], [3, 2], [100, 8]])
    assert fit_fill(table, rows, "error") is None


def test_a_column_with_no_training_values_cannot_be_imputed():
    table = read_frame(pd.DataFrame({"a": [np.nan, np.nan, 1.0]}), "input", need_target=False, missing=True)
    with pytest.raises(DataError, match="column 'a' has no values in the training rows"):
        fit_fill(table, np.array([0, 1]), "mean")


# -- training, eval and predict --------------------------------------------------------

def test_a_text_column_is_one_hot_encoded_and_its_categories_are_kept_with_the_run(tmp_path):
    pets_frame().to_csv(tmp_path / "train.csv", index=False)
    run, log = train(tmp_path, config(tmp_path / "train.csv"))
    assert "3 feature columns as 5 inputs" in log and "one-hot color (3)" in log
    weights = load_weights(run)
    assert weights["layers.0.W"].shape == (8, 5)               # size, 3 colours, weight
    assert [str(f) for f in weights["meta.features"]] == ["size", "color", "weight"]
    # eval on a file whose columns are in another order, with an extra id column
    test = pets_frame(60, seed=1)
    test.insert(0, "id", [f"p{i}" for i in range(60)])
    test[["id", "label", "weight", "color", "size"]].to_csv(tmp_path / "test.csv", index=False)
    test[["size", "color", "weight", "label"]].to_csv(tmp_path / "plain.csv", index=False)
    shuffled = invoke("predict", run, "--data", tmp_path / "test.csv", "--keep", "id")
    plain = invoke("predict", run, "--data", tmp_path / "plain.csv")
    assert shuffled.exit_code == plain.exit_code == 0, shuffled.stderr + plain.stderr
    assert [line.split(",") for line in shuffled.stdout.split()] == \
        [[f"p{i}", label] for i, label in enumerate(plain.stdout.split())]
    accuracy = float(invoke("eval", run, "--data", tmp_path / "test.csv", "--json").stdout.split(
        '"accuracy": ')[1].split(",")[0])
    assert accuracy > 0.9          # the label depends on the colour: a wrong encoding would not learn it


def test_an_unseen_category_names_file_row_column_and_the_close_label(tmp_path):
    pets_frame().to_csv(tmp_path / "train.csv", index=False)
    run, _ = train(tmp_path, config(tmp_path / "train.csv"))
    test = pets_frame(10, seed=2)
    test.loc[6, "color"] = "gren"
    test.to_csv(tmp_path / "test.csv", index=False)
    assert_user_error(invoke("predict", run, "--data", tmp_path / "test.csv"), 2,
                      "test.csv: row 8, column 2 ('color'): category 'gren' (did you mean 'green'?) "
                      "was not in the training data, which had 3: blue, green, red")


def test_the_python_api_takes_a_data_frame_by_name_and_refuses_an_array(tmp_path):
    import netcli
    pets_frame().to_csv(tmp_path / "train.csv", index=False)
    run, _ = train(tmp_path, config(tmp_path / "train.csv"))
    loaded = netcli.load_run(run)
    test = pets_frame(30, seed=3)
    test.to_csv(tmp_path / "test.csv", index=False)
    cli_labels = invoke("predict", run, "--data", tmp_path / "test.csv").stdout.split()
    assert len(cli_labels) == 30
    reordered = test[["weight", "label", "color", "size"]]
    assert list(loaded.predict(reordered)) == cli_labels
    with pytest.raises(NetcliError, match="one-hot encodes color: pass a pandas DataFrame"):
        loaded.predict(test[["size", "weight"]].to_numpy())


def test_a_listed_numeric_column_is_one_hot_too(tmp_path):
    frame = pets_frame()
    frame["zone"] = np.where(frame["color"] == "red", 10, 20)
    frame.drop(columns="color").to_csv(tmp_path / "train.csv", index=False)
    run, log = train(tmp_path, config(tmp_path / "train.csv", categorical=["zone"]))
    assert "one-hot zone (2)" in log
    assert load_weights(run)["layers.0.W"].shape == (8, 4)


def test_a_number_with_a_typo_is_still_an_error_not_a_category(tmp_path):
    frame = pets_frame()
    frame["size"] = frame["size"].astype(str)
    frame.loc[50, "size"] = "0.3x"
    refused(tmp_path, frame, "train.csv: row 52, column 1 ('size'): not a number: '0.3x'")


@pytest.mark.parametrize("what, fragment", [
    ("ids", "column 1 ('user') holds text with 120 different values; one-hot encoding it would add 120 "
            "inputs. Leave it out (data.drop), or list it in data.categorical"),
    ("commas", "column 1 ('user') holds numbers with decimal commas ('0,5')"),
    ("unknown", "data.categorical names 'colour', which is not a feature column (did you mean 'color'?)"),
])
def test_text_that_is_not_categories_is_refused_with_the_way_out(tmp_path, what, fragment):
    frame = pets_frame()
    frame.insert(0, "user", [f"u{i}" for i in range(120)] if what == "ids" else
                 ["0,5"] * 120 if what == "commas" else 1.0)
    refused(tmp_path, frame, fragment, **({"categorical": ["colour"]} if what == "unknown" else {}))


def test_an_empty_cell_is_an_error_that_points_to_data_impute(tmp_path):
    frame = pets_frame()
    frame["weight"] = frame["weight"].astype(object)
    frame.loc[9, "weight"] = ""
    refused(tmp_path, frame, "train.csv: row 11, column 3 ('weight'): empty cell; fill in or remove missing "
                             "values, or set data.impute: mean or median")


@pytest.mark.parametrize("impute", ["mean", "median"])
def test_impute_fills_training_and_prediction_gaps_with_the_training_statistic(tmp_path, impute):
    frame = pets_frame()
    gaps = [3, 40, 77]
    for r in gaps:
        frame.loc[r, "weight"] = np.nan
    frame.loc[5, "color"] = np.nan                       # an empty category cell: all zeros
    frame.to_csv(tmp_path / "train.csv", index=False, na_rep="")
    text = (tmp_path / "train.csv").read_text().splitlines()
    text[21] = text[21].replace(text[21].split(",")[2], "NaN")   # a literal NaN is a gap too
    (tmp_path / "train.csv").write_text("\n".join(text) + "\n")
    gaps.append(20)
    run, log = train(tmp_path, config(tmp_path / "train.csv", impute=impute))
    assert f"impute {impute} (5 empty cells)" in log
    weights = load_weights(run)
    known = frame["weight"].drop(index=gaps)
    expected = known.mean() if impute == "mean" else known.median()
    np.testing.assert_allclose(weights["meta.fill"], [frame["size"].mean() if impute == "mean" else
                                                      frame["size"].median(), expected])
    # predicting on a row with a gap == predicting on the row with the training statistic filled in
    test = pets_frame(20, seed=4)
    filled = test.copy()
    test.loc[[2, 7], "weight"] = np.nan
    filled.loc[[2, 7], "weight"] = expected
    test.to_csv(tmp_path / "gaps.csv", index=False, na_rep="")
    filled.to_csv(tmp_path / "filled.csv", index=False)
    a = invoke("predict", run, "--data", tmp_path / "gaps.csv", "--proba")
    b = invoke("predict", run, "--data", tmp_path / "filled.csv", "--proba")
    assert a.exit_code == b.exit_code == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout


def test_impute_does_not_hide_inf(tmp_path):
    frame = pets_frame()
    frame["weight"] = frame["weight"].astype(object)
    frame.loc[4, "weight"] = "inf"
    refused(tmp_path, frame, "train.csv: row 6, column 3 ('weight'): value is inf; remove Inf before training",
            impute="mean")


def test_a_missing_category_cell_without_impute_is_named(tmp_path):
    frame = pets_frame()
    frame.loc[12, "color"] = np.nan
    refused(tmp_path, frame, "train.csv: row 14, column 2 ('color'): empty cell")


def test_parquet_string_columns_and_nulls(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pets_frame()
    frame.loc[8, "size"] = np.nan
    frame.to_parquet(tmp_path / "train.parquet")
    run, log = train(tmp_path, config(tmp_path / "train.parquet", impute="median"))
    assert "one-hot color (3)" in log and "impute median (1 empty cell)" in log
    frame.drop(index=8).to_csv(tmp_path / "test.csv", index=False)
    assert invoke("eval", run, "--data", tmp_path / "test.csv").exit_code == 0


def test_a_validation_file_is_encoded_with_the_training_categories(tmp_path):
    pets_frame().to_csv(tmp_path / "train.csv", index=False)
    val = pets_frame(30, seed=5)
    val = val[val["color"] != "blue"]                 # a validation file without one colour
    val.to_csv(tmp_path / "val.csv", index=False)
    run, _ = train(tmp_path, config(tmp_path / "train.csv", val=str(tmp_path / "val.csv")))
    assert load_weights(run)["layers.0.W"].shape == (8, 5)


def test_npy_data_has_no_category_columns(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    with pytest.raises(DataError, match="names no columns, so it has no category column 'color'"):
        read_table(str(tmp_path / "x.npy"), "input", categories={"color": None})


# -- found in review ---------------------------------------------------------------------

def test_impute_with_only_category_features_reads_gaps_everywhere(tmp_path):
    frame = pets_frame()[["color", "label"]].copy()
    frame.loc[[3, 9], "color"] = np.nan
    frame.to_csv(tmp_path / "train.csv", index=False, na_rep="")
    test = pets_frame(10, seed=6)[["color", "label"]].copy()
    test.loc[2, "color"] = np.nan
    test.to_csv(tmp_path / "test.csv", index=False, na_rep="")
    run, log = train(tmp_path, config(tmp_path / "train.csv", impute="mean", test=str(tmp_path / "test.csv")))
    assert "one-hot color (3)" in log
    out = invoke("predict", run, "--data", tmp_path / "test.csv")
    assert out.exit_code == 0 and len(out.stdout.split()) == 10, out.stderr


def test_a_headerless_file_without_its_target_keeps_the_category_column(tmp_path):
    frame = pets_frame()[["label", "color", "size"]]
    frame.to_csv(tmp_path / "train.csv", index=False, header=False)
    cfg = config(tmp_path / "train.csv", header=False, target=0)
    run, log = train(tmp_path, cfg)
    assert "one-hot 1 (3)" in log
    test = pets_frame(12, seed=7)
    test[["label", "color", "size"]].to_csv(tmp_path / "with.csv", index=False, header=False)
    test[["color", "size"]].to_csv(tmp_path / "without.csv", index=False, header=False)
    a = invoke("predict", run, "--data", tmp_path / "with.csv")
    b = invoke("predict", run, "--data", tmp_path / "without.csv")
    assert a.exit_code == b.exit_code == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout


def test_pandas_missing_values_are_gaps_not_a_category():
    frame = pd.DataFrame({"c": pd.array(["a", None, "b", "a"], dtype="string"), "x": [1.0, 2.0, 3.0, 4.0]})
    table = read_frame(frame, "input", need_target=False, auto_categories=True, missing=True)
    assert fit_categories(table) == {"c": ["a", "b"]}
    with pytest.raises(DataError, match="row 1 \\(counting from 0\\), column 1 \\('c'\\): empty cell"):
        read_frame(frame, "input", need_target=False, auto_categories=True)


def test_a_frame_column_of_numbers_as_text_is_not_taken_for_categories():
    frame = pd.DataFrame({"n": ["1.5", "2.5", "3"], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="column 1 .\x27n\x27. holds .* values, not numbers"):
        read_frame(frame, "input", need_target=False, auto_categories=True)


def test_rows_reach_the_network_in_c_order_whatever_the_callers_order():
    """A Fortran-ordered array (DataFrame.to_numpy gives one) would change GEMM's last bits."""
    from netcli.data import Preprocessing
    X = np.asfortranarray(np.random.default_rng(0).normal(size=(50, 3)))
    for prep in (Preprocessing.fit(X, "none", input_shape=(3,)), Preprocessing.fit(X, "standard", input_shape=(3,))):
        out = prep.inputs(X, np.float32, "x")
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, prep.inputs(np.ascontiguousarray(X), np.float32, "x"))
