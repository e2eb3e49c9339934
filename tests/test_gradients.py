"""Every registered component against finite differences, through the one checker.

Each case of tests/gradient_cases.py is checked in float64 with central
differences (eps 1e-6) by netcli.gradcheck.check_array, contracted with a random
upstream gradient (Chainer's habit: a plain sum hides transposed gradients).
Then whole networks through netcli.gradcheck.check_network, and the properties
of loss_and_grad that the optimizers rely on (dtypes, batch sizes, minibatches).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from gradient_cases import (ACTIVATION_CASES, LAYER_CASES, LOSS_CASES, REGULARIZER_CASES, TABLES, cases,
                            make_targets)
from netcli.gradcheck import check_array, check_network
from netcli.nn import ACTIVATIONS, LAYERS, LOSSES, Network
from netcli.nn.regularizers import make_penalties

EPS = 1e-6
TOL = 1e-7
N = 3  # batch size of the component checks


def rng_for(case_id: str) -> np.random.Generator:
    """A generator of its own for each case, so adding a case changes no other case's numbers."""
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def away_from_zero(z: np.ndarray, margin: float = 1e-2) -> np.ndarray:
    """Push z off the kink at 0 (ReLU, leaky ReLU): |z| >= margin > 1e-3."""
    return z + np.where(z >= 0, margin, -margin)


def assert_passes(check, size: int) -> None:
    assert check.checked > 0, f"{check.name}: no coordinate checked ({check.kinks} on kinks)"
    assert check.checked + check.kinks == size
    assert check.rel_err < TOL, (f"{check.name}: relative error {check.rel_err:.3g} >= {TOL:g} "
                                 f"(worst at {check.worst_index}, abs error {check.max_abs_err:.3g})")
    assert check.ok


# -- harnesses: one component, float64, no Network -------------------------------------

def attach_parameters(layers, in_shape, rng):
    """Build the layers in turn and lay their parameters out in one flat theta / grad, as
    Network does; returns the output shape and {'<i>.<name>': (param view, grad view)}.

    Parameters get random values (biases too, so nothing starts at a special point);
    the gradient is filled with NaN so a backward that does not assign every entry shows.
    """
    shape = tuple(in_shape)
    specs = []
    for i, layer in enumerate(layers):
        shape = tuple(layer.build(shape))
        specs += [(i, name, spec) for name, spec in layer.param_specs().items()]
    sizes = [int(np.prod(spec.shape)) for _, _, spec in specs]
    theta = np.empty(sum(sizes))
    grad = np.full(theta.size, np.nan)
    tensors, offset = {}, 0
    for (i, name, spec), size in zip(specs, sizes):
        view = theta[offset:offset + size].reshape(spec.shape)
        gview = grad[offset:offset + size].reshape(spec.shape)
        setattr(layers[i], name, view)
        setattr(layers[i], "d" + name, gview)
        tensors[f"{i}.{name}"] = (view, gview)
        offset += size
    theta[...] = rng.normal(scale=0.5, size=theta.size)
    return shape, tensors


def as_stack(built):
    """A case's (layer or [layers], shape) -> ([layers], shape)."""
    layers, in_shape = built
    return (list(layers) if isinstance(layers, (list, tuple)) else [layers]), tuple(in_shape)


def stack_forward(layers, x):
    for layer in layers:
        layer.rng = np.random.default_rng(0)  # layers that draw (dropout) see the same draw each time
        x = layer.forward(x, True)
    return x


def stack_backward(layers, dy, need_dx=True):
    for i in range(len(layers) - 1, -1, -1):
        dy = layers[i].backward(dy, need_dx=need_dx or i > 0)
    for layer in layers:  # the network's protocol: tied layers add into their source's gradient
        finish = getattr(layer, "finish_backward", None)
        if finish is not None:
            finish()
    return dy


def stack_patterns(layers):
    if all(layer.kink_pattern() is None for layer in layers):
        return None
    return lambda: [np.array(p) for p in (layer.kink_pattern() for layer in layers) if p is not None]


