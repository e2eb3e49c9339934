"""What runs on a Dask worker: one trial, trained into its run directory (or carried on from its
checkpoint), and the check that a worker sees the data and the sweep directory. Dask pickles
these functions by reference, so they stay importable here, as netcli.sweep.worker.*."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from netcli import __version__
from netcli.config import validate
from netcli.errors import Interrupted, NetcliError
from netcli.files import load_npz, read_json, read_jsonl
from netcli.log import Reporter
from netcli.metrics import best_validation
from netcli.sweep.search import PRUNED, was_pruned


class _TrialReporter(Reporter):
    """Quiet. Stops the trial, as Ctrl-C would, when the sweep's stop file appears: checked at the
    first minibatch of each epoch, so the epoch just ended is in the checkpoint (full-batch
    optimizers, which report no minibatches, are checked at the end of each iteration). Calls the
    test hook, if any, at the end of each epoch. In a search with a pruner, reports each epoch to
    the study and, when the pruner says so, returns why the trial stops after this epoch (the
    trainer ends the run there, as early stopping does)."""

    def __init__(self, task: dict):
        super().__init__(quiet=True)
        self.task = task
        self.batches = 0
        self.epochs = None
        study = task.get("study")
        self.pruning = None
        if study:
            from netcli.sweep.search import TrialPruning
            self.pruning = TrialPruning(study["sweep_dir"], study["trial_id"], study["number"])

    def _check_stop(self) -> None:
        if os.path.exists(self.task["stop_file"]):
            raise KeyboardInterrupt

    def batch(self, loss: float) -> None:
        if self.batches == 0:
            self._check_stop()
        self.batches += 1

    def epoch(self, record: dict) -> str | None:
        if self.batches == 0:
            self._check_stop()
        self.batches = 0
        if self.task.get("hook") is not None:
            self.task["hook"](self.task, record)
        if self.pruning is not None:
            return self.pruning.check(record, self.epochs)
        return None


def run_trial(task: dict) -> dict:
    """Train one trial into its run directory (or carry on from its checkpoint when an earlier
    attempt died) -> its trials.jsonl record. Never raises for a failed trial."""
    from threadpoolctl import threadpool_limits
    from netcli import training

    start = time.perf_counter()
    record = {k: task[k] for k in ("name", "index", "overrides", "seed", "replicate")}
    record["run_dir"] = task["run_dir"]
    if os.path.exists(task["stop_file"]):
        return {**record, "status": "not started"}
    run_dir = Path(task["run_dir"])
    status, message, resumed_from = None, "", None
    try:
        reporter = _TrialReporter(task)
        with threadpool_limits(limits=1):
            previous = read_json(run_dir / "summary.json")
            if previous and previous.get("status") in ("finished", "diverged"):
                status = previous["status"]   # ended before the record was written: nothing to redo
            elif (run_dir / "checkpoint.npz").exists() and (run_dir / "config.yaml").exists():
                resumed_from = int(load_npz(run_dir / "checkpoint.npz")["epoch"])
                status = training.resume(run_dir, reporter=reporter).summary["status"]
            else:
                config = validate(copy.deepcopy(task["config"]), task["source"])
                status = training.train(config, run_dir=run_dir, overwrite=True, reporter=reporter) \
                    .summary["status"]
    except Interrupted:
        status, message = "interrupted", "stopped by Ctrl-C; its last complete epoch is in its checkpoint"
    except NetcliError as e:  # JobFailed (diverged) included: summary.json tells which
        status, message = "failed", str(e)
    except Exception as e:  # a bug or a crash in one trial must not stop the sweep
        status, message = "failed", f"{type(e).__name__}: {e}"
    summary = read_json(run_dir / "summary.json") or {}
    if status == "failed" and summary.get("status") == "diverged":
        status = "diverged"
    if status == "finished" and was_pruned(summary):
        status = PRUNED
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    record.update({"status": status, "message": message or summary.get("message", ""),
                   "epochs": summary.get("epochs", len(metrics)),
                   "final": summary.get("final") or (metrics[-1] if metrics else None),
                   "best": best_validation(metrics), "test": summary.get("test"),
                   "wall_seconds": round(time.perf_counter() - start, 3),
                   "train_seconds": summary.get("wall_seconds"), "worker": _worker_address()})
    if resumed_from is not None:
        record["resumed_from_epoch"] = resumed_from
    return record


def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def check_worker(paths: list[str], sweep_dir: str, optuna: bool = False) -> dict:
    """On each worker: which of the paths it cannot see, and whether it can write the sweep dir
    (optuna: and which Optuna it has, None for none)."""
    missing = [p for p in paths if not os.path.exists(p)]
    writable = False
    if os.path.isdir(sweep_dir):
        probe = os.path.join(sweep_dir, f".probe-{os.getpid()}-{time.monotonic_ns()}")
        try:
            with open(probe, "w"):
                pass
            os.unlink(probe)
            writable = True
        except OSError:
            pass
    answer = {"missing": missing, "sweep_dir": os.path.isdir(sweep_dir), "writable": writable,
              "netcli": __version__}
    if optuna:
        try:
            import optuna as found
            answer["optuna"] = found.__version__
        except ImportError:
            answer["optuna"] = None
    return answer
