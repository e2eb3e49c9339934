"""Hostile but ordinary inputs, continued (issue 14): paths that cannot be looked into, run files
whose stored values are garbage, summaries of the wrong kind, files that cannot be read, and a
stdout that closes. Each ends in one `Error:` line and exit 2, or quietly."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import DIGITS_TEST, assert_user_error, digits_config, invoke, load_weights, train_config, write_config
from netcli.errors import NetcliError
from netcli.files import load_npz, save_npz
from netcli.runs.weights import read_meta

LONG = "x" * 300    # a file name longer than any file system allows (ENAMETOOLONG)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished digits run with a validation split, a test file and early stopping's best theta."""
    config = digits_config(training={"epochs": 2, "batch_size": 64, "early_stopping": {"patience": 5}})
    return train_config(tmp_path_factory.mktemp("trained"), config).run_dir


@pytest.fixture(scope="module")
def full_batch(tmp_path_factory) -> Path:
    config = dict(digits_config(), optimizer={"type": "lbfgs", "max_iter": 3})
    return train_config(tmp_path_factory.mktemp("lbfgs"), config).run_dir


def copy_run(run: Path, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


def one_error_line(result, *fragments: str) -> str:
    err = assert_user_error(result, 2, *fragments)
    assert len(err.strip().splitlines()) == 1, err
    return err


def denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))


def no_entry(monkeypatch, folder: Path) -> None:
    """folder cannot be entered (mode 000, for a user who is not root): nothing inside it can be
    looked at. Permission bits do not bind root, so the refusal is the kernel's answer, stat's."""
    real, inside = os.stat, str(folder) + os.sep

    def stat(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(inside):
            raise denied(path)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)


def unreadable(monkeypatch, path: Path) -> None:
    """path cannot be read (mode 000, for a user who is not root, and for root too)."""
    path.chmod(0)
    target = os.path.realpath(path)
    real_access, real_open = os.access, Path.open

    def access(p, mode, *args, **kwargs):
        if isinstance(p, (str, os.PathLike)) and os.path.realpath(p) == target and mode & os.R_OK:
            return False
        return real_access(p, mode, *args, **kwargs)

    def open_(self, *args, **kwargs):
        if os.path.realpath(self) == target:
            raise denied(self)
        return real_open(self, *args, **kwargs)
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(Path, "open", open_)


# -- run directories that cannot be looked into --------------------------------------------------

WHERE = {"train --run-dir": lambda cfg, far: ["train", cfg, "--run-dir", far / "run"],
         "train --runs": lambda cfg, far: ["train", cfg, "--runs", far / "runs"],
         "eval": lambda cfg, far: ["eval", far / "run"],
         "predict": lambda cfg, far: ["predict", far / "run"],
         "train --resume": lambda cfg, far: ["train", "--resume", far / "run"],
         "diff": lambda cfg, far: ["diff", far / "run", far / "run"],
         "plot": lambda cfg, far: ["plot", far / "run"]}


@pytest.mark.parametrize("why", ["cannot be entered", "name too long"])
@pytest.mark.parametrize("command", list(WHERE))
def test_a_run_directory_that_cannot_be_looked_into_is_one_error_line(tmp_path, monkeypatch, command, why):
    config = write_config(tmp_path, digits_config(), "x")
    far = tmp_path / ("noexec" if why == "cannot be entered" else LONG)
    if why == "cannot be entered":
        far.mkdir()
        no_entry(monkeypatch, far)
    one_error_line(invoke(*WHERE[command](config, far)),
                   "Permission denied" if why == "cannot be entered" else "File name too long")
    assert os.listdir(tmp_path) == ["x.yaml"] if why == "name too long" else not os.listdir(far)


# -- a checkpoint whose stored values are garbage -------------------------------------------------

