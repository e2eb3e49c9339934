"""Helpers shared by the tests.

- configs, runs and the CLI: configs written by tests use absolute paths to the bundled
  data, so a test can run from any working directory; every run goes under the test's tmp_path;
- the layer harness (`check_case`, `check_gradients`, `assert_gradients_pass`): every gradient
  test builds a real netcli Network and checks it with netcli.gradcheck.check_network; tests
  that drive layers by hand build theirs with `layer_network`, on the same Network.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner, Result

from netcli.cli import cli
from netcli.gradcheck import SPLIT_CHECK, Report, TensorCheck, check_array, check_network
from netcli.log import Reporter
from netcli.nn import LOSSES, Network
from netcli.nn.regularizers import make_penalties

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


# -- the layer harness: a gradient case -> a real Network -> check_network ---------------------
#
# Chainer's habits (STYLE.md): everything in float64; the network's output contracted with a
# random upstream gradient rather than summed (the default data term, mse against N(0, 1)
# targets, has dJ/dy = (y - targets) / N: random), so a transposed or mis-summed gradient shows;
# and a layer whose forward modifies its input fails.

GRAD_EPS = 1e-6
GRAD_TOL = 1e-7


@dataclass
class Case:
    """One gradient case: fresh components, and how they are trained.

    layers: a short stack, the component under test and what it needs (dense_tied decodes with
      an earlier dense layer's weights; an activation rides on a dense layer; sparsity watches
      a sigmoid layer);
    input_shape: per example, without the batch axis; batch: the batch size N;
    loss, targets: the data term and the kind of targets drawn for it (see make_targets);
    penalties: as `regularization:` in a config, e.g. {"l2": 0.3, "sparsity": {"layer": 0}};
    kinks: whether a perturbation may cross a kink (ReLU at 0, a new maxout or max-pool
      winner); such coordinates are counted and left out. False: none may occur.
    """

    layers: list
    input_shape: tuple
    batch: int = 3
    loss: str = "mse"
    targets: str = "real"
    penalties: dict = field(default_factory=dict)
    kinks: bool = False


@dataclass
class GradientCheck:
    """What the harness compared with finite differences."""

    report: Report                  # check_network: every parameter tensor, every layer's input
    training: TensorCheck | None    # all of theta, against the gradient loss_and_grad gives the
                                    # optimizers (None: the network has no parameters)

    @property
    def tensors(self) -> list[TensorCheck]:
        return [*self.report.tensors, *([self.training] if self.training else [])]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tensors)


def case_rng(case_id: str) -> np.random.Generator:
    """A generator of its own for each case, so adding a case changes no other case's numbers."""
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def make_targets(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """real: N(0, 1); one_hot: one 1 per row; soft: nonnegative rows of any sum; binary: 0/1."""
    if kind == "real":
        return rng.normal(size=shape)
    if kind == "one_hot":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "soft":
        return rng.uniform(0.0, 1.0, size=shape)
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    raise ValueError(f"unknown target kind {kind!r}")


def case_network(case: Case, rng: np.random.Generator, dtype=np.float64) -> Network:
    """The case's Network (float64 unless told); every parameter N(0, 0.5^2), biases too, so
    nothing starts at a special point."""
    weight_penalties, activation_penalties = make_penalties(case.penalties)
    net = Network(case.layers, case.input_shape, LOSSES.get(case.loss)(), weight_penalties,
                  activation_penalties, dtype=dtype)
    net.theta[...] = rng.normal(scale=0.5, size=net.size)
    return net


def layer_network(case: Case, rng: np.random.Generator, dtype=np.float64) -> Network:
    """case_network for tests that call the layers' forward and backward themselves: the real
    Network's flat theta and grad (views per layer), the grad filled with NaN so that entries a
    backward leaves unassigned show."""
    net = case_network(case, rng, dtype)
    net.grad[...] = np.nan
    return net


def check_case(case_id: str, case: Case) -> tuple[Network, GradientCheck]:
    """Build the case's network, draw a batch (inputs N(0, 1), targets of the case's kind)
    from the case's own generator, and run the harness on it."""
    rng = case_rng(case_id)
    net = case_network(case, rng)
    X = rng.normal(size=(case.batch, *net.input_shape))
    y = make_targets(case.targets, (case.batch, *net.output_shape), rng)
    return net, check_gradients(net, X, y)


def check_gradients(net: Network, X: np.ndarray, y: np.ndarray, *, eps: float = GRAD_EPS,
                    tol: float = GRAD_TOL, seed: int = 0) -> GradientCheck:
    """The layer harness: a float64 network and a batch -> the finite-difference comparisons.

    Asserts on the way, since these are bugs at any tolerance:
    - every layer's forward leaves its input x as it found it, and its backward leaves dy and
      the x its forward saw;
    - loss_and_grad leaves X, y and theta as they were, returns J as a Python float, and
      assigns every entry of the gradient (it is filled with NaN first).
    Compares with central differences of the whole objective (data term and penalties;
    dropout and corruption reseeded before every evaluation):
    - netcli.gradcheck.check_network: every parameter tensor and every layer's input gradient;
    - the gradient loss_and_grad hands the optimizers, all of theta: training may take another
      path than the checker's (the first layer computes no dx there).
    """
    if net.dtype != np.float64:
        raise TypeError(f"the harness runs in float64; the network is {net.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    before = {"X": X.copy(), "y": y.copy(), "theta": net.theta.copy()}
    net.set_rng(np.random.default_rng(seed))
    states = net.rng_state()

    def objective() -> float:
        net.set_rng_state(states)
        return sum(net.objective(net.theta, X, y))

    net.set_rng_state(states)
    net.grad[...] = np.nan
    with inputs_watched(net.layers):
        J, grad = net.loss_and_grad(net.theta, X, y)
    assert isinstance(J, float), f"loss_and_grad returned J as {type(J).__name__}"
    for name, g in net.grads.items():
        assert np.all(np.isfinite(g)), f"{name}: backward left entries of its gradient unassigned (NaN)"
    for name, array in (("X", X), ("y", y), ("theta", net.theta)):
        assert np.array_equal(array, before[name]), f"loss_and_grad modified {name}"
    training = None
    if net.size:
        training = check_array("theta (loss_and_grad)", net.theta, grad.copy(), objective, eps=eps,
                               tol=tol, patterns=net.kink_patterns)
    report = check_network(net, X, y, eps=eps, tol=tol, seed=seed)
    return GradientCheck(report, training)


def assert_gradients_pass(net: Network, result: GradientCheck, *, kinks: bool = False,
                          tol: float = GRAD_TOL) -> None:
    """Every parameter tensor and every layer's input was checked, on at least one coordinate,
    and agrees with finite differences to a relative error under tol; kinks=False: no
    coordinate straddled a kink."""
    expected = set(net.params) | {f"layers.{i}.input" for i in range(len(net.layers))}
    if net.splits_by_rows and net.size and len(net.inputs[0]) > 1:   # the batch way trains this net too
        expected.add(SPLIT_CHECK)
    assert {t.name for t in result.report.tensors} == expected
    for t in result.tensors:
        assert t.checked > 0, f"{t.name}: no coordinate checked ({t.kinks} on kinks)"
        assert kinks or t.kinks == 0, f"{t.name}: {t.kinks} coordinates straddle a kink"
        assert t.rel_err < tol, (f"{t.name}: relative error {t.rel_err:.3g} >= {tol:g} "
                                 f"(worst at {t.worst_index}, abs error {t.max_abs_err:.3g})")
    assert result.ok and result.report.ok


@contextlib.contextmanager
def inputs_watched(layers):
    """Within the block, each layer's forward asserts that it left its input as it found it, and
    its backward that it left dy, and the input its forward saw, as they were."""
    for i, layer in enumerate(layers):
        _watch(f"layer {i} ({layer.describe()})", layer)
    try:
        yield
    finally:
        for layer in layers:   # drop the instance attributes: the class's methods again
            del layer.forward, layer.backward


def _watch(who: str, layer) -> None:
    forward, backward = layer.forward, layer.backward
    seen = {}

    def watched_forward(x, train):
        seen["x"], seen["x0"] = x, x.copy()
        y = forward(x, train)
        assert np.array_equal(x, seen["x0"]), f"{who}: forward modified its input x in place"
        return y

    def watched_backward(dy, need_dx=True):
        dy0 = dy.copy()
        dx = backward(dy, need_dx=need_dx)
        assert np.array_equal(dy, dy0), f"{who}: backward modified dy in place"
        assert np.array_equal(seen["x"], seen["x0"]), f"{who}: backward modified its forward's input x"
        return dx

    layer.forward, layer.backward = watched_forward, watched_backward


def kill_worker_once(task, record):
    """The test hook: the first attempt of trial 1 kills its worker process in epoch 2."""
    marker = Path(task["run_dir"]).parent / "killed-once"
    if task["index"] == 1 and record["epoch"] == 2 and not marker.exists():
        marker.touch()
        os._exit(1)


def run_killing_one_worker(sweeps, plan, client, trials: int):
    """sweeps.run(plan) on the Dask client with kill_worker_once as the hook (sent by value, as
    the workers cannot import this module); checks that the kill happened and that every trial
    finished all the same, trial 1 carrying on from its checkpoint. -> the run's result."""
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        result = sweeps.run(plan, client=client, hook=kill_worker_once)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (Path(plan.path) / "killed-once").exists()
    assert [r["status"] for r in result.records] == ["finished"] * trials
    assert result.records[1]["resumed_from_epoch"] >= 1
    return result
