"""Optimizers: each lowers the loss through the normal training path; cg and lbfgs reach a
convex optimum found independently; schedules, clipping, optimizer state in checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from netcli.config import load_config
from netcli.errors import Interrupted
from netcli.optim import OPTIMIZERS
from netcli.prepare import prepare
from netcli.runs.weights import load_weights_into
from netcli.training import resume

from helpers import (StopAt, digits_config, load_weights, read_metrics, train_config, write_config,
                     write_csv)

FIRST_ORDER = [name for name in OPTIMIZERS.names() if not OPTIMIZERS.get(name).full_batch]
FULL_BATCH = [name for name in OPTIMIZERS.names() if OPTIMIZERS.get(name).full_batch]


def test_the_issue_s_optimizers_are_registered():
    assert {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"} <= set(FIRST_ORDER)
    assert {"cg", "lbfgs"} <= set(FULL_BATCH)


def _objective(net, split) -> float:
    X, y = split.take(np.arange(len(split)))
    data, penalty = net.objective(net.theta, X, y, train=False)
    return data + penalty


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss(tmp_path, name):
    options = {"type": name, "max_iter": 15} if name in FULL_BATCH else {"type": name}
    cfg = digits_config(optimizer=options, training={"epochs": 3, "batch_size": 32})
    cfg["optimizer"] = options              # the optimizer's own defaults, nothing else
    path = write_config(tmp_path, cfg)
    p = prepare(load_config(path))
    before = _objective(p.net, p.train)
    result = train_config(tmp_path, cfg)
    assert result.summary["status"] == "finished"
    load_weights_into(p.net, result.run_dir)
    after = _objective(p.net, p.train)
    assert after < 0.7 * before, (name, before, after)
    losses = [r["loss"] for r in read_metrics(result.run_dir)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] or name in FULL_BATCH and len(losses) == 1


# -- full batch: a convex problem with a known optimum ------------------------------

L2 = 0.1


@pytest.fixture(scope="module")
def logistic(tmp_path_factory):
    """L2-regularized logistic regression: data on disk and the optimum from scipy directly."""
    tmp = tmp_path_factory.mktemp("logistic")
    rng = np.random.default_rng(1)
    m, d = 200, 3
    X = rng.normal(size=(m, d))
    z = X @ np.array([1.5, -2.0, 0.5]) + 0.3
    y = (rng.random(m) < 1 / (1 + np.exp(-z))).astype(int)
    path = write_csv(tmp / "logistic.csv", ["x0", "x1", "x2", "y"],
                     [[repr(float(v)) for v in row] + [t] for row, t in zip(X, y)])

    def objective(params):
        """1/m sum [log(1 + e^z) - y z] + L2/2 ||w||^2 (the bias not penalized), and its gradient."""
        w, b = params[:d], params[d]
        z = X @ w + b
        s = 1 / (1 + np.exp(-z))
        value = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * L2 * w @ w
        grad = np.concatenate([X.T @ (s - y) / m + L2 * w, [np.mean(s - y)]])
        return value, grad

    ref = minimize(objective, np.zeros(d + 1), jac=True, method="BFGS", options={"gtol": 1e-10})
    assert np.linalg.norm(objective(ref.x)[1]) < 1e-8
    return tmp, path, ref.x, ref.fun


@pytest.mark.parametrize("name", ["cg", "lbfgs"])
def test_full_batch_reaches_the_logistic_regression_optimum(tmp_path, logistic, name):
    _, path, optimum, best = logistic
    cfg = {"seed": 0, "dtype": "float64",
           "data": {"train": str(path), "target": "y"},
           "model": {"input": 3, "layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]},
           "loss": "binary_cross_entropy", "regularization": {"l2": L2},
           "optimizer": {"type": name, "max_iter": 500, "tol": 1e-10}}
    result = train_config(tmp_path, cfg)
    w = load_weights(result.run_dir)
    assert w["layers.0.W"].shape == (1, 3) and w["layers.0.W"].dtype == np.float64
    found = np.concatenate([w["layers.0.W"].ravel(), w["layers.0.b"]])
    np.testing.assert_allclose(found, optimum, atol=1e-4)
    assert result.summary["final"]["loss"] == pytest.approx(best, abs=1e-9)
    metrics = read_metrics(result.run_dir)
    assert [r["epoch"] for r in metrics] == list(range(1, len(metrics) + 1))   # iterations as epochs
    assert all(r["lr"] is None for r in metrics)
    assert all(a["loss"] >= b["loss"] - 1e-12 for a, b in zip(metrics, metrics[1:]))


def test_full_batch_ignores_epochs_and_honours_max_iter(tmp_path):
    cfg = digits_config(optimizer={"type": "lbfgs", "max_iter": 4}, training={"epochs": 50})
    cfg["optimizer"] = {"type": "lbfgs", "max_iter": 4}
    result = train_config(tmp_path, cfg)
    assert 1 <= len(read_metrics(result.run_dir)) <= 4


# -- first-order steppers against their textbook formulas -----------------------------

def _textbook(name, lr, grads, theta):
    theta = theta.copy()
    state = {"v": 0.0, "G": 0.0, "s": 0.0, "m": 0.0, "u": 0.0}
    for t, g in enumerate(grads, 1):
        if name == "sgd":
            theta = theta - lr * g
        elif name == "momentum":
            state["v"] = 0.9 * state["v"] - lr * g
            theta = theta + state["v"]
        elif name == "nesterov":
            state["v"] = 0.9 * state["v"] - lr * g
            theta = theta + 0.9 * state["v"] - lr * g
        elif name == "adagrad":
            state["G"] = state["G"] + g * g
            theta = theta - lr * g / (np.sqrt(state["G"]) + 1e-8)
        elif name == "rmsprop":
            state["s"] = 0.9 * state["s"] + 0.1 * g * g
            theta = theta - lr * g / (np.sqrt(state["s"]) + 1e-8)
        elif name == "adam":
            state["m"] = 0.9 * state["m"] + 0.1 * g
            state["u"] = 0.999 * state["u"] + 0.001 * g * g
            m_hat, u_hat = state["m"] / (1 - 0.9 ** t), state["u"] / (1 - 0.999 ** t)
            theta = theta - lr * m_hat / (np.sqrt(u_hat) + 1e-8)
    return theta


STEPPERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
STATE_KEYS = {"sgd": {"t"}, "momentum": {"v", "t"}, "nesterov": {"v", "t"}, "adagrad": {"G", "t"},
              "rmsprop": {"s", "t"}, "adam": {"m", "v", "t"}}
PARTS = [(0, 23), (23, 24), (24, 50)]     # sizes 23, 1, 26 against pieces of 8: bounds inside pieces


def _squares(g, parts):
    return [float(np.sum(g[lo:hi].astype(np.float64) ** 2)) for lo, hi in parts]


@pytest.mark.parametrize("measured", [False, True], ids=["step", "step_and_measure"])
@pytest.mark.parametrize("name", STEPPERS)
def test_stepper_matches_its_formula(name, measured, monkeypatch):
    """Several steps over a theta of several pieces, the parts' bounds inside pieces, against
    the docstring's formula on the whole vector in plain NumPy; the norms are each part's."""
    monkeypatch.setattr("netcli.optim.first_order.PIECE", 8)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=50)
    grads = [rng.normal(size=50) for _ in range(4)]
    opt = OPTIMIZERS.get(name)()
    opt.setup(theta)
    mine = theta.copy()
    buffer = np.empty_like(theta)           # step_and_measure: one gradient buffer, as in training
    for g in grads:
        if measured:
            buffer[...] = g
            squares = opt.step_and_measure(mine, buffer, 0.05, PARTS)
            assert squares.dtype == np.float64 and squares.shape == (3,)
            np.testing.assert_allclose(squares, _squares(g, PARTS), rtol=1e-13)
        else:
            assert opt.step(mine, g.copy(), 0.05) is None
    np.testing.assert_allclose(mine, _textbook(name, 0.05, grads, theta), rtol=1e-12, atol=1e-14)
    assert opt.t == (4 if name == "adam" else 0)          # Adam's t counts steps, not pieces


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", STEPPERS)
def test_step_and_measure_is_step_plus_the_squared_norm_of_each_part(name, dtype, monkeypatch):
    """Pieces of 8 that straddle the parts' bounds update exactly as one whole-vector piece does,
    and each part's squares are summed from them."""
    rng = np.random.default_rng(1)
    theta = rng.normal(size=50).astype(dtype)
    grads = [rng.normal(size=50).astype(dtype) for _ in range(3)]
    plain, fused = OPTIMIZERS.get(name)(), OPTIMIZERS.get(name)()
    plain.setup(theta)
    fused.setup(theta)
    a, b = theta.copy(), theta.copy()
    for g in grads:
        plain.step(a, g.copy(), 0.05)
        with monkeypatch.context() as m:
            m.setattr("netcli.optim.first_order.PIECE", 8)
            squares = fused.step_and_measure(b, g.copy(), 0.05, PARTS)
        np.testing.assert_allclose(squares, _squares(g, PARTS), rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(a, b)   # the piece size changes no update
    for k in plain.state_names:
        np.testing.assert_array_equal(getattr(plain, k), getattr(fused, k))


def _strided(v):
    holder = np.full(2 * v.size, np.nan, dtype=v.dtype)
    holder[::2] = v
    return holder[::2]


@pytest.mark.parametrize("case", ["strided", "float32 theta, float64 grad"])
@pytest.mark.parametrize("name", STEPPERS)
def test_vectors_blas_cannot_update_in_place_take_the_numpy_path(name, case, monkeypatch):
    """Strided views (theta and gradient) and mixed dtypes still follow the formula."""
    monkeypatch.setattr("netcli.optim.first_order.PIECE", 8)
    rng = np.random.default_rng(2)
    theta = rng.normal(size=50)
    grads = [rng.normal(size=50) for _ in range(3)]
    if case == "strided":
        mine, feed, rtol = _strided(theta), [_strided(g) for g in grads], 1e-12
    else:
        mine, feed, rtol = theta.astype(np.float32), grads, 2e-5
    opt = OPTIMIZERS.get(name)()
    opt.setup(mine)
    for g in feed:
        squares = opt.step_and_measure(mine, g, 0.05, PARTS)
        np.testing.assert_allclose(squares, _squares(g, PARTS), rtol=1e-12)
    np.testing.assert_allclose(mine, _textbook(name, 0.05, grads, theta), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("name", STEPPERS)
def test_state_dict_round_trip_resumes_bit_exactly(name):
    rng = np.random.default_rng(3)
    theta = rng.normal(size=300_000).astype(np.float32)      # several pieces
    grads = [rng.normal(size=theta.size).astype(np.float32) for _ in range(6)]
    parts = [(0, 100_003), (100_003, 100_010), (100_010, theta.size)]
    whole = OPTIMIZERS.get(name)()
    whole.setup(theta)
    a = theta.copy()
    for g in grads:
        whole.step_and_measure(a, g, 0.01, parts)
    first = OPTIMIZERS.get(name)()
    first.setup(theta)
    b = theta.copy()
    for g in grads[:3]:
        first.step_and_measure(b, g, 0.01, parts)
    state = {k: np.array(v, copy=True) for k, v in first.state_dict().items()}
    assert set(state) == STATE_KEYS[name]                     # checkpoint keys unchanged
    second = OPTIMIZERS.get(name)()
    second.setup(b)
    second.load_state_dict(state)
    for g in grads[3:]:
        second.step_and_measure(b, g, 0.01, parts)
    np.testing.assert_array_equal(b, a)
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(second.state_dict()[k], v, err_msg=k)


def test_a_stepper_that_writes_only_its_formula_gets_pieces_and_norms(monkeypatch):
    from netcli.optim.first_order import Stepper, axpy

    class SignSGD(Stepper):
        """theta <- theta - lr sign(g)"""

        def __init__(self):
            super().__init__()
            self.seen = []

        def update(self, lr, theta, g, tmp):
            self.seen.append((theta.size, g.size, tmp.size))
            np.sign(g, out=tmp)
            axpy(-lr, tmp, theta)

    monkeypatch.setattr("netcli.optim.first_order.PIECE", 8)
    rng = np.random.default_rng(4)
    theta, g = rng.normal(size=50), rng.normal(size=50)
    opt = SignSGD()
    opt.setup(theta)
    mine = theta.copy()
    squares = opt.step_and_measure(mine, g.copy(), 0.1, PARTS)
    np.testing.assert_allclose(squares, _squares(g, PARTS), rtol=1e-13)
    np.testing.assert_allclose(mine, theta - 0.1 * np.sign(g), rtol=1e-15)
    sizes = [n for n, _, _ in opt.seen]
    assert sum(sizes) == 50 and max(sizes) <= 8
    assert all(n == m == k for n, m, k in opt.seen)


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FIRST_ORDER)
def test_a_step_is_bit_identical_whether_the_caller_s_blas_has_one_thread_or_two(name, dtype):
    """On vectors large enough for BLAS to thread (pieces of 65,536), theta, the state and the
    gradient norms come out the same, and the caller's BLAS setting is left as it was. (Two
    threads split a float64 dot's sum differently: without the driver's one-thread scope the
    norms differ in their last bits.)"""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(5)
    theta = rng.normal(size=300_000).astype(dtype)
    grads = [rng.normal(size=theta.size).astype(dtype) for _ in range(3)]
    parts = [(0, 200_001), (200_001, theta.size)]
    results = []
    for threads in (1, 2):
        opt = OPTIMIZERS.get(name)()
        opt.setup(theta)
        mine = theta.copy()
        with threadpool_limits(threads, user_api="blas"):
            squares = [opt.step_and_measure(mine, g.copy(), 0.01, parts) for g in grads]
            assert _blas_threads() == {threads}
        results.append((mine, np.array(squares), opt.state_dict()))
    (theta_1, squares_1, state_1), (theta_2, squares_2, state_2) = results
    np.testing.assert_array_equal(theta_1, theta_2)
    np.testing.assert_array_equal(squares_1, squares_2)
    np.testing.assert_allclose(squares_1, [_squares(g, parts) for g in grads], rtol=1e-5)
    assert set(state_1) == set(state_2)
    for k, v in state_1.items():
        np.testing.assert_array_equal(state_2[k], v, err_msg=k)


def test_every_optimizer_says_whether_it_is_full_batch():
    for name in OPTIMIZERS.names():
        assert isinstance(OPTIMIZERS.get(name).full_batch, bool), name
    assert not set(STEPPERS) & set(FULL_BATCH)


# -- schedules -------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,expected", [
    ("constant", lambda e, n: 1.0),
    ({"type": "step", "step_size": 2, "gamma": 0.5}, lambda e, n: 0.5 ** (e // 2)),
    ({"type": "exponential", "gamma": 0.8}, lambda e, n: 0.8 ** e),
    ({"type": "cosine"}, lambda e, n: 0.5 * (1 + math.cos(math.pi * e / n))),
    ({"type": "cosine", "min_lr": 0.01}, lambda e, n: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * e / n))),
], ids=["constant", "step", "exponential", "cosine", "cosine-min_lr"])
def test_schedule_sets_the_lr_of_each_epoch(tmp_path, schedule, expected):
    n = 5
    cfg = digits_config(optimizer={"type": "sgd", "lr": 0.1}, training={"epochs": n, "schedule": schedule})
    metrics = read_metrics(train_config(tmp_path, cfg).run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2, 3, 4, 5]
    for epoch, record in enumerate(metrics):
        assert record["lr"] == pytest.approx(0.1 * expected(epoch, n), rel=1e-12), (epoch, record)


