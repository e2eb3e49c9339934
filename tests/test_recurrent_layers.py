"""Recurrent layers (rnn, lstm, gru) trained with backpropagation through time.

- forward against slow, obviously-correct loops written here: one example, one step at a time;
  LSTM and GRU against PyTorch when torch is installed;
- full-BPTT gradients: the rnn, lstm and gru cases of the one table (tests/gradient_cases.py),
  alone and in stacks, run through the layer harness in tests/test_gradients.py;
- truncated BPTT, whose gradient is by design not the finite-difference gradient of the
  network's objective, against finite differences of the truncated objective it defines
  (netcli/nn/layers/recurrent.py) through netcli.gradcheck.check_array (the one checker),
  contracted with a random upstream gradient; bptt >= T equal to full BPTT;
- float32 stays float32;
- build and config errors; the LSTM forget-gate bias.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from netcli.gradcheck import check_array
from netcli.nn import LAYERS, LOSSES, Network
from netcli.nn.network import BuildError

from helpers import Case, layer_network

EPS = 1e-6
TOL = 1e-7
KINDS = ["rnn", "lstm", "gru"]


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# -- slow references: one example, one step, plain NumPy --------------------------------

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_step(p, x_t, state):
    (h,) = state
    return (np.tanh(p["W_ih"] @ x_t + p["W_hh"] @ h + p["b"]),)


def lstm_step(p, x_t, state):
    h, c = state
    H = h.size
    a = p["W_ih"] @ x_t + p["W_hh"] @ h + p["b"]
    i, f = sigmoid(a[:H]), sigmoid(a[H:2 * H])
    g, o = np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
    c = f * c + i * g
    return (o * np.tanh(c), c)


def gru_step(p, x_t, state):
    (h,) = state
    H = h.size
    gi = p["W_ih"] @ x_t + p["b_ih"]
    gh = p["W_hh"] @ h + p["b_hh"]
    r = sigmoid(gi[:H] + gh[:H])
    z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return ((1 - z) * n + z * h,)


STEPS = {"rnn": (rnn_step, 1), "lstm": (lstm_step, 2), "gru": (gru_step, 1)}


def zero_state(kind, H):
    return tuple(np.zeros(H) for _ in range(STEPS[kind][1]))


def ref_states(kind, p, x_seq, H):
    """x_seq: (T, D) -> [state entering step t for t = 0..T]; state = (h,) or (h, c)."""
    step = STEPS[kind][0]
    states = [zero_state(kind, H)]
    for x_t in x_seq:
        states.append(step(p, x_t, states[-1]))
    return states


def ref_forward(kind, p, X, H, return_sequences):
    """X: (N, T, D) -> (N, T, H) or (N, H), one example at a time."""
    out = []
    for x_seq in X:
        hs = [s[0] for s in ref_states(kind, p, x_seq, H)[1:]]
        out.append(np.stack(hs) if return_sequences else hs[-1])
    return np.stack(out)


def chunk_starts(T, K):
    """Chunks of K steps aligned to the end: starts T - K, T - 2K, ... > 0, and 0."""
    if K is None:
        return [0]
    return sorted({0} | {s for s in range(T - K, 0, -K)})


def truncated_objective(kind, p, X, R, H, K, return_sequences, frozen):
    """J_K = sum_t r_t . h_t where each chunk starts from its frozen entering state."""
    step = STEPS[kind][0]
    T = X.shape[1]
    starts = chunk_starts(T, K)
    total = 0.0
    for n, x_seq in enumerate(X):
        for s, e in zip(starts, starts[1:] + [T]):
            if not return_sequences and e != T:
                continue
            state = frozen[n][s]
            for t in range(s, e):
                state = step(p, x_seq[t], state)
                if return_sequences:
                    total += R[n, t] @ state[0]
            if not return_sequences:
                total += R[n] @ state[0]
    return float(total)


# -- one layer on the real Network, driven by hand, for the truncated objective ------------

def make(kind, units, T, D, N, seed, dtype=np.float64, **kwargs):
    """The layer, its parameters and gradients by name (views of the Network's theta and
    NaN-filled grad), a batch x: (N, T, D) and an upstream gradient r shaped like its output."""
    rng = rng_for(kind, units, T, D, N, seed, kwargs.get("return_sequences", False))  # bptt: same draw
    layer = LAYERS.get(kind)(units, **kwargs)
    net = layer_network(Case([layer], (T, D)), rng, dtype)
    params = {k.removeprefix("layers.0."): v for k, v in net.params.items()}
    grads = {k.removeprefix("layers.0."): v for k, v in net.grads.items()}
    x = rng.normal(size=(N, T, D)).astype(dtype)
    r = rng.normal(size=(N, *net.output_shape)).astype(dtype)
    return layer, params, grads, x, r


def analytic_gradients(layer, grads, x, r, need_dx=True):
    layer.forward(x, True)
    dx = layer.backward(r, need_dx=need_dx)
    out = {name: g.copy() for name, g in grads.items()}
    for name, g in out.items():
        assert np.all(np.isfinite(g)), f"backward left entries of d{name} unassigned"
    return out, dx


def assert_passes(check, size):
    assert check.checked == size and check.kinks == 0, check
    assert check.rel_err < TOL, (f"{check.name}: relative error {check.rel_err:.3g} >= {TOL:g} "
                                 f"(worst at {check.worst_index}, abs error {check.max_abs_err:.3g})")


def check_against(evaluate, params, analytic, x, dx):
    """Every parameter tensor and x, through the one checker."""
    for name, p in params.items():
        assert_passes(check_array(name, p, analytic[name], evaluate, eps=EPS, tol=TOL), p.size)
    assert_passes(check_array("x", x, dx, evaluate, eps=EPS, tol=TOL), x.size)


# -- forward -----------------------------------------------------------------------

@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_a_slow_loop(kind, return_sequences):
    H, T, D, N = 4, 5, 3, 3
    layer, params, _, x, _ = make(kind, H, T, D, N, 0, return_sequences=return_sequences)
    y = layer.forward(x, False)
    assert y.shape == ((N, T, H) if return_sequences else (N, H))
    np.testing.assert_allclose(y, ref_forward(kind, params, x, H, return_sequences), rtol=1e-12, atol=1e-14)


@pytest.mark.slow   # importing torch takes a second or two
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forward_matches_pytorch(kind):
    torch = pytest.importorskip("torch")
    H, T, D, N = 5, 6, 3, 4
    layer, p, _, x, _ = make(kind, H, T, D, N, 1, return_sequences=True)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(D, H, batch_first=True).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(p["W_ih"]))
        module.weight_hh_l0.copy_(torch.from_numpy(p["W_hh"]))
        if kind == "lstm":  # our one b is PyTorch's b_ih + b_hh
            module.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
            module.bias_hh_l0.zero_()
        else:
            module.bias_ih_l0.copy_(torch.from_numpy(p["b_ih"]))
            module.bias_hh_l0.copy_(torch.from_numpy(p["b_hh"]))
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_is_the_same_across_batch_sizes_and_repeated_calls(kind):
    """Work buffers are reused between calls: outputs must not depend on what ran before."""
    layer, _, _, x, _ = make(kind, 4, 5, 3, 6, 2, return_sequences=True)
    y_all = layer.forward(x, False)
    y_all_copy = y_all.copy()
    y_two = layer.forward(x[1:3], False)
    np.testing.assert_allclose(y_two, y_all[1:3], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(y_all, y_all_copy)  # the first output was not overwritten
    np.testing.assert_array_equal(layer.forward(x, False), y_all)


# -- gradients: truncated BPTT ----------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_truncated_bptt_is_the_gradient_of_the_truncated_objective(kind, return_sequences, K):
    H, T, D, N = 3, 7, 2, 2            # T = 7: the first chunk is shorter than K for K = 2, 3
    layer, params, grads, x, r = make(kind, H, T, D, N, 4, return_sequences=return_sequences, bptt=K)
    analytic, dx = analytic_gradients(layer, grads, x, r)
    frozen = [ref_states(kind, {k: v.copy() for k, v in params.items()}, x_seq, H) for x_seq in x]
    evaluate = lambda: truncated_objective(kind, params, x, r, H, K, return_sequences, frozen)  # noqa: E731
    assert evaluate() == pytest.approx(float(np.sum(r * layer.forward(x, True))), rel=1e-12)
    check_against(evaluate, params, analytic, x, dx)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_bptt_of_at_least_T_steps_is_full_bptt_and_one_step_is_not(kind, return_sequences):
    T = 5
    results = {}
    for K in (None, T, T + 3, 1):
        layer, _, grads, x, r = make(kind, 3, T, 2, 3, 5, return_sequences=return_sequences, bptt=K)
        results[K] = analytic_gradients(layer, grads, x, r)
    full, full_dx = results[None]
    for K in (T, T + 3):
        grads_K, dx_K = results[K]
        for name in full:
            np.testing.assert_array_equal(grads_K[name], full[name])
        np.testing.assert_array_equal(dx_K, full_dx)
    one, one_dx = results[1]
    assert not np.allclose(one["W_hh"], full["W_hh"])
    assert not np.allclose(one_dx, full_dx)


@pytest.mark.parametrize("kind", KINDS)
def test_many_to_one_truncated_bptt_reaches_only_the_last_K_steps(kind):
    T, K = 8, 3
    layer, _, grads, x, r = make(kind, 3, T, 2, 4, 6, bptt=K)
    _, dx = analytic_gradients(layer, grads, x, r)
    np.testing.assert_array_equal(dx[:, :T - K], 0.0)
    assert np.all(np.abs(dx[:, T - K:]).sum(axis=-1) > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_need_dx_false_fills_the_same_parameter_gradients(kind):
    layer, _, grads, x, r = make(kind, 4, 5, 3, 3, 7, return_sequences=True, bptt=2)
    with_dx, _ = analytic_gradients(layer, grads, x, r)
    for g in grads.values():
        g[...] = np.nan
    without, dx = analytic_gradients(layer, grads, x, r, need_dx=False)
    assert dx is None
    for name in with_dx:
        np.testing.assert_array_equal(without[name], with_dx[name])


# -- dtypes ----------------------------------------------------------------------------

@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_stays_float32_and_agrees_with_float64(kind, return_sequences):
    l64, p64, g64, x64, r64 = make(kind, 8, 6, 3, 5, 9, return_sequences=return_sequences)
    l32, p32, g32, _, _ = make(kind, 8, 6, 3, 5, 9, dtype=np.float32, return_sequences=return_sequences)
    for name in p64:
        p32[name][...] = p64[name]
    x32, r32 = x64.astype(np.float32), r64.astype(np.float32)
    y32 = l32.forward(x32, True)
    dx32 = l32.backward(r32)
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    assert all(b.dtype == np.float32 for b in l32._buffers.values())
    y64 = l64.forward(x64, True)
    dx64 = l64.backward(r64)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-5)
    for name in g64:
        np.testing.assert_allclose(g32[name], g64[name], rtol=1e-3, atol=1e-5)


def test_float32_network_gradient_stays_float32():
    net = Network([LAYERS.get("lstm")(6), LAYERS.get("dense")(2, "linear")], (5, 3), LOSSES.get("mse")(),
                  dtype=np.float32)
    net.init_params(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 2))
    J, g = net.loss_and_grad(net.theta, X, y)
    assert g.dtype == np.float32 and np.all(np.isfinite(g)) and np.isfinite(J)
    assert net.forward(X).dtype == np.float32


# -- building, configs, initialisation -----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_non_sequence_input_is_refused(kind):
    with pytest.raises(BuildError, match=r"set model.input: \[T, D\]") as e:
        Network([LAYERS.get(kind)(4), LAYERS.get("dense")(1)], (6,), LOSSES.get("mse")())
    assert e.value.key == "model.layers[0]"


@pytest.mark.parametrize("bptt", [0, -2])
def test_bptt_must_be_a_positive_number_of_steps(bptt):
    with pytest.raises(BuildError, match="bptt must be a positive"):
        Network([LAYERS.get("lstm")(4, bptt=bptt)], (6, 2), LOSSES.get("mse")())


@pytest.mark.parametrize("kind,gates,biases",
                         [("rnn", 1, ["b"]), ("lstm", 4, ["b"]), ("gru", 3, ["b_ih", "b_hh"])])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_shapes_and_parameter_specs(kind, gates, biases, return_sequences):
    layer = LAYERS.get(kind)(7, return_sequences=return_sequences)
    assert layer.build((9, 3)) == ((9, 7) if return_sequences else (7,))
    specs = layer.param_specs()
    assert list(specs) == ["W_ih", "W_hh", *biases]
    assert specs["W_ih"].shape == (gates * 7, 3) and specs["W_ih"].decay and specs["W_ih"].fan_in == 3
    assert specs["W_hh"].shape == (gates * 7, 7) and specs["W_hh"].decay and specs["W_hh"].fan_in == 7
    for b in biases:
        assert specs[b].shape == (gates * 7,) and not specs[b].decay
        expected = layer.bias_init() if kind == "lstm" else 0.0  # forget gate starts at 1
        np.testing.assert_array_equal(specs[b].fill, expected)
    assert layer.activation is None


def test_config_blocks_are_checked_against_the_signature(tmp_path):
    from netcli.config import load_config
    from netcli.errors import ConfigError
    from netcli.prepare import build_network

    def config(layer):
        path = tmp_path / "c.yaml"
        path.write_text("model:\n  input: [10, 2]\n  layers:\n"
                        f"    - {layer}\n    - {{type: dense, units: 1}}\n")
        return path

    cfg = load_config(config("{type: lstm, units: 8, bptt: 4}"))
    assert cfg.as_dict()["model"]["layers"][0] == {"type": "lstm", "units": 8, "return_sequences": False,
                                                  "bptt": 4}
    net = build_network(cfg)
    assert net.output_shape == (1,)
    with pytest.raises(ConfigError, match=r"model.layers\[0\].units"):
        load_config(config("{type: gru, units: 0}"))
    with pytest.raises(ConfigError, match="unit"):
        load_config(config("{type: rnn, unit: 8}"))
    with pytest.raises(ConfigError, match="bptt"):  # refused at the latest when the network is built
        build_network(load_config(config("{type: lstm, units: 8, bptt: 0}")))


def test_lstm_bias_init_puts_ones_on_the_forget_gate():
    layer = LAYERS.get("lstm")(3)
    layer.build((4, 2))
    b = layer.bias_init()
    np.testing.assert_array_equal(b, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_forget_gate_bias_is_one_after_init_params():
    H = 3
    net = Network([LAYERS.get("lstm")(H), LAYERS.get("dense")(1)], (4, 2), LOSSES.get("mse")())
    net.init_params(np.random.default_rng(0))
    b = net.params["layers.0.b"]
    np.testing.assert_array_equal(b[H:2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
