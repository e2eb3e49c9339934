"""Signals and the windows around an interrupt (issue 14): nohup's ignored SIGHUP stays ignored;
a second Ctrl-C never cuts the save short, wherever it lands, and the process still exits 130;
metrics.jsonl, checkpoint.npz and summary.json always agree; a run extended while its schedule
follows the total epochs says so, and `train --check` refuses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import ROOT, StopAt, assert_user_error, digits_config, invoke, read_metrics, train_config, write_config
from netcli.errors import Interrupted
from netcli.files import load_npz
from netcli.optim import SCHEDULES
from netcli.runs import RunDir
from netcli.training import resume


def _state(run) -> tuple[str, int, int, list[int]]:
    """(status, summary's epochs, the checkpoint's epoch, the epochs metrics.jsonl logs)."""
    summary = json.loads((run / "summary.json").read_text())
    return (summary["status"], summary["epochs"], int(load_npz(run / "checkpoint.npz")["epoch"]),
            [r["epoch"] for r in read_metrics(run)])


def _sigint_now():
    os.kill(os.getpid(), signal.SIGINT)


# -- nohup: a signal inherited as ignored stays ignored ------------------------------------------

def _ignore_sighup():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_an_inherited_ignored_sighup_stays_ignored():
    code = textwrap.dedent("""
        import os, signal
        from netcli.signals import interrupt_on_signals
        interrupt_on_signals()
        print("after interrupt_on_signals:", signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, flush=True)
        from netcli.signals import interrupt_once
        try:
            with interrupt_once():
                print("in training:", signal.getsignal(signal.SIGHUP) is signal.SIG_IGN)
                os.kill(os.getpid(), signal.SIGHUP)
                os.kill(os.getpid(), signal.SIGINT)    # not ignored: still Ctrl-C
                signal.pause()
        except KeyboardInterrupt:
            print("stopped by SIGINT, not by SIGHUP")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=_ignore_sighup, cwd=ROOT)
    assert done.stdout.splitlines() == ["after interrupt_on_signals: True", "in training: True",
                                        "stopped by SIGINT, not by SIGHUP"], (done.returncode, done.stderr)


def test_sighup_and_sigterm_not_ignored_still_stop():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    from netcli.signals import interrupt_on_signals
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        interrupt_on_signals()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.slow
def test_nohup_train_is_not_stopped_by_sighup(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 100, "batch_size": 16}), "x")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "netcli", "train", str(path), "--run-dir", str(run), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sighup)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or not read_metrics(run):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    assert len(read_metrics(run)) < 50
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _state(run)[:2] == ("finished", 100)


# -- a second Ctrl-C ------------------------------------------------------------------------------

class SignalAt(StopAt):
    """A real SIGINT to this process while epoch `at` is logged (StopAt raises instead)."""

    def epoch(self, record):
        if record["epoch"] == self.at:
            _sigint_now()
            time.sleep(1)      # the handler raises here


@pytest.mark.parametrize("first", [SignalAt, StopAt], ids=["signal", "raised"])
def test_a_second_ctrl_c_before_the_save_begins_is_ignored(tmp_path, monkeypatch, first):
    import netcli.training as training
    real, sent = training.Trainer._keep_last_good, []

    def second_ctrl_c_first(self, *args, **kwargs):
        _sigint_now()                  # lands after `except KeyboardInterrupt`, before the save
        sent.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "_keep_last_good", second_ctrl_c_first)
    path = write_config(tmp_path, digits_config(training={"epochs": 5}), "x")
    with pytest.raises(Interrupted):
        training.train(path, run_dir=tmp_path / "run", reporter=first(3))
    assert _state(tmp_path / "run") == ("interrupted", 2, 2, [1, 2])
    assert sent == [("interrupted",)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored afterwards


def test_a_ctrl_c_just_after_an_epoch_is_logged_keeps_the_files_in_step(tmp_path, monkeypatch):
    real = RunDir.append_metrics

    def append_then_ctrl_c(self, record):
        real(self, record)
        if record["epoch"] == 3:       # the line is on disk; the epoch is not taken in yet
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append_metrics", append_then_ctrl_c)
    path = write_config(tmp_path, digits_config(training={"epochs": 5}), "x")
    from netcli.training import train
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run")
    assert _state(tmp_path / "run") == ("interrupted", 2, 2, [1, 2])
    monkeypatch.undo()
    again = resume(tmp_path / "run")
    assert again.summary["status"] == "finished"
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_a_ctrl_c_while_the_run_finishes_leaves_it_interrupted_not_running(tmp_path, monkeypatch):
    import netcli.training as training
    real, calls = training.write_receipt, []

    def ctrl_c_in_the_finished_receipt(run, spec, theta, status):
        calls.append(status)
        if status == "finished":
            raise KeyboardInterrupt
        real(run, spec, theta, status)

    monkeypatch.setattr(training, "write_receipt", ctrl_c_in_the_finished_receipt)
    path = write_config(tmp_path, digits_config(training={"epochs": 3}), "x")
    with pytest.raises(Interrupted):
        training.train(path, run_dir=tmp_path / "run")
    assert calls == ["finished", "interrupted"]
    assert _state(tmp_path / "run") == ("interrupted", 3, 3, [1, 2, 3])
    monkeypatch.undo()
    again = resume(tmp_path / "run")
    assert again.summary["status"] == "finished" and again.summary["epochs"] == 3
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]


