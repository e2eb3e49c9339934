"""Data: CSV / NPZ / NPY / stdin -> arrays, with errors that name file, row and column;
preprocessing fitted on the training split only; stratified splits; reshaping."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest

from netcli.api import load_run
from netcli.config import load_config
from netcli.nn.tasks import CLASSIFICATION
from netcli.data import (Preprocessing, batches, class_labels, make_split, one_hot, read_table,
                         split_indices)
from netcli.errors import DataError
from netcli.prepare import prepare, rng_streams

from helpers import (DIGITS_TEST, DIGITS_TRAIN, assert_user_error, blobs_csv, digits_config, invoke,
                     load_csv, load_weights, train_config, write_config, write_csv)


@pytest.fixture(scope="module")
def digits():
    """(X_train, y_train, X_test, y_test) of the bundled digits."""
    return (*load_csv(DIGITS_TRAIN), *load_csv(DIGITS_TEST))


# -- CSV -------------------------------------------------------------------------

@pytest.fixture
def label_first(tmp_path):
    return write_csv(tmp_path / "t.csv", ["lab", "a", "b"], [[1, 10, 20], [0, 11, 21], [1, 12, 22]])


def test_csv_target_by_name(label_first):
    t = read_table(str(label_first), "lab")
    np.testing.assert_array_equal(t.X, [[10, 20], [11, 21], [12, 22]])
    np.testing.assert_array_equal(t.target, [1, 0, 1])
    assert t.columns == ["a", "b"] and t.target_name == "lab"


@pytest.mark.parametrize("target", [0, "0", -3])
def test_csv_target_by_index(label_first, target):
    t = read_table(str(label_first), target)
    np.testing.assert_array_equal(t.X, [[10, 20], [11, 21], [12, 22]])
    np.testing.assert_array_equal(t.target, [1, 0, 1])


def test_csv_target_defaults_to_the_last_column(label_first):
    t = read_table(str(label_first))
    np.testing.assert_array_equal(t.X, [[1, 10], [0, 11], [1, 12]])
    np.testing.assert_array_equal(t.target, [20, 21, 22])


def test_csv_named_feature_columns(label_first):
    t = read_table(str(label_first), "lab", ["b"])
    np.testing.assert_array_equal(t.X, [[20], [21], [22]])


def test_csv_whitespace_and_trailing_blank_lines(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("a, b ,y\n 1, 2,0\n3,4 ,1\n\n\n")
    t = read_table(str(p), "y")
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])


# -- data errors name file, row and column ------------------------------------------

@pytest.mark.parametrize("text,says", [
    ("a,b,y\n1,2,0\n3,4\n", ["row 3", "2 columns", "header has 3"]),
    ("a,b,y\n1,2,0\n3,4,1,9\n", ["row 3", "4 columns"]),
    ("a,b,y\n1,2,0\n3,x,1\n", ["row 3", "column 2", "'b'", "'x'"]),
    ("a,b,y\n1,,0\n", ["row 2", "column 2", "'b'"]),
    ("", ["empty"]),
    ("a,b,y\n", ["no data rows"]),
    ("\n\n", ["empty"]),
])
def test_csv_errors_name_file_row_and_column(tmp_path, text, says):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError) as info:
        read_table(str(p), "y")
    message = str(info.value)
    assert message.startswith(f"{p}: ")
    for fragment in says:
        assert fragment in message


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table(str(tmp_path / "nope.csv"))


def test_missing_target_column_lists_the_header(label_first):
    with pytest.raises(DataError, match=r"no target column 'label'.*lab, a, b"):
        read_table(str(label_first), "label")


def test_target_index_out_of_range(label_first):
    with pytest.raises(DataError, match="outside"):
        read_table(str(label_first), 5)


def _train_error(tmp_path, csv_text, target="y", loss="mse", units=1, activation="linear"):
    p = tmp_path / "d.csv"
    p.write_text(csv_text)
    cfg = {"data": {"train": str(p), "target": target}, "loss": loss,
           "model": {"input": 2, "layers": [{"type": "dense", "units": units, "activation": activation}]},
           "training": {"epochs": 1}}
    with pytest.raises(DataError) as info:
        train_config(tmp_path, cfg)
    assert not (tmp_path / "run").exists()     # refused before a run directory was made
    return str(info.value), str(p)


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf"])
def test_nan_and_inf_features_are_named_by_row_and_column(tmp_path, cell):
    message, path = _train_error(tmp_path, f"a,b,y\n1,2,0\n3,4,1\n5,{cell},0\n")
    assert message.startswith(f"{path}: row 4, column 2")


def test_nan_in_a_classification_csv(tmp_path):
    message, path = _train_error(tmp_path, "a,b,y\n1,2,0\nnan,4,1\n5,6,0\n",
                                 loss="cross_entropy", units=2, activation="softmax")
    assert message.startswith(f"{path}: row 3, column 1")


def test_nan_position_counts_the_file_columns_when_the_target_comes_first(tmp_path):
    """The bad cell is in file column 3 ('b'); the target column 'y' comes first."""
    message, path = _train_error(tmp_path, "y,a,b\n0,1,2\n1,3,4\n0,5,nan\n")
    assert message.startswith(f"{path}: row 4, column 3"), message


def test_nan_in_the_target_names_the_target_column(tmp_path):
    """The NaN is in row 3 of column 3 ('y'), not column 1."""
    message, path = _train_error(tmp_path, "a,b,y\n1,2,0\n3,4,nan\n5,6,0\n")
    assert message.startswith(f"{path}: row 3, column 3"), message


def test_data_error_on_the_command_line(tmp_path):
    p = write_csv(tmp_path / "bad.csv", ["a", "b", "y"], [[1, 2, 0], [3, "x", 1]])
    cfg = {"data": {"train": str(p)},
           "model": {"input": 2, "layers": [{"type": "dense", "units": 1}]}}
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    assert_user_error(result, 2, f"{p}: row 3, column 2 ('b')")


# -- class labels ----------------------------------------------------------------

def test_class_labels_are_sorted_and_whole_numbers_become_integers():
    np.testing.assert_array_equal(class_labels(np.array(["dog", "cat", "eel", "cat"])), ["cat", "dog", "eel"])
    labels = class_labels(np.array([3.0, 1.0, 2.0, 1.0]))
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, [1, 2, 3])


def test_one_hot_over_the_sorted_classes_and_unseen_labels():
    classes = np.array(["cat", "dog", "eel"])
    np.testing.assert_array_equal(one_hot(np.array(["eel", "cat"]), classes, "f.csv", np.float32),
                                  [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match=r"f.csv: row 3: class label 'fox' was not seen"):
        one_hot(np.array(["cat", "fox"]), classes, "f.csv", np.float32)


@pytest.fixture(scope="module")
def blobs_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blobs")
    path, X, y = blobs_csv(tmp / "blobs.csv")
    cfg = {"seed": 0, "data": {"train": str(path), "target": "animal", "normalize": "standard"},
           "model": {"input": 2, "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
           "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.1},
           "training": {"epochs": 20, "batch_size": 16}}
    result = train_config(tmp, cfg)
    return result.run_dir, path, X, y


def test_string_labels_map_to_sorted_classes_kept_in_the_run(blobs_run):
    run_dir, _, _, _ = blobs_run
    np.testing.assert_array_equal(load_weights(run_dir)["meta.classes"], ["cat", "dog", "eel"])


def test_string_labels_round_trip_through_predict(blobs_run):
    run_dir, path, X, y = blobs_run
    run = load_run(run_dir)
    predicted = run.predict(X)
    assert predicted.dtype.kind == "U"
    assert np.mean(predicted == y) == 1.0
    result = invoke("predict", run_dir, "--data", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == list(y)
    evaluated = run.evaluate(run.split(str(path)))
    assert evaluated["accuracy"] == 1.0 and set(evaluated["per_class"]) == {"cat", "dog", "eel"}


def test_predict_on_rows_without_the_target_column(blobs_run, tmp_path):
    run_dir, _, X, y = blobs_run
    rows = [[repr(float(a)), repr(float(b))] for a, b in X[:5]]
    features_only = write_csv(tmp_path / "x.csv", ["a", "b"], rows)
    result = invoke("predict", run_dir, "--data", features_only)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == list(y[:5])


def test_unseen_label_at_eval_is_a_data_error(blobs_run, tmp_path):
    run_dir, _, X, _ = blobs_run
    p = write_csv(tmp_path / "fox.csv", ["a", "b", "animal"], [[0, 0, "cat"], [1, 1, "fox"]])
    assert_user_error(invoke("eval", run_dir, "--data", p), 2, "row 3", "'fox'")


@pytest.mark.parametrize("loss, classifies, binary", [
    ("cross_entropy", True, False), ("binary_cross_entropy", True, True), ("mse", False, False)])
def test_a_loss_s_task_says_whether_it_classifies_and_whether_it_answers_yes_or_no(loss, classifies, binary):
    """Callers (prepare, the sklearn wrapper, the ONNX export) read these, not the task's class."""
    from netcli.nn import LOSSES
    from netcli.nn.tasks import TASKS
    task = LOSSES.get(loss).task
    assert (task.classifies, task.binary) == (classifies, binary)
    assert not TASKS["autoencoder"].classifies and TASKS["autoencoder"].reconstructs


