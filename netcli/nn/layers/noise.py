"""Layers that are random during training and the identity at evaluation."""

from __future__ import annotations

from typing import Literal

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import Layer
from netcli.constraints import UnitFloat


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout: y = x * mask / (1 - rate), mask_i ~ Bernoulli(1 - rate), in training;
    y = x at evaluation.  dx = dy * mask / (1 - rate).      x: (N, ...) -> y: same shape
    The mask comes from the network's seeded generator, so runs are reproducible.
    """

    def __init__(self, rate: UnitFloat = 0.5):
        self.rate = rate

    def draw(self, shape):
        # float32 draws: the same mask in float32 and float64
        return self.rng.random(shape, dtype=np.float32) if self.rate else None

    def forward(self, x, train):
        if not train or self.rate == 0:
            self.scale = None
            return x
        keep = self.random_values(x.shape)
        self.scale = (keep >= self.rate).astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self.scale

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return dy if self.scale is None else dy * self.scale

    def describe(self):
        return f"dropout({self.rate:g})"


@LAYERS.register("corrupt")
class Corrupt(Layer):
    """Input corruption for denoising autoencoders, in training only:
    kind mask:     y = x * m, m_i ~ Bernoulli(1 - rate)   (masking noise: a fraction `rate` set to 0)
    kind gaussian: y = x + rate * e, e ~ N(0, 1)
    The target stays the clean input.      x: (N, ...) -> y: same shape
    """

    def __init__(self, rate: UnitFloat = 0.3, kind: Literal["mask", "gaussian"] = "mask"):
        self.rate, self.kind = rate, kind

    def draw(self, shape):
        if not self.rate:
            return None
        return self.rng.random(shape, dtype=np.float32) if self.kind == "mask" else self.rng.standard_normal(shape)

    def forward(self, x, train):
        self.mask = None
        if not train or self.rate == 0:
            return x
        values = self.random_values(x.shape)
        if self.kind == "mask":
            self.mask = (values >= self.rate).astype(x.dtype)
            return x * self.mask
        return x + (self.rate * values).astype(x.dtype)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return dy if self.mask is None else dy * self.mask

    def describe(self):
        return f"corrupt({self.kind}, {self.rate:g})"
