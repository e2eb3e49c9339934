"""Sweeps: trials from axes, validated before anything runs; a 2-worker LocalCluster gives the
same metrics as the trials run one by one; a worker killed mid-trial, a failed trial, Ctrl-C
and --resume; the command's stdout, stderr and exit codes.

One 2-worker LocalCluster is shared by the module (starting one takes seconds); the CLI tests
reach it through --scheduler, which also exercises submitting to a running cluster."""

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


import netcli
from netcli import sweep as sweeps
from netcli.sweep import cluster as sweep_cluster
from netcli.errors import ConfigError
from netcli.training import train

import helpers
from helpers import (ROOT, assert_user_error, digits_config, invoke, load_weights,
                     without_seconds, write_config)


def small_digits(**sections) -> dict:
    """64-16-10 on the digits, 3 epochs, 10% validation: a trial takes a fraction of a second."""
    return digits_config(**{"training": {"epochs": 3}, **sections})


GRID = ("optimizer.lr=0.003,0.03", "regularization.l2=0,1e-3")


def metrics_text(run_dir) -> str:
    return without_seconds((Path(run_dir) / "metrics.jsonl").read_text())


# -- the trials -----------------------------------------------------------------------

def test_grid_trials_names_seeds_and_overrides(tmp_path):
    plan = sweeps.plan(write_config(tmp_path, small_digits()), GRID, sweep_dir=tmp_path / "sw")
    assert [t.name for t in plan.trials] == ["t000-lr0.003-l2_0", "t001-lr0.003-l2_0.001",
                                             "t002-lr0.03-l2_0", "t003-lr0.03-l2_0.001"]
    assert plan.trials[1].overrides == {"optimizer.lr": 0.003, "regularization.l2": 0.001}  # '1e-3' read as a number
    seed = sweeps.derived_seed(0, 0)
    assert seed == int(np.random.SeedSequence(0).spawn(1)[0].generate_state(1)[0])
    for t in plan.trials:  # one replicate: every point starts from the same draw
        assert t.seed == seed == t.config.spec.seed
        assert t.config.as_dict()["optimizer"]["lr"] == t.overrides["optimizer.lr"]
    assert not (tmp_path / "sw").exists()                           # planning writes nothing


def test_seeds_give_replicates_with_derived_seeds(tmp_path):
    plan = sweeps.plan(write_config(tmp_path, small_digits(seed=7)), ["optimizer.lr=0.01,0.1"], seeds=3,
                       sweep_dir=tmp_path / "sw")
    assert len(plan.trials) == 6
    assert [t.name for t in plan.trials[:3]] == ["t000-lr0.01-s0", "t001-lr0.01-s1", "t002-lr0.01-s2"]
    seeds = [sweeps.derived_seed(7, r) for r in range(3)]
    assert len(set(seeds)) == 3
    assert [t.seed for t in plan.trials] == seeds + seeds
    assert [t.replicate for t in plan.trials] == [0, 1, 2, 0, 1, 2]


def test_random_log_ranges_are_in_range_and_reproducible(tmp_path):
    path = write_config(tmp_path, small_digits())
    ranges = ("optimizer.lr=1e-4:1e-1:log", "model.layers.0.units=8:64", "regularization.l2=0:0.01")
    a = sweeps.plan(path, (), ranges, random=40)
    b = sweeps.plan(path, (), ranges, random=40)
    values = [t.overrides for t in a.trials]
    assert len(values) == 40 and values == [t.overrides for t in b.trials]     # reproducible
    lrs = np.array([v["optimizer.lr"] for v in values])
    assert np.all((1e-4 <= lrs) & (lrs <= 1e-1))
    assert lrs.min() < 1e-3 and lrs.max() > 1e-2                               # spread over decades
    assert np.mean(lrs < 10 ** -2.5) == pytest.approx(0.5, abs=0.25)           # log-uniform: half below the middle decade
    units = [v["model.layers.0.units"] for v in values]
    assert all(isinstance(u, int) and 8 <= u <= 64 for u in units)
    assert all(0 <= v["regularization.l2"] <= 0.01 for v in values)
    other = sweeps.plan(path, (), ranges, random=40, overrides=["seed=1"])
    assert [t.overrides for t in other.trials] != values                       # drawn from the seed


