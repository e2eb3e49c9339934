"""What every layer offers the network, and the error it raises when the pieces do not fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netcli.errors import NetcliError


class BuildError(NetcliError):
    """The pieces do not fit together; `key` names the config key to blame.

    A layer raises it from `bind` or `build` with the default key; the network prefixes the
    layer's description and blames `model.layers[i]`."""

    def __init__(self, message: str, key: str = "model"):
        super().__init__(message)
        self.key = key


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

    The network calls, for every layer, in this order:
        bind(earlier)        once, before build: the layers before this one, for a layer that
                             works with another (dense_tied reuses an earlier layer's weights)
        build(in_shape)      once: per-example input shape -> output shape
        param_specs()        once, after build: the tensors to lay out in theta
        forward(x, train)    per step, layer by layer
        backward(dy, need_dx) per step, from the last layer to the first
        finish_backward()    per step, once every layer's backward has run: for a gradient
                             that belongs to another layer's tensor (dense_tied adds its
                             share into its source's dW, which that layer's backward assigns)
    bind and finish_backward do nothing unless a layer needs them. `splits_by_rows` says
    whether a batch may be computed in row parts, one replica of the network each
    (netcli.nn.split). A layer that draws random numbers per batch (dropout) draws them in
    `draw` and takes them through `random_values`: a batch cut in parts draws them once,
    whole, and hands each part its rows (`drawn`), so the parts see the whole batch's draws.
    """

    activation = None
    rng: np.random.Generator | None = None
    splits_by_rows = True   # training forward on rows a:b of a batch (with rows a:b of its draws)
                            # = rows a:b of it on the whole batch
    drawn: np.ndarray | None = None   # this part's rows of the batch's draws (set by netcli.nn.split)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The random numbers a training forward on an input of `shape` (rows first) draws from
        self.rng, in row order; None for a layer that draws none."""
        return None

    def random_values(self, shape: tuple[int, ...]) -> np.ndarray:
        """draw(shape), or the rows of the batch's draws given to this part (used once)."""
        values, self.drawn = self.drawn, None
        return self.draw(shape) if values is None else values

    def bind(self, earlier: list["Layer"]) -> None:
        """Meet the layers before this one (earlier[j] is layer j); raise BuildError if one this
        layer needs is missing or of the wrong kind."""

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example input shape -> per-example output shape. Validates sizes."""
        return in_shape

    def param_specs(self) -> dict[str, ParamSpec]:
        return {}

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def finish_backward(self) -> None:
        """After the whole backward pass: add what this layer owes another layer's gradient."""

    def kink_pattern(self) -> np.ndarray | None:
        """Discrete choices made by the last forward (max pooling, maxout argmax), or None."""
        return None

    def describe(self) -> str:
        return self.registered_name  # type: ignore[attr-defined]