# -- NPZ -------------------------------------------------------------------------

def test_npz_with_x_and_y(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array([0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    t = read_table(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(t.X, X)
    np.testing.assert_array_equal(t.target, y)


def test_npz_custom_keys_through_a_config(tmp_path, digits):
    X, y, _, _ = digits
    np.savez(tmp_path / "d.npz", pixels=X[:400], digit=y[:400].astype(np.int64))
    cfg = digits_config(data={"train": str(tmp_path / "d.npz"), "features": "pixels", "target": "digit",
                              "test": str(DIGITS_TEST)})
    cfg["data"].pop("test")
    result = train_config(tmp_path, cfg)
    assert result.summary["status"] == "finished"
    np.testing.assert_array_equal(load_weights(result.run_dir)["meta.classes"], np.arange(10))


def test_npz_missing_key_lists_what_it_holds(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=np.ones((3, 2)), digit=np.zeros(3))
    with pytest.raises(DataError, match=r"no array 'X'.*pixels, digit"):
        read_table(str(tmp_path / "d.npz"))
    with pytest.raises(DataError, match=r"no target array 'label'"):
        read_table(str(tmp_path / "d.npz"), "label", "pixels")


def test_npz_rows_must_agree(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match="3 rows"):
        read_table(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_truncated_binary_files(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    if suffix == ".npz":
        np.savez(good, X=np.ones((50, 3)), y=np.zeros(50))
    else:
        np.save(good, np.ones((50, 4)))
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError) as info:
        read_table(str(bad))
    assert str(info.value).startswith(f"{bad}: ") and "truncated" in str(info.value)


def test_npz_arrays_already_shaped_are_taken_as_they_are(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 1, 4, 4))
    prep = Preprocessing.fit(X, "none", input_shape=(1, 4, 4))
    out = prep.inputs(X, np.float64)
    assert out.shape == (6, 1, 4, 4)
    np.testing.assert_array_equal(out, X)


# -- NPY (memory-mapped) ---------------------------------------------------------

@pytest.fixture
def digits_npy(tmp_path, digits):
    X, y, Xt, yt = digits
    np.save(tmp_path / "train.npy", np.column_stack([X, y]).astype(np.float32))
    np.save(tmp_path / "test.npy", np.column_stack([Xt, yt]).astype(np.float32))
    return tmp_path / "train.npy", tmp_path / "test.npy"


def test_npy_is_memory_mapped_and_the_split_stays_lazy(tmp_path, digits_npy):
    train_npy, _ = digits_npy
    t = read_table(str(train_npy))
    assert isinstance(t.X, np.memmap)
    assert t.X.shape == (1437, 64) and t.target.shape == (1437,)
    cfg = digits_config(data={"train": str(train_npy), "target": None})
    cfg["data"].pop("test")
    p = prepare(load_config(write_config(tmp_path, cfg)))
    for split in (p.train, p.val):
        assert isinstance(split.X, np.memmap) or type(split.X).__name__ == "_RowView"
        assert split.prep is not None                  # preprocessed one batch at a time
        assert not isinstance(split.X, np.ndarray) or isinstance(split.X, np.memmap)
    Xb, yb = p.train.take(np.arange(5))
    assert Xb.shape == (5, 64) and Xb.dtype == np.float32 and yb.shape == (5, 10)


def test_training_on_npy(tmp_path, digits_npy):
    train_npy, test_npy = digits_npy
    cfg = digits_config(data={"train": str(train_npy), "test": str(test_npy), "target": None},
                        training={"epochs": 3})
    result = train_config(tmp_path, cfg)
    assert result.summary["final"]["val_accuracy"] > 0.85
    assert result.summary["test"]["accuracy"] > 0.85
    eval_result = invoke("eval", result.run_dir, "--data", test_npy, "--json")
    assert eval_result.exit_code == 0, eval_result.stderr


def test_npy_without_validation_split_stays_a_memmap(tmp_path, digits_npy):
    train_npy, _ = digits_npy
    cfg = digits_config(data={"train": str(train_npy), "target": None, "validation_split": 0.0})
    cfg["data"].pop("test")
    assert isinstance(prepare(load_config(write_config(tmp_path, cfg))).train.X, np.memmap)


def test_predict_on_npy_in_the_training_layout(tmp_path, digits_npy):
    """An NPY file laid out like the training file (target in the last column) predicts
    one label per row, as a CSV with its target column does."""
    train_npy, test_npy = digits_npy
    cfg = digits_config(data={"train": str(train_npy), "target": None})
    cfg["data"].pop("test")
    run_dir = train_config(tmp_path, cfg).run_dir
    features_only = tmp_path / "x.npy"
    np.save(features_only, np.load(test_npy)[:, :-1])
    ok = invoke("predict", run_dir, "--data", features_only)
    assert ok.exit_code == 0 and len(ok.stdout.splitlines()) == 360
    result = invoke("predict", run_dir, "--data", test_npy)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ok.stdout


def test_nan_in_npy_is_a_data_error_not_a_divergence(tmp_path, digits):
    """A NaN in memory-mapped data is the data's fault (exit 2, naming the file), not the
    optimizer's (exit 1, 'training diverged ... learning rate too high')."""
    X, y, _, _ = digits
    array = np.column_stack([X, y]).astype(np.float32)
    array[5, 3] = np.nan
    np.save(tmp_path / "nan.npy", array)
    cfg = digits_config(data={"train": str(tmp_path / "nan.npy"), "target": None})
    cfg["data"].pop("test")
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    message = assert_user_error(result, 2, str(tmp_path / "nan.npy"))
    assert "nan" in message.lower() and "diverged" not in message


@pytest.mark.parametrize("column,what", [(1, "value"), (2, "target")])
def test_float64_values_beyond_float32_are_a_data_error(tmp_path, column, what):
    """1e300 is finite in the file but Inf in float32: exit 2 naming the row and feature,
    not a divergence (found by the property tests)."""
    array = np.ones((4, 3))
    array[2, column] = 1e300
    np.save(tmp_path / "big.npy", array)
    cfg = {"data": {"train": str(tmp_path / "big.npy"), "target": -1}, "loss": "mse",
           "model": {"input": 2, "layers": [{"type": "dense", "units": 1}]}, "training": {"epochs": 1}}
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    message = assert_user_error(result, 2, str(tmp_path / "big.npy"))
    feature = column if what == "value" else 0
    assert f"row 2 (counting from 0), feature {feature}" in message and f"{what} 1e+300" in message
    assert "float32" in message and "diverged" not in message
    cfg["dtype"] = "float64"    # the suggested fix trains
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run64", "-q")
    assert result.exit_code in (0, 1), result.stderr   # it may diverge on such data, but it reads


# -- stdin -------------------------------------------------------------------------

def test_stdin_csv_npy_and_npz(tmp_path):
    t = read_table("-", "y", stdin=io.BytesIO(b"a,b,y\n1,2,0\n3,4,1\n"))
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])
    assert t.source == "<stdin>"
    buf = io.BytesIO()
    np.save(buf, np.arange(6.0).reshape(2, 3))
    t = read_table("-", stdin=io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(t.target, [2, 5])
    buf = io.BytesIO()
    np.savez(buf, X=np.ones((2, 2)), y=np.zeros(2))
    assert read_table("-", stdin=io.BytesIO(buf.getvalue())).X.shape == (2, 2)
    with pytest.raises(DataError, match="<stdin>"):
        read_table("-", stdin=io.BytesIO(b""))
    with pytest.raises(DataError, match=r"<stdin>: row 3, column 1"):
        read_table("-", "y", stdin=io.BytesIO(b"a,y\n1,0\nx,1\n"))


def test_train_and_predict_from_stdin(tmp_path):
    cfg = digits_config(data={"train": "-"})
    cfg["data"].pop("test")
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q",
                    input=DIGITS_TRAIN.read_text())
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'run'}\n"
    predicted = invoke("predict", tmp_path / "run", "--data", "-", input=DIGITS_TEST.read_text())
    assert predicted.exit_code == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 360


# -- preprocessing ---------------------------------------------------------------

def _standard(X):
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def test_normalization_statistics_come_from_the_training_file_only(tmp_path, digits):
    X, y, Xt, yt = digits
    val = write_csv(tmp_path / "val.csv", [f"p{i}" for i in range(64)] + ["label"],
                    np.column_stack([Xt * 0.5 + 3, yt]).astype(int))
    cfg = digits_config(data={"val": str(val), "validation_split": 0.0})
    run_dir = train_config(tmp_path, cfg).run_dir
    w = load_weights(run_dir)
    mean, std = _standard(X)
    np.testing.assert_allclose(w["meta.offset"], mean, rtol=1e-12)
    np.testing.assert_allclose(w["meta.scale"], std, rtol=1e-12)
    assert str(w["meta.normalize"]) == "standard"


def test_normalization_statistics_come_from_the_training_split_only(tmp_path, digits):
    X, y, _, _ = digits
    cfg = digits_config(data={"validation_split": 0.25})
    run_dir = train_config(tmp_path, cfg).run_dir
    train_rows, val_rows = split_indices(len(X), 0.25, rng_streams(0)["split"], y)
    assert len(val_rows) > 300
    w = load_weights(run_dir)
    mean, std = _standard(X[train_rows])
    np.testing.assert_allclose(w["meta.offset"], mean, rtol=1e-12)
    np.testing.assert_allclose(w["meta.scale"], std, rtol=1e-12)
    assert not np.allclose(w["meta.offset"], X.mean(axis=0), rtol=1e-6)


def test_normalization_is_reapplied_at_predict(tmp_path, digits):
    X, _, Xt, _ = digits
    run = load_run(train_config(tmp_path, digits_config(data={"validation_split": 0.0})).run_dir)
    mean, std = _standard(X)
    expected = ((Xt - mean) / std).astype(np.float32)
    np.testing.assert_allclose(run.prep.inputs(Xt, np.float32), expected, rtol=1e-5, atol=1e-5)
    out = run.outputs(Xt)
    direct = run.net.outputs_and_loss(expected)[0]
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run.predict(Xt), direct.argmax(axis=1))


