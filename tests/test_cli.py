"""The commands: train, eval, predict, summary, validate, schema. stdout carries results only,
stderr the talk; exit codes 0 ok, 1 the job failed, 2 bad usage, config or data."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from netcli.config import json_schema

from helpers import (DIGITS_TEST, ROOT, assert_user_error, digits_config, invoke, load_csv,
                     regression_config, write_config)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One small digits run trained through the CLI, shared by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("cli")
    path = write_config(tmp, digits_config(training={"epochs": 3}), "digits")
    result = invoke("train", path, "--runs", tmp / "runs")
    assert result.exit_code == 0, result.stderr
    return tmp, path, result


# -- train -------------------------------------------------------------------------

def test_train_prints_only_the_run_directory(digits_run):
    tmp, _, result = digits_run
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    run_dir = lines[0]
    assert os.path.isdir(run_dir) and os.path.dirname(run_dir) == str(tmp / "runs")
    assert os.path.basename(run_dir).startswith("digits-")
    assert "epoch 1" in result.stderr and "epoch 3" in result.stderr        # progress on stderr
    assert "finished" in result.stderr


def test_train_quiet_says_nothing_on_stderr(tmp_path):
    result = invoke("train", write_config(tmp_path, digits_config()), "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0
    assert result.stdout == f"{tmp_path / 'run'}\n"
    assert result.stderr == ""


def test_train_json_prints_the_summary(tmp_path):
    result = invoke("train", write_config(tmp_path, digits_config()), "--run-dir", tmp_path / "run",
                    "--json", "-q")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["run_dir"] == str(tmp_path / "run")
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert {"final", "test", "wall_seconds"} <= set(summary)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k != "run_dir"} == on_disk


def test_train_set_overrides(tmp_path):
    result = invoke("train", write_config(tmp_path, digits_config()), "--run-dir", tmp_path / "run", "-q",
                    "--set", "training.epochs=1", "--set", "model.layers.0.units=8")
    assert result.exit_code == 0, result.stderr
    import yaml
    kept = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert kept["training"]["epochs"] == 1 and kept["model"]["layers"][0]["units"] == 8


# -- eval --------------------------------------------------------------------------

def test_eval_json(digits_run):
    run_dir = digits_run[2].stdout.strip()
    result = invoke("eval", run_dir, "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert 0.5 < out["accuracy"] <= 1 and out["loss"] > 0
    assert set(out["per_class"]) == {str(d) for d in range(10)}
    for scores in out["per_class"].values():
        assert {"precision", "recall", "f1", "support"} <= set(scores)
        assert all(0 <= scores[k] <= 1 for k in ("precision", "recall", "f1"))
    cm = np.array(out["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 360
    assert np.trace(cm) / 360 == pytest.approx(out["accuracy"])
    assert [s["support"] for s in out["per_class"].values()] == cm.sum(axis=1).tolist()


def test_eval_data_from_a_file_and_from_stdin(digits_run):
    run_dir = digits_run[2].stdout.strip()
    default = json.loads(invoke("eval", run_dir, "--json").stdout)
    from_file = json.loads(invoke("eval", run_dir, "--json", "--data", DIGITS_TEST).stdout)
    from_stdin = invoke("eval", run_dir, "--json", "--data", "-", input=DIGITS_TEST.read_text())
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert default == from_file == json.loads(from_stdin.stdout)


def test_eval_tables(digits_run):
    result = invoke("eval", digits_run[2].stdout.strip())
    assert result.exit_code == 0
    for word in ("accuracy", "loss", "precision", "recall", "confusion"):
        assert word in result.stdout
    assert result.stderr == ""


def test_eval_regression(tmp_path):
    invoke("train", write_config(tmp_path, regression_config()), "--run-dir", tmp_path / "run", "-q")
    out = json.loads(invoke("eval", tmp_path / "run", "--json").stdout)
    assert {"loss", "mse", "mae", "r2"} <= set(out)
    assert "accuracy" not in out and "per_class" not in out
    assert out["mse"] > 0 and out["r2"] < 1


# -- predict -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def expected_labels(digits_run):
    import netcli
    X, _ = load_csv(DIGITS_TEST)
    return netcli.load_run(digits_run[2].stdout.strip()).predict(X)


def test_predict_from_stdin_prints_one_label_per_row(digits_run, expected_labels):
    result = invoke("predict", digits_run[2].stdout.strip(), "--data", "-", input=DIGITS_TEST.read_text())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 360
    assert lines == [str(v) for v in expected_labels]
    assert result.stderr == ""


def test_predict_defaults_to_the_config_test_set(digits_run):
    run_dir = digits_run[2].stdout.strip()
    assert invoke("predict", run_dir).stdout == invoke("predict", run_dir, "--data", DIGITS_TEST).stdout


def test_predict_jsonl(digits_run, expected_labels):
    result = invoke("predict", digits_run[2].stdout.strip(), "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prediction"] for r in rows] == expected_labels.tolist()


def test_predict_npy(digits_run, expected_labels):
    result = invoke("predict", digits_run[2].stdout.strip(), "--format", "npy")
    assert result.exit_code == 0
    array = np.load(io.BytesIO(result.stdout_bytes), allow_pickle=False)
    np.testing.assert_array_equal(array, expected_labels)


def test_predict_probabilities(digits_run, expected_labels):
    run_dir = digits_run[2].stdout.strip()
    csv = invoke("predict", run_dir, "--proba")
    rows = np.array([[float(v) for v in line.split(",")] for line in csv.stdout.splitlines()])
    assert rows.shape == (360, 10)
    np.testing.assert_allclose(rows.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_array_equal(rows.argmax(axis=1), expected_labels)
    jsonl = invoke("predict", run_dir, "--proba", "--format", "jsonl")
    first = json.loads(jsonl.stdout.splitlines()[0])["prediction"]
    assert list(first) == [str(d) for d in range(10)]
    assert sum(first.values()) == pytest.approx(1, abs=1e-5)
    npy = np.load(io.BytesIO(invoke("predict", run_dir, "--proba", "--format", "npy").stdout_bytes))
    assert npy.shape == (360, 10)
    np.testing.assert_allclose(npy.sum(axis=1), 1, rtol=1e-5)


def test_predict_regression_values(tmp_path):
    invoke("train", write_config(tmp_path, regression_config()), "--run-dir", tmp_path / "run", "-q")
    lines = invoke("predict", tmp_path / "run").stdout.splitlines()
    assert len(lines) == 250
    assert all(np.isfinite(float(v)) for v in lines)


@pytest.mark.slow
def test_shell_pipeline(tmp_path):
    """run=$(netcli train c.yaml) && netcli predict "$run" --data - < test.csv, for real."""
    path = write_config(tmp_path, digits_config(training={"epochs": 1}))
    netcli = f"{sys.executable} -m netcli"
    script = (f'set -e; run=$({netcli} train "{path}" --runs "{tmp_path}/runs"); '
              f'{netcli} predict "$run" --data - < "{DIGITS_TEST}" > "{tmp_path}/pred.txt"; '
              f'{netcli} eval "$run" --json > "{tmp_path}/eval.json"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "pred.txt").read_text().splitlines()) == 360
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["accuracy"] <= 1
    assert "Traceback" not in done.stderr


# -- summary -----------------------------------------------------------------------

def test_summary_shows_layers_and_the_objective_with_lambda(tmp_path):
    result = invoke("summary", write_config(tmp_path, digits_config()))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "dense(16, relu)" in out and "dense(10, softmax)" in out
    assert "1,040" in out and "170" in out and "1,210" in out          # 64*16+16, 16*10+10
    formula = next(line for line in out.splitlines() if line.startswith("J = "))
    assert "(lambda = 0.0001)/2 sum W^2" in formula
    assert formula.endswith("biases not penalized")


def test_summary_of_a_run_and_of_other_penalties(tmp_path, digits_run):
    run_out = invoke("summary", digits_run[2].stdout.strip()).stdout
    assert "(lambda = 0.0001)/2 sum W^2" in run_out
    mse = invoke("summary", write_config(tmp_path, regression_config(regularization={"l1": 0.5}))).stdout
    formula = next(line for line in mse.splitlines() if line.startswith("J = "))
    assert formula.startswith("J = 1/m sum 1/2 ||h - y||^2")
    assert "0.5" in formula and "|W|" in formula and "biases not penalized" in formula
    plain = invoke("summary", write_config(tmp_path, regression_config(), "plain")).stdout
    formula = next(line for line in plain.splitlines() if line.startswith("J = "))
    assert formula == "J = 1/m sum 1/2 ||h - y||^2"


def test_summary_set(tmp_path):
    out = invoke("summary", write_config(tmp_path, digits_config()), "--set", "regularization.l2=0.5").stdout
    assert "(lambda = 0.5)/2 sum W^2" in out


# -- validate and schema -------------------------------------------------------------

@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_validate_bundled_configs(path):
    result = invoke("validate", path)
    assert result.exit_code == 0, result.stderr
    assert "ok" in result.stdout


def test_validate_a_bad_config(tmp_path):
    cfg = digits_config()
    cfg["model"]["layers"][0]["units"] = -3
    path = write_config(tmp_path, cfg)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "-3" in text)
    assert_user_error(invoke("validate", path), 2, f"{path}:{line}: model.layers[0].units")


def test_validate_set(tmp_path):
    path = write_config(tmp_path, digits_config())
    assert invoke("validate", path, "--set", "model.layers.0.units=4").exit_code == 0
    assert_user_error(invoke("validate", path, "--set", "model.layers.0.units=-4"), 2,
                      "--set model.layers[0].units")


def test_schema_prints_the_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(json_schema()))


# -- user errors: a message, an exit code, no traceback ------------------------------------

@pytest.mark.parametrize("args,says", [
    (["train", "{tmp}/nope.yaml"], "not found"),
    (["train", "{bad}"], "model.layers[0].units"),
    (["train", "{good}", "--set", "optimizer.lr"], "KEY.PATH=VALUE"),
    (["train", "{good}", "--set", "optimizer.lr=-1"], "--set optimizer.lr"),
    (["train", "{nodata}", "--run-dir", "{tmp}/r"], "data file not found"),
    (["eval", "{tmp}/no-such-run"], "no such run directory"),
    (["eval", "{tmp}"], "not a run directory"),
    (["predict", "{tmp}/no-such-run"], "no such run directory"),
    (["summary", "{bad}"], "model.layers[0].units"),
    (["validate", "{malformed}"], "malformed YAML"),
], ids=["missing-config", "bad-config", "set-without-value", "bad-set", "missing-data",
        "eval-no-run", "eval-not-run", "predict-no-run", "summary-bad", "validate-malformed"])
def test_user_errors_exit_2_without_a_traceback(tmp_path, args, says):
    good = digits_config()
    bad = digits_config()
    bad["model"]["layers"][0]["units"] = -3
    nodata = digits_config(data={"train": str(tmp_path / "missing.csv")})
    paths = {"tmp": tmp_path, "good": write_config(tmp_path, good, "good"),
             "bad": write_config(tmp_path, bad, "bad"), "nodata": write_config(tmp_path, nodata, "nodata"),
             "malformed": write_config(tmp_path, "model: [1\n", "malformed")}
    result = invoke(*[a.format(**paths) for a in args])
    assert_user_error(result, 2, says)


@pytest.mark.parametrize("args", [["train"], ["train", "--bogus"], ["eval"],
                                  ["predict", ".", "--format", "xml"], ["frobnicate"]])
def test_usage_errors_exit_2(args):
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_train_with_both_config_and_resume_is_a_usage_error(tmp_path, digits_run):
    result = invoke("train", digits_run[1], "--resume", digits_run[2].stdout.strip())
    assert result.exit_code == 2 and "not both" in result.stderr


def test_predict_missing_data_without_a_test_set(tmp_path):
    cfg = digits_config()
    cfg["data"].pop("test")
    invoke("train", write_config(tmp_path, cfg), "--run-dir", tmp_path / "run", "-q")
    assert_user_error(invoke("predict", tmp_path / "run"), 2, "--data")
    assert_user_error(invoke("eval", tmp_path / "run"), 2, "--data")


def test_failed_job_exits_1(tmp_path):
    path = write_config(tmp_path, regression_config(optimizer={"type": "sgd", "lr": 1.0e6}))
    assert_user_error(invoke("train", path, "--run-dir", tmp_path / "run", "-q"), 1, "diverged")


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("--debug", "validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "Error:" in result.stderr


def test_version():
    import netcli
    result = invoke("--version")
    assert result.exit_code == 0 and netcli.__version__ in result.stdout


# -- options several commands share ------------------------------------------------------

def test_every_set_option_is_the_shared_one():
    """--set is declared once (cli.set_option): every command that takes it parses it alike."""
    from netcli.cli import cli
    sets = {name: next(p for p in command.params if "--set" in p.opts)
            for name, command in cli.commands.items() if any("--set" in p.opts for p in command.params)}
    assert {"train", "compare", "sweep"} <= set(sets)
    assert {(p.name, p.multiple, p.metavar) for p in sets.values()} == {("overrides", True, "KEY=VALUE")}
    assert "sgd.lr=0.05" in sets["compare"].help                       # its own help, the same option


def test_compare_threads_says_why_it_is_pinned():
    text = " ".join(invoke("compare", "--help").stdout.split())
    assert "A fixed number, not auto as elsewhere: the runs' timings are compared" in text
