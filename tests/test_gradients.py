"""Every registered component against finite differences, through one harness and one checker.

Each case of tests/gradient_cases.py (the one table) runs through the layer harness of
tests/helpers.py: a real float64 Network, an mse loss against random targets (a random upstream
gradient, Chainer's habit: a plain sum hides transposed gradients) or the case's own loss,
netcli.gradcheck.check_network on every parameter tensor and every layer's input, the gradient
loss_and_grad hands the optimizers, and a check that no layer modifies its inputs.
Then whole networks through the same harness, and the properties of loss_and_grad that the
optimizers rely on (dtypes, batch sizes, minibatches).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradient_cases import CASES, REGISTRIES, cases, uses
from helpers import (GRAD_TOL, Case, assert_gradients_pass, case_network, case_rng, check_case,
                     check_gradients, make_targets)
from netcli.nn import LAYERS, LOSSES, Network
from netcli.nn.layers.dense import Dense
from netcli.nn.layers.shape import Flatten
from netcli.nn.regularizers import make_penalties

TOL = GRAD_TOL


# -- the components, case by case --------------------------------------------------------

@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases()])
def test_gradients(case_id, factory):
    case = factory()
    net, result = check_case(case_id, case)
    assert_gradients_pass(net, result, kinks=case.kinks)


# -- the table covers the registries -------------------------------------------------------

@pytest.mark.parametrize("kind", list(CASES))
def test_every_registered_component_has_a_gradient_case(kind):
    registry, table = REGISTRIES[kind], CASES[kind]
    missing = sorted(set(registry.names()) - set(table))
    assert not missing, (f"{kind}s registered without a gradient case: {', '.join(missing)}; "
                         f"add an entry to tests/gradient_cases.py")
    stale = sorted(set(table) - set(registry.names()))
    assert not stale, f"gradient cases for {kind}s that are not registered: {', '.join(stale)}"
    for case_id, factory in cases([kind]):   # an entry exercises the component it is filed under
        name = case_id.split(":", 1)[1].split("[")[0]
        assert name in uses(factory())[kind], f"{case_id} does not use the {kind} {name!r}"


def test_the_table_holds_the_conv_and_recurrent_cases():
    """The cases once kept beside the table (conv, pooling, shape and recurrent layers), among them
    stacks on a conv's channels-last output and recurrent stacks, are in it now."""
    layer_cases = CASES["layer"]
    for name, at_least in {"conv2d": 7, "conv1d": 5, "maxpool2d": 6, "avgpool2d": 6, "maxpool1d": 4,
                           "avgpool1d": 4, "flatten": 2, "reshape": 3, "rnn": 6, "lstm": 7, "gru": 7}.items():
        assert len(layer_cases[name]) >= at_least, name
    stacks = {case_id for case_id, factory in cases(["layer"]) if len(factory().layers) > 1}
    assert {"layer:maxpool2d[5]", "layer:avgpool2d[5]", "layer:flatten[1]", "layer:rnn[5]"} <= stacks


# -- the harness bites -------------------------------------------------------------------

def test_a_wrong_activation_derivative_fails_its_case(broken_activation):
    net, result = check_case("broken", Case([LAYERS.get("dense")(5, broken_activation)], (3,), batch=4))
    assert not result.ok
    failed = {t.name for t in result.tensors if not t.ok}
    assert {"layers.0.W", "layers.0.b", "layers.0.input"} <= failed
    assert max(t.rel_err for t in result.tensors) > 1e-2
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradients_pass(net, result)


def test_wrong_derivative_is_caught_in_a_network(broken_activation):
    net = build_net([LAYERS.get("dense")(4, broken_activation), LAYERS.get("dense")(2, "linear")],
                    (3,), "mse")
    X, y = batch(net, 5, "real", seed=1)
    result = check_gradients(net, X, y)
    assert not result.ok
    failed = {t.name for t in result.report.tensors if not t.ok}
    # everything below the broken unit is wrong; the output layer's own tensors are not
    assert {"layers.0.W", "layers.0.b", "layers.0.input"} <= failed
    assert not failed & {"layers.1.W", "layers.1.b", "layers.1.input"}
    assert not result.training.ok


class FlattenThatClobbersItsInput(Flatten):
    def forward(self, x, train):
        y = x.reshape(x.shape[0], -1).copy()
        x *= 2.0
        return y


