"""Training: metrics.jsonl, reproducibility, early stopping, the run directory, init_from,
the Python API, resume, divergence."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
import yaml

import netcli
from netcli.config import load_config
from netcli.errors import Interrupted, JobFailed, NetcliError
from netcli.prepare import prepare
from netcli.training import resume, train

from helpers import (DIGITS_TEST, DIGITS_TRAIN, StopAt, assert_user_error, digits_config, invoke,
                     load_csv, load_weights, read_metrics, regression_config, train_config,
                     without_seconds, write_config)

EPOCH_KEYS = {"epoch", "loss", "data_loss", "penalty", "lr", "seconds"}


def _metrics_text(run_dir) -> str:
    """metrics.jsonl as written, the wall-time field aside."""
    return without_seconds((run_dir / "metrics.jsonl").read_text())


# -- metrics.jsonl ---------------------------------------------------------------

def test_metrics_for_classification(tmp_path):
    result = train_config(tmp_path, digits_config(training={"epochs": 3}))
    metrics = read_metrics(result.run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2, 3]
    for r in metrics:
        assert EPOCH_KEYS | {"val_loss", "val_accuracy"} <= set(r)
        assert "val_mse" not in r
        assert r["loss"] == pytest.approx(r["data_loss"] + r["penalty"], rel=1e-9)
        assert r["penalty"] > 0                   # l2 1e-4 in the config
        assert 0 <= r["val_accuracy"] <= 1 and r["seconds"] >= 0 and r["lr"] == 0.01
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert result.summary["final"] == metrics[-1]


def test_metrics_for_regression(tmp_path):
    metrics = read_metrics(train_config(tmp_path, regression_config()).run_dir)
    for r in metrics:
        assert EPOCH_KEYS | {"val_loss", "val_mse"} <= set(r)
        assert "val_accuracy" not in r
        # the notes' 1/2 ||h - y||^2 convention: the loss is half the mean squared error
        assert r["val_loss"] == pytest.approx(r["val_mse"] / 2, rel=1e-5)


def test_no_validation_metrics_without_validation_data(tmp_path):
    metrics = read_metrics(train_config(tmp_path, digits_config(data={"validation_split": 0.0})).run_dir)
    assert not any(k.startswith("val_") for r in metrics for k in r)
    assert EPOCH_KEYS <= set(metrics[0])


def test_metrics_file_has_one_json_object_per_line(tmp_path):
    text = (train_config(tmp_path, digits_config()).run_dir / "metrics.jsonl").read_text()
    assert text.endswith("\n")
    assert all(isinstance(json.loads(line), dict) for line in text.splitlines())


@pytest.mark.parametrize("make", [digits_config, regression_config], ids=["digits", "regression"])
def test_same_config_and_seed_give_identical_metrics(tmp_path, make):
    cfg = make(training={"epochs": 3})
    a = train_config(tmp_path, cfg, "a").run_dir
    b = train_config(tmp_path, cfg, "b").run_dir
    text_a, text_b = (a / "metrics.jsonl").read_text(), (b / "metrics.jsonl").read_text()
    assert without_seconds(text_a) == without_seconds(text_b)
    assert '"seconds": _' in without_seconds(text_a)
    wa, wb = load_weights(a), load_weights(b)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_another_seed_gives_other_metrics(tmp_path):
    a = train_config(tmp_path, digits_config(), "a").run_dir
    b = train_config(tmp_path, digits_config(seed=1), "b").run_dir
    assert _metrics_text(a) != _metrics_text(b)


def test_dropout_runs_are_reproducible(tmp_path):
    cfg = digits_config(model={"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                          {"type": "dropout", "rate": 0.5},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    a = train_config(tmp_path, cfg, "a").run_dir
    b = train_config(tmp_path, cfg, "b").run_dir
    assert _metrics_text(a) == _metrics_text(b)
    assert set(k for k in load_weights(a) if k.startswith("layers.")) == \
        {"layers.0.W", "layers.0.b", "layers.2.W", "layers.2.b"}   # the dropout layer counts too


# -- early stopping ----------------------------------------------------------------

def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    # min_delta this large: epoch 1 is the best there will be, and patience 1 ends epoch 2.
    stopping = {"epochs": 10, "early_stopping": {"patience": 1, "min_delta": 100.0}}
    result = train_config(tmp_path, digits_config(training=stopping), "stopped")
    metrics = read_metrics(result.run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2]
    assert result.summary["status"] == "finished"
    assert "early stopping" in result.summary["message"]
    assert result.summary["best"] == {"epoch": 1, "val_loss": metrics[0]["val_loss"]}
    one_epoch = train_config(tmp_path, digits_config(training={"epochs": 1}), "one")
    best, stopped = load_weights(one_epoch.run_dir), load_weights(result.run_dir)
    for k in best:
        if k.startswith("layers."):
            np.testing.assert_array_equal(stopped[k], best[k], err_msg=k)


def test_early_stopping_without_restore_keeps_the_last_weights(tmp_path):
    stopping = {"epochs": 10, "early_stopping": {"patience": 1, "min_delta": 100.0, "restore_best": False}}
    stopped = load_weights(train_config(tmp_path, digits_config(training=stopping), "stopped").run_dir)
    two = load_weights(train_config(tmp_path, digits_config(training={"epochs": 2}), "two").run_dir)
    np.testing.assert_array_equal(stopped["layers.0.W"], two["layers.0.W"])


def test_early_stopping_on_accuracy_maximizes(tmp_path):
    stopping = {"epochs": 6, "early_stopping": {"monitor": "val_accuracy", "patience": 2}}
    result = train_config(tmp_path, digits_config(training=stopping))
    metrics = read_metrics(result.run_dir)
    best = max(r["val_accuracy"] for r in metrics)
    assert result.summary["best"]["val_accuracy"] == best
    assert metrics[result.summary["best"]["epoch"] - 1]["val_accuracy"] == best


def test_early_stopping_on_a_metric_the_run_lacks(tmp_path):
    stopping = {"early_stopping": {"monitor": "val_mse", "patience": 2}}
    with pytest.raises(NetcliError, match="val_mse"):
        train_config(tmp_path, digits_config(training=stopping))


# -- the run directory -----------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layout")
    cfg = digits_config()
    path = write_config(tmp, cfg, "digits-small")
    result = train(path, runs_base=tmp / "runs")
    return result, path


def test_run_directory_layout(finished):
    result, path = finished
    run_dir = result.run_dir
    assert run_dir.parent.name == "runs" and run_dir.name.startswith("digits-small-")
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "metrics.jsonl", "weights.npz",
                                                   "checkpoint.npz", "summary.json"}
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_run_keeps_the_resolved_config(finished):
    result, path = finished
    kept = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert kept == load_config(path).as_dict()
    assert kept["training"]["schedule"] == {"type": "constant"}       # defaults filled in
    assert kept["dtype"] == "float32" and "beta1" in kept["optimizer"]
    assert load_config(result.run_dir / "config.yaml").as_dict() == kept


def test_run_files_are_readable_like_any_other_file(finished):
    """Atomic writes go through a temporary file; the file put in place must not keep the
    temporary file's private (0600) mode, or nobody else can read a shared run."""
    result, _ = finished
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.run_dir.iterdir() if p.is_file()}
    assert modes == {name: expected for name in modes}, modes


