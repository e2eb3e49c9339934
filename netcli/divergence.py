"""Telling why training diverged: the recent per-tensor gradient norms, the first layer or
tensor that went non-finite, and the likely causes."""

from __future__ import annotations

import math

import numpy as np

from netcli.nn import Network
from netcli.optim.first_order import squared_norms


class Diverged(Exception):
    """The loss, the gradient or the parameters became non-finite; the message says where."""


class GradientWatch:
    """Per-tensor gradient norms of the last few steps, kept for a divergence diagnosis."""

    def __init__(self, net: Network, keep: int = 3):
        self.net = net
        self.slots = net.slots
        self.parts = [(s.offset, s.offset + s.size) for s in self.slots]   # grad's span per tensor
        # step_and_measure updates theta part by part, so the parts must cover it exactly
        ends = [0] + [hi for _, hi in sorted(self.parts)]
        assert [lo for lo, _ in sorted(self.parts)] == ends[:-1] and ends[-1] == net.theta.size
        self.history: list[tuple[float, np.ndarray]] = []
        self.keep = keep

    def record(self, loss: float, grad: np.ndarray) -> float:
        """-> the global gradient norm (inf or nan when the loss or the gradient is not finite)."""
        return self.record_squares(loss, squared_norms(grad, self.parts))

    def record_squares(self, loss: float, squares: np.ndarray) -> float:
        """The same from the tensors' squared norms, measured elsewhere (Stepper.step_and_measure)."""
        self.history = (self.history + [(loss, np.sqrt(squares))])[-self.keep:]
        return math.sqrt(float(squares.sum())) if math.isfinite(loss) else math.nan

    def recent_norms(self) -> str:
        if not self.history:
            return "none"
        parts = []
        for slot_index, slot in enumerate(self.slots):
            values = ", ".join(f"{norms[slot_index]:.3g}" for _, norms in self.history)
            parts.append(f"{slot.name} [{values}]")
        return "; ".join(parts)

    def first_non_finite(self) -> str:
        """The first layer whose forward activations, or else the first tensor whose gradient, is non-finite."""
        net = self.net
        for i, a in enumerate(net.activations):
            if not np.all(np.isfinite(a)):
                return f"the forward activations of layer {i} ({net.layers[i].describe()}) became non-finite"
        loss = self.history[-1][0] if self.history else math.nan
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        for slot in reversed(self.slots):  # backward order: the first gradient computed first
            if not np.all(np.isfinite(net.grads[slot.name])):
                return f"the gradient of {slot.name} became non-finite"
        return "the gradient became non-finite"

    def diagnose(self, epoch: int, step: int, lr: float | None, what: str | None = None) -> str:
        """Name the step, the learning rate, where it first went non-finite, and a likely cause."""
        where = what or self.first_non_finite()
        rate = f", lr {lr:g}" if lr is not None else ""
        hint = ("likely causes: a learning rate too high (try optimizer.lr 10x lower, or "
                "training.clip_grad_norm) or unnormalized inputs (try data.normalize: standard)")
        return (f"{where} at epoch {epoch + 1}, step {step}{rate}; "
                f"recent gradient norms per tensor: {self.recent_norms()}; {hint}")
