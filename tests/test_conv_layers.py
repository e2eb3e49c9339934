"""Convolution, pooling and shape layers: forward against slow loops written out here,
max-pool ties, dtypes, scratch buffers, shapes and build errors.

Their gradients are checked in tests/test_gradients.py, case by case from the one table
(tests/gradient_cases.py), through the layer harness on a real Network.
"""

from __future__ import annotations

import itertools
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from gradient_cases import cases
from netcli.nn import LAYERS, LOSSES, Network
from netcli.nn.network import BuildError

from helpers import Case, layer_network

ROOT = Path(__file__).resolve().parents[1]
CONV_FAMILY = ["conv2d", "conv1d", "maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d", "flatten", "reshape"]


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


# -- slow, obviously correct references ------------------------------------------------

def conv2d_loops(x, W, b, stride, padding, dilation):
    """x: (N, C, H, W), W: (O, C, kh, kw); every output element summed term by term."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for i_n, i_o, i, j in itertools.product(range(n), range(o), range(ho), range(wo)):
        total = b[i_o]
        for i_c, a, e in itertools.product(range(c), range(kh), range(kw)):
            total += W[i_o, i_c, a, e] * xp[i_n, i_c, i * sh + a * dh, j * sw + e * dw]
        y[i_n, i_o, i, j] = total
    return y


def conv1d_loops(x, W, b, stride, padding, dilation):
    """x: (N, C, L), W: (O, C, k)."""
    n, c, length = x.shape
    o, _, k = W.shape
    xp = np.zeros((n, c, length + 2 * padding))
    xp[:, :, padding:padding + length] = x
    lo = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, o, lo))
    for i_n, i_o, i in itertools.product(range(n), range(o), range(lo)):
        total = b[i_o]
        for i_c, a in itertools.product(range(c), range(k)):
            total += W[i_o, i_c, a] * xp[i_n, i_c, i * stride + a * dilation]
        y[i_n, i_o, i] = total
    return y


def pool_loops(x, size, stride, reduce):
    """x: (N, C, *S); reduce(window values) per window, windows row-major."""
    n, c, *spatial = x.shape
    out = [(m - k) // s + 1 for m, k, s in zip(spatial, size, stride)]
    y = np.zeros((n, c, *out))
    for i_n, i_c in itertools.product(range(n), range(c)):
        for p in itertools.product(*(range(o) for o in out)):
            window = x[(i_n, i_c, *(slice(q * s, q * s + k) for q, k, s in zip(p, size, stride)))]
            y[(i_n, i_c, *p)] = reduce(window)
    return y


# -- forward against the loops ---------------------------------------------------------

@pytest.mark.parametrize("c_in,in_hw,kernel,stride,padding,dilation", [
    (2, (7, 6), 3, 1, 0, 1),
    (3, (7, 6), 3, 2, 1, 1),
    (2, (8, 9), [2, 3], [1, 2], [0, 2], [2, 1]),
    (1, (6, 5), 3, 1, 1, 1),      # one input channel: the transposed im2col path
    (1, (7, 7), 2, 3, 2, 2),
    (4, (3, 3), 1, 1, 0, 1),      # 1x1
    (2, (5, 5), 5, 1, 0, 1),      # kernel as large as the input
])
def test_conv2d_forward_matches_loops(c_in, in_hw, kernel, stride, padding, dilation):
    rng = rng_for(f"conv2d{c_in}{in_hw}{kernel}{stride}{padding}{dilation}")
    layer = LAYERS.get("conv2d")(3, kernel, stride=stride, padding=padding, dilation=dilation)
    out_shape = layer_network(Case([layer], (c_in, *in_hw)), rng).output_shape
    x = rng.normal(size=(2, c_in, *in_hw))
    y = layer.forward(x, True)
    expected = conv2d_loops(x, layer.W, layer.b, layer.s, layer.p, layer.d)
    assert y.shape == (2, *out_shape) == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_in,length,kernel,stride,padding,dilation", [
    (2, 9, 3, 1, 0, 1),
    (3, 10, 3, 2, 1, 1),
    (2, 11, 2, 1, 2, 3),
    (1, 8, 4, 2, 1, 1),
])
def test_conv1d_forward_matches_loops(c_in, length, kernel, stride, padding, dilation):
    rng = rng_for(f"conv1d{c_in}{length}{kernel}{stride}{padding}{dilation}")
    layer = LAYERS.get("conv1d")(4, kernel, stride=stride, padding=padding, dilation=dilation)
    out_shape = layer_network(Case([layer], (c_in, length)), rng).output_shape
    x = rng.normal(size=(3, c_in, length))
    y = layer.forward(x, True)
    expected = conv1d_loops(x, layer.W, layer.b, stride, padding, dilation)
    assert y.shape == (3, *out_shape) == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,reduce", [("max", np.max), ("avg", np.mean)])
@pytest.mark.parametrize("in_shape,size,stride", [
    ((2, 6, 8), 2, None),            # windows tile the input
    ((2, 7, 6), 3, 2),               # overlapping
    ((3, 5, 7), [2, 3], None),       # leftover rows and columns
    ((1, 6, 6), [3, 2], [1, 2]),
    ((3, 8), 2, None),               # 1d
    ((2, 9), 3, 2),
    ((2, 7), 2, 3),                  # gaps between windows
])
def test_pool_forward_matches_loops(kind, reduce, in_shape, size, stride):
    n_axes = len(in_shape) - 1
    layer = LAYERS.get(f"{kind}pool{n_axes}d")(size, stride=stride)
    out_shape = layer.build(in_shape)
    x = rng_for(f"{kind}{in_shape}{size}{stride}").normal(size=(3, *in_shape))
    y = layer.forward(x, True)
    expected = pool_loops(x, layer.k, layer.s, reduce)
    assert y.shape == (3, *out_shape) == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-15)


def test_flatten_and_reshape_follow_row_major_order():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # a conv's layout
    flatten = LAYERS.get("flatten")()
    assert flatten.build((3, 4, 5)) == (60,)
    np.testing.assert_array_equal(flatten.forward(channels_last, True), x.reshape(2, 60))
    reshape = LAYERS.get("reshape")([5, -1])
    assert reshape.build((3, 4, 5)) == (5, 12)
    np.testing.assert_array_equal(reshape.forward(x, True), x.reshape(2, 5, 12))
    dy = np.ones((2, 5, 12))
    assert reshape.backward(dy).shape == x.shape


# -- max pooling: ties go to exactly one input ------------------------------------------

@pytest.mark.parametrize("name,in_shape,size,stride", [
    ("maxpool2d", (2, 4, 6), 2, None),
    ("maxpool2d", (1, 5, 5), 3, 2),       # overlapping windows
    ("maxpool2d", (2, 5, 7), [2, 3], 1),
    ("maxpool1d", (2, 9), 3, None),
])
def test_max_pool_tie_sends_the_gradient_to_the_first_max(name, in_shape, size, stride):
    """A constant input makes every window one big tie: each window's gradient goes to its
    first element (row-major) and nowhere else."""
    layer = LAYERS.get(name)(size, stride=stride)
    out_shape = layer.build(in_shape)
    x = np.zeros((2, *in_shape))
    dy = rng_for(name).uniform(1.0, 2.0, size=(2, *out_shape))
    layer.forward(x, True)
    dx = layer.backward(dy)
    first = (slice(None), slice(None),
             *(slice(0, s * (o - 1) + 1, s) for o, s in zip(out_shape[1:], layer.s)))
    np.testing.assert_array_equal(dx[first], dy)  # window starts are distinct inputs
    assert np.count_nonzero(dx) == dy.size       # one input per window, nothing else
    assert np.all(layer.kink_pattern() == 0)


def test_max_pool_ties_among_some_taps():
    """Two maxima in a window: the first in row-major order wins, the other gets nothing."""
    layer = LAYERS.get("maxpool2d")(2)
    layer.build((1, 2, 2))
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    layer.forward(x, True)
    dx = layer.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 5.0], [0.0, 0.0]]]])


# -- a whole network: shapes ------------------------------------------------------------

def test_tiny_cnn_shapes():
    """Its gradients: the tiny-CNN case in tests/gradient_cases.py (conv2d)."""
    layers = [LAYERS.get("conv2d")(3, 3, padding=1, activation="relu"), LAYERS.get("maxpool2d")(2),
              LAYERS.get("flatten")(), LAYERS.get("dense")(4, "softmax")]
    net = Network(layers, (2, 6, 6), LOSSES.get("cross_entropy")(), dtype=np.float64)
    assert net.shapes == [(2, 6, 6), (3, 6, 6), (3, 3, 3), (27,), (4,)]
    assert {name: p.shape for name, p in net.params.items()} == {
        "layers.0.W": (3, 2, 3, 3), "layers.0.b": (3,), "layers.3.W": (4, 27), "layers.3.b": (4,)}
    net.init_params(rng_for("tiny_cnn"))
    out = net.forward(rng_for("tiny_cnn_x").normal(size=(5, 2, 6, 6)))
    assert out.shape == (5, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)


# -- dtype, buffers, errors ----------------------------------------------------------------

@pytest.mark.parametrize("case_id,factory", [pytest.param(*c, id=c[0]) for c in cases(["layer"])
                                             if c[0].split(":")[1].split("[")[0] in CONV_FAMILY])
def test_float32_stays_float32(case_id, factory):
    """The conv, pooling and shape layers' gradient cases, layer by layer in float32."""
    rng = rng_for(case_id)
    case = factory()
    layers = layer_network(case, rng, np.float32).layers
    a = rng.normal(size=(3, *case.input_shape)).astype(np.float32)
    for layer in layers:
        a = layer.forward(a, True)
        assert a.dtype == np.float32, f"{layer.describe()} forward gave {a.dtype}"
    d = rng.normal(size=a.shape).astype(np.float32)
    for layer in reversed(layers):
        d = layer.backward(d)
        assert d.dtype == np.float32, f"{layer.describe()} backward gave {d.dtype}"
        for name in layer.param_specs():
            assert getattr(layer, "d" + name).dtype == np.float32


