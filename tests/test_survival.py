"""Hostile but ordinary inputs and faults: every one ends in one `Error:` line and a meaningful
exit code, in bounded time, and no run loses the work it has done (issue: runs that survive
their users)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import (DIGITS_TEST, StopAt, assert_user_error, digits_config, invoke, load_weights, read_metrics,
                     train_config, write_config)
from netcli.errors import Interrupted
from netcli.files import atomic_write, load_npz, save_npz
from netcli.runs import RunDir
from netcli.runs.checkpoint import load_checkpoint
from netcli.training import resume

EIO_FILE = "/proc/self/mem"   # opens, and every read of it fails with an I/O error (EIO)


def cli_process(*args, stdin=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netcli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, stdin=stdin, **kwargs)


# -- configs: refused with file:line, in bounded time ---------------------------------------

def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + (f"\nmodel:\n  input: 2\n  layers:\n"
                               f"    - {{type: dense, units: 1, activation: {{type: relu, x: *a{levels - 1}}}}}\n")


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_at_once(tmp_path, levels):
    path = write_config(tmp_path, alias_bomb(levels), "bomb")
    start = time.perf_counter()
    err = assert_user_error(invoke("validate", path), 2, "bomb.yaml:", "alias")
    assert time.perf_counter() - start < 5, err


def test_aliases_that_stay_small_are_fine(tmp_path):
    layers = "  layers:\n  - &hidden {type: dense, units: 16, activation: relu}\n  - *hidden\n" \
             "  - {type: dense, units: 10, activation: softmax}\n"
    data = digits_config()
    text = yaml.safe_dump({k: v for k, v in data.items() if k != "model"}) + "model:\n  input: 64\n" + layers
    result = invoke("validate", write_config(tmp_path, text, "small"))
    assert result.exit_code == 0, result.stderr


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    text = yaml.safe_dump(digits_config(), sort_keys=False) + "optimizer: {type: sgd, lr: 0.1}\n"
    path = write_config(tmp_path, text, "twice")
    last = len(text.splitlines())
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("optimizer:"))
    assert_user_error(invoke("validate", path), 2, f"twice.yaml:{last}: optimizer: key given twice",
                      f"first on line {first}")


@pytest.mark.parametrize("key, value, message", [
    ("model.layers.0.units", "true", "must be an integer, got True"),
    ("training.epochs", "yes", "must be an integer, got True"),
    ("optimizer.lr", ".inf", "must be a finite number, got inf"),
    ("regularization.l2", ".inf", "must be a finite number, got inf"),
    ("optimizer.lr", ".nan", "must be a finite number"),
])
def test_booleans_and_infinities_are_not_numbers(tmp_path, key, value, message):
    cfg = yaml.safe_dump(digits_config(), sort_keys=False)
    path = write_config(tmp_path, cfg, "x")
    err = assert_user_error(invoke("validate", path, "--set", f"{key}={value}"), 2, message)
    assert key.split(".")[-1] in err
    # the same mistake in the file is named by its line
    data = yaml.safe_load(cfg)
    *parents, last = [int(p) if p.isdigit() else p for p in key.split(".")]
    target = data
    for p in parents:
        target = target[p]
    target[last] = "__VALUE__"
    text = yaml.safe_dump(data, sort_keys=False).replace("__VALUE__", value)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if value in ln and "__" not in ln)
    assert_user_error(invoke("validate", write_config(tmp_path, text, "y")), 2, f"y.yaml:{line}:", message)


def test_scientific_notation_is_a_number(tmp_path):
    text = yaml.safe_dump(digits_config(), sort_keys=False).replace("lr: 0.01", "lr: 1e-3")
    assert "lr: 1e-3" in text
    from netcli.config import load_config
    config = load_config(write_config(tmp_path, text, "sci"), ["regularization.l2=5e-4"])
    assert config.spec.optimizer.args["lr"] == 0.001 and config.spec.regularization.l2 == 0.0005


# -- paths that cannot be read or written ------------------------------------------------------

def test_a_config_that_cannot_be_read_is_a_user_error():
    assert_user_error(invoke("validate", EIO_FILE), 2, EIO_FILE, "cannot read config")


def test_a_data_file_that_cannot_be_read_is_a_user_error(tmp_path):
    path = write_config(tmp_path, digits_config(data={"train": EIO_FILE}), "x")
    assert_user_error(invoke("train", path, "--run-dir", tmp_path / "run"), 2, EIO_FILE, "cannot read")


@pytest.mark.parametrize("where", ["a file", "under a file", "runs under a file"])
def test_a_run_directory_that_cannot_be_made_is_a_user_error(tmp_path, where):
    path = write_config(tmp_path, digits_config(), "x")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    args = {"a file": ["--run-dir", blocker], "under a file": ["--run-dir", blocker / "run"],
            "runs under a file": ["--runs", blocker / "runs"]}[where]
    assert_user_error(invoke("train", path, *args), 2, str(blocker))
    assert blocker.read_text() == "not a folder"


def test_a_checkpoint_with_garbage_strings_is_a_user_error(tmp_path):
    run = train_config(tmp_path, digits_config()).run_dir
    arrays = load_npz(run / "checkpoint.npz")
    for key, garbage in (("rng.shuffle", "{not json"), ("rng.shuffle", '{"state": 1}'), ("metrics", "[1,")):
        damaged = dict(arrays, **{key: np.array(garbage)})
        save_npz(run / "checkpoint.npz", damaged)
        assert_user_error(invoke("train", "--resume", run), 2, "checkpoint.npz")


# -- a closed stdout ends a command quietly -----------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_config(tmp_path_factory.mktemp("trained"), digits_config()).run_dir


@pytest.mark.parametrize("command", ["predict {run} --format npy | head -c 10",
                                     "predict {run} | head -1", "eval {run} | head -1",
                                     "eval {run} --json | head -1"])
def test_a_closed_stdout_ends_quietly(trained, command):
    shell = f"set -o pipefail; {sys.executable} -m netcli " + command.format(run=trained)
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    assert done.stdout


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    done = cli_process("validate", tmp_path / "nope.yaml", "--debug")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "Error:" in done.stderr


# -- one writer per run directory ---------------------------------------------------------------

def test_a_run_directory_in_use_is_refused(tmp_path):
    path = write_config(tmp_path, digits_config(), "x")
    run = tmp_path / "run"
    run.mkdir()
    holder = RunDir(run)
    holder.lock()
    try:
        err = assert_user_error(invoke("train", path, "--run-dir", run, "--overwrite"), 2, "in use")
        assert str(os.getpid()) in err
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.unlock()
    assert invoke("train", path, "--run-dir", run, "--overwrite").exit_code == 0


def test_a_dead_process_does_not_hold_a_run(tmp_path):
    path = write_config(tmp_path, digits_config(), "x")
    run = tmp_path / "run"
    code = ("import sys, os; from netcli.runs import RunDir; from pathlib import Path; "
            "RunDir(Path(sys.argv[1])).lock(); os._exit(0)")
    run.mkdir()
    subprocess.run([sys.executable, "-c", code, str(run)], check=True, timeout=60)
    assert not RunDir(run).in_use()
    assert invoke("train", path, "--run-dir", run, "--overwrite").exit_code == 0


def test_two_trainings_into_one_directory_never_interleave(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 30}), "x")
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "netcli", "train", str(path), "--run-dir", str(run),
                               "--overwrite", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(code for _, _, code in results)
    if codes == [0, 0]:   # the second started after the first had finished: then it replaced it whole
        pass
    else:
        assert codes == [0, 2], results
        assert any("in use" in err for _, err, code in results if code == 2)
    epochs = [r["epoch"] for r in read_metrics(run)]
    assert epochs == list(range(1, 31))


# -- mistakes found before the first epoch ------------------------------------------------------

def test_a_missing_test_file_is_found_before_training(tmp_path):
    cfg = digits_config(data={"test": str(tmp_path / "nope.csv")})
    assert_user_error(invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run"), 2, "nope.csv")
    assert not (tmp_path / "run").exists()


def test_an_unseen_test_label_is_found_before_training_with_its_row(tmp_path):
    lines = DIGITS_TEST.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("label")] = "fox"
    lines[5] = ",".join(row)
    test = tmp_path / "test.csv"
    test.write_text("\n".join(lines) + "\n")
    cfg = digits_config(data={"test": str(test)})
    assert_user_error(invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run"), 2,
                      "test.csv: row 6: class label 'fox'")
    assert not (tmp_path / "run").exists()


# -- interrupts: the save finishes, the status is right -------------------------------------------

def test_a_second_ctrl_c_while_saving_is_ignored(tmp_path, monkeypatch):
    import netcli.training as training
    real, sent = training.save_checkpoint, []

    def save_and_get_interrupted(path, checkpoint):
        os.kill(os.getpid(), signal.SIGINT)     # the impatient second Ctrl-C, while the save runs
        sent.append(path)
        real(path, checkpoint)

    class CtrlCTwice(StopAt):
        def epoch(self, record):
            if record["epoch"] == self.at:
                monkeypatch.setattr(training, "save_checkpoint", save_and_get_interrupted)
            super().epoch(record)

    path = write_config(tmp_path, digits_config(training={"epochs": 5}), "x")
    with pytest.raises(Interrupted):
        training.train(path, run_dir=tmp_path / "run", reporter=CtrlCTwice(3))
    assert sent, "the save was not reached"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"
    assert int(load_npz(tmp_path / "run" / "checkpoint.npz")["epoch"]) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored afterwards


def test_an_interrupt_between_an_epochs_log_and_its_snapshot_keeps_the_files_in_step(tmp_path):
    import netcli.training as training
    path = write_config(tmp_path, digits_config(training={"epochs": 5}), "x")
    with pytest.raises(Interrupted):
        training.train(path, run_dir=tmp_path / "run", reporter=StopAt(3))   # epoch 3 logged, not snapshot
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = load_npz(run / "checkpoint.npz")
    assert summary["epochs"] == int(checkpoint["epoch"]) == 2
    assert summary["steps"] == int(checkpoint["step"])
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def _as_from_a_terminal():
    """The child's SIGHUP and SIGTERM at their defaults, as a shell in a terminal starts it (a test
    run under nohup, or by a runner that ignores SIGHUP, hands the ignore down: it stays ignored)."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_and_sigterm_stop_training_like_ctrl_c(tmp_path, sig):
    path = write_config(tmp_path, digits_config(training={"epochs": 400, "batch_size": 8}), "x")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "netcli", "train", str(path), "--run-dir", str(run), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_terminal)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or len(read_metrics(run)) < 2:   # epoch 1 checkpointed
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.startswith("Error: interrupted")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert int(load_npz(run / "checkpoint.npz")["epoch"]) == summary["epochs"] >= 1