def test_an_interrupted_summary_has_the_checkpoints_wall_time(tmp_path):
    """What a resumed run adds its time to; summary.json once counted the save besides, so that a
    slow disk could make a resumed run's total smaller than the interrupted one's."""
    path = write_config(tmp_path, digits_config(training={"epochs": 4}), "x")
    from netcli.training import train
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run", reporter=StopAt(3))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["wall_seconds"] == round(float(load_npz(tmp_path / "run" / "checkpoint.npz")["wall_seconds"]), 3)


LATE_SECOND_CTRL_C = """
import atexit, os, signal, sys, time

def second_ctrl_c():
    # atexit runs this last (it was registered first): a late second Ctrl-C, then a moment for a
    # handler to act. Python then shuts down further, and puts a Python-level handler back to
    # the default first: a signal there ends the process by SIGINT instead of with exit 130.
    # Only an ignored signal stays ignored.
    os.write(2, b"ignored at exit: %d\\n" % (signal.getsignal(signal.SIGINT) is signal.SIG_IGN))
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)

atexit.register(second_ctrl_c)
import netcli.training as T
real_end = T.Trainer._end_epoch
def end(self, record, seconds):
    stop = real_end(self, record, seconds)
    if record["epoch"] == 2:
        os.kill(os.getpid(), signal.SIGINT)      # the first Ctrl-C
    return stop
T.Trainer._end_epoch = end
sys.argv = ["netcli", "train", sys.argv[1], "--run-dir", sys.argv[2], "-q"]
from netcli.cli import main
main()
"""


@pytest.mark.slow
def test_a_late_second_ctrl_c_does_not_kill_the_exiting_process(tmp_path):
    path = write_config(tmp_path, digits_config(training={"epochs": 5}), "x")
    script = tmp_path / "late.py"
    script.write_text(LATE_SECOND_CTRL_C)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr.startswith("Error: interrupted; epoch 2"), done.stderr
    assert "Traceback" not in done.stderr and "ignored at exit: 1" in done.stderr, done.stderr
    assert _state(tmp_path / "run") == ("interrupted", 2, 2, [1, 2])


# -- extending a run whose schedule follows the total ---------------------------------------------

def test_every_schedule_says_whether_it_uses_the_total():
    uses = {name: SCHEDULES.get(name).uses_total for name in SCHEDULES.names()}
    assert all(isinstance(v, bool) for v in uses.values()), uses
    assert uses == {"constant": False, "step": False, "exponential": False, "cosine": True}


def test_extending_a_cosine_run_says_so_records_it_and_check_refuses_it(tmp_path):
    run = train_config(tmp_path, digits_config(training={"epochs": 2, "schedule": "cosine"})).run_dir
    result = invoke("train", "--resume", run, "--set", "training.epochs=4")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cosine" in warnings[0] and "from epoch 2" in warnings[0], result.stderr
    assert "differs from a fresh 4-epoch" in warnings[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4
    assert summary["extended"] == [{"from_epoch": 2, "epochs": 4, "schedule": "cosine"}]
    assert_user_error(invoke("train", "--check", run, "-q"), 2, "extended", "cosine", "--check cannot reproduce")


def test_the_extension_record_survives_a_later_resume(tmp_path):
    run = train_config(tmp_path, digits_config(training={"epochs": 2, "schedule": {"type": "cosine"}})).run_dir
    with pytest.raises(Interrupted):
        resume(run, overrides=["training.epochs=5"], reporter=StopAt(4))
    record = [{"from_epoch": 2, "epochs": 5, "schedule": "cosine"}]
    assert json.loads((run / "summary.json").read_text())["extended"] == record
    assert resume(run).summary["extended"] == record       # carried on: no new extension
    assert resume(run, overrides=["training.epochs=6"]).summary["extended"] == \
        record + [{"from_epoch": 5, "epochs": 6, "schedule": "cosine"}]


def test_extending_a_constant_run_stays_checkable(tmp_path):
    run = train_config(tmp_path, digits_config(training={"epochs": 2})).run_dir
    result = invoke("train", "--resume", run, "--set", "training.epochs=3")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    assert "extended" not in json.loads((run / "summary.json").read_text())
    check = invoke("train", "--check", run, "-q")
    assert check.exit_code == 0, check.stderr


def test_a_ctrl_c_while_the_threads_are_probed_leaves_the_run_interrupted(tmp_path, monkeypatch):
    import netcli.training as training
    from netcli.training import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "for_training", interrupted)
    with pytest.raises(Interrupted):
        train(write_config(tmp_path, digits_config(), "x"), run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 0
    assert (tmp_path / "run" / "checkpoint.npz").exists()