def test_scratch_buffers_follow_the_batch_size_and_never_alias_outputs():
    rng = rng_for("scratch")
    layer = LAYERS.get("conv2d")(3, 3, padding=1)
    layer_network(Case([layer], (2, 5, 5)), rng)
    fresh = LAYERS.get("conv2d")(3, 3, padding=1)
    fresh.build((2, 5, 5))
    fresh.W, fresh.b = layer.W, layer.b
    big, small = rng.normal(size=(6, 2, 5, 5)), rng.normal(size=(2, 2, 5, 5))
    y_big = layer.forward(big, False)
    y_big_copy = y_big.copy()
    y_small = layer.forward(small, False)     # reuses a prefix of the larger buffers
    np.testing.assert_array_equal(y_big, y_big_copy)
    np.testing.assert_allclose(y_small, fresh.forward(small, False), rtol=1e-15, atol=0)
    np.testing.assert_allclose(layer.forward(big, False), y_big_copy, rtol=1e-15, atol=0)


def build(layer, in_shape):
    return Network([layer], in_shape, LOSSES.get("mse")(), dtype=np.float64)


@pytest.mark.parametrize("layer,in_shape,message", [
    (lambda: LAYERS.get("conv2d")(4, 5), (1, 4, 8),
     "kernel 5 is larger than the padded input along H: 4 + 2*0 = 4"),
    (lambda: LAYERS.get("conv2d")(4, 3, dilation=3), (1, 6, 6), "(dilation 3: spans 7)"),
    (lambda: LAYERS.get("conv1d")(4, 4), (2, 3), "kernel 4 is larger than the padded input along L"),
    (lambda: LAYERS.get("conv2d")(4, 3), (64,), "set model.input: [C, H, W]"),
    (lambda: LAYERS.get("conv1d")(4, 3), (1, 8, 8), "set model.input: [C, L]"),
    (lambda: LAYERS.get("conv2d")(4, [3, 3, 3]), (1, 8, 8), "kernel must be an integer or a list of 2"),
    (lambda: LAYERS.get("conv2d")(4, [3, 0]), (1, 8, 8), "kernel must be positive"),
    (lambda: LAYERS.get("maxpool2d")(3), (2, 2, 8), "window 3 is larger than the input along H (2)"),
    (lambda: LAYERS.get("avgpool1d")(2, stride=0), (2, 8), "stride must be positive"),
    (lambda: LAYERS.get("reshape")([3, 5]), (2, 8), "cannot reshape [2, 8] (16 values) to [3, 5]"),
    (lambda: LAYERS.get("reshape")([-1, 5]), (2, 8), "not a multiple of 5"),
])
def test_sizes_that_do_not_fit_are_build_errors(layer, in_shape, message):
    with pytest.raises(BuildError) as err:
        build(layer(), in_shape)
    assert message in str(err.value)
    assert err.value.key == "model.layers[0]"