def check_layer(case_id, factory):
    """objective = sum(r * forward(x)); analytic from backward(r)."""
    rng = rng_for(case_id)
    layers, in_shape = as_stack(factory())
    out_shape, tensors = attach_parameters(layers, in_shape, rng)
    x = rng.normal(size=(N, *in_shape))
    r = rng.normal(size=(N, *out_shape))
    evaluate = lambda: float(np.sum(r * stack_forward(layers, x)))  # noqa: E731
    evaluate()
    dx = stack_backward(layers, r)
    assert dx.shape == x.shape
    analytic = {name: g.copy() for name, (_, g) in tensors.items()}
    for name, g in analytic.items():
        assert np.all(np.isfinite(g)), f"{case_id}: backward left entries of {name}'s gradient unassigned"
    patterns = stack_patterns(layers)
    checks = [(check_array(name, p, analytic[name], evaluate, eps=EPS, tol=TOL, patterns=patterns), p.size)
              for name, (p, _) in tensors.items()]
    checks.append((check_array("x", x, dx, evaluate, eps=EPS, tol=TOL, patterns=patterns), x.size))
    return layers, x, r, tensors, analytic, checks


def check_activation(act, shape, rng):
    """objective = sum(r * f(z)); analytic = backward(z, f(z), r)."""
    z = away_from_zero(rng.normal(size=shape))
    r = rng.normal(size=shape)
    evaluate = lambda: float(np.sum(r * act.forward(z)))  # noqa: E731
    a = act.forward(z)
    dz = act.backward(z, a, r)
    assert dz.shape == z.shape
    patterns = (lambda: [np.array(act.kink_pattern(z))]) if act.kink_pattern(z) is not None else None
    return check_array("z", z, dz, evaluate, eps=EPS, tol=TOL, patterns=patterns)


# -- the components, case by case ------------------------------------------------------

@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(LAYER_CASES)])
def test_layer_gradients(case_id, factory):
    layers, x, r, tensors, analytic, checks = check_layer(case_id, factory)
    assert len(checks) == len(analytic) + 1  # every parameter tensor and dx
    for check, size in checks:
        assert_passes(check, size)
    # need_dx=False (the first layer) skips dx but fills the same parameter gradients
    for _, g in tensors.values():
        g[...] = np.nan
    stack_forward(layers, x)
    assert stack_backward(layers, r, need_dx=False) is None
    for name, (_, g) in tensors.items():
        np.testing.assert_array_equal(g, analytic[name], err_msg=name)


@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(ACTIVATION_CASES)])
def test_activation_gradients(case_id, factory):
    act, shape = factory()
    check = check_activation(act, shape, rng_for(case_id))
    assert_passes(check, int(np.prod(shape)))


@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(LOSS_CASES)])
def test_loss_gradients(case_id, factory):
    """d loss / d out, where out is what the loss receives (logits for fused activations)."""
    rng = rng_for(case_id)
    loss, shape, kind = factory()
    out = rng.normal(size=shape)
    y = make_targets(kind, shape, rng)
    value = loss.forward(out, y)
    assert isinstance(value, float)
    g = loss.backward()
    assert g.shape == out.shape
    check = check_array("out", out, g, lambda: loss.forward(out, y), eps=EPS, tol=TOL)
    assert_passes(check, out.size)


@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(REGULARIZER_CASES)])
def test_regularizer_gradients(case_id, factory):
    """objective = s * penalty; weight penalties add their gradient, activation penalties return it."""
    rng = rng_for(case_id)
    penalty, shape = factory()
    s = rng.uniform(0.5, 2.0)  # upstream factor
    if hasattr(penalty, "grad"):  # on a layer's activations, which lie in (0, 1)
        w = rng.uniform(0.05, 0.95, size=shape)
        analytic = s * penalty.grad(w)
    else:  # on the weight block; add_grad adds to what is there
        w = away_from_zero(rng.normal(size=shape), 0.05)  # l1 has a kink at 0
        before = rng.normal(size=shape)
        gw = before.copy()
        penalty.add_grad(w, gw)
        analytic = s * (gw - before)
    assert analytic.shape == w.shape
    check = check_array("w", w, analytic, lambda: s * penalty.value(w), eps=EPS, tol=TOL)
    assert_passes(check, w.size)


# -- the table covers the registries ---------------------------------------------------

@pytest.mark.parametrize("kind", list(TABLES))
def test_every_registered_component_has_a_gradient_case(kind):
    registry, table = TABLES[kind]
    missing = sorted(set(registry.names()) - set(table))
    assert not missing, (f"{kind}s registered without a gradient case: {', '.join(missing)}; "
                         f"add an entry to tests/gradient_cases.py")
    stale = sorted(set(table) - set(registry.names()))
    assert not stale, f"gradient cases for {kind}s that are not registered: {', '.join(stale)}"