def test_grid_values_are_yaml(tmp_path):
    plan = sweeps.plan(write_config(tmp_path, small_digits()),
                       ["optimizer={type: sgd, lr: 0.1},adam", "data.shuffle=true,false"])
    assert [t.config.as_dict()["optimizer"]["type"] for t in plan.trials] == ["sgd", "sgd", "adam", "adam"]
    assert [t.config.spec.data.shuffle for t in plan.trials] == [True, False, True, False]
    assert plan.trials[0].name == "t000-optimizer_sgd-shuffle_true"


def test_trial_names_name_their_values(tmp_path):
    cfg = small_digits(model={"input": 64, "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                                      {"type": "dense", "units": 16, "activation": "relu"},
                                                      {"type": "dense", "units": 10, "activation": "softmax"}]})
    plan = sweeps.plan(write_config(tmp_path, cfg), ["model.layers.0.units=8,32", "model.layers.1.units=4",
                                                     "model.layers.0.activation=tanh"])
    assert [t.name for t in plan.trials] == ["t000-units0_8-units1_4-activation0_tanh",
                                             "t001-units0_32-units1_4-activation0_tanh"]
    assert sweeps.short_keys(["optimizer.lr", "schedule.lr"]) == {"optimizer.lr": "optimizer.lr",
                                                                  "schedule.lr": "schedule.lr"}


def test_sweep_section_in_the_config(tmp_path):
    cfg = small_digits(sweep={"grid": {"optimizer.lr": [0.001, 0.01], "regularization.l2": [0, 1.0e-4]},
                              "seeds": 2})
    path = write_config(tmp_path, cfg)
    plan = sweeps.plan(path)
    assert len(plan.trials) == 8 and "sweep" not in plan.base
    assert plan.axes.as_dict()["grid"] == {"optimizer.lr": [0.001, 0.01], "regularization.l2": [0, 1.0e-4]}
    # the command line replaces an axis of the file, and adds to the others
    plan = sweeps.plan(path, ["optimizer.lr=0.1"], seeds=1)
    assert [t.overrides for t in plan.trials] == [{"optimizer.lr": 0.1, "regularization.l2": 0.0},
                                                  {"optimizer.lr": 0.1, "regularization.l2": 0.0001}]


def test_a_mistake_in_the_sweep_section_names_its_line(tmp_path):
    text = yaml.safe_dump(small_digits(), sort_keys=False) + "sweep:\n  grid:\n    optimizer.lr: 0.1\n"
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: sweep.grid.optimizer.lr: must be a non-empty list"):
        sweeps.plan(write_config(tmp_path, text))
    text = yaml.safe_dump(small_digits(), sort_keys=False) + "sweep:\n  grids: {optimizer.lr: [0.1]}\n"
    with pytest.raises(ConfigError, match="sweep.grids: unknown key"):
        sweeps.plan(write_config(tmp_path, text))


@pytest.mark.parametrize("args, fragments", [
    (["--grid", "optimizer.lr=0.01,-1"], ["--grid optimizer.lr=-1", "optimizer.lr", "> 0"]),
    (["--grid", "optimzer.lr=0.01"], ["optimzer", "did you mean 'optimizer'"]),
    (["--grid", "model.layers.0.units=8,lots"], ["model.layers[0].units", "integer"]),
    (["--random", "3", "--range", "optimizer.lr=0:0.1:log"], ["--range", "log range", "> 0"]),
    (["--range", "optimizer.lr=1e-4:1e-1"], ["--random"]),
    (["--grid", "optimizer.lr"], ["expected KEY=V1,V2"]),
    ([], ["nothing to sweep"]),
])
def test_a_bad_axis_fails_the_sweep_before_anything_starts(tmp_path, monkeypatch, args, fragments):
    path = write_config(tmp_path, small_digits())
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", path, *args)
    assert_user_error(result, 2, *fragments)
    assert not (tmp_path / "runs").exists()                          # nothing was created


