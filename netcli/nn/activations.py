"""Activations: f and its derivative side by side.

Each activation maps a pre-activation z to a = f(z) elementwise (softmax: per row),
and maps an upstream gradient da back to dz = da * f'(z). Where the notes do, the
derivative is written in terms of the output a (sigmoid: a(1-a); tanh: 1-a^2).
"""

from __future__ import annotations

import numpy as np

from netcli.nn.types import NonNegativeFloat
from netcli.registry import Registry

ACTIVATIONS: Registry[type["Activation"]] = Registry("activation")


class Activation:
    """z: any shape -> a: same shape."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def kink_pattern(self, z: np.ndarray) -> np.ndarray | None:
        """Which side of each non-differentiable point z lies on (None: smooth everywhere).

        The gradient checker compares patterns before and after a perturbation to
        tell a real gradient bug from a finite difference that straddles a kink.
        """
        return None

    def describe(self) -> str:
        return self.registered_name  # type: ignore[attr-defined]


@ACTIVATIONS.register("linear")
class Linear(Activation):
    """f(z) = z;  f'(z) = 1"""

    def forward(self, z):
        return z

    def backward(self, z, a, da):
        return da


@ACTIVATIONS.register("sigmoid")
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z);  f'(z) = a (1 - a)"""

    def forward(self, z):
        # 0.5 (1 + tanh(z/2)) equals the logistic function and never overflows.
        a = np.multiply(z, 0.5)
        np.tanh(a, out=a)
        a += 1.0
        a *= 0.5
        return a

    def backward(self, z, a, da):
        return da * a * (1.0 - a)


@ACTIVATIONS.register("tanh")
class Tanh(Activation):
    """f(z) = tanh(z);  f'(z) = 1 - a^2"""

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, da):
        return da * (1.0 - a * a)


@ACTIVATIONS.register("relu")
class ReLU(Activation):
    """f(z) = max(0, z);  f'(z) = 1 if z > 0 else 0 (the notes' subgradient at 0 is 0)"""

    def forward(self, z):
        return np.maximum(z, 0.0)

    def backward(self, z, a, da):
        return da * (z > 0)

    def kink_pattern(self, z):
        return z > 0


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(Activation):
    """f(z) = z if z > 0 else alpha z;  f'(z) = 1 if z > 0 else alpha (alpha at 0)"""

    def __init__(self, alpha: NonNegativeFloat = 0.01):
        self.alpha = alpha

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def backward(self, z, a, da):
        return np.where(z > 0, da, self.alpha * da)

    def kink_pattern(self, z):
        return z > 0

    def describe(self):
        return f"leaky_relu(alpha={self.alpha:g})"


@ACTIVATIONS.register("softplus")
class Softplus(Activation):
    """f(z) = log(1 + e^z);  f'(z) = sigmoid(z)"""

    def forward(self, z):
        return np.logaddexp(0.0, z).astype(z.dtype, copy=False)

    def backward(self, z, a, da):
        return da * (0.5 * (1.0 + np.tanh(0.5 * z)))


@ACTIVATIONS.register("softmax")
class Softmax(Activation):
    """a_k = e^{z_k} / sum_j e^{z_j} over the last axis;
    dz = a * (da - sum_k da_k a_k)   (the Jacobian-vector product, never the Jacobian)

    With loss `cross_entropy` the network fuses softmax into the loss and this
    backward is not used; it serves softmax outputs under other losses.
    """

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, z, a, da):
        return a * (da - (da * a).sum(axis=-1, keepdims=True))


def make_activation(spec: str | dict | None) -> Activation:
    """'relu' or {type: leaky_relu, alpha: 0.1} -> an Activation instance."""
    if spec is None:
        return Linear()
    if isinstance(spec, str):
        return ACTIVATIONS.get(spec)()
    options = dict(spec)
    return ACTIVATIONS.get(options.pop("type"))(**options)
