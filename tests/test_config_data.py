"""A config's data, as a user's own files meet it: paths relative to the config file, stdin,
sizes taken from the data, `validate` that reads the data, and training that says what it read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import DIGITS_TEST, DIGITS_TRAIN, assert_user_error, digits_config, invoke, write_config


def relative_config(folder: Path) -> Path:
    """folder/conf/x.yaml naming its data as ../data/*.csv, copies of the digits files."""
    (folder / "data").mkdir()
    (folder / "conf").mkdir()
    (folder / "data" / "train.csv").write_bytes(DIGITS_TRAIN.read_bytes())
    (folder / "data" / "test.csv").write_bytes(DIGITS_TEST.read_bytes())
    cfg = digits_config(data={"train": "../data/train.csv", "test": "../data/test.csv"})
    return write_config(folder / "conf", cfg, "x")


def test_data_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    path = relative_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("train", path, "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.stderr
    kept = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert kept["data"]["train"] == str(tmp_path / "data" / "train.csv")    # absolute in the run
    monkeypatch.chdir(tmp_path / "data")                                    # and usable from anywhere
    for args in (["eval", tmp_path / "run"], ["plot", tmp_path / "run", "--confusion"],
                 ["train", "--resume", tmp_path / "run"]):
        done = invoke(*args)
        assert done.exit_code == 0, (args, done.stderr)


def test_a_set_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    path = relative_config(tmp_path)
    monkeypatch.chdir(tmp_path / "data")
    result = invoke("train", path, "--run-dir", tmp_path / "run", "-q", "--set", "data.test=test.csv")
    assert result.exit_code == 0, result.stderr
    kept = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert kept["data"]["test"] == str(tmp_path / "data" / "test.csv")


def test_train_dash_reads_standard_input(tmp_path):
    text = yaml.safe_dump(digits_config(data={"test": None}), sort_keys=False)
    text = text.replace(f"train: {DIGITS_TRAIN}", "train: -")
    assert "train: -" in text
    path = write_config(tmp_path, text, "stdin")
    result = invoke("train", path, "--run-dir", tmp_path / "a", "-q", input=DIGITS_TRAIN.read_text())
    assert result.exit_code == 0, result.stderr
    result = invoke("train", write_config(tmp_path, digits_config(), "b"), "--run-dir", tmp_path / "b", "-q",
                    "--set", "data.train=-", input=DIGITS_TRAIN.read_text())
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["data"]["train"] == "-"


def auto_config(**model) -> dict:
    cfg = digits_config()
    cfg["model"] = {"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                               {"type": "dense", "activation": "softmax"}], **model}
    return cfg


def test_sizes_left_out_come_from_the_data(tmp_path):
    for name, cfg in (("missing", auto_config()), ("auto", auto_config(input="auto"))):
        if name == "auto":
            cfg["model"]["layers"][-1]["units"] = "auto"
        result = invoke("train", write_config(tmp_path, cfg, name), "--run-dir", tmp_path / name, "-q")
        assert result.exit_code == 0, result.stderr
        kept = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert kept["model"]["input"] == 64 and kept["model"]["layers"][-1]["units"] == 10
        assert invoke("eval", tmp_path / name).exit_code == 0


def test_sizes_from_the_data_for_images_and_regression(tmp_path):
    cfg = auto_config()
    cfg["model"]["input"] = [1, 8, 8]
    cfg["model"]["layers"] = [{"type": "conv2d", "channels": 2, "kernel": 3, "activation": "relu"},
                              {"type": "flatten"}, {"type": "dense", "activation": "softmax"}]
    assert invoke("train", write_config(tmp_path, cfg, "cnn"), "--run-dir", tmp_path / "cnn", "-q").exit_code == 0
    from helpers import regression_config
    reg = regression_config()
    reg["model"] = {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense"}]}
    result = invoke("train", write_config(tmp_path, reg, "reg"), "--run-dir", tmp_path / "reg", "-q")
    assert result.exit_code == 0, result.stderr
    kept = yaml.safe_load((tmp_path / "reg" / "config.yaml").read_text())
    assert kept["model"]["input"] == 8 and kept["model"]["layers"][-1]["units"] == 1


def test_commands_without_data_say_what_auto_needs(tmp_path):
    cfg = auto_config()
    del cfg["data"]["train"]
    path = write_config(tmp_path, cfg, "nodata")
    assert_user_error(invoke("summary", path), 2, "data.train", "required")
    assert "come from the data" in invoke("validate", path, "--static").stdout
    assert invoke("summary", write_config(tmp_path, auto_config(), "withdata")).exit_code == 0


def test_validate_reads_the_data_unless_static(tmp_path):
    wrong = digits_config()
    wrong["model"]["layers"][-1]["units"] = 8
    path = write_config(tmp_path, wrong, "wrong")
    assert_user_error(invoke("validate", path), 2, "8 units", "10 classes")
    assert invoke("validate", path, "--static").exit_code == 0
    missing = write_config(tmp_path, digits_config(data={"train": str(tmp_path / "nope.csv")}), "missing")
    assert_user_error(invoke("validate", missing), 2, "nope.csv")
    ok = invoke("validate", write_config(tmp_path, digits_config(), "ok"))
    assert ok.exit_code == 0 and "1295 rows for training" in ok.stdout and "10 classes" in ok.stdout


def test_training_says_what_it_read(tmp_path):
    path = write_config(tmp_path, digits_config(), "x")
    done = subprocess.run([sys.executable, "-m", "netcli", "train", str(path), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    for fragment in ("1295 rows for training", "142 for validation", "64 features", "10 classes",
                     "normalize standard", "test.csv: 360 rows"):
        assert fragment in said, (fragment, said)
    assert done.stdout.strip() == str(tmp_path / "run")


# -- eval and predict take the training columns by name ----------------------------------------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def test_eval_and_predict_take_features_by_name(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", write_config(tmp_path, digits_config()), "--run-dir", run, "-q").exit_code == 0
    frame = pd.read_csv(DIGITS_TEST)
    frame.insert(0, "id", [f"img{i}" for i in range(len(frame))])
    frame[frame.columns[::-1]].to_csv(tmp_path / "reversed.csv", index=False)
    plain = invoke("eval", run, "--json")
    shuffled = invoke("eval", run, "--data", tmp_path / "reversed.csv", "--json")
    assert shuffled.exit_code == 0, shuffled.stderr
    import json
    assert json.loads(shuffled.stdout)["accuracy"] == json.loads(plain.stdout)["accuracy"] > 0.8
    expected = invoke("predict", run).stdout.splitlines()
    frame.drop(columns=["label"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    kept = invoke("predict", run, "--data", tmp_path / "unlabelled.csv", "--keep", "id")
    assert kept.exit_code == 0, kept.stderr
    assert kept.stdout.splitlines() == [f"img{i},{p}" for i, p in enumerate(expected)]
    assert invoke("predict", run, "--data", tmp_path / "reversed.csv").stdout.splitlines() == expected


def test_a_missing_column_or_a_headerless_file_is_named(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", write_config(tmp_path, digits_config()), "--run-dir", run, "-q").exit_code == 0
    frame = pd.read_csv(DIGITS_TEST)
    frame.drop(columns=["p5"]).to_csv(tmp_path / "missing.csv", index=False)
    assert_user_error(invoke("predict", run, "--data", tmp_path / "missing.csv"), 2, "'p5'", "did you mean")
    frame.to_csv(tmp_path / "nohead.csv", index=False, header=False)
    assert_user_error(invoke("predict", run, "--data", tmp_path / "nohead.csv"), 2, "no header", "data.header")
    assert_user_error(invoke("predict", run, "--data", DIGITS_TEST, "--keep", "nope"), 2,
                      "--keep nope")


def test_a_headerless_training_file_is_read_whole_with_header_false(tmp_path):
    frame = pd.read_csv(DIGITS_TRAIN)
    frame.to_csv(tmp_path / "nohead.csv", index=False, header=False)
    cfg = digits_config(data={"train": str(tmp_path / "nohead.csv"), "header": False, "target": 64,
                              "test": None})
    result = invoke("validate", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.stderr
    rows = int(result.stdout.split(" rows for training")[0].split()[-1])
    assert rows + int(result.stdout.split(" for validation")[0].split()[-1]) == len(frame)   # no row lost


def test_two_text_labels_with_binary_cross_entropy(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    label = np.where(X[:, 0] + X[:, 1] > 0, "spam", "ham")
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": label}).to_csv(tmp_path / "mail.csv",
                                                                                    index=False)
    cfg = {"data": {"train": str(tmp_path / "mail.csv"), "target": "label"},
           "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                {"type": "dense", "activation": "sigmoid"}]},
           "loss": "binary_cross_entropy", "optimizer": {"type": "adam", "lr": 0.05},
           "training": {"epochs": 30}}
    run = tmp_path / "run"
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", run, "-q")
    assert result.exit_code == 0, result.stderr
    predicted = invoke("predict", run, "--data", tmp_path / "mail.csv").stdout.split()
    assert set(predicted) <= {"spam", "ham"} and np.mean(np.array(predicted) == label) > 0.9
    three = label.copy()
    three[0] = "eggs"
    pd.DataFrame({"a": X[:, 0], "label": three}).to_csv(tmp_path / "three.csv", index=False)
    cfg["data"]["train"] = str(tmp_path / "three.csv")
    assert_user_error(invoke("validate", write_config(tmp_path, cfg, "three")), 2, "two labels", "cross_entropy")