# -- durability -----------------------------------------------------------------------------------

def test_atomic_write_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    import stat
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_write(tmp_path / "a.txt") as f:
        f.write("x")
    assert synced == [False, True]   # the file, then its folder (the rename)


def test_runs_latest_is_synced(tmp_path, monkeypatch):
    import stat
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real(fd)))
    RunDir.create("x", tmp_path)
    assert (tmp_path / "latest").is_symlink() and True in synced


# -- resume that means something ---------------------------------------------------------------

def test_resume_refuses_what_it_cannot_honour(trained, tmp_path):
    assert_user_error(invoke("train", "--resume", trained, "--set", "optimizer.lr=0.5"), 2,
                      "only training.epochs")
    for flag in (["--run-dir", tmp_path / "elsewhere"], ["--runs", tmp_path / "r"], ["--overwrite"]):
        result = invoke("train", "--resume", trained, *flag)
        assert result.exit_code == 2 and "cannot apply" in result.stderr


def test_resuming_a_finished_run_changes_nothing(trained):
    before = {name: (trained / name).read_bytes() for name in ("summary.json", "metrics.jsonl", "weights.npz")}
    result = invoke("train", "--resume", trained)
    assert result.exit_code == 0, result.stderr
    assert "nothing to do" in result.stderr
    assert {name: (trained / name).read_bytes() for name in before} == before
    assert json.loads(before["summary.json"])["wall_seconds"] > 0


