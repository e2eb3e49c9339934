"""Helpers shared by the config, data, optimizer, training and CLI tests.

Configs written by tests use absolute paths to the bundled data, so a test can run
from any working directory; every run goes under the test's tmp_path.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner, Result

from netcli.cli import cli
from netcli.log import Reporter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DIGITS_TRAIN = DATA / "digits" / "train.csv"
DIGITS_TEST = DATA / "digits" / "test.csv"
XOR = DATA / "xor" / "xor.csv"
REGRESSION_TRAIN = DATA / "regression" / "train.csv"
REGRESSION_TEST = DATA / "regression" / "test.csv"

DELETE = object()  # merge(cfg, {"data": {"test": DELETE}}) removes data.test


def merge(base: dict, updates: dict) -> dict:
    """A deep copy of base with updates merged in (dicts merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in updates.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def digits_config(**sections) -> dict:
    """A small, fast digits classifier (64-16-10, two epochs); sections are merged in."""
    base = {
        "seed": 0,
        "data": {"train": str(DIGITS_TRAIN), "test": str(DIGITS_TEST), "target": "label",
                 "validation_split": 0.1, "normalize": "standard"},
        "model": {"input": 64, "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]},
        "loss": "cross_entropy",
        "regularization": {"l2": 1.0e-4},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 2, "batch_size": 64},
    }
    return merge(base, sections)


def regression_config(**sections) -> dict:
    """A small regression net (8-8-1) on the bundled regression set."""
    base = {
        "seed": 0,
        "data": {"train": str(REGRESSION_TRAIN), "test": str(REGRESSION_TEST), "target": "y",
                 "validation_split": 0.2, "normalize": "standard"},
        "model": {"input": 8, "layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                         {"type": "dense", "units": 1}]},
        "loss": "mse",
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 2, "batch_size": 64},
    }
    return merge(base, sections)


def write_config(directory: Path, config: dict | str, name: str = "config") -> Path:
    """config (a dict, or YAML text) -> directory/name.yaml."""
    path = Path(directory) / f"{name}.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def train_config(tmp_path: Path, config: dict, name: str = "run", **kwargs):
    """Write config and train it into tmp_path/name (quietly) -> TrainResult."""
    from netcli.training import train
    path = write_config(tmp_path, config, f"{name}-config")
    return train(path, run_dir=tmp_path / name, **kwargs)


def invoke(*args, input=None) -> Result:
    """Run the CLI in-process; stdout and stderr are kept apart (result.stdout, result.stderr)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_user_error(result: Result, code: int = 2, *fragments: str) -> str:
    """An expected failure: the exit code, `Error: ...` on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("Error"), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_seconds(text: str) -> str:
    """metrics.jsonl text with the wall-time field blanked out."""
    return re.sub(r'"seconds": [^,}]+', '"seconds": _', text)


def load_weights(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(run_dir) / "weights.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A numeric CSV with a header -> (features, last column)."""
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    return a[:, :-1], a[:, -1]


def write_csv(path: Path, header: list[str], rows) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of text that contains needle."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the text")


def blobs_csv(path: Path, labels=("dog", "cat", "eel"), per_class: int = 40, seed: int = 0):
    """Well separated 2-D clusters with string labels -> (path, X, labels per row)."""
    rng = np.random.default_rng(seed)
    centers = {lab: 4.0 * np.array([np.cos(a), np.sin(a)])
               for lab, a in zip(labels, np.linspace(0, 2 * np.pi, len(labels), endpoint=False))}
    X, y = [], []
    for lab in labels:
        X.append(centers[lab] + 0.3 * rng.normal(size=(per_class, 2)))
        y += [lab] * per_class
    X = np.concatenate(X)
    order = rng.permutation(len(X))
    X, y = X[order], np.array(y)[order]
    write_csv(path, ["a", "b", "animal"], [[repr(float(r[0])), repr(float(r[1])), t] for r, t in zip(X, y)])
    return Path(path), X, y


class StopAt(Reporter):
    """A quiet reporter that interrupts training, as Ctrl-C would, while epoch `at` is logged;
    the checkpoint then holds epoch at - 1, the last complete one."""

    def __init__(self, at: int):
        super().__init__(quiet=True)
        self.at = at

    def epoch(self, record):
        if record["epoch"] == self.at:
            raise KeyboardInterrupt