# -- inputs are left untouched -------------------------------------------------------------

@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(LAYER_CASES)])
def test_layer_leaves_its_inputs_untouched(case_id, factory):
    rng = rng_for(case_id)
    layers, in_shape = as_stack(factory())
    shapes = [in_shape]
    for layer in layers:  # each layer alone, so a stack cannot hide one layer's habit
        out_shape, _ = attach_parameters([layer], shapes[-1], rng)
        shapes.append(out_shape)
    for i, layer in enumerate(layers):
        x = rng.normal(size=(N, *shapes[i]))
        dy = rng.normal(size=(N, *shapes[i + 1]))
        x0, dy0 = x.copy(), dy.copy()
        stack_forward([layer], x)
        np.testing.assert_array_equal(x, x0, err_msg=f"{case_id}: layer {i}'s forward modified x in place")
        layer.backward(dy)
        np.testing.assert_array_equal(dy, dy0, err_msg=f"{case_id}: layer {i}'s backward modified dy in place")
        np.testing.assert_array_equal(x, x0, err_msg=f"{case_id}: layer {i}'s backward modified x in place")


@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(ACTIVATION_CASES)])
def test_activation_leaves_its_inputs_untouched(case_id, factory):
    rng = rng_for(case_id)
    act, shape = factory()
    z = rng.normal(size=shape)
    da = rng.normal(size=shape)
    z0, da0 = z.copy(), da.copy()
    a = act.forward(z)
    np.testing.assert_array_equal(z, z0, err_msg=f"{case_id}: forward modified z in place")
    a0 = a.copy()
    act.backward(z, a, da)
    for name, arr, before in (("z", z, z0), ("a", a, a0), ("da", da, da0)):
        np.testing.assert_array_equal(arr, before, err_msg=f"{case_id}: backward modified {name} in place")


# -- the checker catches a wrong derivative ------------------------------------------------

def test_wrong_activation_derivative_is_caught(broken_activation):
    act = ACTIVATIONS.get(broken_activation)()
    check = check_activation(act, (4, 5), rng_for("broken"))
    assert not check.ok
    assert check.rel_err > 1e-2


def test_wrong_derivative_is_caught_in_a_network(broken_activation):
    net = build_net([LAYERS.get("dense")(4, broken_activation), LAYERS.get("dense")(2, "linear")],
                    (3,), "mse")
    X, y = batch(net, 5, "real", seed=1)
    report = check_network(net, X, y, tol=TOL)
    assert not report.ok
    failed = {t.name for t in report.tensors if not t.ok}
    # everything below the broken unit is wrong; the output layer's own tensors are not
    assert {"layers.0.W", "layers.0.b", "layers.0.input"} <= failed
    assert not failed & {"layers.1.W", "layers.1.b", "layers.1.input"}


# -- whole networks ------------------------------------------------------------------------

def dense(units, activation="linear"):
    return LAYERS.get("dense")(units, activation)


def maxout(units, pieces=2):
    return LAYERS.get("maxout")(units, pieces)


def build_net(layers, input_shape, loss, penalties=None, dtype=np.float64, seed=0):
    """A Network with glorot weights and small random biases (so no bias starts at 0)."""
    weight_penalties, activation_penalties = make_penalties(penalties or {})
    net = Network(layers, input_shape, LOSSES.get(loss)(), weight_penalties, activation_penalties, dtype=dtype)
    rng = np.random.default_rng(seed)
    net.init_params(rng)
    net.theta[net.n_weights:] = rng.normal(scale=0.2, size=net.size - net.n_weights)
    return net


def batch(net, m, kind, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, *net.input_shape))
    return X, make_targets(kind, (m, *net.output_shape), rng)


