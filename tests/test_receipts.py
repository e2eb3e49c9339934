"""receipt.json in every run, `netcli train --check RUN`, and `netcli diff RUN_A RUN_B`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy

import netcli
from netcli.diff import close, diff_runs, metrics_parting
from netcli.errors import NetcliError
from netcli.runs.receipt import read_receipt

from helpers import (DIGITS_TEST, DIGITS_TRAIN, StopAt, assert_user_error, digits_config, invoke, load_weights,
                     train_config, write_config)

DELETE_VAL = {"validation_split": 0.0}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def theta_of(run_dir: Path) -> np.ndarray:
    """The flat theta weights.npz holds, in the network's own order."""
    from netcli.api import load_run
    return load_run(run_dir).net.theta


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("receipts")
    result = train_config(tmp, digits_config(training={"epochs": 2}), "run")
    return tmp, result.run_dir


# -- the receipt ---------------------------------------------------------------------------

def test_receipt_fields(trained):
    _, run = trained
    r = read_receipt(run)
    assert r["status"] == "finished" and r["seed"] == 0
    assert r["data"]["train"] == {"path": str(DIGITS_TRAIN), "sha256": sha256(DIGITS_TRAIN),
                                  "bytes": DIGITS_TRAIN.stat().st_size}
    assert r["data"]["test"]["sha256"] == sha256(DIGITS_TEST)
    assert "val" not in r["data"]                                # validation came from a split of train
    assert r["theta"]["sha256"] == hashlib.sha256(theta_of(run).tobytes()).hexdigest()
    assert r["theta"]["dtype"] == "float32" and r["theta"]["size"] == theta_of(run).size
    assert r["config_sha256"] == sha256(run / "config.yaml")
    assert r["software"] == {"netcli": netcli.__version__, "python": r["software"]["python"],
                             "numpy": np.__version__, "scipy": scipy.__version__}
    pools = r["blas"]["threadpools"]
    assert pools and all(isinstance(p["num_threads"], int) and p["num_threads"] >= 1 for p in pools)
    assert any(p["user_api"] == "blas" for p in pools)


def test_receipt_hashes_what_stdin_gave(tmp_path):
    raw = DIGITS_TRAIN.read_bytes()
    config = write_config(tmp_path, digits_config(data={"train": "-", "test": None, "validation_split": 0.0},
                                                  training={"epochs": 1}))
    result = invoke("train", config, "--run-dir", tmp_path / "run", "-q", input=raw)
    assert result.exit_code == 0, result.stderr
    entry = read_receipt(tmp_path / "run")["data"]["train"]
    assert entry["path"] == "-" and entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert entry["bytes"] == len(raw)


def test_an_interrupted_run_has_a_receipt_of_its_last_good_epoch(tmp_path):
    from netcli.errors import Interrupted
    from netcli.training import train
    config = write_config(tmp_path, digits_config(training={"epochs": 4}))
    with pytest.raises(Interrupted):
        train(config, run_dir=tmp_path / "run", reporter=StopAt(3))
    r = read_receipt(tmp_path / "run")
    assert r["status"] == "interrupted"
    assert r["theta"]["sha256"] == hashlib.sha256(theta_of(tmp_path / "run").tobytes()).hexdigest()
    assert_user_error(invoke("train", "--check", tmp_path / "run"), 2, "interrupted", "--resume")


# -- train --check ---------------------------------------------------------------------------

def test_check_passes_on_an_untouched_run(trained):
    _, run = trained
    result = invoke("train", "--check", run)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{run}: reproduced: theta sha256 {read_receipt(run)['theta']['sha256']}\n"
    assert "retraining" in result.stderr
    as_json = json.loads(invoke("train", "--check", run, "--json", "-q").stdout)
    assert as_json["match"] is True and as_json["receipt"] == as_json["retrained"] == as_json["weights"]


def test_check_fails_when_the_weights_were_changed(trained):
    tmp, run = trained
    copy = tmp / "tampered-weights"
    shutil.copytree(run, copy)
    arrays = load_weights(copy)
    arrays["layers.0.W"][0, 0] += 1e-3
    np.savez(copy / "weights.npz", **arrays)
    recorded = read_receipt(copy)["theta"]["sha256"]
    now = hashlib.sha256(theta_of(copy).tobytes()).hexdigest()
    assert now != recorded
    err = assert_user_error(invoke("train", "--check", copy, "-q"), 1, recorded, now, "weights were changed")
    assert "retraining gave" not in err          # retraining itself still reproduces the receipt


def test_check_fails_when_the_receipt_hash_differs(trained):
    tmp, run = trained
    copy = tmp / "tampered-receipt"
    shutil.copytree(run, copy)
    receipt = json.loads((copy / "receipt.json").read_text())
    real = receipt["theta"]["sha256"]
    receipt["theta"]["sha256"] = "0" * 64
    (copy / "receipt.json").write_text(json.dumps(receipt))
    err = assert_user_error(invoke("train", "--check", copy, "-q"), 1, "0" * 64, f"retraining gave theta sha256 {real}")
    assert "does not reproduce" in err


def test_check_of_a_run_without_a_receipt(trained):
    tmp, run = trained
    copy = tmp / "old-run"
    shutil.copytree(run, copy)
    (copy / "receipt.json").unlink()
    assert_user_error(invoke("train", "--check", copy), 2, "has no receipt.json", "before netcli wrote receipts")
    with pytest.raises(NetcliError, match="has no receipt.json"):
        read_receipt(copy)


