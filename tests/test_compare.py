"""netcli compare: one config, several optimizers, the same initial theta; the gradient-evaluation
accounting; the figure. netcli plot of several runs and its labels."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from netcli.compare import COMPARISON_FILE, FIGURE_FILE, FIRST_ORDER_DEFAULTS
from netcli.config import load_config
from netcli.diff import config_differences, differing_keys, flatten, run_labels
from netcli.plots import COMPARISON_SIZE, DPI, OVERLAY_SIZE
from netcli.prepare import prepare

from helpers import assert_user_error, blobs_csv, invoke, train_config, write_config

OPTIMIZERS = ["sgd", "momentum", "adam", "cg", "lbfgs"]
ROWS = 120        # 3 classes x 40: m, the training rows (no validation split)
BATCH = 20        # divides m: an epoch is 6 steps of 20/120
EPOCHS = 3


def blobs_config(csv: Path, **sections) -> dict:
    config = {"seed": 0,
              "data": {"train": str(csv), "test": str(csv), "target": "animal", "normalize": "standard"},
              "model": {"input": 2, "layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                               {"type": "dense", "units": 3, "activation": "softmax"}]},
              "loss": "cross_entropy", "regularization": {"l2": 1.0e-3},
              "optimizer": {"type": "adam", "lr": 0.01},
              "training": {"epochs": EPOCHS, "batch_size": BATCH}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def assert_usage_error(result, fragment: str) -> None:
    """click's usage error: exit 2, the usage line and `Error: ...` on stderr, nothing on stdout."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert "Error: " in result.stderr and fragment in result.stderr, result.stderr


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison of all five optimizers on a tiny problem, through the CLI."""
    tmp = tmp_path_factory.mktemp("compare")
    csv, _, _ = blobs_csv(tmp / "blobs.csv")
    config = write_config(tmp, blobs_config(csv), "blobs")
    out = tmp / "cmp"
    result = invoke("compare", config, "--optimizers", ",".join(OPTIMIZERS), "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / COMPARISON_FILE).read_text())
    return tmp, config, out, result, doc


def run_summary(out: Path, name: str) -> dict:
    return json.loads((out / name / "summary.json").read_text())


# -- one run per optimizer, the same start ---------------------------------------------

def test_one_ordinary_run_per_optimizer(compared):
    _, _, out, _, doc = compared
    assert [r["optimizer"] for r in doc["runs"]] == OPTIMIZERS
    for name in OPTIMIZERS:
        run = out / name
        assert {"config.yaml", "metrics.jsonl", "weights.npz", "summary.json", "receipt.json"} <= \
            {p.name for p in run.iterdir()}
        kept = yaml.safe_load((run / "config.yaml").read_text())
        assert kept["optimizer"]["type"] == name
        assert run_summary(out, name)["status"] == "finished"
    # the first-order runs trained the budget in epochs, the full-batch ones have it as max_iter
    assert run_summary(out, "sgd")["epochs"] == EPOCHS
    cg = yaml.safe_load((out / "cg" / "config.yaml").read_text())
    assert cg["optimizer"]["max_iter"] == EPOCHS


def test_runs_differ_only_in_their_optimizer(compared):
    _, _, out, _, _ = compared
    first = yaml.safe_load((out / "sgd" / "config.yaml").read_text())
    for name in OPTIMIZERS[1:]:
        other = yaml.safe_load((out / name / "config.yaml").read_text())
        keys = [d["key"] for d in config_differences(first, other)]
        assert keys and all(k.startswith("optimizer.") for k in keys), keys


def test_every_run_starts_from_the_same_theta(compared):
    _, _, out, _, doc = compared
    hashes = [r["initial_theta_sha256"] for r in doc["runs"]]
    assert len(set(hashes)) == 1 and doc["same_initial_theta"] is True
    # ... and it is the theta the run's own config draws, not some other shared vector
    theta0 = prepare(load_config(out / "adam" / "config.yaml")).net.theta
    assert hashes[0] == hashlib.sha256(theta0.tobytes()).hexdigest()
    assert len({r["initial_objective"] for r in doc["runs"]}) == 1
    finals = {json.loads((out / n / "receipt.json").read_text())["theta"]["sha256"] for n in OPTIMIZERS}
    assert len(finals) == len(OPTIMIZERS) and hashes[0] not in finals     # they did move apart


def test_table_has_one_row_per_optimizer(compared):
    _, _, out, result, doc = compared
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == OPTIMIZERS
    for row, r in zip(rows, doc["runs"]):
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[2] == "finished"
        assert float(cells[3]) == pytest.approx(r["final_objective"], rel=1e-3)
        assert float(cells[4]) == pytest.approx(r["final_data_term"], rel=1e-3) and cells[4] != cells[3]
        assert float(cells[6]) == pytest.approx(r["grad_evals"], rel=1e-3)
        assert cells[8].startswith("accuracy ")
    assert "same initial theta" in result.stdout
    assert str(out / FIGURE_FILE) in result.stdout.replace("\n", "")
    assert "[1/5] sgd" in result.stderr and "[5/5] lbfgs" in result.stderr   # progress on stderr


# -- gradient evaluations ---------------------------------------------------------------

def test_minibatch_step_counts_batch_over_m(compared):
    _, _, out, _, doc = compared
    for r in doc["runs"][:3]:                      # sgd, momentum, adam
        steps = run_summary(out, r["optimizer"])["steps"]
        assert steps == EPOCHS * ROWS // BATCH
        assert r["grad_evals"] == pytest.approx(steps * BATCH / ROWS)
        assert r["curve"]["evals"] == pytest.approx([0, 1, 2, 3])    # one full evaluation per epoch
        assert r["gradient_calls"] == steps


def test_full_batch_call_counts_one(compared):
    _, _, out, _, doc = compared
    for r in doc["runs"][3:]:                      # cg, lbfgs
        summary = run_summary(out, r["optimizer"])
        # every call scipy makes (line searches included) is one gradient evaluation
        assert r["grad_evals"] == summary["steps"] == r["gradient_calls"]
        assert r["grad_evals"] >= summary["epochs"] == len(r["curve"]["evals"]) - 1
        assert r["curve"]["evals"] == sorted(r["curve"]["evals"])


def test_a_short_last_batch_counts_its_own_rows(tmp_path):
    csv, _, _ = blobs_csv(tmp_path / "blobs.csv")
    config = write_config(tmp_path, blobs_config(csv, training={"batch_size": 50}), "blobs")
    result = invoke("compare", config, "--optimizers", "sgd", "--budget", "2", "--out", tmp_path / "c", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)["runs"][0]
    steps = run_summary(tmp_path / "c", "sgd")["steps"]
    assert steps == 6                                  # 50 + 50 + 20 rows, twice
    assert row["grad_evals"] == pytest.approx(2.0)     # not steps * 50 / 120 = 2.5
    assert steps * 50 / ROWS == pytest.approx(2.5)


def test_the_batch_way_counts_like_one_thread(compared, tmp_path):
    """A batch cut in parts is one gradient evaluation of its rows, not none (the parts' threads
    never call Network.loss_and_grad), and the probe's steps before the loop are not counted."""
    _, config, _, _, doc = compared
    result = invoke("compare", config, "--optimizers", "adam,lbfgs", "--set", "training.threads=2",
                    "--set", "training.parallel=batch", "--out", tmp_path / "c", "--json")
    assert result.exit_code == 0, result.stderr
    one = {r["optimizer"]: r for r in doc["runs"]}
    for r in json.loads(result.stdout)["runs"]:
        assert run_summary(tmp_path / "c", r["optimizer"])["threads"]["way"] == "batch"
        assert r["grad_evals"] == one[r["optimizer"]]["grad_evals"] > 0
        assert r["gradient_calls"] == one[r["optimizer"]]["gradient_calls"]
        assert r["initial_theta_sha256"] == one[r["optimizer"]]["initial_theta_sha256"]
        np.testing.assert_allclose(r["curve"]["objective"], one[r["optimizer"]]["curve"]["objective"], rtol=1e-4)