@pytest.mark.parametrize("line, says", [
    ("{type: conv2d, channels: 32, kernel: [3, -1], padding: 1}", "model.layers[0].kernel[1]: must be > 0, got -1"),
    ("{type: conv2d, channels: 32, kernel: 3, padding: [1, -1]}", "model.layers[0].padding[1]: must be >= 0"),
    ("{type: maxpool2d, size: [2, 0]}", "model.layers[0].size[1]: must be > 0, got 0"),
])
def test_a_config_s_ints_inside_a_list_are_checked_by_the_validator(tmp_path, line, says):
    """constraints.PositiveInts / NonNegativeInts: the config path never reaches as_tuple's checks."""
    from netcli.config import load_config
    from netcli.errors import ConfigError

    text = (ROOT / "configs" / "digits_cnn.yaml").read_text()
    text = text.replace("{type: conv2d, channels: 32, kernel: 3, padding: 1, activation: relu}", line, 1)
    path = tmp_path / "cnn.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(path)


def test_digits_cnn_config_builds_with_sensible_shapes():
    from netcli.config import load_config
    from netcli.prepare import build_network

    config = load_config(ROOT / "configs" / "digits_cnn.yaml")
    net = build_network(config, dtype=np.float64)
    assert net.input_shape == (1, 8, 8)
    assert net.output_shape == (10,)
    assert net.shapes[1][1:] == (8, 8)  # a padded 3x3 conv keeps the image size
