"""A batch computed in parts on threads (netcli.nn.split) gives the whole batch's loss and gradient.

Every case of the one gradient table whose network splits by rows, at 2 and 3 parts, against
Network.loss_and_grad (which tests/test_gradients.py proves with finite differences), in
float64; and the split gradient itself against central differences on a small CNN.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradient_cases import cases, layer
from helpers import Case, case_network, case_rng, make_targets
from netcli.nn import LOSSES, Network
from netcli.nn.regularizers import make_penalties
from netcli.nn.split import SplitBatch


def batch_for(case_id: str, case: Case, rows: int):
    rng = case_rng(case_id)
    net = case_network(case, rng)
    net.set_rng(np.random.default_rng(5))     # dropout's and corruption's streams
    X = rng.normal(size=(rows, *net.input_shape))
    y = make_targets(case.targets, (rows, *net.output_shape), rng)
    return net, X, y


SPLITTABLE = []
for case_id, factory in cases():
    if case_network(factory(), np.random.default_rng(0)).splits_by_rows:
        SPLITTABLE.append(pytest.param(case_id, factory, id=case_id))


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("case_id,factory", SPLITTABLE)
def test_split_batch_gives_the_whole_batch_loss_and_gradient(case_id, factory, parts):
    net, X, y = batch_for(case_id, factory(), rows=7)     # 7 rows: parts of unequal size
    draws = net.rng_state()
    J, grad = net.loss_and_grad(net.theta, X, y)
    whole, terms, after = grad.copy(), net.last_terms, net.rng_state()
    net.grad[...] = np.nan
    net.set_rng_state(draws)   # dropout and corruption: the parts get the whole batch's draws
    with SplitBatch(net, parts) as split:
        J_split, grad_split = split.loss_and_grad(net.theta, X, y)
    assert net.rng_state() == after                        # and the streams move on as one thread's
    assert all(layer.drawn is None for r in split.replicas for layer in r.layers)
    assert grad_split is net.grad
    assert J_split == pytest.approx(J, rel=1e-12, abs=1e-14)
    assert net.last_terms == pytest.approx(terms, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad_split, whole, rtol=1e-10, atol=1e-12)


def test_the_table_has_cases_on_both_sides():
    assert len(SPLITTABLE) > 40
    assert len(SPLITTABLE) < len(cases())      # sparsity stays whole
    assert [p.id for p in SPLITTABLE if "dropout" in p.id or "corrupt" in p.id] == \
        ["layer:dropout[0]", "layer:dropout[1]", "layer:corrupt[0]", "layer:corrupt[1]"]


def small_cnn(penalties=None, activation="relu") -> Network:
    layers = [layer("conv2d", 3, 3, padding=1, activation=activation), layer("maxpool2d", 2),
              layer("flatten"), layer("dense", 4, "softmax")]
    weight, activation = make_penalties(penalties or {})
    net = Network(layers, (2, 6, 6), LOSSES.get("cross_entropy")(), weight, activation, dtype=np.float64)
    net.theta[...] = np.random.default_rng(1).normal(scale=0.5, size=net.size)
    return net


def test_split_gradient_against_finite_differences():
    net = small_cnn({"l2": 0.1}, activation="tanh")   # no kinks (ReLU zeros tie in max-pool windows)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(9, 2, 6, 6))
    y = np.eye(4)[rng.integers(0, 4, size=9)]
    with SplitBatch(net, 2) as split:
        _, grad = split.loss_and_grad(net.theta, X, y)
        grad, theta0 = grad.copy(), net.theta.copy()
        eps = 1e-6
        worst = 0.0
        for j in rng.choice(net.size, size=40, replace=False):
            theta = theta0.copy()
            theta[j] += eps
            up, _ = split.loss_and_grad(theta, X, y)
            theta[j] -= 2 * eps
            down, _ = split.loss_and_grad(theta, X, y)
            numeric = (up - down) / (2 * eps)
            worst = max(worst, abs(numeric - grad[j]) / max(1e-8, abs(numeric) + abs(grad[j])))
    assert worst < 1e-6


def test_a_batch_smaller_than_the_parts_and_one_row():
    net = small_cnn()
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(2, 2, 6, 6)), np.eye(4)[[0, 3]]
    J, grad = net.loss_and_grad(net.theta, X, y)
    whole = grad.copy()
    with SplitBatch(net, 4) as split:
        J_split, grad_split = split.loss_and_grad(net.theta, X, y)
        np.testing.assert_allclose(grad_split, whole, rtol=1e-12, atol=1e-14)
        assert J_split == pytest.approx(J, rel=1e-13)
        J1, _ = split.loss_and_grad(net.theta, X[:1], y[:1])
    assert J1 == pytest.approx(net.loss_and_grad(net.theta, X[:1], y[:1])[0], rel=1e-13)


def test_the_same_parts_give_the_same_bits():
    net = small_cnn({"l2": 0.01})
    net32 = Network(net.layers, net.input_shape, net.loss, net.weight_penalties, dtype=np.float32)
    net32.theta[...] = net.theta
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(64, 2, 6, 6)).astype(np.float32), np.eye(4)[rng.integers(0, 4, 64)]
    results = []
    for _ in range(3):
        with SplitBatch(net32, 2) as split:
            J, grad = split.loss_and_grad(net32.theta, X, y)
            results.append((J, grad.copy()))
    assert all(r[0] == results[0][0] and np.array_equal(r[1], results[0][1]) for r in results)


def test_parts_use_the_callers_error_handling():
    net = small_cnn()
    X = np.full((4, 2, 6, 6), 1e308)
    y = np.eye(4)[[0, 1, 2, 3]]
    with SplitBatch(net, 2) as split, np.errstate(all="raise"):
        with pytest.raises(FloatingPointError):
            split.loss_and_grad(net.theta, X, y)


def test_networks_whose_gradient_couples_rows_are_refused():
    layers = [layer("dense", 4, "sigmoid"), layer("dense", 2)]
    weight, activation = make_penalties({"sparsity": {"layer": 0}})
    net = Network(layers, (3,), LOSSES.get("mse")(), weight, activation, dtype=np.float64)
    assert not net.splits_by_rows
    with pytest.raises(ValueError, match="split by rows"):
        SplitBatch(net, 2)
