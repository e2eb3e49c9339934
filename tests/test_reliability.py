"""Interrupts, kills, divergence and safety: training never loses the work already done.

The signal and kill tests train real runs in subprocesses for seconds each: they are marked
slow (`python -m pytest -m "not slow"` leaves them out; plain `python -m pytest` runs them).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import assert_user_error, digits_config, invoke, write_config
from netcli.runs import RunDir, load_npz

SLOW_EPOCHS = 4


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory) -> Path:
    """Online learning on 6000 rows: about a second per epoch, long enough to stop mid-epoch."""
    folder = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 32)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.float32)
    np.save(folder / "train.npy", np.column_stack([X, y]))
    cfg = {"seed": 3,
           "data": {"train": str(folder / "train.npy"), "validation_split": 0.1},
           "model": {"input": 32, "layers": [{"type": "dense", "units": 64, "activation": "tanh"},
                                             {"type": "dropout", "rate": 0.2},
                                             {"type": "dense", "units": 2, "activation": "softmax"}]},
           "loss": "cross_entropy",
           "optimizer": {"type": "momentum", "lr": 0.01},
           "training": {"epochs": SLOW_EPOCHS, "batch_size": 1}}
    path = folder / "slow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def uninterrupted(slow_config, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("whole") / "run"
    done = subprocess.run([sys.executable, "-m", "netcli", "train", str(slow_config), "--run-dir", str(run),
                           "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {"weights": load_npz(run / "weights.npz"), "metrics": _metrics(run)}


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in RunDir(run).read_metrics()]


def _start(config: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "netcli", "train", str(config), "--run-dir", str(run), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen) -> None:
    _wait_for(lambda: len(RunDir(run).read_metrics()) >= n, proc)


def _resume(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netcli", "train", "--resume", str(run), "-q"],
                          capture_output=True, text=True, timeout=300)


def _assert_same_as_uninterrupted(run: Path, uninterrupted: dict) -> None:
    weights = load_npz(run / "weights.npz")
    for name, value in uninterrupted["weights"].items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)
    assert _metrics(run) == uninterrupted["metrics"]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_keeps_a_checkpoint_and_resume_matches(sig, slow_config, uninterrupted, tmp_path):
    run = tmp_path / "run"
    proc = _start(slow_config, run)
    _wait_for_epochs(run, 1, proc)
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert out == ""
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    checkpoint = load_npz(run / "checkpoint.npz")
    assert int(checkpoint["epoch"]) == len(RunDir(run).read_metrics()) >= 1
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(run)
    _assert_same_as_uninterrupted(run, uninterrupted)


@pytest.mark.slow
def test_killed_at_random_moments_the_run_always_loads_and_resumes(slow_config, uninterrupted, tmp_path):
    rng = np.random.default_rng(7)
    run = tmp_path / "run"
    for attempt, delay in enumerate(rng.uniform(0.05, 1.5, size=3)):
        if attempt == 0:
            proc = _start(slow_config, run)
            _wait_for(lambda: (run / "checkpoint.npz").exists(), proc)
        else:
            done = len(RunDir(run).read_metrics())
            proc = subprocess.Popen([sys.executable, "-m", "netcli", "train", "--resume", str(run), "-q"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_for(lambda: len(RunDir(run).read_metrics()) > done, proc)
        time.sleep(delay)
        proc.kill()  # SIGKILL: no handler runs
        proc.communicate()
        checkpoint = load_npz(run / "checkpoint.npz")  # never half-written
        assert 0 <= int(checkpoint["epoch"]) <= SLOW_EPOCHS
        yaml.safe_load((run / "config.yaml").read_text())
        RunDir(run).read_metrics()  # a line cut short by the kill is ignored
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_as_uninterrupted(run, uninterrupted)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until condition() holds, or the process has ended (successfully) on its own."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()
            return
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_divergence_is_diagnosed_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = digits_config(optimizer={"type": "sgd", "lr": 1.0e6}, data={"normalize": "none"},
                        training={"epochs": 3, "batch_size": 64})
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 1
    message = result.stderr
    assert "Traceback" not in message and result.stdout == ""
    assert "diverged" in message and "step" in message and "lr 1e+06" in message
    assert "layer" in message and "gradient norms" in message
    assert "learning rate" in message and "normalize" in message
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    checkpoint = load_npz(tmp_path / "run" / "checkpoint.npz")
    assert np.all(np.isfinite(checkpoint["theta"]))
    assert int(checkpoint["epoch"]) == len(RunDir(tmp_path / "run").read_metrics())


def test_checkpoint_every_n_epochs(tmp_path):
    cfg = digits_config(training={"epochs": 5, "checkpoint_every": 2, "batch_size": 64})
    from netcli.config import validate
    from netcli.prepare import prepare, rng_streams
    from netcli.training import Trainer
    from netcli.log import Reporter
    config = validate(cfg)
    rngs = rng_streams(0)
    trainer = Trainer(prepare(config, rngs), RunDir.create("t", run_dir=tmp_path / "run"), Reporter(quiet=True), rngs)
    written = []
    original = trainer.write_checkpoint
    trainer.write_checkpoint = lambda: (written.append(trainer.progress.epoch), original())
    trainer.fit()
    assert written[:-1] == [2, 4] and written[-1] == 5  # every 2 epochs, and at the end


def test_pickled_npz_is_refused_cleanly(tmp_path):
    np.savez(tmp_path / "evil.npz", X=np.array([object()] * 4, dtype=object), y=np.zeros(4))
    cfg = digits_config(data={"train": str(tmp_path / "evil.npz"), "target": None, "test": None})
    result = invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    assert_user_error(result, 2, "evil.npz")


def test_a_run_name_cannot_escape_the_runs_folder(tmp_path):
    run = RunDir.create("../../escape", base=tmp_path / "runs")
    assert run.path.resolve().parent == (tmp_path / "runs").resolve()
    assert not run.path.name.startswith(".")


def test_an_existing_run_is_not_overwritten(tmp_path):
    cfg = write_config(tmp_path, digits_config(training={"epochs": 1}))
    assert invoke("train", cfg, "--run-dir", tmp_path / "run", "-q").exit_code == 0
    before = (tmp_path / "run" / "weights.npz").read_bytes()
    result = invoke("train", cfg, "--run-dir", tmp_path / "run", "-q")
    assert_user_error(result, 2, "--overwrite")
    assert (tmp_path / "run" / "weights.npz").read_bytes() == before