@pytest.mark.parametrize("key, garbage, says", [
    ("metrics", "{}", "not a list of epoch records"),
    ("metrics", "[1, 2]", "not a list of epoch records"),
    ("metrics", '[{"epoch": "x"}]', "not a list of epoch records"),
    ("metrics", '[{"epoch": 2, "loss": 0.5}, {"epoch": 1, "loss": 0.5}]', "not a list of epoch records"),
    ("metrics", 3.5, "not JSON text"),
    ("epoch", -5, "is -5, not a count"),
    ("epoch", 10**15, "but metrics holds 2 epochs"),
    ("epoch", 1, "but metrics holds 2 epochs"),
    ("epoch", 2.0, "not a count"),
    ("epoch", "zebra", "not a count"),
    ("step", np.zeros(3), "not a count"),
    ("es.best_epoch", 99, "after the checkpoint's epoch 2"),
    ("rng.layers", "{}", "not a list of generator states"),
    ("rng.layers", "[1]", "not a list of generator states"),
    ("rng.shuffle", "[]", "not a generator's state"),
    ("wall_seconds", math.nan, "is nan, not a time"),
    ("wall_seconds", -1.0, "not a time"),
    ("wall_seconds", "zebra", "not a number"),
    ("theta", ["a", "b"], "not a vector of parameters"),
    ("es.best_theta", np.zeros(3), "has 3 values"),
    ("es.best", math.nan, "for es.best_epoch"),
    ("es.best", math.inf, "for es.best_epoch"),
    ("es.best_epoch", 0, "for es.best_epoch 0"),
    ("opt.t", "zebra", "not a count"),
    ("opt.t", -5, "not a count"),
    ("opt.t", 3.5, "not a count"),
    ("opt.m", -5.0, "not a vector of parameters"),
    ("opt.m", np.zeros(3), "has 3 values"),
    ("opt.v", np.full(1210, np.nan), "holds NaN or Inf"),
    ("theta", np.full(1210, np.inf), "holds NaN or Inf"),
])
def test_a_checkpoint_with_garbage_values_is_one_error_line(trained, tmp_path, key, garbage, says):
    run = copy_run(trained, tmp_path)
    arrays = load_npz(run / "checkpoint.npz")
    assert key in arrays
    save_npz(run / "checkpoint.npz", dict(arrays, **{key: np.array(garbage)}))
    # a longer run, so that training would go on with what it read
    one_error_line(invoke("train", "--resume", run, "--set", "training.epochs=3", "-q"),
                   "checkpoint.npz: ", key, says, "the file is damaged")
    assert (run / "metrics.jsonl").read_text() == (trained / "metrics.jsonl").read_text()