class FlattenThatClobbersDy(Flatten):
    def backward(self, dy, need_dx=True):
        dx = dy.reshape(dy.shape[0], *self.in_shape).copy()
        dy[...] = 0.0
        return dx


class DenseThatSkipsARow(Dense):
    """Leaves row 0 of its weight gradient as it found it, as if never written."""

    def backward(self, dy, need_dx=True):
        kept = self.dW[0].copy()
        dx = super().backward(dy, need_dx)
        self.dW[0] = kept
        return dx


@pytest.mark.parametrize("layers,message", [
    (lambda: [LAYERS.get("dense")(3), FlattenThatClobbersItsInput(), LAYERS.get("dense")(2)],
     "layer 1 (flatten): forward modified its input x in place"),
    (lambda: [LAYERS.get("dense")(3), FlattenThatClobbersDy(), LAYERS.get("dense")(2)],
     "layer 1 (flatten): backward modified dy in place"),
    (lambda: [DenseThatSkipsARow(3, "tanh")], "layers.0.W: backward left entries of its gradient unassigned"),
], ids=["forward-modifies-x", "backward-modifies-dy", "gradient-unassigned"])
def test_the_harness_fails_a_layer_that_breaks_the_protocol(layers, message):
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_case("protocol", Case(layers(), (4,)))


def test_the_harness_leaves_the_layers_as_it_found_them():
    net, _ = check_case("unwatched", CASES["layer"]["rnn"][5]())
    for layer in net.layers:
        assert "forward" not in vars(layer) and "backward" not in vars(layer)


# -- activations: the pure forms leave their arguments alone -------------------------------

@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(["activation"])])
def test_activation_leaves_its_inputs_untouched(case_id, factory):
    rng = case_rng(case_id)
    case = factory()
    act = case.layers[0].activation
    shape = (case.batch, *case.input_shape[:-1], case.layers[0].units)
    z = rng.normal(size=shape)
    da = rng.normal(size=shape)
    z0, da0 = z.copy(), da.copy()
    a = act.forward(z)
    np.testing.assert_array_equal(z, z0, err_msg=f"{case_id}: forward modified z in place")
    a0 = a.copy()
    act.backward(z, a, da)
    for name, arr, before in (("z", z, z0), ("a", a, a0), ("da", da, da0)):
        np.testing.assert_array_equal(arr, before, err_msg=f"{case_id}: backward modified {name} in place")


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
    if name == "noise_in_parts":   # no sparsity: the batch way trains it, in parts given their rows of the draws
        layers = [LAYERS.get("corrupt")(0.2, kind="gaussian"), dense(6, "relu"), LAYERS.get("dropout")(0.3),
                  dense(5, "tanh"), LAYERS.get("corrupt")(0.3), LAYERS.get("dropout")(0.5), dense(3, "softmax")]
        return build_net(layers, (4,), "cross_entropy", {"l2": 0.05, "l1": 0.01} if penalties else {},
                         dtype), "one_hot"
    raise ValueError(name)


DETERMINISTIC = ["mse", "mse_sequence", "cross_entropy", "binary_cross_entropy", "tied_autoencoder",
                 "recurrent", "convolutional"]
NETS = DETERMINISTIC + ["dropout", "denoising_autoencoder", "noise_in_parts"]


@pytest.mark.parametrize("name", NETS)
def test_network_gradients(name):
    net, kind = mixed_net(name)
    X, y = batch(net, 5, kind)
    result = check_gradients(net, X, y, tol=TOL)
    assert result.report.tol == TOL
    assert_gradients_pass(net, result, kinks=True)   # relu and maxout among them


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
    case = Case([LAYERS.get("maxout")(2, pieces=2)], (3,))
    rng = case_rng("maxout-tie")
    net = case_network(case, rng)
    layer = net.layers[0]
    layer.W[1] = layer.W[0]  # unit 0: pieces 0 and 1 tied for every input
    layer.b[1] = layer.b[0]
    X = rng.normal(size=(3, 3))
    y = make_targets("real", (3, 2), rng)
    result = check_gradients(net, X, y)
    checks = {t.name: t for t in result.tensors}
    for name in ("layers.0.W", "layers.0.b", "theta (loss_and_grad)"):
        assert checks[name].kinks > 0, name
    # moving x moves both tied pieces alike: no winner changes, nothing left out
    assert checks["layers.0.input"].kinks == 0
    assert_gradients_pass(net, result, kinks=True)
