"""Convolutions: conv1d, conv2d. Cross-correlation as in PyTorch.

For example n, output channel o, output position p and kernel tap t (kh x kw taps
for conv2d, k for conv1d), with stride s, dilation d and x_pad the input with
`padding` zeros on each side:

    z[n, o, p] = b[o] + sum_{c, t} W[o, c, t] * x_pad[n, c, s*p + d*t]

As matrices (im2col), columns ordered (tap, channel), plus a column of ones that
carries the bias through the same GEMMs:

    cols[(n, p), (t, c)] = x_pad[n, c, s*p + d*t]           one copy
    Z = [cols, 1] @ [Wk, b].T,   Wk[o, (t, c)] = W[o, c, t]   one GEMM
    [dWk, db] = ([cols, 1].T @ dZ).T                        one GEMM
    dx_pad[n, c, s*p + d*t] += (dZ @ W_t)[(n, p), c]         per tap t: a GEMM and a strided add

Layout: the GEMM writes Z as (N, *S_out, C_out), channels last, and the layer returns
the (N, C_out, *S_out) view of it without copying. Elementwise activations keep that
memory order, pooling reads it tap by tap, and the next conv's im2col copies whole
channel runs. (With one input channel the column matrix is stored transposed, so each
tap's copy writes contiguous rows.) Nothing the layer returns is a reused buffer; only
its own scratch (the padded input, the columns, the per-tap input gradients) is kept
between calls.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from netcli.nn.activations import make_activation
from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import BuildError, Layer, ParamSpec
from netcli.constraints import ActivationSpec, NonNegativeInt, NonNegativeInts, PositiveInt, PositiveInts


def as_tuple(name: str, value, n: int, minimum: int) -> tuple[int, ...]:
    """An int, or a list of n ints, -> n ints >= minimum; BuildError otherwise.

    (A config's values, in a list or not, are checked by the validator against the markers;
    the list's length, n per input rank, is known only here. Layers built in Python, without
    a config, get every check here.)"""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BuildError(f"{name} must be an integer or a list of {n} integers, got {value!r}")
    if any(v < minimum for v in values):
        kind = "positive" if minimum > 0 else "non-negative"
        raise BuildError(f"{name} must be {kind}, got {value!r}")
    return tuple(values)


def check_rank(in_shape, axes: tuple[str, ...]) -> None:
    """in_shape must be [C, *axes]; say how to set model.input otherwise."""
    if len(in_shape) != 1 + len(axes):
        want = ", ".join(("C",) + axes)
        example = " (e.g. [1, 8, 8] for 8x8 grey images)" if len(axes) == 2 else ""
        raise BuildError(f"needs an input of shape [{want}] per example, got {list(in_shape)}; "
                         f"set model.input: [{want}]{example}, or put the layer after one "
                         f"that outputs {len(axes) + 1} axes")


def fmt(values: tuple, short: bool = False) -> str:
    """(3, 3) -> '3x3' ('3' if short), (1, 2) -> '1x2', (2,) -> '2'."""
    if short and len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


class Scratch:
    """Flat buffers reused between calls; a request takes a prefix of the right shape.

    Shapes differ between calls only in the batch axis, so a buffer sized for the
    largest batch serves every smaller one (zeroed buffers keep their zero borders).
    """

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype, zero: bool = False) -> np.ndarray:
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = (np.zeros if zero else np.empty)(size, dtype=dtype)
            self.buffers[name] = buf
        return buf[:size].reshape(shape)


class _Conv(Layer):
    """Shared by conv1d and conv2d: `axes` names the spatial axes."""

    axes: tuple[str, ...] = ()

    def _configure(self, channels, kernel, stride, padding, dilation, activation):
        self.channels = channels
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.activation = make_activation(activation)

    def build(self, in_shape):
        check_rank(in_shape, self.axes)
        n = len(self.axes)
        self.k = as_tuple("kernel", self.kernel, n, 1)
        self.s = as_tuple("stride", self.stride, n, 1)
        self.p = as_tuple("padding", self.padding, n, 0)
        self.d = as_tuple("dilation", self.dilation, n, 1)
        self.c_in, *size = in_shape
        out = []
        for axis, m, k, s, p, d in zip(self.axes, size, self.k, self.s, self.p, self.d):
            span = d * (k - 1) + 1
            if span > m + 2 * p:
                spans = f" (dilation {d}: spans {span})" if d > 1 else ""
                raise BuildError(f"kernel {k}{spans} is larger than the padded input along {axis}: "
                                 f"{m} + 2*{p} = {m + 2 * p}")
            out.append((m + 2 * p - span) // s + 1)
        self.in_size, self.out_size = tuple(size), tuple(out)
        self.padded_size = tuple(m + 2 * p for m, p in zip(size, self.p))
        self.taps = list(itertools.product(*(range(k) for k in self.k)))
        self.scratch = Scratch()
        return (self.channels, *self.out_size)

    def param_specs(self):
        kk = math.prod(self.k)
        return {
            "W": ParamSpec((self.channels, self.c_in, *self.k), decay=True,
                           fan_in=self.c_in * kk, fan_out=self.channels * kk),
            "b": ParamSpec((self.channels,), decay=False, fill=0.0),
        }

    # -- index helpers (channels-last arrays (N, *S, C)) ----------------------

    def _tap(self, tap) -> tuple:
        """x_pad[n, s*p + d*t, c] for all output positions p: a strided slice."""
        return (slice(None),
                *(slice(d * t, d * t + s * (o - 1) + 1, s)
                  for t, s, d, o in zip(tap, self.s, self.d, self.out_size)),
                slice(None))

    def _interior(self) -> tuple:
        return (slice(None), *(slice(p, p + m) for p, m in zip(self.p, self.in_size)), slice(None))

    def _im2col(self, xp: np.ndarray) -> np.ndarray:
        """[cols, 1]: (N*P, T*C_in + 1), cols[(n, p), (t, c)] = xp[n, s*p + d*t, c], last column ones.

        xp: (N, *S_pad, C_in), any strides. The ones column puts b into the forward GEMM and
        db into the weight-gradient GEMM.
        """
        n, n_axes, k = xp.shape[0], len(self.axes), len(self.taps) * self.c_in
        m = n * math.prod(self.out_size)
        if self.c_in == 1:
            # one channel: store the matrix transposed, tap by tap, so each copy writes whole
            # contiguous rows (the row-major copy would write one float per step); BLAS reads
            # the transpose at no cost
            rows = self.scratch.get("cols", (k + 1, m), xp.dtype)
            for t, tap in enumerate(self.taps):
                rows[t].reshape(n, *self.out_size)[...] = xp[self._tap(tap)][..., 0]
            rows[k] = 1
            return rows.T
        cols = self.scratch.get("cols", (m, k + 1), xp.dtype)
        blocks = cols[:, :k].reshape(n, *self.out_size, *self.k, self.c_in)
        assert np.may_share_memory(blocks, cols), "splitting axes must give a view"
        st = xp.strides
        windows = as_strided(
            xp, shape=blocks.shape,
            strides=(st[0], *(st[1 + i] * self.s[i] for i in range(n_axes)),
                     *(st[1 + i] * self.d[i] for i in range(n_axes)), st[-1]),
            writeable=False)
        np.copyto(blocks, windows)  # the one copy: whole channel runs at a time
        cols[:, k] = 1
        return cols

    # -- forward and backward --------------------------------------------------

    def forward(self, x, train):
        n = x.shape[0]
        xc = np.moveaxis(x, 1, -1)  # (N, *S, C_in): a view
        if any(self.p):
            xp = self.scratch.get("padded", (n, *self.padded_size, self.c_in), x.dtype, zero=True)
            xp[self._interior()] = xc  # the zero border is never written
        else:
            xp = xc
        self.cols = self._im2col(xp)
        k = len(self.taps) * self.c_in
        wb = np.empty((self.channels, k + 1), dtype=self.W.dtype)  # [Wk, b]
        wb[:, :k] = np.moveaxis(self.W, 1, -1).reshape(self.channels, k)
        wb[:, k] = self.b
        z = self.cols @ wb.T  # (N*P, C_out): the one GEMM, bias included
        return np.moveaxis(z.reshape(n, *self.out_size, self.channels), -1, 1)

    def backward(self, dy, need_dx=True):
        n, k = dy.shape[0], len(self.taps) * self.c_in
        dz = np.moveaxis(dy, 1, -1).reshape(-1, self.channels)  # (N*P, C_out); a view when channels-last
        # [dWk, db] as its transpose [cols, 1].T @ dZ: one GEMM, with both operands in the order
        # BLAS reads fastest when cols is stored transposed (one input channel: 1.6x), as fast otherwise
        dwb = np.matmul(self.cols.T, dz).T
        self.dW[...] = np.moveaxis(dwb[:, :k].reshape(self.channels, *self.k, self.c_in), -1, 1)
        self.db[...] = dwb[:, k]
        if not need_dx:
            return None
        # per tap t: (N*P, C_out) @ W_t (C_out, C_in), all taps in one batched matmul call;
        # W_t contiguous, (T, C_out, C_in), so each product goes to BLAS. (One wide GEMM
        # dZ @ Wk is faster by itself, but its (tap, channel) columns make the strided adds
        # below read 9x the memory: slower overall, measured.)
        w_taps = np.ascontiguousarray(np.moveaxis(self.W.reshape(self.channels, self.c_in, -1), -1, 0))
        dcols = self.scratch.get("dcols", (len(self.taps), dz.shape[0], self.c_in), dz.dtype)
        np.matmul(dz, w_taps, out=dcols)
        dxp = np.zeros((n, *self.padded_size, self.c_in), dtype=dz.dtype)
        for tap, g in zip(self.taps, dcols):
            dxp[self._tap(tap)] += g.reshape(n, *self.out_size, self.c_in)
        return np.moveaxis(dxp[self._interior()], -1, 1)

    def describe(self):
        n = len(self.axes)
        parts = [str(self.channels), fmt(as_tuple_or_raw(self.kernel, n))]
        for name, value, default in (("stride", self.stride, 1), ("pad", self.padding, 0),
                                     ("dilation", self.dilation, 1)):
            if as_tuple_or_raw(value, n) != (default,) * n:
                parts.append(f"{name} {fmt(as_tuple_or_raw(value, n), short=True)}")
        parts.append(self.activation.describe())
        return f"{self.registered_name}({', '.join(parts)})"  # type: ignore[attr-defined]


def as_tuple_or_raw(value, n: int) -> tuple:
    """For messages: the value as a tuple, without validating it."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