# -- the figure and comparison.json -----------------------------------------------------

def test_figure_is_a_png(compared):
    _, _, out, _, doc = compared
    assert doc["figure"] == FIGURE_FILE
    assert png_size(out / FIGURE_FILE) == (int(COMPARISON_SIZE[0] * DPI), int(COMPARISON_SIZE[1] * DPI))


def test_curve_time_is_the_sum_of_epoch_seconds(compared):
    _, _, out, _, doc = compared
    r = doc["runs"][0]
    seconds = [json.loads(line)["seconds"] for line in (out / "sgd" / "metrics.jsonl").read_text().splitlines()]
    assert r["curve"]["seconds"] == pytest.approx(np.cumsum([0.0] + seconds).tolist(), abs=1e-6)
    assert r["seconds"] == pytest.approx(sum(seconds), abs=1e-6)


def test_comparison_runs_reproduce(compared):
    """Counting and evaluating J from outside changes nothing: a run retrains to the same theta."""
    _, _, out, _, _ = compared
    result = invoke("train", "--check", out / "cg", "-q")
    assert result.exit_code == 0, result.stderr
    assert "reproduced" in result.stdout


def test_json_and_per_optimizer_settings(tmp_path):
    csv, _, _ = blobs_csv(tmp_path / "blobs.csv")
    config = write_config(tmp_path, blobs_config(csv), "blobs")
    result = invoke("compare", config, "--optimizers", "sgd,lbfgs", "--budget", "1", "--set", "sgd.lr=0.05",
                    "--set", "lbfgs.memory=3", "--set", "regularization.l2=0", "--out", tmp_path / "c", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["comparison_dir"] == str(tmp_path / "c") and doc["budget"] == 1
    sgd = yaml.safe_load((tmp_path / "c" / "sgd" / "config.yaml").read_text())
    lbfgs = yaml.safe_load((tmp_path / "c" / "lbfgs" / "config.yaml").read_text())
    assert sgd["optimizer"] == {"type": "sgd", "lr": 0.05}
    assert lbfgs["optimizer"]["memory"] == 3 and lbfgs["optimizer"]["max_iter"] == 1
    assert sgd["regularization"]["l2"] == 0 == lbfgs["regularization"]["l2"]
    # the recorded overrides remake the run with plain `netcli train`
    again = invoke("train", config, *[a for s in doc["runs"][0]["overrides"] for a in ("--set", s)],
                   "--run-dir", tmp_path / "again", "-q")
    assert again.exit_code == 0, again.stderr
    receipts = [json.loads((d / "receipt.json").read_text())["theta"]["sha256"]
                for d in (tmp_path / "c" / "sgd", tmp_path / "again")]
    assert receipts[0] == receipts[1]


def test_the_config_own_optimizer_keeps_its_settings(compared):
    _, _, out, _, _ = compared
    adam = yaml.safe_load((out / "adam" / "config.yaml").read_text())
    assert adam["optimizer"]["lr"] == 0.01                      # the config's, not the default
    sgd = yaml.safe_load((out / "sgd" / "config.yaml").read_text())
    assert sgd["optimizer"]["lr"] == FIRST_ORDER_DEFAULTS["sgd"]["lr"]


def test_help_states_the_defaults():
    text = invoke("compare", "--help").stdout
    assert f"sgd                          lr {FIRST_ORDER_DEFAULTS['sgd']['lr']:g}" in text
    m = FIRST_ORDER_DEFAULTS["momentum"]
    assert f"lr {m['lr']:g}, momentum {m['momentum']:g}" in text
    assert f"adagrad                      lr {FIRST_ORDER_DEFAULTS['adagrad']['lr']:g}" in text
    assert FIRST_ORDER_DEFAULTS["rmsprop"] == FIRST_ORDER_DEFAULTS["adam"]
    assert f"rmsprop, adam                lr {FIRST_ORDER_DEFAULTS['adam']['lr']:g}" in text
    assert "b/m" in text


@pytest.mark.parametrize("args, fragment", [
    (["--optimizers", "sgd,adamw"], "unknown optimizer 'adamw'"),
    (["--optimizers", "sgd,sgd"], "sgd given twice"),
    (["--set", "optimizer.lr=0.1"], "give one optimizer's settings by its name"),
    (["--optimizers", "sgd", "--set", "adam.lr=0.1"], "adam is not among --optimizers"),
    (["--optimizers", "sgd", "--set", "sgd.lr=-1"], "sgd: "),
])
def test_usage_errors(tmp_path, args, fragment):
    csv, _, _ = blobs_csv(tmp_path / "blobs.csv")
    config = write_config(tmp_path, blobs_config(csv), "blobs")
    assert_user_error(invoke("compare", config, *args, "--out", tmp_path / "c"), 2, fragment)
    assert not (tmp_path / "c").exists()


def test_out_must_be_new(tmp_path):
    csv, _, _ = blobs_csv(tmp_path / "blobs.csv")
    config = write_config(tmp_path, blobs_config(csv), "blobs")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    assert_user_error(invoke("compare", config, "--out", tmp_path / "c"), 2, "not an empty folder")


# -- plot of several runs -----------------------------------------------------------------

def test_labels_name_the_keys_that_differ():
    base = {"seed": 0, "optimizer": {"type": "adam", "lr": 0.001, "beta1": 0.9},
            "model": {"layers": [{"type": "dense", "units": 8}]}, "data": {"train": "/x/a/train.csv"}}
    lr = {**base, "optimizer": {**base["optimizer"], "lr": 0.01}}
    assert run_labels([base, lr], ["a", "b"]) == ["optimizer.lr=0.001", "optimizer.lr=0.01"]
    units = {**base, "model": {"layers": [{"type": "dense", "units": 16}]}, "data": {"train": "/y/b/other.csv"}}
    assert run_labels([base, units], ["a", "b"]) == ["model.layers.0.units=8, data.train=train.csv",
                                                     "model.layers.0.units=16, data.train=other.csv"]
    assert run_labels([base, dict(base)], ["run-1", "run-2"]) == ["run-1", "run-2"]


def test_labels_of_different_optimizers_name_their_type():
    def config(block):
        return {"seed": 0, "optimizer": block}
    configs = [config({"type": "sgd", "lr": 0.1}), config({"type": "adam", "lr": 0.001, "beta1": 0.9}),
               config({"type": "cg", "max_iter": 50, "tol": 1e-9}),
               config({"type": "lbfgs", "max_iter": 50, "tol": 1e-9, "memory": 10})]
    assert run_labels(configs, list("abcd")) == ["optimizer=sgd, optimizer.lr=0.1",
                                                 "optimizer=adam, optimizer.lr=0.001",
                                                 "optimizer=cg", "optimizer=lbfgs"]
    assert differing_keys(configs)[:2] == ["optimizer.type", "optimizer.lr"]


def test_flatten_dotted_keys():
    flat = flatten({"model": {"input": [1, 8, 8], "layers": [{"units": 3}, {"type": "flatten"}]}, "drop": []})
    assert flat == {"model.input": [1, 8, 8], "model.layers.0.units": 3, "model.layers.1.type": "flatten",
                    "drop": []}


def test_plot_overlays_several_runs(tmp_path):
    csv, _, _ = blobs_csv(tmp_path / "blobs.csv")
    a = train_config(tmp_path, blobs_config(csv), "a").run_dir
    b = train_config(tmp_path, blobs_config(csv, optimizer={"lr": 0.05}), "b").run_dir
    out = tmp_path / "both.png"
    result = invoke("plot", a, b, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert png_size(out) == (int(OVERLAY_SIZE[0] * DPI), int(OVERLAY_SIZE[1] * DPI))
    # several runs need --out; the single-run figure and its default place stay as they were
    assert_usage_error(invoke("plot", a, b), "give --out")
    assert_usage_error(invoke("plot", a, b, "--weights", "--out", out), "--weights draws one run")
    single = invoke("plot", a)
    assert single.exit_code == 0 and single.stdout.strip() == str(a / "curves.png")
    assert png_size(a / "curves.png")[0] != png_size(out)[0]


def test_plot_of_a_comparison_folder_expands_into_its_runs(compared, monkeypatch):
    _, _, out, _, _ = compared
    drawn = {}
    import netcli.plots as plots
    original = plots.plot_overlay

    def spy(series, title, path):
        drawn["labels"] = [label for label, _, _ in series]
        drawn["full_batch"] = [fb for _, _, fb in series]
        return original(series, title, path)
    monkeypatch.setattr(plots, "plot_overlay", spy)
    result = invoke("plot", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "curves.png") and png_size(out / "curves.png")
    assert drawn["labels"] == ["optimizer=adam, optimizer.lr=0.01", "optimizer=cg", "optimizer=lbfgs",
                               "optimizer=momentum, optimizer.lr=0.01", "optimizer=sgd, optimizer.lr=0.1"]
    assert drawn["full_batch"] == [False, True, True, False, False]


def test_plot_of_a_folder_without_runs_is_an_error(tmp_path):
    assert_user_error(invoke("plot", tmp_path), 2, "not a run directory")


def test_a_diverging_run_is_recorded_and_the_others_go_on(tmp_path):
    from helpers import regression_config
    config = write_config(tmp_path, regression_config(data={"validation_split": 0.0, "test": None}), "reg")
    result = invoke("compare", config, "--optimizers", "sgd,adam", "--set", "sgd.lr=1e4", "--budget", "2",
                    "--out", tmp_path / "c", "--json")
    assert result.exit_code == 0, result.stderr
    sgd, adam = json.loads(result.stdout)["runs"]
    assert sgd["status"] == "diverged" and "diverged" in sgd["message"]
    assert sgd["curve"]["epoch"] == [0] and 0 < sgd["grad_evals"] < 1      # stopped inside epoch 1
    assert adam["status"] == "finished" and adam["curve"]["epoch"] == [0, 1, 2]
    assert run_summary(tmp_path / "c", "sgd")["status"] == "diverged"
    assert png_size(tmp_path / "c" / FIGURE_FILE)