def test_a_combination_that_does_not_fit_is_rejected_up_front(tmp_path):
    cfg = small_digits(model={"input": 64, "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                                      {"type": "dense_tied", "tied_to": 0},
                                                      {"type": "dense", "units": 10, "activation": "softmax"}]})
    result = invoke("sweep", write_config(tmp_path, cfg), "--grid", "model.layers.1.tied_to=0,1",
                    "--sweep-dir", tmp_path / "sw")
    assert_user_error(result, 2, "trial t001-tied_to1", "model.layers")
    assert not (tmp_path / "sw").exists()


def test_the_sweep_and_netcli_runs_agree_on_the_best_validation(tmp_path):
    """One rule (netcli.metrics.best_validation): a NaN epoch is left out, not picked as the max."""
    from netcli.runs import list_runs
    run_dir = tmp_path / "sw" / "t000-lr0.1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(small_digits()))
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss": 1.0 / e, "val_accuracy": v}) + "\n"
        for e, v in ((1, float("nan")), (2, 0.5))))
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished", "epochs": 2}))
    task = {"name": run_dir.name, "index": 0, "overrides": {"optimizer.lr": 0.1}, "seed": 0, "replicate": 0,
            "run_dir": str(run_dir), "stop_file": str(tmp_path / "sw" / sweeps.STOP_FILE),
            "config": small_digits(), "source": "config.yaml", "hook": None}
    record = sweeps.run_trial(task)              # finished already: reads the run back, trains nothing
    assert record["status"] == "finished"
    assert record["best"] == {"metric": "val_accuracy", "value": 0.5, "epoch": 2}
    assert sweeps.score(record) == ("val_accuracy", 0.5, True)
    [row] = list_runs(tmp_path / "sw")
    assert row["best_val"] == ["val_accuracy", 0.5]


# -- running on Dask -------------------------------------------------------------------

@pytest.mark.slow
def test_grid_on_two_workers_matches_the_trials_run_one_by_one(tmp_path, client):
    plan = sweeps.plan(write_config(tmp_path, small_digits()), GRID, sweep_dir=tmp_path / "sw")
    result = sweeps.run(plan, client=client)
    assert result.ran == 4 and [r["status"] for r in result.records] == ["finished"] * 4
    workers = {r["worker"] for r in result.records}
    assert len(workers) == 2 and "local" not in workers               # both workers took trials
    for trial, record in zip(plan.trials, result.records):
        alone = train(trial.config, run_dir=tmp_path / "one-by-one" / trial.name)
        assert metrics_text(result.path / trial.name) == metrics_text(alone.run_dir), trial.name
        assert record["test"] == alone.summary["test"]
        assert record["final"]["val_accuracy"] == alone.summary["final"]["val_accuracy"]
        a, b = load_weights(result.path / trial.name), load_weights(alone.run_dir)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{trial.name} {key}")
    on_disk = sweeps.read_trials(result.path)
    assert set(on_disk) == {t.name for t in plan.trials}
    kept = yaml.safe_load((result.path / "sweep.yaml").read_text())
    assert [t["name"] for t in kept["trials"]] == [t.name for t in plan.trials]
    assert kept["axes"]["grid"] == {"optimizer.lr": [0.003, 0.03], "regularization.l2": [0, 0.001]}
    best = max(result.records, key=lambda r: r["best"]["value"])
    assert result.best["name"] == best["name"]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_still_yields_every_trial(tmp_path, client):
    plan = sweeps.plan(write_config(tmp_path, small_digits(training={"epochs": 4})), GRID,
                       sweep_dir=tmp_path / "sw")
    result = helpers.run_killing_one_worker(sweeps, plan, client, trials=4)
    killed = result.records[1]
    alone = train(plan.trials[1].config, run_dir=tmp_path / "alone")
    assert metrics_text(result.path / killed["name"]) == metrics_text(alone.run_dir)
    client.wait_for_workers(2, timeout=30)                           # the nanny restarted it


