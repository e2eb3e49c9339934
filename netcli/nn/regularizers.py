"""Penalties added to the data term, once per batch.

Weight penalties act on the network's weight block: every weight matrix and
kernel, never a bias (the network lays the weights out first in theta, so the
block is one contiguous view). Activation penalties act on one layer's output.
"""

from __future__ import annotations

import numpy as np

from netcli.constraints import NonNegativeFloat, NonNegativeInt, OpenUnitFloat
from netcli.registry import Registry

REGULARIZERS: Registry = Registry("regularizer")


class WeightPenalty:
    """value(w) and add_grad(w, gw) over the flat weight block w."""

    def __init__(self, strength: NonNegativeFloat):
        self.strength = strength


@REGULARIZERS.register("l2")
class L2(WeightPenalty):
    """lambda/2 * sum W^2;  d/dW = lambda W"""

    def value(self, w):
        return 0.5 * self.strength * float(np.vdot(w, w))

    def add_grad(self, w, gw):
        gw += self.strength * w

    def formula(self):
        return f"(lambda = {self.strength:g})/2 sum W^2"


@REGULARIZERS.register("l1")
class L1(WeightPenalty):
    """lambda * sum |W|;  d/dW = lambda sign(W) (0 at 0)"""

    def value(self, w):
        return self.strength * float(np.abs(w).sum())

    def add_grad(self, w, gw):
        gw += self.strength * np.sign(w)

    def formula(self):
        return f"(lambda_1 = {self.strength:g}) sum |W|"


@REGULARIZERS.register("sparsity")
class KLSparsity:
    """beta * sum_j KL(rho || rho_hat_j), rho_hat_j = mean over the batch of unit j's activation
    (the sparse autoencoder's penalty). With a: (N, units) in (0, 1):
        KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r))
        d/da_nj = beta / N * (-rho / rho_hat_j + (1 - rho) / (1 - rho_hat_j))
    """

    def __init__(self, layer: NonNegativeInt, rho: OpenUnitFloat = 0.05, beta: NonNegativeFloat = 3.0):
        self.layer, self.rho, self.beta = layer, rho, beta

    def value(self, a):
        rho, r = self.rho, a.mean(axis=0)
        kl = rho * np.log(rho / r) + (1 - rho) * np.log((1 - rho) / (1 - r))
        return self.beta * float(kl.sum())

    def grad(self, a):
        rho, r = self.rho, a.mean(axis=0)
        per_unit = self.beta * (-rho / r + (1 - rho) / (1 - r)) / a.shape[0]
        return np.broadcast_to(per_unit.astype(a.dtype, copy=False), a.shape)

    def formula(self):
        return f"(beta = {self.beta:g}) sum KL(rho = {self.rho:g} || rho_hat) on layer {self.layer}"


def make_penalties(spec: dict) -> tuple[list[WeightPenalty], list[KLSparsity]]:
    """{l2: 1e-4, sparsity: {layer: 0, rho: 0.05, beta: 3}} -> (weight penalties, activation penalties).
    A zero strength adds nothing."""
    weights, activations = [], []
    for name, options in spec.items():
        cls = REGULARIZERS.get(name)
        if isinstance(options, dict):
            penalty = cls(**options)
        elif options:
            penalty = cls(options)
        else:
            continue
        (activations if hasattr(penalty, "grad") else weights).append(penalty)
    return weights, activations