def test_check_takes_no_config(trained, tmp_path):
    _, run = trained
    result = invoke("train", write_config(tmp_path, digits_config()), "--check", run)
    assert result.exit_code == 2 and "--check RUN retrains RUN's own config" in result.stderr


# -- diff ------------------------------------------------------------------------------------

def test_diff_of_a_run_with_itself_finds_nothing(trained):
    _, run = trained
    d = diff_runs(run, run)
    assert d["config"] == [] and d["data"]["differ"] == [] and set(d["data"]["same"]) == {"train", "test"}
    assert d["metrics"]["parted"] is None and d["metrics"]["epochs"] == [2, 2]


def test_diff_names_a_changed_key_a_changed_file_and_where_metrics_part(tmp_path):
    # B: another copy of the training data (one cell changed) and a step schedule that gives the
    # same lr for the first two epochs and another from the third: the metrics part at epoch 3
    lines = DIGITS_TRAIN.read_text().splitlines()
    cells = lines[1].split(",")
    cells[0] = str(float(cells[0]) + 1)
    changed = tmp_path / "train-changed.csv"
    changed.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    same_data = tmp_path / "train-copy.csv"
    shutil.copy(DIGITS_TRAIN, same_data)
    base = digits_config(data=DELETE_VAL, training={"epochs": 4, "schedule": {"type": "step", "step_size": 2,
                                                                             "gamma": 0.5}})
    a = train_config(tmp_path, base, "a").run_dir
    b = train_config(tmp_path, digits_config(data={**DELETE_VAL, "train": str(same_data)},
                                             training={"epochs": 4, "schedule": {"type": "step", "step_size": 2,
                                                                                "gamma": 0.1}}), "b").run_dir
    c = train_config(tmp_path, digits_config(data={**DELETE_VAL, "train": str(changed)},
                                             training={"epochs": 4, "schedule": {"type": "step", "step_size": 2,
                                                                                "gamma": 0.5}}), "c").run_dir
    d = json.loads(invoke("diff", a, b, "--json").stdout)
    assert {x["key"]: (x["a"], x["b"]) for x in d["config"]} == {
        "data.train": (str(DIGITS_TRAIN), str(same_data)), "training.schedule.gamma": (0.5, 0.1)}
    assert d["data"]["differ"] == [] and "train" in d["data"]["same"]      # another path, the same bytes
    parted = d["metrics"]["parted"]
    assert parted["epoch"] == 3
    assert {m["metric"] for m in parted["metrics"]} >= {"lr", "loss"}
    final = d["metrics"]["final"]
    assert final["lr"] == pytest.approx([0.01 * 0.5, 0.01 * 0.1])
    # c: the same settings as a, on data whose bytes differ: found by hash, parting at epoch 1
    d = diff_runs(a, c)
    assert [x["key"] for x in d["config"]] == ["data.train"]
    (entry,) = d["data"]["differ"]
    assert entry["role"] == "train"
    assert entry["a"]["sha256"] == sha256(DIGITS_TRAIN) and entry["b"]["sha256"] == sha256(changed)
    assert d["metrics"]["parted"]["epoch"] == 1


def test_diff_prints_a_readable_report(tmp_path):
    a = train_config(tmp_path, digits_config(training={"epochs": 2}), "a").run_dir
    b = train_config(tmp_path, digits_config(training={"epochs": 3}), "b").run_dir
    result = invoke("diff", a, b)
    assert result.exit_code == 0, result.stderr
    assert "training.epochs" in result.stdout and "data the same (sha256): train, test" in result.stdout
    # a constant schedule and the same seed: the first two epochs agree, then only b goes on
    assert "only b has epoch 3" in result.stdout


def test_diff_without_receipts_still_compares_config_and_metrics(trained, tmp_path):
    tmp, run = trained
    copy = tmp_path / "old"
    shutil.copytree(run, copy)
    (copy / "receipt.json").unlink()
    d = diff_runs(run, copy)
    assert d["receipts"] == [True, False] and d["data"]["differ"] == []
    assert d["data"]["unknown"][0]["b"] == "no receipt"
    assert d["metrics"]["parted"] is None


@pytest.mark.parametrize("text, says", [
    ("", "config.yaml: is empty; the run's config is damaged"),
    ("- 1\n- 2\n", "config.yaml:1: the config must be a mapping of keys"),
    ("seed: [1\n", "config.yaml:2: malformed YAML"),
])
def test_diff_of_a_run_whose_config_is_damaged_names_the_file(trained, tmp_path, text, says):
    """Read as every config is (config.load_mapping): the message names the file and its line."""
    _, run = trained
    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    (copy / "config.yaml").write_text(text)
    assert_user_error(invoke("diff", run, copy), 2, str(copy / "config.yaml"), says)


def test_metrics_parting_and_tolerance():
    a = [{"epoch": 1, "loss": 1.0, "seconds": 0.1}, {"epoch": 2, "loss": 0.5}, {"epoch": 3, "loss": 0.25}]
    b = [{"epoch": 1, "loss": 1.0 + 1e-9, "seconds": 9.0}, {"epoch": 2, "loss": 0.5}, {"epoch": 3, "loss": 0.3}]
    m = metrics_parting(a, b)
    assert m["parted"] == {"epoch": 3, "metrics": [{"metric": "loss", "a": 0.25, "b": 0.3}]}
    assert m["final"] == {"loss": [0.25, 0.3]}
    assert metrics_parting(a, b, rtol=0.5)["parted"] is None
    assert metrics_parting(a, a[:2])["parted"] == {"epoch": 3, "metrics": [], "only_in": "a"}
    assert close(float("nan"), float("nan")) and not close(float("nan"), 1.0) and not close(None, 1.0)