def test_schedule_changes_the_steps_taken(tmp_path):
    base = digits_config(optimizer={"type": "sgd", "lr": 0.1}, training={"epochs": 3})
    a = load_weights(train_config(tmp_path, base, "a").run_dir)
    b = load_weights(train_config(tmp_path, digits_config(**{**base, "training": {
        "epochs": 3, "schedule": {"type": "exponential", "gamma": 0.1}}}), "b").run_dir)
    assert not np.allclose(a["layers.0.W"], b["layers.0.W"])


# -- gradient clipping ------------------------------------------------------------------

def _update_norm(tmp_path, clip, name):
    cfg = digits_config(dtype="float64", optimizer={"type": "sgd", "lr": 1.0},
                        training={"epochs": 1, "batch_size": "full", "clip_grad_norm": clip})
    path = write_config(tmp_path, cfg, f"{name}-start")
    start = prepare(load_config(path)).net.params
    end = load_weights(train_config(tmp_path, cfg, name).run_dir)
    return math.sqrt(sum(float(((end[k] - v) ** 2).sum()) for k, v in start.items()))


def test_clip_grad_norm_limits_the_update(tmp_path):
    unclipped = _update_norm(tmp_path, None, "free")
    assert unclipped > 0.01
    clipped = _update_norm(tmp_path, 1e-3, "clipped")
    assert clipped == pytest.approx(1e-3, rel=1e-6)     # lr 1 x the clipped gradient's norm