def test_weights_file(finished):
    result, _ = finished
    w = load_weights(result.run_dir)
    params = {k for k in w if k.startswith("layers.")}
    assert params == {"layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"}
    assert w["layers.0.W"].shape == (16, 64) and w["layers.0.b"].shape == (16,)   # W (out, in)
    assert w["layers.1.W"].shape == (10, 16) and w["layers.0.W"].dtype == np.float32
    assert all(k.startswith(("layers.", "meta.")) for k in w)
    assert str(w["meta.netcli_version"]) == netcli.__version__
    np.testing.assert_array_equal(w["meta.classes"], np.arange(10))
    assert {"meta.normalize", "meta.offset", "meta.scale", "meta.input_shape"} <= set(w)


def test_summary_file(finished):
    result, path = finished
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert summary == json.loads(json.dumps(result.summary))
    assert 0.5 < summary["test"]["accuracy"] <= 1
    assert summary["final"]["epoch"] == 2


def test_checkpoint_file(finished):
    result, _ = finished
    with np.load(result.run_dir / "checkpoint.npz", allow_pickle=False) as ck:
        assert int(ck["epoch"]) == 2
        assert {"theta", "step", "opt.m", "opt.v", "opt.t"} <= set(ck.files)


def test_latest_points_at_the_newest_run(finished):
    result, path = finished
    base = result.run_dir.parent
    latest = base / "latest"
    assert latest.is_symlink() and latest.resolve() == result.run_dir.resolve()
    newer = train(path, runs_base=base)
    assert newer.run_dir != result.run_dir
    assert latest.resolve() == newer.run_dir.resolve()
    assert not os.path.isabs(os.readlink(latest))           # relative: the folder can move
    loaded = netcli.load_run(latest)
    assert loaded.path == newer.run_dir.resolve()