def test_minmax_normalization(tmp_path, digits):
    X, _, Xt, _ = digits
    run = load_run(train_config(tmp_path, digits_config(data={"validation_split": 0.0,
                                                               "normalize": "minmax"})).run_dir)
    lo, span = X.min(axis=0), np.ptp(X, axis=0)
    span[span == 0] = 1.0
    np.testing.assert_allclose(run.prep.offset, lo)
    np.testing.assert_allclose(run.prep.scale, span)
    scaled = run.prep.inputs(X, np.float64)
    assert scaled.min() >= 0 and scaled.max() <= 1
    np.testing.assert_allclose(run.prep.inputs(Xt, np.float64), (Xt - lo) / span)


def test_no_normalization_leaves_inputs_alone(tmp_path, digits):
    X, _, _, _ = digits
    run = load_run(train_config(tmp_path, digits_config(data={"normalize": "none"})).run_dir)
    assert "meta.offset" not in load_weights(run.path)
    np.testing.assert_array_equal(run.prep.inputs(X[:5], np.float64), X[:5])


def test_validation_split_is_stratified_and_seeded(tmp_path, digits):
    _, y, _, _ = digits
    cfg = digits_config(data={"validation_split": 0.2})
    config = load_config(write_config(tmp_path, cfg))
    p = prepare(config)
    assert len(p.train) + len(p.val) == len(y)
    val_counts, all_counts = Counter(p.val.labels.tolist()), Counter(y.tolist())
    for label, n in all_counts.items():
        assert abs(val_counts[label] - 0.2 * n) <= 1, (label, val_counts[label], n)
    again = prepare(config)
    np.testing.assert_array_equal(again.val.labels, p.val.labels)
    np.testing.assert_array_equal(again.val.X, p.val.X)
    other = prepare(load_config(write_config(tmp_path, {**cfg, "seed": 1}, "other")))
    assert not np.array_equal(other.val.X, p.val.X)