def test_clip_does_nothing_to_small_gradients(tmp_path):
    assert _update_norm(tmp_path, 1e6, "huge") == pytest.approx(_update_norm(tmp_path, None, "none"),
                                                               rel=1e-12)


# -- optimizer state -----------------------------------------------------------------

@pytest.mark.parametrize("name", FIRST_ORDER)
def test_optimizer_state_is_saved_in_the_checkpoint(tmp_path, name):
    cfg = digits_config(optimizer={"type": name, "lr": 0.01})
    result = train_config(tmp_path, cfg)
    with np.load(result.run_dir / "checkpoint.npz", allow_pickle=False) as npz:
        ck = {k: npz[k] for k in npz.files}
    state_names = OPTIMIZERS.get(name).state_names
    if name in ("momentum", "nesterov"):
        assert "v" in state_names
    if name == "adam":
        assert set(state_names) == {"m", "v"}
        assert int(ck["opt.t"]) == result.summary["steps"]
    for s in state_names:
        assert ck[f"opt.{s}"].shape == ck["theta"].shape
        assert np.any(ck[f"opt.{s}"] != 0), s
    assert int(ck["epoch"]) == 2


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_resume_restores_the_optimizer_state(tmp_path, name):
    cfg = digits_config(optimizer={"type": name, "lr": 0.01}, training={"epochs": 4})
    whole = load_weights(train_config(tmp_path, cfg, "whole").run_dir)
    with pytest.raises(Interrupted):
        train_config(tmp_path, cfg, "cut", reporter=StopAt(3))
    resume(tmp_path / "cut")
    resumed = load_weights(tmp_path / "cut")
    for k in whole:
        if k.startswith("layers."):
            np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)
