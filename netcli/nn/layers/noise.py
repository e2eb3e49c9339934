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

    splits_by_rows = False   # the mask is drawn for the whole batch, in row order

    def __init__(self, rate: UnitFloat = 0.5):
        self.rate = rate

    def forward(self, x, train):
        if not train or self.rate == 0:
            self.scale = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32)  # the same mask in float32 and float64
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

    splits_by_rows = False   # the noise is drawn for the whole batch, in row order

    def __init__(self, rate: UnitFloat = 0.3, kind: Literal["mask", "gaussian"] = "mask"):
        self.rate, self.kind = rate, kind

    def forward(self, x, train):
        self.mask = None
        if not train or self.rate == 0:
            return x
        if self.kind == "mask":
            self.mask = (self.rng.random(x.shape, dtype=np.float32) >= self.rate).astype(x.dtype)
            return x * self.mask
        return x + (self.rate * self.rng.standard_normal(x.shape)).astype(x.dtype)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return dy if self.mask is None else dy * self.mask

    def describe(self):
        return f"corrupt({self.kind}, {self.rate:g})"