def test_resume_extends_a_run_as_if_it_had_been_longer(tmp_path):
    cfg = digits_config(training={"epochs": 2}, optimizer={"type": "momentum", "lr": 0.05})
    short = train_config(tmp_path, cfg, "short").run_dir
    source = json.loads((short / "summary.json").read_text())["config"]
    first_wall = json.loads((short / "summary.json").read_text())["wall_seconds"]
    # what summary.json says is what the checkpoint holds, so the resumed session adds to it
    assert round(float(load_checkpoint(short / "checkpoint.npz").progress.wall_seconds), 3) == first_wall
    extended = resume(short, overrides=["training.epochs=4"])
    longer = train_config(tmp_path, digits_config(training={"epochs": 4},
                                                  optimizer={"type": "momentum", "lr": 0.05}), "long").run_dir
    a, b = load_weights(short), load_weights(longer)
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("layers."))
    assert [r["epoch"] for r in read_metrics(short)] == [1, 2, 3, 4]
    assert extended.summary["epochs"] == 4 and extended.summary["config"] == source
    assert extended.summary["wall_seconds"] > first_wall
    assert yaml.safe_load((short / "config.yaml").read_text())["training"]["epochs"] == 4


def test_an_early_stopped_run_does_not_train_one_more_epoch(tmp_path):
    cfg = digits_config(training={"epochs": 200, "early_stopping": {"patience": 1, "min_delta": 0.5}})
    run = train_config(tmp_path, cfg).run_dir
    done = json.loads((run / "summary.json").read_text())
    assert done["message"].startswith("early stopping") and done["epochs"] < 200
    resume(run)
    assert json.loads((run / "summary.json").read_text()) == done


