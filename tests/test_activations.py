"""The activations' in-place path, the code that trains, on arrays of many blocks.

For every registered activation (so a new one is covered without an entry here), on arrays
larger than several blocks in the layouts the network hands them (row-major, column-major
as dense layers return it, non-contiguous):

- forward_ / backward_ give bit for bit what they give unblocked (the block size patched to
  more than the array), and what the pure forward / backward give;
- the in-place gradient agrees with central finite differences in float64, contracted with
  a random upstream gradient (Chainer's habit), per coordinate in every block and along one
  random direction through all of them.

Then the proof that the checks bite: a wrong in-place tanh derivative fails
netcli.gradcheck.check_network, and a blocked loop that skips its last block fails the
blocked-vs-unblocked comparison and the finite differences.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from netcli.gradcheck import check_array, check_network
from netcli.nn import ACTIVATIONS, LAYERS, LOSSES, Network, activations
from netcli.nn.activations import BLOCK, OPEN_UNIT, Activation, Range, Tanh, logistic
from netcli.nn.layers.base import BuildError
from netcli.nn.regularizers import make_penalties

EPS = 1e-6
TOL = 1e-7        # relative error, well under the checker's default 1e-6
MARGIN = 1e-2     # |z| >= MARGIN >> EPS: no finite difference straddles a kink at 0
ROWS, COLS = (5 * BLOCK + 123) // 11 + 1, 11   # 5 blocks and a short sixth one


# options beyond the defaults worth their own case; every registered name runs with its defaults
EXTRA_OPTIONS = {"leaky_relu": [{"alpha": 0.0}, {"alpha": 0.3}, {"alpha": 2.5}]}


def activation_cases():
    cases = []
    for name in ACTIVATIONS.names():
        cases.append(pytest.param(name, {}, id=name))
        for options in EXTRA_OPTIONS.get(name, []):
            cases.append(pytest.param(name, options, id=name + "-" + "-".join(f"{k}{v:g}" for k, v in options.items())))
    return cases


def make(name: str, options: dict) -> Activation:
    return ACTIVATIONS.get(name)(**options)


# Layouts: a C-ordered array x -> the same values in another memory layout (a new array).
def _strided(x):
    """Every other column of a wider buffer: not contiguous, so processed as one piece."""
    buf = np.full((x.shape[0], 2 * x.shape[1], *x.shape[2:]), np.nan, dtype=x.dtype)
    buf[:, ::2] = x
    return buf[:, ::2]


LAYOUTS = {
    "row_major": (lambda x: x.copy(), "C"),
    "column_major": (lambda x: np.asfortranarray(x), "F"),   # what Dense returns for minibatches
    "strided": (_strided, "C"),
}
SHAPES = {"row_major": (ROWS, COLS), "column_major": (ROWS, COLS), "strided": (ROWS // 3, 3, COLS)}


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def inputs(shape, rng, dtype=np.float64):
    """z (away from 0, the kink of relu and leaky_relu) and an upstream gradient da."""
    z = rng.normal(scale=2.0, size=shape)
    z += np.where(z >= 0, MARGIN, -MARGIN)
    return z.astype(dtype), rng.normal(size=shape).astype(dtype)


def in_place(act: Activation, z: np.ndarray, da: np.ndarray, layout: str = "row_major"):
    """The network's use of an activation on z and da (C-ordered values) laid out as `layout`:
    forward_ on z's array, then backward_ on what forward_ left there (a itself, unless
    needs_z). Returns copies of a and dz."""
    to_layout, _ = LAYOUTS[layout]
    buf = to_layout(z)
    a = act.forward_(buf)
    a_kept = a.copy(order="K")
    dz = act.backward_(buf, a, to_layout(da))
    return a_kept, dz


def blocked_vs_unblocked(act: Activation, z: np.ndarray, da: np.ndarray, layout: str = "row_major"):
    """Where forward_ and backward_ give other bits blocked (the real BLOCK) than unblocked
    (BLOCK larger than the array): {"a": memory positions, "dz": memory positions}, empty
    arrays when they agree."""
    blocked = in_place(act, z, da, layout)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(activations, "BLOCK", 4 * z.size + 1)
        assert len(activations._blocks(z)) == 1
        unblocked = in_place(act, z, da, layout)
    differ = {}
    for what, got, want in zip(("a", "dz"), blocked, unblocked):
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        differ[what] = np.flatnonzero(~same.ravel(order="K"))
    return differ


def check_points(size: int, rng) -> np.ndarray:
    """Memory positions to check: both sides of every block boundary, the ends, some at random."""
    edges = [p for s in range(0, size, BLOCK) for p in (s - 1, s, s + 1)] + [size - 2, size - 1]
    chosen = set(p for p in edges if 0 <= p < size) | set(rng.choice(size, 20, replace=False).tolist())
    return np.array(sorted(chosen))


def finite_difference_checks(act: Activation, layout: str, rng):
    """The in-place path against central differences of sum(r * forward_(z)), in float64.

    Returns (per-coordinate TensorCheck, relative error along one random direction).
    """
    to_layout, order = LAYOUTS[layout]
    shape = SHAPES[layout]
    zc, r = inputs(shape, rng)                  # zc: C-ordered, perturbed in place by check_array
    a0, dz = in_place(act, zc, r, layout)
    dz = np.ascontiguousarray(dz)
    r = to_layout(r)
    assert dz.shape == shape

    def evaluate():                             # minus the constant a0: only the change is summed,
        return float(np.vdot(r, act.forward_(to_layout(zc)) - a0))   # so rounding stays tiny

    mem = check_points(zc.size, rng)
    coords = np.ravel_multi_index(np.unravel_index(mem, shape, order=order), shape)
    check = check_array("z", zc, dz, evaluate, eps=EPS, tol=TOL, coords=coords)

    v = rng.normal(size=shape)                  # one direction through every block at once
    plus = act.forward_(to_layout(zc + EPS * v))
    minus = act.forward_(to_layout(zc - EPS * v))
    fd = float(np.vdot(r, plus - minus)) / (2 * EPS)
    analytic = float(np.vdot(dz, v))
    return check, abs(fd - analytic) / (abs(fd) + abs(analytic))


# -- blocked = unblocked = pure ------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,options", activation_cases())
def test_in_place_results_do_not_depend_on_blocking(name, options, layout):
    act = make(name, options)
    to_layout, _ = LAYOUTS[layout]
    for dtype in (np.float32, np.float64):
        z, da = inputs(SHAPES[layout], rng_for(name, options, layout), dtype)
        if layout != "strided":   # the test means something: these arrays are processed in pieces
            assert len(activations._blocks(to_layout(z), to_layout(da))) == 6
        differ = blocked_vs_unblocked(act, z, da, layout)
        assert differ["a"].size == differ["dz"].size == 0, differ
        # the pure forms are the same code on copies: equal bit for bit, inputs untouched
        zl, dal = to_layout(z), to_layout(da)
        z0, da0 = zl.copy(), dal.copy()
        a, dz = in_place(act, z, da, layout)
        assert a.dtype == dz.dtype == dtype
        np.testing.assert_array_equal(act.forward(zl), a)
        np.testing.assert_array_equal(act.backward(zl, a, dal), dz)
        np.testing.assert_array_equal(zl, z0)
        np.testing.assert_array_equal(dal, da0)


@pytest.mark.parametrize("name,options", activation_cases())
def test_forward_in_place_keeps_z_exactly_when_backward_needs_it(name, options):
    act = make(name, options)
    z, da = inputs((4, 7), rng_for(name, options, "needs_z"))
    buf = z.copy()
    a = act.forward_(buf)
    if act.needs_z:
        np.testing.assert_array_equal(buf, z)   # softplus: backward_ reads z itself
        assert not np.shares_memory(a, buf)
    # backward_ from the network's arrays (buf may hold a) agrees with backward_ from z itself
    np.testing.assert_array_equal(act.backward_(buf, a, da.copy()), act.backward_(z, a, da.copy()))


# -- the in-place gradient against finite differences ----------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,options", activation_cases())
def test_in_place_gradient_matches_finite_differences(name, options, layout):
    check, directional = finite_difference_checks(make(name, options), layout, rng_for(name, options, layout, "fd"))
    assert check.kinks == 0 and check.checked > 6 * 3
    assert check.rel_err < TOL, check
    assert check.ok
    assert directional < TOL, f"along a random direction: relative error {directional:.3g}"


# -- the checks catch the defects they exist for ---------------------------------------------

def _broken_tanh_backward_(self, z, a, da):
    """1 - a where the derivative is 1 - a^2."""
    for a_, da_ in activations._blocks(a, da):
        da_ *= 1.0 - a_
    return da


def _small_tanh_network():
    net = Network([LAYERS.get("dense")(4, "tanh"), LAYERS.get("dense")(2, "linear")], (3,),
                  LOSSES.get("mse")(), dtype=np.float64)
    rng = rng_for("tanh-net")
    net.init_params(rng)
    net.theta[net.n_weights:] = rng.normal(scale=0.2, size=net.size - net.n_weights)
    return net, rng.normal(size=(5, 3)), rng.normal(size=(5, 2))


def test_a_wrong_in_place_tanh_derivative_fails_the_network_check(monkeypatch):
    net, X, y = _small_tanh_network()
    assert check_network(net, X, y, tol=TOL).ok          # the real tanh passes
    monkeypatch.setattr(Tanh, "backward_", _broken_tanh_backward_)
    report = check_network(net, X, y, tol=TOL)
    assert not report.ok
    failed = {t.name for t in report.tensors if not t.ok}
    assert {"layers.0.W", "layers.0.b", "layers.0.input"} <= failed
    assert not failed & {"layers.1.W", "layers.1.b", "layers.1.input"}


def test_a_wrong_in_place_derivative_fails_the_activation_check(monkeypatch):
    monkeypatch.setattr(Tanh, "backward_", _broken_tanh_backward_)
    check, directional = finite_difference_checks(Tanh(), "row_major", rng_for("broken-tanh"))
    assert not check.ok and check.rel_err > 1e-2
    assert directional > 1e-2


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "softplus"])
def test_a_blocked_loop_that_skips_its_last_block_is_caught(monkeypatch, name):
    """Finite differences alone can miss this bug: where forward_ and backward_ both skip the
    block (sigmoid, leaky_relu), it is the identity there, consistently. The comparison with the
    unblocked computation catches it for every activation that works in blocks."""
    real_blocks = activations._blocks

    def skip_last(*arrays):   # the bug: the blocked loop stops one block short
        pieces = real_blocks(*arrays)
        return pieces[:-1] if len(pieces) > 1 else pieces

    act = make(name, {})
    z, da = inputs(SHAPES["row_major"], rng_for("skip", name))
    assert all(p.size == 0 for p in blocked_vs_unblocked(act, z, da).values())
    monkeypatch.setattr(activations, "_blocks", skip_last)
    differ = np.concatenate(list(blocked_vs_unblocked(act, z, da).values()))
    assert differ.size > 0
    assert differ.min() >= 5 * BLOCK   # in the last block, and only there
    if name == "tanh":                 # backward_ alone is blocked: the gradient check fails too
        check, _ = finite_difference_checks(act, "row_major", rng_for("skip-fd", name))
        assert not check.ok
        assert np.ravel_multi_index(check.worst_index, SHAPES["row_major"]) >= 5 * BLOCK


# -- one implementation, declared ranges, the shared logistic ----------------------------------

def test_an_activation_cannot_define_a_separate_pure_form():
    with pytest.raises(TypeError, match="forward_ and backward_ only"):
        class Twin(Activation):  # noqa: F841
            def forward_(self, z):
                return z

            def backward(self, z, a, da):
                return da


def test_the_network_checks_gradients_with_the_code_that_trains():
    """loss_and_input_grads (gradcheck's) and loss_and_grad (training's) give the same bits."""
    layers = [LAYERS.get("dense")(6, "tanh"), LAYERS.get("dense")(5, "sigmoid"),
              LAYERS.get("dense")(5, {"type": "leaky_relu", "alpha": 0.2}), LAYERS.get("dense")(4, "softplus"),
              LAYERS.get("dense")(3, "softmax")]
    weights, sparsity = make_penalties({"l2": 0.01, "sparsity": {"layer": 1, "rho": 0.1, "beta": 1.0}})
    net = Network(layers, (4,), LOSSES.get("mse")(), weights, sparsity, dtype=np.float64)
    rng = rng_for("same-bits")
    net.init_params(rng)
    X, y = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    J, g = net.loss_and_grad(net.theta, X, y)
    g = g.copy()
    J2, g2, xs, dxs = net.loss_and_input_grads(net.theta, X, y)
    assert J2 == J
    np.testing.assert_array_equal(g2, g)
    assert [x.shape for x in xs] == [dx.shape for dx in dxs] == [(7, *s) for s in net.shapes[:-1]]
    np.testing.assert_array_equal(xs[0], X)


@pytest.mark.parametrize("name,options", activation_cases())
def test_outputs_lie_in_the_declared_range(name, options):
    act = make(name, options)
    out_range = act.output_range
    z = np.linspace(-5, 5, 1001).reshape(7, 143)
    a = act.forward(z)
    lo_ok = a >= out_range.lo if out_range.lo_closed else a > out_range.lo
    hi_ok = a <= out_range.hi if out_range.hi_closed else a < out_range.hi
    assert np.all(lo_ok & hi_ok), f"{name} has outputs outside its declared {out_range}"


def test_ranges():
    assert str(OPEN_UNIT) == "(0, 1)" and str(ACTIVATIONS.get("relu").output_range) == "[0, inf)"
    assert ACTIVATIONS.get("sigmoid").output_range.within(OPEN_UNIT)
    assert ACTIVATIONS.get("softmax").output_range.within(OPEN_UNIT)
    assert not ACTIVATIONS.get("tanh").output_range.within(OPEN_UNIT)
    assert not Range(0.0, 1.0, lo_closed=True).within(OPEN_UNIT)
    assert Range(0.0, 1.0).within(Range(0.0, 1.0, lo_closed=True, hi_closed=True))


@pytest.mark.parametrize("activation,ok", [("sigmoid", True), ("tanh", False), ("relu", False),
                                           ("softplus", False), ("linear", False)])
def test_sparsity_asks_the_activation_for_its_range(activation, ok):
    def build():
        weights, sparsity = make_penalties({"sparsity": {"layer": 0}})
        return Network([LAYERS.get("dense")(4, activation), LAYERS.get("dense")(3, "linear")], (5,),
                       LOSSES.get("mse")(), weights, sparsity)
    if ok:
        build()
        return
    with pytest.raises(BuildError, match=r"sparsity needs activations in \(0, 1\)") as err:
        build()
    assert err.value.key == "regularization.sparsity.layer"


def test_logistic_is_the_sigmoid_in_place_and_never_overflows():
    z = np.linspace(-40, 40, 801)
    np.testing.assert_allclose(logistic(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-15, atol=1e-16)
    with np.errstate(all="raise"):
        extreme = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32)
        s = logistic(extreme, out=extreme)
    assert s is extreme
    np.testing.assert_array_equal(s, np.array([0.0, 0.0, 0.5, 1.0, 1.0], dtype=np.float32))
    np.testing.assert_array_equal(ACTIVATIONS.get("sigmoid")().forward(z), logistic(z))
