"""Searches (netcli.sweep.search): trials asked from an Optuna study kept in the sweep directory,
pruned at an epoch's end; the same points from the same seed; --resume carries the study on; a
worker killed mid-trial; the errors of combinations that cannot work.

One 2-worker LocalCluster is shared by the module, as in test_sweep.py. The tests that need a
fixed order of trials run them one at a time (parallel=1): then which trial the pruner stops
depends on the seed only."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import yaml

from netcli import sweep as sweeps
from netcli.errors import ConfigError
from netcli.files import load_npz
from netcli.sweep.sources import StudyTrials

import helpers
from helpers import assert_user_error, digits_config, invoke, read_metrics, write_config

optuna = pytest.importorskip("optuna")


def small_digits(epochs: int = 3, **sections) -> dict:
    """64-16-10 on the digits, 10% validation: a trial takes a fraction of a second."""
    return digits_config(**{"training": {"epochs": epochs}, **sections})


RANGES = ("optimizer.lr=1e-3:3e-2:log", "regularization.l2=1e-6:1e-2:log")
# With the config's seed 2, GridSampler's shuffle runs these as 0.03, 0.01, then 1e-6 (which
# learns nothing): the bad trial comes after two good ones.
BAD_LAST = "optimizer.lr=0.01,0.03,1e-6"


def study_of(sweep_dir):
    search, axes = sweeps.search.load_search(sweep_dir)
    return sweeps.open_study(sweep_dir, search, axes)


# -- planning: a search has no list of trials; what it keeps in sweep.yaml ---------------------

def test_a_search_plans_its_space_not_its_trials(tmp_path):
    cfg = small_digits(sweep={"search": {"type": "tpe", "n_startup_trials": 3}, "trials": 6,
                              "prune": "halving", "range": {"optimizer.lr": "1e-4:1e-1:log"}})
    plan = sweeps.plan(write_config(tmp_path, cfg), grid=["model.layers.0.units=8,32"],
                       ranges=["regularization.l2=0:0.01"], sweep_dir=tmp_path / "sw")
    assert plan.trials == [] and not (tmp_path / "sw").exists()          # asked for as it runs
    s = plan.search
    assert s.sampler == {"type": "tpe", "n_startup_trials": 3, "multivariate": False, "constant_liar": True}
    assert s.pruner == {"type": "halving", "min_resource": 1, "reduction_factor": 4,
                        "min_early_stopping_rate": 0, "bootstrap_count": 0}
    assert (s.trials, s.metric, s.direction) == (6, "val_accuracy", "maximize")
    dists = sweeps.search.distributions(plan.axes)
    assert dists["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
    assert dists["regularization.l2"] == optuna.distributions.FloatDistribution(0.0, 0.01)
    assert dists["model.layers.0.units"] == optuna.distributions.CategoricalDistribution(["8", "32"])
    # the command line replaces the file's choices
    plan = sweeps.plan(write_config(tmp_path, cfg), search="random", trials=2, prune="median")
    assert plan.search.sampler == {"type": "random"} and plan.search.trials == 2
    assert plan.search.pruner["type"] == "median" and plan.search.pruner["n_startup_trials"] == 5


def test_without_validation_data_a_search_minimizes_the_final_loss(tmp_path):
    cfg = small_digits(data={"validation_split": 0.0})
    plan = sweeps.plan(write_config(tmp_path, cfg), ranges=RANGES, search="random", trials=3)
    assert (plan.search.metric, plan.search.direction) == ("loss", "minimize")


def test_an_integer_range_is_enumerated_by_a_grid_search(tmp_path):
    plan = sweeps.plan(write_config(tmp_path, small_digits()), ["optimizer.lr=0.01,0.1"],
                       ["model.layers.0.units=8:12"], search="grid")
    assert plan.search.trials == 10                                        # 2 x 5 points
    sampler = sweeps.search.make_sampler(plan.search, plan.axes, 0)
    assert isinstance(sampler, optuna.samplers.GridSampler)


def test_a_mistake_in_the_sections_search_names_its_line(tmp_path):
    text = yaml.safe_dump(small_digits(), sort_keys=False) + \
        "sweep:\n  range: {optimizer.lr: '1e-3:1e-1'}\n  search: tpe\n  trials: 4\n  prune: {type: median, warmup: 2}\n"
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: sweep.prune: median takes no 'warmup'"):
        sweeps.plan(write_config(tmp_path, text))


@pytest.mark.parametrize("args, fragments", [
    (["--search", "grid", "--range", "optimizer.lr=1e-4:1e-1:log"],
     ["--search grid", "optimizer.lr=0.0001:0.1:log is continuous", "--grid optimizer.lr=V1,V2"]),
    (["--search", "grid", "--grid", "optimizer.lr=0.1,0.2", "--trials", "3"], ["the grid has 2 points"]),
    (["--search", "tpe", "--range", RANGES[0]], ["--search tpe", "needs --trials N"]),
    (["--prune", "median", "--grid", "optimizer.lr=0.1,0.2"], ["--prune median", "needs a search"]),
    (["--trials", "4", "--random", "4", "--range", RANGES[0]], ["--trials 4", "needs a search"]),
    (["--search", "random", "--trials", "2", "--random", "3", "--range", RANGES[0]], ["--random", "--trials N"]),
    (["--search", "random", "--trials", "2", "--seeds", "2", "--range", RANGES[0]], ["--seeds"]),
    (["--search", "tpe", "--trials", "3"], ["nothing to search"]),
    (["--search", "tpe", "--trials", "0", "--range", RANGES[0]], ["--trials 0", "positive integer"]),
    (["--search", "random", "--trials", "2", "--range", "optimizer.lr=-1:1"], ["optimizer.lr", "> 0"]),
])
def test_a_search_that_cannot_work_is_one_error_before_anything_starts(tmp_path, monkeypatch, args, fragments):
    path = write_config(tmp_path, small_digits())
    monkeypatch.chdir(tmp_path)
    assert_user_error(invoke("sweep", path, *args), 2, *fragments)
    assert not (tmp_path / "runs").exists()


def test_pruning_without_validation_data_is_an_error(tmp_path, monkeypatch):
    path = write_config(tmp_path, small_digits(data={"validation_split": 0.0}))
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", path, "--search", "tpe", "--trials", "4", "--range", RANGES[0], "--prune", "median")
    assert_user_error(result, 2, "--prune median", "no validation data", "data.validation_split")
    assert not (tmp_path / "runs").exists()


def test_a_search_without_optuna_says_how_to_install_it(tmp_path, monkeypatch):
    path = write_config(tmp_path, small_digits())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna", None)           # `import optuna` raises ImportError
    result = invoke("sweep", path, "--search", "random", "--trials", "2", "--range", RANGES[0])
    assert_user_error(result, 2, "--search needs Optuna", "pip install 'netcli[search]'")
    assert not (tmp_path / "runs").exists()
    assert len(sweeps.plan(path, ["optimizer.lr=0.1,0.2"]).trials) == 2     # a grid sweep needs no Optuna


def test_resume_takes_trials_only_for_a_search(tmp_path):
    result = invoke("sweep", "--resume", tmp_path, "--search", "tpe")
    assert result.exit_code == 2 and "--resume SWEEP_DIR takes the sweep as it was" in result.stderr
    plan = sweeps.plan(write_config(tmp_path, small_digits()), ["optimizer.lr=0.01,0.1"], sweep_dir=tmp_path / "sw")
    plan.path.mkdir()
    sweeps.write_sweep_file(plan)
    assert_user_error(invoke("sweep", "--resume", plan.path, "--trials", "4"), 2, "not a search")


# -- running ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_bad_trial_after_good_ones_is_pruned_at_its_epochs_end(tmp_path, client):
    from rich.console import Console
    cfg = small_digits(epochs=4, seed=2, sweep={"prune": {"type": "median", "n_startup_trials": 2}})
    sw = tmp_path / "sw"
    plan = sweeps.plan(write_config(tmp_path, cfg), [BAD_LAST], search="grid", sweep_dir=sw)
    talk = Console(file=io.StringIO(), width=200)
    sweeps.run(plan, client=client, parallel=1, console=talk)        # one at a time: the order is the seed's
    assert "t002-lr1e-06: pruned by the median pruner at epoch 1: val_accuracy" in talk.file.getvalue()
    result = invoke("sweep", "--resume", sw, "--json")                 # nothing to run: the table
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["trials"]
    assert [r["trial"] for r in rows] == ["t000-lr0.03", "t001-lr0.01", "t002-lr1e-06"]   # the seed's order
    assert [r["status"] for r in rows] == ["finished", "finished", "pruned"]
    assert [r["epochs"] for r in rows] == [4, 4, 1]
    records = sweeps.read_trials(sw)
    best = max(rows[:2], key=lambda r: records[r["trial"]]["best"]["value"])
    assert [r["best"] for r in rows] == [r is best for r in rows]           # never the pruned one
    assert rows[2]["score"]["value"] == records["t002-lr1e-06"]["best"]["value"]   # shown: its best so far
    pruned = records["t002-lr1e-06"]
    assert pruned["status"] == "pruned" and pruned["message"].startswith("pruned by the median pruner at epoch 1")
    # it stopped through the trainer's own end: checkpoint, weights and summary of epoch 1
    run = sw / "t002-lr1e-06"
    assert int(load_npz(run / "checkpoint.npz")["epoch"]) == 1
    assert (run / "weights.npz").exists() and len(read_metrics(run)) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 1 and summary["message"] == pruned["message"]
    # the study knows what trials.jsonl says
    trials = study_of(sw).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [t.value for t in trials[:2]] == [records[r["trial"]]["best"]["value"] for r in rows[:2]]
    assert trials[2].intermediate_values == {1: read_metrics(run)[0]["val_accuracy"]}
    assert [sorted(t.intermediate_values) for t in trials[:2]] == [[1, 2, 3, 4]] * 2
    assert "2 finished, 1 pruned; 9 epochs trained" in " ".join(result.stderr.split())   # the table's title


@pytest.mark.slow
def test_the_halving_pruner_rebuilt_on_the_workers_prunes_the_same_trial(tmp_path, client):
    """sweep.yaml says min_resource 2, reduction_factor 2: the first rung ends at epoch 2, where
    only the better half goes on (a worker with Optuna's defaults, min_resource 'auto' and
    reduction_factor 4, would have stopped the bad trial at epoch 1)."""
    cfg = small_digits(epochs=4, seed=2, sweep={"prune": {"type": "halving", "min_resource": 2,
                                                          "reduction_factor": 2}})
    plan = sweeps.plan(write_config(tmp_path, cfg), [BAD_LAST], search="grid", sweep_dir=tmp_path / "sw")
    result = sweeps.run(plan, client=client, parallel=1)
    status = {r["name"]: (r["status"], r["epochs"]) for r in result.records}
    assert status["t000-lr0.03"] == ("finished", 4)                     # alone in its rung: promoted
    assert status["t002-lr1e-06"] == ("pruned", 2)                      # the worst at the end of rung 0
    kept = yaml.safe_load((tmp_path / "sw" / "sweep.yaml").read_text())["search"]["pruner"]
    assert kept == {"type": "halving", "min_resource": 2, "reduction_factor": 2, "min_early_stopping_rate": 0,
                    "bootstrap_count": 0}
    trials = study_of(tmp_path / "sw").get_trials()
    assert trials[2].system_attrs["completed_rung_0"] == trials[2].intermediate_values[2]


@pytest.mark.slow
def test_a_seed_gives_the_same_points_twice_on_any_number_of_workers(tmp_path, client):
    path = write_config(tmp_path, small_digits(epochs=1))
    tpe = write_config(tmp_path, small_digits(epochs=1, sweep={"search": {"type": "tpe", "n_startup_trials": 2}}),
                       "tpe")

    def points(name, seed=0, parallel=None, sampler="random"):
        plan = sweeps.plan(tpe if sampler == "tpe" else path, (), RANGES, search=None if sampler == "tpe" else sampler,
                           trials=4, sweep_dir=tmp_path / name, overrides=[f"seed={seed}"])
        result = sweeps.run(plan, client=client, parallel=parallel)
        assert [r["status"] for r in result.records] == ["finished"] * 4
        return [r["overrides"] for r in result.records]

    first = points("a", parallel=2)
    assert points("b", parallel=1) == first                       # one at a time or two: the same points
    assert len({json.dumps(p) for p in first}) == 4
    lrs = [p["optimizer.lr"] for p in first]
    assert all(1e-3 <= lr <= 3e-2 for lr in lrs)
    assert points("c", seed=1, parallel=2) != first                # drawn from the seed
    journal = [t.params for t in study_of(tmp_path / "a").get_trials()]
    assert [{k: float(v) for k, v in p.items()} for p in journal] == first
    guessed = points("d", parallel=1, sampler="tpe")               # 2 random, then 2 from TPE's model
    assert points("e", parallel=1, sampler="tpe") == guessed        # one at a time, TPE's are the same too
    assert guessed[:2] == first[:2]                     # TPE's startup trials: random draws from the same seeds
    assert guessed[2] != first[2] and guessed[3] != first[3]        # then its model's


@pytest.mark.slow
def test_resume_carries_the_same_study_on(tmp_path, client):
    path = write_config(tmp_path, small_digits(epochs=2))
    grid = ["regularization.l2=0,1e-4"]     # a categorical axis: its choices must read back the same
    plan = sweeps.plan(path, grid, RANGES[:1], search="random", trials=2, sweep_dir=tmp_path / "sw")
    first = sweeps.run(plan, client=client)
    sw = first.path
    kept = {r["name"]: (sw / r["name"] / "weights.npz").stat().st_mtime_ns for r in first.records}
    # a driver that stopped after asking trial 2: RUNNING in the journal, never trained
    source = StudyTrials(sweeps.load(sw, trials=3), new=False)
    source.start(1)
    asked = source.next()
    assert asked.index == 2 and asked.name.startswith("t002-")
    assert study_of(sw).get_trials()[2].state.name == "RUNNING"
    result = invoke("sweep", "--resume", sw, "--trials", "4", "--scheduler", client.scheduler.address, "--json")
    assert result.exit_code == 0, result.stderr
    assert "running 2 (2 recorded already)" in result.stderr
    rows = json.loads(result.stdout)["trials"]
    assert [r["trial"][:4] for r in rows] == ["t000", "t001", "t002", "t003"]
    assert rows[2]["trial"] == asked.name and rows[2]["overrides"] == asked.overrides   # run under its name
    assert all(r["status"] == "finished" for r in rows)
    trials = study_of(sw).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    for name, mtime in kept.items():                                # the first two were not run again
        assert (sw / name / "weights.npz").stat().st_mtime_ns == mtime
    assert len((sw / "trials.jsonl").read_text().splitlines()) == 4
    assert yaml.safe_load((sw / "sweep.yaml").read_text())["search"]["trials"] == 4
    again = invoke("sweep", "--resume", sw, "--scheduler", client.scheduler.address)
    assert again.exit_code == 0 and "all 4 trials" in again.stderr
    # trial n's point comes from the seed and n: stopped and resumed, the same points as in one go
    whole = sweeps.run(sweeps.plan(path, grid, RANGES[:1], search="random", trials=4, sweep_dir=tmp_path / "whole"),
                       client=client)
    assert [r["overrides"] for r in whole.records] == [r["overrides"] for r in rows]
    assert len({json.dumps(r["overrides"]) for r in rows}) == 4
    assert {r["overrides"]["regularization.l2"] for r in rows} <= {0.0, 1e-4}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_reruns_it_in_the_same_study_trial(tmp_path, client):
    # a pruner that never prunes here (it waits for 10 complete trials), so every epoch is reported
    cfg = small_digits(epochs=4, sweep={"prune": {"type": "median", "n_startup_trials": 10}})
    plan = sweeps.plan(write_config(tmp_path, cfg), (), RANGES, search="random", trials=3,
                       sweep_dir=tmp_path / "sw")
    result = helpers.run_killing_one_worker(sweeps, plan, client, trials=3)
    killed = result.records[1]
    trials = study_of(tmp_path / "sw").get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    reported = trials[1].intermediate_values
    logged = {m["epoch"]: m["val_accuracy"] for m in read_metrics(tmp_path / "sw" / killed["name"])}
    assert reported == logged and sorted(reported) == [1, 2, 3, 4]      # each epoch once, as trained
    assert np.isclose(trials[1].value, max(logged.values()))
    client.wait_for_workers(2, timeout=30)                             # the nanny restarted it