def mixed_net(name, penalties=True, dtype=np.float64):
    """Small networks mixing every activation and layer, with l2, l1 and sparsity on a sigmoid
    layer (penalties=False: none). Returns (network, target kind)."""
    def p(sparsity):
        return {"l2": 0.05, "l1": 0.01, "sparsity": sparsity} if penalties else {}

    if name == "mse":
        layers = [dense(6, "tanh"), maxout(5, 3), dense(5, "relu"),
                  dense(5, {"type": "leaky_relu", "alpha": 0.1}), dense(6, "sigmoid"), dense(4, "softplus"),
                  dense(4, "linear"), dense(3, "softmax")]
        return build_net(layers, (4,), "mse", p({"layer": 4, "rho": 0.1, "beta": 0.5}), dtype), "real"
    if name == "mse_sequence":  # x: (N, T, D), carried through dense and maxout
        layers = [dense(5, "sigmoid"), maxout(4, 2), dense(3, "tanh")]
        return build_net(layers, (3, 4), "mse", p({"layer": 0, "rho": 0.2, "beta": 1.0}), dtype), "real"
    if name == "cross_entropy":
        layers = [dense(6, "sigmoid"), maxout(4, 2), dense(5, "relu"), dense(5, "tanh"), dense(4, "softmax")]
        return build_net(layers, (5,), "cross_entropy", p({"layer": 0, "rho": 0.05, "beta": 3.0}),
                         dtype), "one_hot"
    if name == "binary_cross_entropy":
        layers = [dense(5, "leaky_relu"), maxout(4, 3), dense(6, "sigmoid"), dense(4, "softplus"),
                  dense(3, "sigmoid")]
        return build_net(layers, (4,), "binary_cross_entropy", p({"layer": 2, "rho": 0.1, "beta": 1.0}),
                         dtype), "binary"
    if name == "tied_autoencoder":  # decoders reuse the encoders' weights, transposed
        layers = [dense(5, "sigmoid"), dense(3, "tanh"), LAYERS.get("dense_tied")(1, "tanh"),
                  LAYERS.get("dense_tied")(0, "linear")]
        return build_net(layers, (6,), "mse", p({"layer": 0, "rho": 0.1, "beta": 1.0}), dtype), "real"
    if name == "recurrent":  # x: (N, T, D) through lstm, gru and rnn, many-to-one
        layers = [LAYERS.get("lstm")(4, return_sequences=True), LAYERS.get("gru")(3, return_sequences=True),
                  dense(3, "sigmoid"), LAYERS.get("rnn")(3), dense(2, "softmax")]
        return build_net(layers, (4, 3), "cross_entropy", p({"layer": 2, "rho": 0.2, "beta": 1.0}),
                         dtype), "one_hot"
    if name == "convolutional":  # 36 features -> a 1x6x6 image -> conv, pool -> a signal -> conv, pool
        layers = [LAYERS.get("reshape")([1, 6, 6]), LAYERS.get("conv2d")(3, 3, padding=1, activation="relu"),
                  LAYERS.get("maxpool2d")(2), LAYERS.get("conv2d")(2, 2, activation="tanh"),
                  LAYERS.get("reshape")([2, 4]), LAYERS.get("conv1d")(3, 2, activation="sigmoid"),
                  LAYERS.get("avgpool1d")(2, stride=1), LAYERS.get("flatten")(), dense(3, "softmax")]
        return build_net(layers, (36,), "cross_entropy", p({"layer": 5, "rho": 0.2, "beta": 1.0}),
                         dtype), "one_hot"
    # random in training: check_network reseeds before every evaluation
    if name == "dropout":
        layers = [dense(6, "relu"), LAYERS.get("dropout")(0.3), maxout(4, 2), LAYERS.get("dropout")(0.5),
                  dense(5, "sigmoid"), dense(3, "softmax")]
        return build_net(layers, (4,), "cross_entropy", p({"layer": 4, "rho": 0.1, "beta": 1.0}),
                         dtype), "one_hot"
    if name == "denoising_autoencoder":
        layers = [LAYERS.get("corrupt")(0.3), dense(4, "sigmoid"), LAYERS.get("dense_tied")(1, "sigmoid")]
        return build_net(layers, (6,), "mse", p({"layer": 1, "rho": 0.1, "beta": 1.0}), dtype), "real"
    raise ValueError(name)


DETERMINISTIC = ["mse", "mse_sequence", "cross_entropy", "binary_cross_entropy", "tied_autoencoder",
                 "recurrent", "convolutional"]
NETS = DETERMINISTIC + ["dropout", "denoising_autoencoder"]