def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path, client):
    # units 5: the data has 10 classes (found only when the trial reads its data);
    # sgd at lr 1e4: diverges
    plan = sweeps.plan(write_config(tmp_path, small_digits()),
                       ["model.layers.1.units=10,5", "optimizer={type: adam, lr: 0.01},{type: sgd, lr: 1.0e+4}"],
                       sweep_dir=tmp_path / "sw")
    result = sweeps.run(plan, client=client)
    status = {r["name"]: r["status"] for r in result.records}
    assert list(status.values()) == ["finished", "diverged", "failed", "failed"], status
    assert "diverged" in result.records[1]["message"]
    assert "10 classes" in result.records[2]["message"]
    assert result.best["name"] == result.records[0]["name"]
    assert len(sweeps.read_trials(result.path)) == 4


def test_resume_runs_only_the_missing_trials(tmp_path, client):
    plan = sweeps.plan(write_config(tmp_path, small_digits()), GRID, sweep_dir=tmp_path / "sw")
    first = sweeps.run(plan, client=client)
    sw = first.path
    # lose two trials: one entirely, one whose record was lost after it had started
    lines = (sw / "trials.jsonl").read_text().splitlines()
    keep = [line for line in lines if json.loads(line)["index"] in (0, 2)]
    (sw / "trials.jsonl").write_text("\n".join(keep) + "\n")
    import shutil
    shutil.rmtree(sw / plan.trials[1].name)
    kept_weights = {i: (sw / plan.trials[i].name / "weights.npz").stat().st_mtime_ns for i in (0, 2)}
    again = sweeps.run(sweeps.load(sw), client=client, new=False)
    assert again.ran == 2
    assert [r["status"] for r in again.records] == ["finished"] * 4
    for i in (0, 2):                                                  # untouched
        assert (sw / plan.trials[i].name / "weights.npz").stat().st_mtime_ns == kept_weights[i]
    for i in (1, 3):
        assert again.records[i]["test"] == first.records[i]["test"]
    assert len((sw / "trials.jsonl").read_text().splitlines()) == 4
    nothing = sweeps.run(sweeps.load(sw), client=client, new=False)
    assert nothing.ran == 0


def test_workers_must_see_the_data(tmp_path, client):
    cfg = small_digits()
    cfg["data"]["test"] = str(tmp_path / "nowhere.csv")
    result = invoke("sweep", write_config(tmp_path, cfg), "--grid", "optimizer.lr=0.01,0.1",
                    "--scheduler", client.scheduler.address, "--sweep-dir", tmp_path / "sw")
    assert_user_error(result, 2, "cannot see", "nowhere.csv", "not exist here either")
    assert not (tmp_path / "sw").exists()


def test_the_worker_check_reports_what_a_worker_lacks(tmp_path):
    (tmp_path / "sw").mkdir()
    seen = sweeps.check_worker([str(tmp_path / "a.csv"), __file__], str(tmp_path / "sw"))
    assert seen == {"missing": [str(tmp_path / "a.csv")], "sweep_dir": True, "writable": True,
                    "netcli": netcli.__version__}
    assert list((tmp_path / "sw").iterdir()) == []                   # the probe file is gone
    assert sweeps.check_worker([], str(tmp_path / "elsewhere"))["writable"] is False


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_cluster, "CONNECT_TIMEOUT", "1s")
    result = invoke("sweep", write_config(tmp_path, small_digits()), "--grid", "optimizer.lr=0.01,0.1",
                    "--scheduler", "tcp://127.0.0.1:9", "--sweep-dir", tmp_path / "sw")
    assert_user_error(result, 2, "--scheduler tcp://127.0.0.1:9", "cannot reach")


# -- the command ---------------------------------------------------------------------------

