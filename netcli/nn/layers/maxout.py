"""Maxout units (Goodfellow et al. 2013): each unit is the max of k affine pieces."""

from __future__ import annotations

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import Layer, ParamSpec
from netcli.constraints import PositiveInt


@LAYERS.register("maxout")
class Maxout(Layer):
    """y_u = max_k (W_{u,k} . x + b_{u,k})      x: (N, D_in) -> y: (N, units)
    W: (units * pieces, D_in), row u * pieces + k is piece k of unit u; b: (units * pieces,)
    The gradient flows only through the winning piece (the argmax; first one on ties).
    """

    def __init__(self, units: PositiveInt, pieces: PositiveInt = 2):
        self.units = units
        self.pieces = pieces

    def build(self, in_shape):
        self.d_in = in_shape[-1]
        return (*in_shape[:-1], self.units)

    def param_specs(self):
        rows = self.units * self.pieces
        return {
            "W": ParamSpec((rows, self.d_in), decay=True, fan_in=self.d_in, fan_out=self.units),
            "b": ParamSpec((rows,), decay=False, fill=0.0),
        }

    def forward(self, x, train):
        self.x = x
        z = (x.reshape(-1, self.d_in) @ self.W.T + self.b).reshape(-1, self.units, self.pieces)
        self.winner = z.argmax(axis=-1)
        y = np.take_along_axis(z, self.winner[..., None], axis=-1)[..., 0]
        return y.reshape(*x.shape[:-1], self.units)

    def backward(self, dy, need_dx=True):
        dz = np.zeros((self.winner.shape[0], self.units, self.pieces), dtype=dy.dtype)
        np.put_along_axis(dz, self.winner[..., None], dy.reshape(-1, self.units, 1), axis=-1)
        dz = dz.reshape(-1, self.units * self.pieces)
        np.matmul(dz.T, self.x.reshape(-1, self.d_in), out=self.dW)
        np.sum(dz, axis=0, out=self.db)
        return (dz @ self.W).reshape(self.x.shape) if need_dx else None

    def kink_pattern(self):
        return self.winner

    def describe(self):
        return f"maxout({self.units}, pieces={self.pieces})"
