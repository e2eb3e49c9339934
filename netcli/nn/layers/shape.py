"""Shape layers: flatten, reshape. No parameters; the values pass through unchanged."""

from __future__ import annotations

import math

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import BuildError, Layer


@LAYERS.register("flatten")
class Flatten(Layer):
    """y[n] = x[n] in row-major order (for images: channel, then row, then column, as PyTorch's)
    x: (N, *S) -> y: (N, prod(S));  dx = dy reshaped back to (N, *S)
    """

    def build(self, in_shape):
        self.in_shape = tuple(in_shape)
        return (math.prod(self.in_shape),)

    def forward(self, x, train):
        return x.reshape(x.shape[0], -1)  # a view when x is contiguous, else one copy

    def backward(self, dy, need_dx=True):
        return dy.reshape(dy.shape[0], *self.in_shape) if need_dx else None

    def describe(self):
        return "flatten"


@LAYERS.register("reshape")
class Reshape(Layer):
    """y[n] = x[n] in row-major order, viewed as `shape` (one entry may be -1: inferred)
    x: (N, *S) -> y: (N, *shape), prod(shape) == prod(S);  dx = dy reshaped back to (N, *S)
    e.g. {type: reshape, shape: [1, 8, 8]} turns 64 features into a 1x8x8 image.
    """

    def __init__(self, shape: list[int]):
        self.shape = shape

    def build(self, in_shape):
        self.in_shape = tuple(in_shape)
        shape = list(self.shape)
        size = math.prod(self.in_shape)
        if not shape or any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
            raise BuildError(f"shape must be positive sizes with at most one -1, got {self.shape}")
        known = math.prod(d for d in shape if d != -1)
        if -1 in shape:
            if size % known:
                raise BuildError(f"cannot reshape {list(self.in_shape)} ({size} values) to {self.shape}: "
                                 f"{size} is not a multiple of {known}")
            shape[shape.index(-1)] = size // known
        elif known != size:
            raise BuildError(f"cannot reshape {list(self.in_shape)} ({size} values) to {self.shape} "
                             f"({known} values)")
        self.out_shape = tuple(shape)
        return self.out_shape

    def forward(self, x, train):
        return x.reshape(x.shape[0], *self.out_shape)

    def backward(self, dy, need_dx=True):
        return dy.reshape(dy.shape[0], *self.in_shape) if need_dx else None

    def describe(self):
        return f"reshape({self.shape})"