def test_the_command_prints_the_best_trial_and_the_table(tmp_path, client):
    path = write_config(tmp_path, small_digits(), "digits")
    result = invoke("sweep", path, *[a for g in GRID for a in ("--grid", g)],
                    "--scheduler", client.scheduler.address, "--sweep-dir", tmp_path / "sw")
    assert result.exit_code == 0, result.stderr
    records = sweeps.read_trials(tmp_path / "sw")
    best = max(records.values(), key=lambda r: (r["best"]["value"], -r["index"]))
    assert result.stdout == f"{tmp_path / 'sw' / best['name']}\n"
    for name in records:
        assert name in result.stderr
    assert "val_accuracy" in result.stderr and "4 finished" in result.stderr
    # the trials are ordinary runs
    listed = json.loads(invoke("runs", tmp_path / "sw", "--json").stdout)
    assert sorted(r["run"] for r in listed) == sorted(records)
    assert all(r["status"] == "finished" for r in listed)
    assert invoke("eval", result.stdout.strip(), "--json").exit_code == 0


def test_the_command_json(tmp_path, client):
    result = invoke("sweep", write_config(tmp_path, small_digits()), "--grid", "optimizer.lr=0.01,0.1",
                    "--scheduler", client.scheduler.address, "--sweep-dir", tmp_path / "sw", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["sweep_dir"] == str(tmp_path / "sw") and len(out["trials"]) == 2
    assert [r["best"] for r in out["trials"]].count(True) == 1
    row = out["trials"][0]
    assert row["overrides"] == {"optimizer.lr": 0.01} and row["status"] == "finished"
    assert row["score"]["metric"] == "val_accuracy" and row["test"]["metric"] == "accuracy"
    assert out["best"] in {r["run_dir"] for r in out["trials"]}


def test_every_trial_failing_exits_1(tmp_path, client):
    result = invoke("sweep", write_config(tmp_path, small_digits()), "--grid", "model.layers.1.units=4,5",
                    "--scheduler", client.scheduler.address, "--sweep-dir", tmp_path / "sw")
    assert result.exit_code == 1
    assert result.stdout == "" and "no trial finished" in result.stderr


def test_resume_refuses_axes(tmp_path):
    result = invoke("sweep", "--resume", tmp_path, "--grid", "optimizer.lr=1")
    assert result.exit_code == 2 and "--resume SWEEP_DIR takes the sweep as it was" in result.stderr
    assert_user_error(invoke("sweep", "--resume", tmp_path), 2, "not a sweep directory")


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_resume_finishes_it(tmp_path, client):
    """SIGINT to the command's process group, as a terminal's Ctrl-C: exit 130, running trials
    keep their checkpoints, and --resume runs only what is missing."""
    path = write_config(tmp_path, digits_config(training={"epochs": 30}))
    sw = tmp_path / "sw"
    command = [sys.executable, "-m", "netcli", "sweep", str(path), "--grid", "optimizer.lr=0.001,0.002,0.003,0.004",
               "--grid", "regularization.l2=0,1e-4", "--scheduler", client.scheduler.address, "--sweep-dir", str(sw)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)
    deadline = time.time() + 60
    while not any(sw.glob("t*/metrics.jsonl")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == "" and "netcli sweep --resume" in err
    before = sweeps.read_trials(sw)
    finished = {n for n, r in before.items() if r["status"] == "finished"}
    assert len(finished) < 8
    stopped = [n for n, r in before.items() if r["status"] == "interrupted"]
    assert stopped                                   # a trial was running when Ctrl-C came
    for name in stopped:
        assert json.loads((sw / name / "summary.json").read_text())["status"] == "interrupted"
    assert not (sw / sweeps.STOP_FILE).exists()
    result = invoke("sweep", "--resume", sw, "--scheduler", client.scheduler.address)
    assert result.exit_code == 0, result.stderr
    after = sweeps.read_trials(sw)
    assert len(after) == 8 and all(r["status"] == "finished" for r in after.values())
    assert f"running {8 - len(finished)}" in result.stderr
    for name in stopped:                                              # carried on from their checkpoints
        assert f"{name}: finished" in result.stderr and "(resumed from epoch" in result.stderr
