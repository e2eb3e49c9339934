"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from netcli.nn.activations import make_activation
from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import Layer, ParamSpec
from netcli.nn.types import ActivationSpec, PositiveInt


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
        return x @ self.W.T + self.b

    def backward(self, dy, need_dx=True):
        x2 = self.x.reshape(-1, self.d_in)
        dy2 = dy.reshape(-1, self.units)
        np.matmul(dy2.T, x2, out=self.dW)
        np.sum(dy2, axis=0, out=self.db)
        return dy @ self.W if need_dx else None

    def describe(self):
        return f"dense({self.units}, {self.activation.describe()})"
