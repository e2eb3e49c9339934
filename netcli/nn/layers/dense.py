"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from netcli.nn.activations import make_activation
from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import BuildError, Layer, ParamSpec
from netcli.constraints import ActivationSpec, NonNegativeInt, PositiveInt


# Batches up to this many rows flow through dense layers column-major (see Dense.forward).
# Larger ones (full-batch training) stay row-major: there the transposed product is the slower
# one, and the elementwise work on the outputs, not the GEMM, dominates.
COLUMN_MAJOR_ROWS = 1024


@LAYERS.register("dense")
class Dense(Layer):
    """z = x @ W.T + b, then the activation      x: (N, D_in) -> y: (N, D_out)
    W: (D_out, D_in) as W_ij in the notes (i: next layer, j: this one); b: (D_out,)
    Leading axes beyond N (e.g. time in (N, T, D)) are carried through.
    """

    def __init__(self, units: PositiveInt, activation: ActivationSpec = "linear"):
        self.units = units
        self.activation = make_activation(activation)

    def build(self, in_shape):
        self.d_in = in_shape[-1]
        return (*in_shape[:-1], self.units)

    def param_specs(self):
        return {
            "W": ParamSpec((self.units, self.d_in), decay=True, fan_in=self.d_in, fan_out=self.units),
            "b": ParamSpec((self.units,), decay=False, fill=0.0),
        }

    def forward(self, x, train):
        self.x = x
        if x.ndim == 2 and len(x) <= COLUMN_MAJOR_ROWS:
            # z.T = W @ x.T + b, returned as z: a transposed (column-major) view. Dense layers
            # in a row then hand each other x with x.T contiguous, and BLAS reads both operands
            # of W @ x.T in its fastest order: 10-25% faster than x @ W.T for minibatch shapes
            # on this project's OpenBLAS (benchmarks/RESULTS.md).
            zt = np.matmul(self.W, x.T)
            zt += self.b[:, None]
            return zt.T
        z = np.matmul(x, self.W.T)
        z += self.b   # in place: no second output-sized array
        return z

    def backward(self, dy, need_dx=True):
        x2 = self.x.reshape(-1, self.d_in)
        dy2 = dy.reshape(-1, self.units)
        np.matmul(dy2.T, x2, out=self.dW)
        np.matmul(dy2.T, self._ones(len(dy2), dy2.dtype), out=self.db)   # the column sums as one
                                                                          # GEMV: 4-5x np.sum here
        if not need_dx:
            return None
        if dy.ndim == 2 and len(dy) <= COLUMN_MAJOR_ROWS:
            return np.matmul(self.W.T, dy.T).T   # dx.T = W.T @ dy.T: the forward's layout
        return dy @ self.W

    def _ones(self, n: int, dtype) -> np.ndarray:
        ones = getattr(self, "_ones_buf", None)
        if ones is None or len(ones) != n or ones.dtype != dtype:
            ones = self._ones_buf = np.ones(n, dtype=dtype)
        return ones

    def describe(self):
        return f"dense({self.units}, {self.activation.describe()})"


@LAYERS.register("dense_tied")
class TiedDense(Layer):
    """A decoder whose weights are the transpose of an earlier dense layer's (tied weights):
    z = x @ W_src + b      x: (N, units_src) -> y: (N, D_in_src)
    Only b is its own; the gradient for W_src, dW_src += (dy.T @ x).T, is added to the
    source layer's gradient once the whole backward pass is done (`finish_backward`: the
    source's own backward assigns its dW, so this share must come after it).
    """

    def __init__(self, tied_to: NonNegativeInt, activation: ActivationSpec = "linear"):
        self.tied_to = tied_to
        self.activation = make_activation(activation)
        self.source: Dense | None = None  # set by bind, before build

    def bind(self, earlier):
        self.source = earlier[self.tied_to] if self.tied_to < len(earlier) else None

    def build(self, in_shape):
        src = self.source
        if not isinstance(src, Dense):
            raise BuildError(f"tied_to: {self.tied_to} must name an earlier dense layer")
        if in_shape[-1] != src.units:
            raise BuildError(f"input has {in_shape[-1]} features but layer {self.tied_to} has "
                             f"{src.units} units; a tied decoder must follow its encoder's code")
        self.units = src.d_in
        return (*in_shape[:-1], self.units)

    def param_specs(self):
        return {"b": ParamSpec((self.units,), decay=False, fill=0.0)}

    def forward(self, x, train):
        self.x = x
        z = np.matmul(x, self.source.W)
        z += self.b
        return z

    def backward(self, dy, need_dx=True):
        dy2 = dy.reshape(-1, self.units)
        self.dW_src = self.x.reshape(-1, self.source.units).T @ dy2   # (units_src, D_in_src)
        np.sum(dy2, axis=0, out=self.db)
        return dy @ self.source.W.T if need_dx else None

    def finish_backward(self):
        self.source.dW += self.dW_src

    def describe(self):
        return f"dense_tied(to layer {self.tied_to}, {self.activation.describe()})"