def test_existing_run_dir_is_refused_without_overwrite(tmp_path):
    cfg = digits_config(training={"epochs": 1})
    path = write_config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(NetcliError, match="--overwrite"):
        train(path, run_dir=run_dir)
    assert_user_error(invoke("train", path, "--run-dir", run_dir, "-q"), 2, "not empty", "--overwrite")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    result = invoke("train", path, "--run-dir", run_dir, "-q", "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "weights.npz").exists()
    assert len(read_metrics(run_dir)) == 1
    again = invoke("train", path, "--run-dir", run_dir, "-q", "--overwrite")
    assert again.exit_code == 0 and len(read_metrics(run_dir)) == 1   # not appended to the old run


def test_an_empty_run_dir_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    assert train_config(tmp_path, digits_config(training={"epochs": 1})).summary["status"] == "finished"


# -- init_from ---------------------------------------------------------------------

def test_init_from_a_run_directory_and_a_weights_file(tmp_path):
    source = train_config(tmp_path, digits_config(dtype="float64"), "source").run_dir
    saved = load_weights(source)
    for origin in (source, source / "weights.npz"):
        cfg = digits_config(model={"init_from": str(origin)})
        net = prepare(load_config(write_config(tmp_path, cfg, "start"))).net
        for k, v in net.params.items():
            assert v.dtype == np.float32                     # cast to the config's dtype
            np.testing.assert_allclose(v, saved[k].astype(np.float32), err_msg=k)


def test_init_from_changes_where_training_starts(tmp_path):
    source = train_config(tmp_path, digits_config(training={"epochs": 4}), "source")
    warm = train_config(tmp_path, digits_config(model={"init_from": str(source.run_dir)},
                                                training={"epochs": 1}), "warm")
    cold = train_config(tmp_path, digits_config(training={"epochs": 1}), "cold")
    assert read_metrics(warm.run_dir)[0]["loss"] < read_metrics(cold.run_dir)[0]["loss"]


def test_init_from_with_other_shapes_is_a_clear_error(tmp_path):
    source = train_config(tmp_path, digits_config(), "source").run_dir
    cfg = digits_config(model={"init_from": str(source),
                               "layers": [{"type": "dense", "units": 32, "activation": "relu"},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    with pytest.raises(NetcliError) as info:
        train_config(tmp_path, cfg, "other")
    message = str(info.value)
    assert "layers.0.W" in message and "[16, 64]" in message and "[32, 64]" in message
    assert not (tmp_path / "other").exists()
    assert_user_error(invoke("train", write_config(tmp_path, cfg, "other"), "--run-dir",
                             tmp_path / "other2", "-q"), 2, "layers.0.W")


def test_init_from_a_missing_file(tmp_path):
    cfg = digits_config(model={"init_from": str(tmp_path / "nope" / "weights.npz")})
    with pytest.raises(NetcliError, match="not found"):
        train_config(tmp_path, cfg)


# -- the Python API ----------------------------------------------------------------

def test_python_api_train_and_predict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, digits_config(training={"epochs": 3}), "api")
    result = netcli.train(path)
    assert result.run_dir.resolve().parent == (tmp_path / "runs").resolve()
    assert result.summary["status"] == "finished"
    X, y = load_csv(DIGITS_TEST)
    run = netcli.load_run(result.run_dir)
    predicted = run.predict(X)
    assert predicted.shape == (360,) and predicted.dtype.kind == "i"
    assert np.mean(predicted == y) > 0.8
    proba = run.predict(X, proba=True)
    assert proba.shape == (360, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), predicted)
    assert np.array_equal(netcli.load_run("runs/latest").predict(X), predicted)


def test_python_api_predict_agrees_with_eval(tmp_path):
    run = netcli.load_run(train_config(tmp_path, digits_config()).run_dir)
    X, y = load_csv(DIGITS_TEST)
    scores = run.evaluate(run.split(str(DIGITS_TEST)))
    assert scores["accuracy"] == pytest.approx(np.mean(run.predict(X) == y))
    assert scores["examples"] == 360
    assert np.sum(scores["confusion"]) == 360


def test_load_run_errors(tmp_path):
    with pytest.raises(NetcliError, match="no such run"):
        netcli.load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NetcliError, match="not a run directory"):
        netcli.load_run(tmp_path / "empty")


# -- resume ------------------------------------------------------------------------

def test_resume_after_an_interrupt_matches_an_uninterrupted_run(tmp_path):
    cfg = digits_config(training={"epochs": 6})
    whole = train_config(tmp_path, cfg, "whole").run_dir
    with pytest.raises(Interrupted, match="--resume"):
        train_config(tmp_path, cfg, "cut", reporter=StopAt(4))
    cut = tmp_path / "cut"
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    with np.load(cut / "checkpoint.npz") as ck:
        assert int(ck["epoch"]) == 3                       # the last complete epoch
    result = resume(cut)
    assert result.summary["status"] == "finished" and result.summary["epochs"] == 6
    assert _metrics_text(cut) == _metrics_text(whole)
    a, b = load_weights(whole), load_weights(cut)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_with_early_stopping_state(tmp_path):
    cfg = digits_config(training={"epochs": 8, "early_stopping": {"patience": 2}},
                        optimizer={"lr": 0.05})
    whole = train_config(tmp_path, cfg, "whole")
    with pytest.raises(Interrupted):
        train_config(tmp_path, cfg, "cut", reporter=StopAt(3))
    resumed = resume(tmp_path / "cut")
    assert resumed.summary["epochs"] == whole.summary["epochs"]
    assert resumed.summary["best"] == whole.summary["best"]
    np.testing.assert_array_equal(load_weights(tmp_path / "cut")["layers.0.W"],
                                  load_weights(whole.run_dir)["layers.0.W"])


def test_resume_on_the_command_line(tmp_path):
    cfg = digits_config(training={"epochs": 4})
    with pytest.raises(Interrupted):
        train_config(tmp_path, cfg, "cut", reporter=StopAt(2))
    result = invoke("train", "--resume", tmp_path / "cut", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str((tmp_path / "cut").resolve())
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [1, 2, 3, 4]


def test_resume_a_finished_run_changes_nothing(tmp_path):
    run_dir = train_config(tmp_path, digits_config()).run_dir
    before = load_weights(run_dir)
    result = resume(run_dir)
    assert result.summary["epochs"] == 2
    after = load_weights(run_dir)
    np.testing.assert_array_equal(before["layers.0.W"], after["layers.0.W"])
    assert len(read_metrics(run_dir)) == 2


# -- failure -----------------------------------------------------------------------

def test_divergence_fails_the_job_and_keeps_the_last_good_state(tmp_path):
    cfg = regression_config(optimizer={"type": "sgd", "lr": 1.0e6})
    with pytest.raises(JobFailed, match="diverged"):
        train_config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
    w = load_weights(run_dir)
    assert all(np.all(np.isfinite(v)) for k, v in w.items() if k.startswith("layers."))
    result = invoke("train", write_config(tmp_path, cfg, "again"), "--run-dir", tmp_path / "again", "-q")
    assert_user_error(result, 1, "diverged", "lr")


def test_summary_records_wall_time_and_steps(tmp_path):
    result = train_config(tmp_path, digits_config(training={"epochs": 2, "batch_size": 100}))
    n_train = 1437 - round(0.1 * 1437)
    assert abs(result.summary["steps"] - 2 * math.ceil(n_train / 100)) <= 2
    assert result.summary["wall_seconds"] >= 0


@pytest.mark.parametrize("batch_size,steps_per_epoch", [("full", 1), (1, None), (500, 3)])
def test_batch_size_sets_the_steps_per_epoch(tmp_path, batch_size, steps_per_epoch):
    cfg = digits_config(data={"validation_split": 0.0, "train": str(DIGITS_TRAIN)},
                        training={"epochs": 1, "batch_size": batch_size}, optimizer={"lr": 0.001})
    result = train_config(tmp_path, cfg)
    assert result.summary["steps"] == (steps_per_epoch or 1437)
