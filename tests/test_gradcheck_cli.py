"""`netcli gradcheck` through click's CliRunner: exit codes, the JSON report, the options."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from netcli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-7
TENSOR_KEYS = {"name", "checked", "max_abs_err", "rel_err", "ok"}


@pytest.fixture
def run(monkeypatch):
    """Invoke the CLI from the repository root (configs name data/... relative to it)."""
    monkeypatch.chdir(ROOT)

    def invoke(*args):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def report_of(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def small_config(tmp_path, activation="tanh", data=True) -> str:
    """A 3-4-2 network, on random data (no data section) or on the XOR file."""
    data_block = "data: {train: %s/data/xor/xor.csv, target: y}\n" % ROOT if data else ""
    text = (
        "seed: 0\n"
        + data_block
        + "model:\n"
        + f"  input: {2 if data else 3}\n"
        + "  layers:\n"
        + f"    - {{type: dense, units: 4, activation: {activation}}}\n"
        + f"    - {{type: dense, units: {1 if data else 2}, activation: linear}}\n"
        + "loss: mse\n"
        + "regularization: {l2: 0.01}\n"
    )
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return str(path)


def test_xor_passes(run):
    result = run("gradcheck", "configs/xor.yaml")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout


def test_deep_mlp_passes_with_a_full_json_report(run):
    # 300 random coordinates per tensor (the small ones whole) keep this ~1 s; the full
    # check of all ~10,700 coordinates passes too, at about 3e-8, in a few seconds
    result = run("gradcheck", "configs/deep_mlp.yaml", "--json", "--tol", str(TOL), "--max-coords", "300")
    assert result.exit_code == 0, result.output
    report = report_of(result)
    assert report["ok"] is True
    assert report["tol"] == TOL
    assert report["backprop_seconds"] > 0 and report["finite_diff_seconds"] > 0
    names = [t["name"] for t in report["tensors"]]
    assert {f"layers.{i}.input" for i in range(6)} <= set(names)
    for t in report["tensors"]:
        assert TENSOR_KEYS <= set(t), t
        assert t["ok"] is True and t["checked"] > 0, t
        assert t["rel_err"] < TOL, t


def test_a_wrong_derivative_fails_with_exit_code_1(run, tmp_path, broken_activation):
    config = small_config(tmp_path, activation=broken_activation, data=False)
    result = run("gradcheck", config, "--random")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout
    assert "gradient check failed: layers.0." in result.stderr  # the offending tensor, named

    result = run("gradcheck", config, "--random", "--json")
    assert result.exit_code == 1
    report = report_of(result)
    assert report["ok"] is False
    failed = {t["name"] for t in report["tensors"] if not t["ok"]}
    assert {"layers.0.W", "layers.0.b"} <= failed


def test_forward_differences_run(run):
    # forward differences are O(eps) accurate: a looser tolerance than central differences
    result = run("gradcheck", "configs/xor.yaml", "--method", "forward", "--tol", "1e-4", "--json")
    assert result.exit_code == 0, result.output
    report = report_of(result)
    assert report["method"] == "forward"
    assert all(t["checked"] > 0 for t in report["tensors"])


def test_max_coords_limits_the_checked_counts(run):
    result = run("gradcheck", "configs/deep_mlp.yaml", "--max-coords", "5", "--json")
    assert result.exit_code == 0, result.output
    tensors = report_of(result)["tensors"]
    assert all(0 < t["checked"] + t.get("kinks", 0) <= 5 for t in tensors)
    assert any(t["checked"] == 5 for t in tensors)


def test_random_inputs_need_no_data(run, tmp_path):
    config = small_config(tmp_path, data=False)
    result = run("gradcheck", config, "--random", "--json")
    assert result.exit_code == 0, result.output
    report = report_of(result)
    assert report["data"] == "random"
    assert all(t["rel_err"] < TOL for t in report["tensors"])


def test_a_trained_run_passes(run, tmp_path):
    """At a minimum the gradient is ~0 and finite differences agree with it to roundoff
    (abs error ~1e-16): that is a pass, not a relative error of 1e-6 over a gradient of 1e-10."""
    run_dir = tmp_path / "xor"
    trained = run("train", "configs/xor.yaml", "--run-dir", str(run_dir), "--quiet")
    assert trained.exit_code == 0, trained.output
    result = run("gradcheck", str(run_dir), "--json")
    report = report_of(result)
    assert all(t["max_abs_err"] < 1e-12 for t in report["tensors"]), report["tensors"]
    assert result.exit_code == 0, result.output