def test_split_indices_partition_the_rows():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [1] * 10)
    train, val = split_indices(60, 0.2, rng, labels)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(60))
    assert Counter(labels[val].tolist()) == {0: 10, 1: 2}
    train, val = split_indices(60, 0.0, rng)
    assert len(val) == 0 and len(train) == 60


def test_flat_rows_are_reshaped_to_model_input(tmp_path, digits):
    X, y, _, _ = digits
    table = read_table(str(DIGITS_TRAIN), "label")
    prep = Preprocessing.fit(table.X, "none", class_labels(table.target), (1, 8, 8))
    split = make_split(table, prep, CLASSIFICATION, np.float32)
    assert split.X.shape == (1437, 1, 8, 8)
    np.testing.assert_array_equal(split.X, X.reshape(-1, 1, 8, 8).astype(np.float32))
    np.testing.assert_array_equal(split.X[3, 0, 2], X[3, 16:24])   # row-major: image row 2


def test_model_input_image_shape_through_training_and_predict(tmp_path, digits):
    X, _, Xt, _ = digits
    cfg = digits_config(model={"input": [1, 8, 8],
                               "layers": [{"type": "flatten"},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    p = prepare(load_config(write_config(tmp_path, cfg)))
    assert p.train.X.shape[1:] == (1, 8, 8) and p.val.X.shape[1:] == (1, 8, 8)
    run_dir = train_config(tmp_path, cfg).run_dir
    run = load_run(run_dir)
    assert run.prep.inputs(Xt[:3], np.float32).shape == (3, 1, 8, 8)
    result = invoke("predict", run_dir, "--data", DIGITS_TEST)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(v) for v in run.predict(Xt)]


def test_model_input_that_does_not_fit_the_rows(tmp_path):
    table = read_table(str(DIGITS_TRAIN), "label")
    prep = Preprocessing.fit(table.X, "none", class_labels(table.target), (1, 8, 7))
    with pytest.raises(DataError, match=r"64 feature values.*\[1, 8, 7\].*56"):
        make_split(table, prep, CLASSIFICATION, np.float32)


def test_model_input_mismatch_through_a_config(tmp_path):
    cfg = digits_config(model={"input": 32})
    with pytest.raises(DataError, match="64 feature values"):
        train_config(tmp_path, cfg)


# -- batches -----------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [(1, 10), (3, 4), (10, 1), ("full", 1), (64, 1)])
def test_batches_cover_every_row_once(size, expected):
    parts = list(batches(10, size, np.random.default_rng(0)))
    assert len(parts) == expected
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))


def test_batches_are_shuffled_by_the_seed_and_ordered_without_one():
    a = np.concatenate(list(batches(20, 4, np.random.default_rng(3))))
    b = np.concatenate(list(batches(20, 4, np.random.default_rng(3))))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, np.arange(20))
    np.testing.assert_array_equal(np.concatenate(list(batches(20, 4, None))), np.arange(20))