@pytest.mark.parametrize("name", NETS)
def test_network_gradients(name):
    net, kind = mixed_net(name)
    X, y = batch(net, 5, kind)
    report = check_network(net, X, y, eps=EPS, tol=TOL)
    names = [t.name for t in report.tensors]
    assert set(names) == set(net.params) | {f"layers.{i}.input" for i in range(len(net.layers))}
    for t in report.tensors:
        assert t.checked > 0, t
        assert t.rel_err < TOL, t
    assert report.ok
    assert report.tol == TOL


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_float32_gradient_agrees_with_float64(name):
    net64, kind = mixed_net(name)
    net32, _ = mixed_net(name, dtype=np.float32)
    net32.theta[...] = net64.theta
    X, y = batch(net64, 6, kind)
    J64, g64 = net64.loss_and_grad(net64.theta, X, y)
    J32, g32 = net32.loss_and_grad(net32.theta, X.astype(np.float32), y.astype(np.float32))
    assert g64.dtype == np.float64 and g32.dtype == np.float32
    assert J32 == pytest.approx(J64, rel=1e-5)
    rel = np.linalg.norm(g32.astype(np.float64) - g64) / np.linalg.norm(g64)
    assert rel < 1e-4


@pytest.mark.parametrize("m", [1, 3, 17])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_batch_gradient_is_the_mean_of_example_gradients(name, m):
    """Weight penalties are the same for every example, so they average out unchanged;
    sparsity depends on the batch mean and is left out here."""
    net, kind = mixed_net(name, penalties=False)
    net.weight_penalties, _ = make_penalties({"l2": 0.05, "l1": 0.01})
    X, y = batch(net, m, kind, seed=m)
    J, g = net.loss_and_grad(net.theta, X, y)
    g = g.copy()
    assert np.isfinite(J) and g.shape == net.theta.shape and np.all(np.isfinite(g))
    # loss_and_grad returns the network's own buffer: keep copies
    losses, grads = [], []
    for i in range(m):
        J_i, g_i = net.loss_and_grad(net.theta, X[i:i + 1], y[i:i + 1])
        losses.append(J_i)
        grads.append(g_i.copy())
    J_mean = np.mean(losses)
    assert J == pytest.approx(J_mean, rel=1e-12)
    np.testing.assert_allclose(g, np.mean(grads, axis=0), rtol=1e-9, atol=1e-12)


def test_minibatch_gradients_average_to_the_full_batch_gradient():
    """The l2 penalty is added once per batch, so the mean over equal halves is the full gradient."""
    net, kind = mixed_net("cross_entropy", penalties=False)
    net.weight_penalties, _ = make_penalties({"l2": 0.1})
    X, y = batch(net, 10, kind)
    J, g = net.loss_and_grad(net.theta, X, y)
    g = g.copy()
    J1, g1 = net.loss_and_grad(net.theta, X[:5], y[:5])
    g1 = g1.copy()
    J2, g2 = net.loss_and_grad(net.theta, X[5:], y[5:])
    assert (J1 + J2) / 2 == pytest.approx(J, rel=1e-12)
    np.testing.assert_allclose((g1 + g2) / 2, g, rtol=1e-9, atol=1e-12)
    # and the penalty's share is lambda W on the weights, none on the biases
    net.weight_penalties = []
    _, g_data = net.loss_and_grad(net.theta, X, y)
    np.testing.assert_allclose(g[:net.n_weights] - g_data[:net.n_weights], 0.1 * net.theta[:net.n_weights],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(g[net.n_weights:], g_data[net.n_weights:])


def test_maxout_ties_are_left_out_as_kinks():
    """Two identical pieces: perturbing either one's weights changes the winner, so those
    coordinates straddle a kink and are counted, not compared; the rest still match."""
    rng = rng_for("maxout-tie")
    layer = LAYERS.get("maxout")(2, pieces=2)
    _, tensors = attach_parameters([layer], (3,), rng)
    layer.W[1] = layer.W[0]  # unit 0: pieces 0 and 1 tied for every input
    layer.b[1] = layer.b[0]
    x = rng.normal(size=(N, 3))
    r = rng.normal(size=(N, 2))
    evaluate = lambda: float(np.sum(r * layer.forward(x, True)))  # noqa: E731
    evaluate()
    dx = layer.backward(r)
    patterns = lambda: [layer.kink_pattern().copy()]  # noqa: E731
    for name in ("0.W", "0.b"):
        p, g = tensors[name]
        check = check_array(name, p, g.copy(), evaluate, eps=EPS, tol=TOL, patterns=patterns)
        assert check.kinks > 0, name
        assert_passes(check, p.size)
    # moving x moves both tied pieces alike: no winner changes, nothing left out
    check = check_array("x", x, dx, evaluate, eps=EPS, tol=TOL, patterns=patterns)
    assert check.kinks == 0
    assert_passes(check, x.size)
