"""Penalties added to the data term, once per batch.

Weight penalties act on the network's weight block: every weight matrix and
kernel, never a bias (the network lays the weights out first in theta, so the
block is one contiguous view). Activation penalties act on one layer's output, and say
whether that layer suits them (`check`, called by the network when it is built).
"""

from __future__ import annotations

import numpy as np

from netcli.constraints import NonNegativeFloat, NonNegativeInt, OpenUnitFloat
from netcli.nn.activations import OPEN_UNIT, REAL_LINE
from netcli.nn.layers.base import BuildError
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


class ActivationPenalty:
    """value(a) and grad(a) = d value / d a on the activations a of layer `layer`."""

    layer: int

    def check(self, layers: list, fused_output: bool) -> None:
        """Raise BuildError (with the config key) unless the penalty fits the network's layers.
        fused_output: the last layer's activation is folded into the loss, so the network
        keeps that layer's pre-activation, not its activation. The network calls this for
        every activation penalty when it is built."""
        name = self.registered_name  # type: ignore[attr-defined]
        if not 0 <= self.layer < len(layers):
            raise BuildError(f"{name} layer {self.layer} is not a layer index (0..{len(layers) - 1})",
                             f"regularization.{name}.layer")
        if self.layer == len(layers) - 1 and fused_output:
            raise BuildError(f"{name} cannot act on the output layer of a loss with a fused activation",
                             f"regularization.{name}.layer")


@REGULARIZERS.register("sparsity")
class KLSparsity(ActivationPenalty):
    """beta * sum_j KL(rho || rho_hat_j), rho_hat_j = mean over the batch of unit j's activation
    (the sparse autoencoder's penalty). With a: (N, units) in (0, 1):
        KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r))
        d/da_nj = beta / N * (-rho / rho_hat_j + (1 - rho) / (1 - rho_hat_j))
    """

    def __init__(self, layer: NonNegativeInt, rho: OpenUnitFloat = 0.05, beta: NonNegativeFloat = 3.0):
        self.layer, self.rho, self.beta = layer, rho, beta

    def check(self, layers, fused_output):
        """Besides the layer index: the layer's activations must lie in the open (0, 1), where
        KL(rho || rho_hat) is finite, as their declared output range says."""
        super().check(layers, fused_output)
        act = layers[self.layer].activation
        output_range = REAL_LINE if act is None else act.output_range
        if not output_range.within(OPEN_UNIT):
            name = "linear" if act is None else act.describe()
            raise BuildError(f"sparsity needs activations in {OPEN_UNIT}: layer {self.layer} has "
                             f"activation {name!r}, with outputs in {output_range}; use sigmoid",
                             "regularization.sparsity.layer")
        if not 0 < self.rho < 1:
            raise BuildError(f"rho must lie in (0, 1), got {self.rho}", "regularization.sparsity.rho")

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


def make_penalties(spec: dict) -> tuple[list[WeightPenalty], list[ActivationPenalty]]:
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
        (activations if isinstance(penalty, ActivationPenalty) else weights).append(penalty)
    return weights, activations
