"""Activations: f and its derivative side by side, each written once, in place.

Each activation maps a pre-activation z to a = f(z) elementwise (softmax: per row),
and maps an upstream gradient da back to dz = da * f'(z). Where the notes do, the
derivative is written in terms of the output a (sigmoid: a(1-a); tanh: 1-a^2).

One implementation per activation: the in-place pair
    forward_(z) -> a          may overwrite z with a (and then returns z itself)
    backward_(z, a, da) -> dz may overwrite da with dz
is the code that trains: the network applies it to the arrays of a training step, and
the gradient checker sees the same code, because the pure forms are derived from it once,
here in the base class:
    forward(z)         = forward_(a copy of z)          never modifies z
    backward(z, a, da) = backward_(z, a, a copy of da)  never modifies z, a or da
(A subclass that defines `forward` or `backward` itself is refused at class creation.)

After forward_, z may hold a, so backward_ must hold with z replaced by a = f(z): it
reads a alone, or only the sign of z, which a keeps (relu, leaky_relu). An activation whose
derivative needs z itself declares `needs_z = True`, and its forward_ leaves z intact and
returns a new array: softplus, whose f'(z) = sigmoid(z) cannot be recovered from
a = log(1 + e^z) without a log and an exp more than reading z.

Large arrays are processed in blocks of BLOCK elements (`_blocks`), so the several passes
of one activation over a block run in cache; the result does not depend on the block size
(tests/test_activations.py compares blocked and unblocked results bit for bit).

Each activation declares the set its outputs lie in (`output_range`, a `Range`), so other
components (the sparsity penalty) ask it instead of comparing names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def logistic(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sigmoid(z) = 1 / (1 + e^-z) = 0.5 (1 + tanh(z / 2)), which never overflows (e^-z does,
    for z below about -88 in float32). Written into out (which may be z itself: in place);
    out=None: a new array. The sigmoid activation, the recurrent gates and the binary
    cross-entropy all compute it here."""
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


@dataclass(frozen=True)
class Range:
    """The set f maps the real line into, as mathematics has it (rounding can land on an open
    end: float32 sigmoid(20) is 1.0). Open at an end unless that end is marked closed."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_closed: bool = False
    hi_closed: bool = False

    def within(self, other: "Range") -> bool:
        """Every value of self lies in other."""
        lo_ok = self.lo > other.lo or (self.lo == other.lo and (other.lo_closed or not self.lo_closed))
        hi_ok = self.hi < other.hi or (self.hi == other.hi and (other.hi_closed or not self.hi_closed))
        return lo_ok and hi_ok

    def __str__(self) -> str:
        return (f"{'[' if self.lo_closed else '('}{self.lo:g}, "
                f"{self.hi:g}{']' if self.hi_closed else ')'}")


REAL_LINE = Range()
OPEN_UNIT = Range(0.0, 1.0)


class Activation:
    """z: any shape -> a: same shape. Subclasses implement forward_ and backward_ (see the
    module docstring); forward and backward are derived from them here."""

    output_range: Range = REAL_LINE
    needs_z = False   # True: backward_ reads z itself, so forward_ leaves z intact

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        twins = sorted({"forward", "backward"} & set(vars(cls)))
        if twins:
            raise TypeError(f"{cls.__name__} defines {', '.join(twins)}: an activation implements "
                            f"forward_ and backward_ only (in place), and the pure forms are derived "
                            f"from them, so the gradient checker sees the code that trains")

    def forward_(self, z: np.ndarray) -> np.ndarray:
        """f(z), allowed to overwrite z (unless needs_z); then backward_ may receive a as z."""
        raise NotImplementedError

    def backward_(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        """dz, allowed to overwrite da; z is what forward_ left in its argument: a itself,
        unless needs_z."""
        raise NotImplementedError

    def forward(self, z: np.ndarray) -> np.ndarray:
        """f(z) as a new array; z is left untouched."""
        return self.forward_(z.copy(order="K"))

    def backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        """dz as a new array; z, a and da are left untouched."""
        return self.backward_(z, a, da.copy(order="K"))

    def kink_pattern(self, z: np.ndarray) -> np.ndarray | None:
        """Which side of each non-differentiable point z lies on (None: smooth everywhere).
        z may be a (after forward_), as for backward_.

        The gradient checker compares patterns before and after a perturbation to
        tell a real gradient bug from a finite difference that straddles a kink.
        """
        return None

    def describe(self) -> str:
        return self.registered_name  # type: ignore[attr-defined]


@ACTIVATIONS.register("linear")
class Linear(Activation):
    """f(z) = z;  f'(z) = 1"""

    def forward_(self, z):
        return z

    def backward_(self, z, a, da):
        return da


@ACTIVATIONS.register("sigmoid")
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z);  f'(z) = a (1 - a)"""

    output_range = OPEN_UNIT

    def forward_(self, z):
        for (piece,) in _blocks(z):
            logistic(piece, out=piece)
        return z

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

    output_range = Range(-1.0, 1.0)

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

    output_range = Range(0.0, math.inf, lo_closed=True)

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
    """f(z) = z if z > 0 else alpha z;  f'(z) = 1 if z > 0 else alpha (alpha at 0)

    In place as max(z, alpha z) for alpha <= 1 and min(z, alpha z) for alpha > 1; either way
    a > 0 exactly where z > 0, which is all backward_ reads.
    """

    def __init__(self, alpha: NonNegativeFloat = 0.01):
        self.alpha = alpha

    @property
    def output_range(self):
        return Range(0.0, math.inf, lo_closed=True) if self.alpha == 0 else REAL_LINE

    def forward_(self, z):
        pick = np.maximum if self.alpha <= 1 else np.minimum
        pieces = _blocks(z)
        for (z_,), scaled in zip(pieces, _scratch(pieces)):
            np.multiply(z_, self.alpha, out=scaled)
            pick(z_, scaled, out=z_)
        return z

    def backward_(self, z, a, da):
        pieces = _blocks(z, da)
        for (z_, da_), scaled in zip(pieces, _scratch(pieces)):
            np.multiply(da_, self.alpha, out=scaled)
            np.copyto(da_, scaled, where=~(z_ > 0))   # alpha da where z <= 0 (and where z is NaN)
        return da

    def kink_pattern(self, z):
        return z > 0

    def describe(self):
        return f"leaky_relu(alpha={self.alpha:g})"


@ACTIVATIONS.register("softplus")
class Softplus(Activation):
    """f(z) = log(1 + e^z);  f'(z) = sigmoid(z)

    The derivative needs z itself (`needs_z`): forward_ returns a new array and leaves z be.
    """

    output_range = Range(0.0, math.inf)
    needs_z = True

    def forward_(self, z):
        return np.logaddexp(0.0, z).astype(z.dtype, copy=False)

    def backward_(self, z, a, da):
        pieces = _blocks(z, da)
        for (z_, da_), slope in zip(pieces, _scratch(pieces)):
            da_ *= logistic(z_, out=slope)
        return da


@ACTIVATIONS.register("softmax")
class Softmax(Activation):
    """a_k = e^{z_k} / sum_j e^{z_j} over the last axis;
    dz = a * (da - sum_k da_k a_k)   (the Jacobian-vector product, never the Jacobian)

    With loss `cross_entropy` the network fuses softmax into the loss and this
    backward is not used; it serves softmax outputs under other losses.
    """

    output_range = OPEN_UNIT   # (exactly 1 when the last axis has a single entry)

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
    return ACTIVATIONS.build("linear" if spec is None else spec)
