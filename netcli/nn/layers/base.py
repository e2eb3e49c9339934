"""What every layer offers the network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor: its shape, whether weight decay applies, and how to start it.

    decay: True for weights and kernels (penalized by l2 / l1), False for biases.
    fill: a start value, one constant (biases: 0) or one per entry (the LSTM's forget-gate
    bias of 1); None draws from the weight initializer.
    """

    shape: tuple[int, ...]
    decay: bool
    fan_in: int = 1
    fan_out: int = 1
    fill: float | tuple[float, ...] | None = None


class Layer:
    """One small class: its parameters, a forward that keeps what backward needs,
    and a backward that fills its gradient views and returns dx.

    The network makes each parameter an attribute that is a view into the flat
    vector theta (`self.W`), and its gradient a view into the flat gradient
    (`self.dW`); backward assigns into those views with `[...] =`.
    An optional `activation` attribute is applied by the network after forward.
    """

    activation = None
    rng: np.random.Generator | None = None

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example input shape -> per-example output shape. Validates sizes."""
        return in_shape

    def param_specs(self) -> dict[str, ParamSpec]:
        return {}

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def kink_pattern(self) -> np.ndarray | None:
        """Discrete choices made by the last forward (max pooling, maxout argmax), or None."""
        return None

    def describe(self) -> str:
        return self.registered_name  # type: ignore[attr-defined]