def test_wall_time_adds_up_over_sessions(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 4}), "x")
    from netcli.training import train
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run", reporter=StopAt(3))
    first = json.loads((tmp_path / "run" / "summary.json").read_text())["wall_seconds"]
    again = resume(tmp_path / "run")
    assert again.summary["status"] == "finished" and again.summary["wall_seconds"] > first > 0
    assert again.summary["config"] == str(path)


# -- a killed or running run is usable ------------------------------------------------------------

def test_weights_follow_the_checkpoint(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 6, "checkpoint_every": 2}), "x")
    from netcli.training import train

    class Look(StopAt):
        def epoch(self, record):
            if record["epoch"] == 5:    # logged before its own checkpoint: the last one is epoch 4's
                checkpoint = load_npz(tmp_path / "run" / "checkpoint.npz")
                weights = load_weights(tmp_path / "run")
                assert int(checkpoint["epoch"]) == 4
                from netcli.api import load_run
                run = load_run(tmp_path / "run")
                assert np.array_equal(run.net.theta, checkpoint["theta"])
                assert set(weights) >= {"meta.task", "layers.0.W"}
                result = invoke("eval", tmp_path / "run", "--json")
                assert result.exit_code == 0, result.stderr
            super().epoch(record)

    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run", reporter=Look(6))


def test_plot_curves_need_only_the_metrics(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 3}), "x")
    from netcli.training import train
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run", reporter=StopAt(2))
    (tmp_path / "run" / "weights.npz").unlink()
    result = invoke("plot", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).stat().st_size > 1000


# -- bit-exact resume for every first-order optimizer and schedule ---------------------------------

OPTIMIZERS = [{"type": "sgd", "lr": 0.05}, {"type": "momentum", "lr": 0.05}, {"type": "nesterov", "lr": 0.05},
              {"type": "adagrad", "lr": 0.05}, {"type": "rmsprop", "lr": 0.005}, {"type": "adam", "lr": 0.005}]
SCHEDULES = [{"type": "constant"}, {"type": "step", "step_size": 1, "gamma": 0.5},
             {"type": "exponential", "gamma": 0.8}, {"type": "cosine", "min_lr": 0.0}]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s["type"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o["type"])
def test_an_interrupted_run_resumes_bit_exactly(tmp_path, optimizer, schedule):
    cfg = digits_config(optimizer=optimizer, training={"epochs": 3, "batch_size": 32, "schedule": schedule},
                        model={"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                          {"type": "dropout", "rate": 0.2},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    whole = train_config(tmp_path, cfg, "whole").run_dir
    path = write_config(tmp_path, cfg, "cut")
    from netcli.training import train
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "cut", reporter=StopAt(2))
    resume(tmp_path / "cut")
    a, b = load_weights(whole), load_weights(tmp_path / "cut")
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("layers."))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(whole)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "cut")]