@LAYERS.register("conv2d")
class Conv2D(_Conv):
    """z = W (*) x + b (cross-correlation), then the activation
    x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out),  H_out = (H + 2 pad - dil (kh - 1) - 1) // stride + 1
    W: (C_out, C_in, kh, kw) as PyTorch's; b: (C_out,)
    kernel, stride, padding, dilation: an int (both axes) or a list [along H, along W].
    """

    axes = ("H", "W")

    def __init__(self, channels: PositiveInt, kernel: PositiveInts, stride: PositiveInts = 1,
                 padding: NonNegativeInts = 0, dilation: PositiveInts = 1,
                 activation: ActivationSpec = "linear"):
        self._configure(channels, kernel, stride, padding, dilation, activation)


@LAYERS.register("conv1d")
class Conv1D(_Conv):
    """z = W (*) x + b (cross-correlation), then the activation
    x: (N, C_in, L) -> y: (N, C_out, L_out),  L_out = (L + 2 pad - dil (k - 1) - 1) // stride + 1
    W: (C_out, C_in, k) as PyTorch's; b: (C_out,)
    """

    axes = ("L",)

    def __init__(self, channels: PositiveInt, kernel: PositiveInt, stride: PositiveInt = 1,
                 padding: NonNegativeInt = 0, dilation: PositiveInt = 1,
                 activation: ActivationSpec = "linear"):
        self._configure(channels, kernel, stride, padding, dilation, activation)