def test_checkpoints_netcli_writes_are_read_back(trained, full_batch, tmp_path):
    from netcli.runs.checkpoint import load_checkpoint
    ck = load_checkpoint(full_batch / "checkpoint.npz")    # no optimizer state, lr null in its records
    assert ck.progress.epoch == len(ck.progress.history) >= 1 and ck.optimizer == {}
    ck = load_checkpoint(trained / "checkpoint.npz")
    assert ck.progress.best_theta is not None and ck.progress.epoch == 2
    run = copy_run(trained, tmp_path)
    result = invoke("train", "--resume", run, "--set", "training.epochs=3", "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 3


# -- weights.npz whose metadata is garbage ----------------------------------------------------------

GONE = object()


@pytest.mark.parametrize("key, garbage, says", [
    ("meta.offset", np.zeros(3), "not 64 numbers"),
    ("meta.offset", np.array(["a", "b"]), "not 64 numbers"),
    ("meta.offset", np.full(64, np.nan), "NaN or Inf"),
    ("meta.offset", GONE, "is missing"),
    ("meta.scale", np.zeros((2, 2)), "not 64 numbers"),
    ("meta.scale", np.zeros(64), "holds zeros"),
    ("meta.classes", GONE, "is missing, which a classification run needs"),
    ("meta.classes", np.zeros(10, dtype=np.int64), "not distinct labels in sorted order"),
    ("meta.classes", np.arange(10)[::-1].copy(), "not distinct labels in sorted order"),
    ("meta.classes", np.zeros((2, 5)), "not a list of class labels"),
    ("meta.normalize", "zebra", "is 'zebra', not one of none, standard, minmax"),
    ("meta.normalize", 3.5, "not a name"),
    ("meta.input_shape", np.array([3.7]), "not a shape"),
    ("meta.input_shape", np.array([-1]), "not a shape"),
    ("meta.features", GONE, "is missing, though meta.target_column 'label' is there"),
    ("meta.features", np.array(["p0", "p1"]), "names 2 columns, which make 2 inputs"),
    ("meta.target_column", np.array(["a", "b"]), "not a name"),
    ("meta.impute", "zebra", "not one of error, mean, median"),
    ("meta.fill", np.array([np.nan]), "not a finite value"),
    ("meta.categories", "{not json", "not an object of category columns"),
    ("meta.task", "zebra", "'zebra' is not a task netcli knows"),
    ("meta.task", np.array(["a", "b"]), "is not a task netcli knows"),
    ("meta.input_shape", np.array(["x"]), "not a shape"),
    ("meta.normalize", GONE, "has no meta.normalize"),
])
@pytest.mark.parametrize("command", ["eval", "predict", "plot --confusion"])
def test_weights_with_garbage_metadata_are_one_error_line(trained, tmp_path, command, key, garbage, says):
    run = copy_run(trained, tmp_path)
    arrays = load_weights(run)
    if garbage is GONE:
        del arrays[key]
    else:
        arrays[key] = np.array(garbage)
    save_npz(run / "weights.npz", arrays)
    one_error_line(invoke(*command.split(), run, "--out" if "plot" in command else "--data",
                          tmp_path / "c.png" if "plot" in command else DIGITS_TEST),
                   "weights.npz: ", key, says, "the file is damaged")


def test_a_classifier_needs_one_class_per_output(trained):
    arrays = load_weights(trained)
    prep, task, _ = read_meta(trained / "weights.npz", arrays, outputs=10)
    assert task.labelled and len(prep.classes) == 10
    with pytest.raises(NetcliError, match="meta.classes has 2 labels, the network has 10 outputs"):
        read_meta(trained / "weights.npz", dict(arrays, **{"meta.classes": np.array([0, 1])}), outputs=10)


# -- netcli runs: summaries of the wrong kind, a log that cannot be read ------------------------------

@pytest.mark.parametrize("summary, shown", [
    ({"status": 5}, {"status": "damaged"}),
    ({"status": "finished", "wall_seconds": "x"}, {"status": "finished", "wall_seconds": None}),
    ({"status": "finished", "wall_seconds": math.inf}, {"wall_seconds": None}),
    ({"status": "finished", "config": [1]}, {"config": None}),
    ({"status": "finished", "config": "[/oops]"}, {"config": "[/oops]"}),     # not rich markup
    ({"status": "finished", "epochs": "x"}, {"epochs": None}),
    ({"status": "finished", "epochs": True}, {"epochs": None}),
    ({"status": "[bold]finished", "test": [1]}, {"status": "[bold]finished", "test": None}),
])
def test_runs_shows_summary_fields_of_the_wrong_kind_as_damaged_or_blank(trained, tmp_path, summary, shown):
    copy_run(trained, tmp_path / "runs", "r")
    (tmp_path / "runs" / "r" / "summary.json").write_text(json.dumps(summary))
    table = invoke("runs", tmp_path / "runs")
    assert table.exit_code == 0, (table.stderr, table.exception)
    assert "r" in table.stdout and table.stderr == ""
    listed = invoke("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, listed.stderr
    row = json.loads(listed.stdout)[0]
    assert {k: row[k] for k in shown} == shown
    for value in shown.values():
        if isinstance(value, str):
            assert value in table.stdout


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json"])
def test_a_run_file_that_cannot_be_read(trained, tmp_path, monkeypatch, name):
    run = copy_run(trained, tmp_path / "runs", "r")
    unreadable(monkeypatch, run / name)
    listed = invoke("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, (listed.stderr, listed.exception)
    assert json.loads(listed.stdout)[0]["status"] == f"cannot read {name}"
    table = invoke("runs", tmp_path / "runs")
    assert table.exit_code == 0 and f"cannot read {name}" in table.stdout
    if name == "metrics.jsonl":
        one_error_line(invoke("plot", run), "metrics.jsonl", "Permission denied")
        one_error_line(invoke("diff", run, trained), "metrics.jsonl", "Permission denied")


@pytest.mark.parametrize("text", [b"[1, 2]", b'"finished"', b"{not json", b"\xff\xfe", b""])
def test_runs_shows_a_summary_that_is_not_an_object_as_damaged(trained, tmp_path, text):
    run = copy_run(trained, tmp_path / "runs", "r")
    (run / "summary.json").write_bytes(text)
    listed = invoke("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, (listed.stderr, listed.exception)
    row = json.loads(listed.stdout)[0]
    assert row["status"] == "damaged" and row["epochs"] == 2 and row["wall_seconds"] is None


def test_a_metrics_log_that_is_not_text_ends_where_it_stops_being_json(trained, tmp_path):
    run = copy_run(trained, tmp_path / "runs", "r")
    good = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(good + b"\xff\xfe garbage\n")
    listed = invoke("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, (listed.stderr, listed.exception)
    assert json.loads(listed.stdout)[0]["epochs"] == 2


# -- a config that cannot be read for its mode ---------------------------------------------------------

@pytest.mark.parametrize("command", ["validate", "train", "summary"])
def test_a_config_without_read_permission_is_one_error_line(tmp_path, monkeypatch, command):
    path = write_config(tmp_path, digits_config(), "x")
    unreadable(monkeypatch, path)
    one_error_line(invoke(command, path), f"Error: {path}: cannot read config", "Permission denied")


# -- plot: the curves need metrics.jsonl only --------------------------------------------------------

def test_plot_curves_need_no_config(trained, full_batch, tmp_path, monkeypatch):
    from netcli import plots
    drawn = []
    original = plots.plot_curves

    def spy(metrics, title, path, full_batch=False):
        drawn.append(full_batch)
        return original(metrics, title, path, full_batch)
    monkeypatch.setattr(plots, "plot_curves", spy)
    for run, expected in ((trained, False), (full_batch, True)):
        alone = tmp_path / f"{run.parent.name}-log"
        alone.mkdir()
        shutil.copy(run / "metrics.jsonl", alone)
        result = invoke("plot", alone)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == str(alone.resolve() / "curves.png")
        assert (alone / "curves.png").stat().st_size > 1000
        assert drawn[-1] is expected
    assert_user_error(invoke("plot", tmp_path / "nothing-here"), 2, "no such run directory")


# -- a closed stdout ends any command quietly, exit 0 --------------------------------------------------

def closed_stdout(*args) -> subprocess.CompletedProcess:
    """netcli with a stdout whose reader is gone before it starts: every write fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "netcli", *map(str, args)], stdout=write,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_to_a_closed_stdout_exit_0(args):
    done = closed_stdout(*args)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()


def test_help_piped_into_true_exits_0():
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m netcli --help | true"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()


@pytest.mark.slow
def test_npy_predictions_larger_than_a_pipe_into_head_exit_0(trained, tmp_path):
    lines = DIGITS_TEST.read_text().splitlines()
    big = tmp_path / "big.csv"
    big.write_text("\n".join([lines[0], *lines[1:] * 16]) + "\n")   # 5,760 rows: ~230 KB of probabilities
    command = f"{sys.executable} -m netcli predict {trained} --data {big} --format npy --proba"
    whole = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120)
    assert whole.returncode == 0 and len(whole.stdout) >= 200_000, whole.stderr.decode()
    assert np.load(io.BytesIO(whole.stdout)).shape == (5760, 10)
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -c 10"], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"" and done.stdout == whole.stdout[:10]
