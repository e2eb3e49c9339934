"""Activations: f and its derivative side by side.

Each activation maps a pre-activation z to a = f(z) elementwise (softmax: per row),
and maps an upstream gradient da back to dz = da * f'(z). Where the notes do, the
derivative is written in terms of the output a (sigmoid: a(1-a); tanh: 1-a^2).

`forward` and `backward` never modify their arguments. The network, which owns the
arrays of a training step, calls the in-place twins `forward_` (may overwrite z with a)
and `backward_` (may overwrite da with dz); each activation overrides them only where
its backward still holds with z replaced by a = f(z): it reads a alone, or only the
sign of z, which a keeps (relu, leaky_relu). Softplus needs z itself and keeps the
defaults, which call the pure versions.
"""

from __future__ import annotations

import numpy as np

from netcli.constraints import NonNegativeFloat
from netcli.registry import Registry

ACTIVATIONS: Registry[type["Activation"]] = Registry("activation")

BLOCK = 1 << 15  # elements (128 KiB of float32): the several passes of an in-place activation
                 # over one block run in L2, so a large array crosses main memory once, not per pass


def _blocks(*arrays: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Matching flat pieces of about BLOCK elements of same-shaped arrays that share one
    contiguous memory layout (for elementwise work); small or mismatched arrays: one piece,
    the arrays themselves."""
    first = arrays[0]
    if first.size < 4 * BLOCK or not (first.flags.c_contiguous or first.flags.f_contiguous) or \
            any(a.shape != first.shape or a.strides != first.strides for a in arrays[1:]):
        return [arrays]
    flat = [a.ravel(order="K") for a in arrays]   # views, in the one memory order they share
    return [tuple(f[s:s + BLOCK] for f in flat) for s in range(0, first.size, BLOCK)]


def _scratch(pieces: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """One scratch array per piece, shaped and laid out like the piece (one buffer serves all)."""
    first = pieces[0][0]
    if len(pieces) == 1:
        return [np.empty_like(first)]
    buf = np.empty(first.size, dtype=first.dtype)
    return [buf[:p[0].size] for p in pieces]


class Activation:
    """z: any shape -> a: same shape."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward_(self, z: np.ndarray) -> np.ndarray:
        """f(z), allowed to overwrite z; then backward_ may receive a in place of z."""
        return self.forward(z)

    def backward_(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        """dz, allowed to overwrite da; z may be a itself (after forward_)."""
        return self.backward(z, a, da)

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


def _logistic_of_half(h: np.ndarray) -> np.ndarray:
    """h = z/2 -> 1 / (1 + e^-z) in place, as 0.5 (1 + tanh(z/2)), which never overflows."""
    np.tanh(h, out=h)
    h += 1.0
    h *= 0.5
    return h


@ACTIVATIONS.register("sigmoid")
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z);  f'(z) = a (1 - a)"""

    def forward(self, z):
        return _logistic_of_half(np.multiply(z, 0.5))

    def forward_(self, z):
        for (piece,) in _blocks(z):
            piece *= 0.5
            _logistic_of_half(piece)
        return z

    def backward(self, z, a, da):
        return da * a * (1.0 - a)

    def backward_(self, z, a, da):
        pieces = _blocks(a, da)
        for (a_, da_), slope in zip(pieces, _scratch(pieces)):
            np.subtract(1.0, a_, out=slope)
            slope *= a_
            da_ *= slope
        return da


@ACTIVATIONS.register("tanh")
class Tanh(Activation):
    """f(z) = tanh(z);  f'(z) = 1 - a^2"""

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, da):
        return da * (1.0 - a * a)

    def forward_(self, z):
        return np.tanh(z, out=z)

    def backward_(self, z, a, da):
        pieces = _blocks(a, da)
        for (a_, da_), slope in zip(pieces, _scratch(pieces)):
            np.multiply(a_, a_, out=slope)
            np.subtract(1.0, slope, out=slope)
            da_ *= slope
        return da


@ACTIVATIONS.register("relu")
class ReLU(Activation):
    """f(z) = max(0, z);  f'(z) = 1 if z > 0 else 0 (the notes' subgradient at 0 is 0)"""

    def forward(self, z):
        return np.maximum(z, 0.0)

    def backward(self, z, a, da):
        return da * (z > 0)

    def forward_(self, z):
        return np.maximum(z, 0.0, out=z)   # a > 0 exactly where z > 0: backward_ reads that

    def backward_(self, z, a, da):
        for z_, da_ in _blocks(z, da):
            da_ *= z_ > 0
        return da

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

    def forward_(self, z):
        if self.alpha > 1:
            return self.forward(z)
        # max(z, alpha z) for 0 <= alpha <= 1; a > 0 exactly where z > 0, as backward reads
        return np.maximum(z, self.alpha * z, out=z)

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

    def forward_(self, z):
        z -= z.max(axis=-1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        return z

    def backward_(self, z, a, da):
        da -= (da * a).sum(axis=-1, keepdims=True)
        da *= a
        return da


def make_activation(spec: str | dict | None) -> Activation:
    """'relu' or {type: leaky_relu, alpha: 0.1} -> an Activation instance."""
    if spec is None:
        return Linear()
    if isinstance(spec, str):
        return ACTIVATIONS.get(spec)()
    options = dict(spec)
    return ACTIVATIONS.get(options.pop("type"))(**options)
