"""A sequential network whose parameters live in one flat vector.

Every parameter tensor is a view into `theta`, and every gradient a view into
`grad`, so optimizers update `theta` in place and no packing ever happens.
Weights (penalized) come first in theta and biases after them, so the weight
penalties act on one contiguous block `theta[:n_weights]`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from netcli.errors import NetcliError
from netcli.nn.init import INITIALIZERS
from netcli.nn.layers.base import BuildError, Layer, ParamSpec
from netcli.nn.losses import Loss

__all__ = ["BuildError", "Network", "ParamSlot"]   # BuildError lives in layers/base.py


@dataclass(frozen=True)
class ParamSlot:
    """Where one named tensor (`layers.0.W`) lives in theta."""

    name: str
    layer: int
    attr: str
    spec: ParamSpec
    offset: int

    @cached_property
    def size(self) -> int:  # read per tensor per step (gradient norms): computed once
        return int(np.prod(self.spec.shape))


class Network:
    """Sequential layers, a loss, and penalties, over a flat parameter vector.

    X: (m, *input_shape) -> forward: (m, *output_shape)
    loss_and_grad(theta, X, y) -> (J, grad) with J = data term + penalties.
    `grad` is the network's own buffer, overwritten by the next call.
    loss_and_input_grads and objective_from see the same objective from every layer's input
    (what the gradient checker needs beyond theta).

    Each layer's hooks are called for every layer (no-ops by default, see Layer): `bind`
    before it is built, `finish_backward` once the whole backward pass is done.
    """

    def __init__(self, layers: list[Layer], input_shape, loss: Loss,
                 weight_penalties=(), activation_penalties=(), dtype=np.float32):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.loss = loss
        self.weight_penalties = list(weight_penalties)
        self.activation_penalties = list(activation_penalties)
        self.dtype = np.dtype(dtype)
        self.shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                layer.bind(self.layers[:i])
                self.shapes.append(tuple(layer.build(self.shapes[-1])))
            except BuildError as e:
                raise BuildError(f"{layer.describe()}: {e}", f"model.layers[{i}]") from None
        self.output_shape = self.shapes[-1]
        self._check_loss_and_penalties()
        self._lay_out_parameters()
        self.inputs: list[np.ndarray] = []        # of the last forward, per layer: its input x_i,
        self.zs: list[np.ndarray] = []            # z_i (which may hold a_i: activations run in place)
        self.activations: list[np.ndarray] = []   # and a_i

    # -- construction -------------------------------------------------------

    def _check_loss_and_penalties(self):
        """The one place a loss's fused activation is compared with the last layer's, by name;
        each activation penalty checks the layer it acts on itself (`check`)."""
        fused = self.loss.fused_activation
        last = self.layers[-1].activation if self.layers else None
        last_name = getattr(last, "registered_name", "linear")
        if fused and last_name != fused:
            raise BuildError(
                f"loss {self.loss.registered_name!r} needs the last layer's activation to be "
                f"{fused!r} (it is fused into the loss), got {last_name!r}", "loss")
        for penalty in self.activation_penalties:
            penalty.check(self.layers, fused_output=fused is not None)

    def _lay_out_parameters(self):
        specs = [(i, attr, spec) for i, layer in enumerate(self.layers)
                 for attr, spec in layer.param_specs().items()]
        ordered = [s for s in specs if s[2].decay] + [s for s in specs if not s[2].decay]
        self.slots: list[ParamSlot] = []
        offset = 0
        for i, attr, spec in ordered:
            slot = ParamSlot(f"layers.{i}.{attr}", i, attr, spec, offset)
            self.slots.append(slot)
            offset += slot.size
        self.n_weights = sum(s.size for s in self.slots if s.spec.decay)
        self.theta = np.zeros(offset, dtype=self.dtype)
        self.grad = np.zeros(offset, dtype=self.dtype)
        self._bind_parameters()

    def _bind_parameters(self):
        """Each layer's tensors as views of theta, their gradients as views of grad."""
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        for slot in self.slots:
            layer = self.layers[slot.layer]
            view = self.theta[slot.offset:slot.offset + slot.size].reshape(slot.spec.shape)
            gview = self.grad[slot.offset:slot.offset + slot.size].reshape(slot.spec.shape)
            setattr(layer, slot.attr, view)
            setattr(layer, "d" + slot.attr, gview)
            self.params[slot.name] = view
            self.grads[slot.name] = gview

    def replica(self) -> "Network":
        """Another network over this one's theta (its tensors are views of it) with its own
        layers' state and its own grad: for parts of a batch computed at the same time
        (netcli.nn.split)."""
        twin = copy.deepcopy(self)
        twin.theta = self.theta
        twin.grad = np.zeros_like(self.grad)
        twin._bind_parameters()
        return twin

    @property
    def splits_by_rows(self) -> bool:
        """Whether the data term's gradient on a batch is the row-weighted mean of its gradients
        on parts of the batch, computed on their own (with their rows of the batch's random
        draws, batch_draws): every layer treats rows apart, and no penalty looks at a whole
        batch's activations (sparsity's mean activation does)."""
        return not self.activation_penalties and all(layer.splits_by_rows for layer in self.layers)

    def batch_draws(self, rows: int) -> list[tuple[int, np.ndarray]]:
        """(layer index, draws) of every layer that draws random numbers in a training forward on
        a batch of `rows` rows (Layer.draw, on its input's shape): what that forward would draw."""
        drawn = ((i, layer.draw((rows, *self.shapes[i]))) for i, layer in enumerate(self.layers))
        return [(i, values) for i, values in drawn if values is not None]

    def init_params(self, rng: np.random.Generator, init: str = "glorot_uniform") -> None:
        """Draw weights from the initializer, set constant-filled tensors (biases)."""
        draw = INITIALIZERS.get(init)
        for slot in sorted(self.slots, key=lambda s: (s.layer, s.name)):
            spec = slot.spec
            if spec.fill is not None:
                self.params[slot.name][...] = spec.fill
            else:
                self.params[slot.name][...] = draw(rng, spec.shape, spec.fan_in, spec.fan_out)

    def set_rng(self, rng: np.random.Generator) -> None:
        """Give each layer its own generator spawned from rng (dropout, input corruption),
        so one layer's draws never shift another's."""
        for layer, child in zip(self.layers, rng.spawn(len(self.layers))):
            layer.rng = child

    def rng_state(self) -> list:
        return [layer.rng.bit_generator.state if layer.rng is not None else None for layer in self.layers]

    def set_rng_state(self, states: list) -> None:
        for layer, state in zip(self.layers, states):
            if state is not None:
                layer.rng.bit_generator.state = state

    @property
    def size(self) -> int:
        return self.theta.size

    # -- computation --------------------------------------------------------

    def _check_input(self, X):
        if tuple(X.shape[1:]) != self.input_shape:
            raise NetcliError(f"input has shape {tuple(X.shape[1:])} per example, but model.input "
                              f"is {list(self.input_shape)}")
        return X.astype(self.dtype, copy=False)

    def _run(self, x, train: bool, start: int, fused_output: bool) -> np.ndarray:
        """Forward from layer `start` (x is its input), keeping z_i and a_i for backward.

        Activations are applied in place (`forward_`): a layer's output is a new array that
        nothing else holds, so z_i and a_i are often one array (see activations.py)."""
        del self.inputs[start:], self.zs[start:], self.activations[start:]
        last = len(self.layers) - 1
        for i in range(start, len(self.layers)):
            layer = self.layers[i]
            self.inputs.append(x)
            z = layer.forward(x, train)
            act = layer.activation
            if act is None or (fused_output and i == last):
                x = z
            else:
                x = act.forward_(z)
            self.zs.append(z)
            self.activations.append(x)
        return x

    def forward(self, X: np.ndarray, train: bool = False, upto: int | None = None) -> np.ndarray:
        """X: (m, *input_shape) -> (m, *output_shape); `upto=i` returns layer i's activations."""
        x = self._check_input(X)
        layers = self.layers if upto is None else self.layers[:upto + 1]
        for layer in layers:
            z = layer.forward(x, train)
            x = z if layer.activation is None else layer.activation.forward_(z)
        return x

    def outputs_and_loss(self, X: np.ndarray, y: np.ndarray | None = None):
        """Eval-mode forward: (outputs after the final activation, data term or None)."""
        fused = self.loss.fused_activation is not None
        self.inputs, self.zs, self.activations = [], [], []
        out = self._run(self._check_input(X), False, 0, fused_output=fused)
        loss = None if y is None else float(self.loss.forward(out, y.astype(self.dtype, copy=False)))
        if fused:
            out = self.layers[-1].activation.forward(out)
        return out, loss

    def _objective_from(self, start: int, x, y, train=True) -> tuple[float, float]:
        out = self._run(x, train, start, fused_output=self.loss.fused_activation is not None)
        data = self.loss.forward(out, y)
        penalty = sum(p.value(self.activations[p.layer]) for p in self.activation_penalties)
        w = self.theta[:self.n_weights]
        penalty += sum(p.value(w) for p in self.weight_penalties)
        return float(data), float(penalty)

    def objective(self, theta, X, y, train=True) -> tuple[float, float]:
        """(data term, penalty) at theta, without a gradient."""
        if theta is not self.theta:
            self.theta[...] = theta
        self.inputs, self.zs, self.activations = [], [], []
        return self._objective_from(0, self._check_input(X), y.astype(self.dtype, copy=False), train)

    def objective_from(self, i: int, x: np.ndarray, y: np.ndarray, train: bool = True) -> tuple[float, float]:
        """(data term, penalty) with layer i's input replaced by x, at the current theta.

        x: (m, *shapes[i]). Layers i, i+1, ... run forward from x; the layers before i keep
        what the last forward of the whole network (objective, loss_and_grad) computed, so a
        penalty on their activations is a constant here. The gradient checker differentiates
        this in x to check d J / d (layer i's input), which `loss_and_input_grads` returns.
        """
        if not 0 <= i < len(self.layers):
            raise IndexError(f"layer {i} is not a layer index (0..{len(self.layers) - 1})")
        if len(self.inputs) < i:
            raise NetcliError("objective_from needs a forward of the whole network first "
                              "(objective or loss_and_grad)")
        if tuple(x.shape[1:]) != self.shapes[i]:
            raise NetcliError(f"layer {i}'s input has shape {list(self.shapes[i])} per example, "
                              f"got {list(x.shape[1:])}")
        return self._objective_from(i, x.astype(self.dtype, copy=False), y.astype(self.dtype, copy=False),
                                    train)

    def loss_and_grad(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray,
                      train: bool = True) -> tuple[float, np.ndarray]:
        """J(theta) on the batch (X, y) and dJ/dtheta (the network's grad buffer)."""
        J, _ = self._loss_and_grad(theta, X, y, train, keep_input_grads=False)
        return J, self.grad

    def loss_and_input_grads(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, train: bool = True
                             ) -> tuple[float, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """loss_and_grad, and every layer's input with its gradient: (J, grad, inputs, input_grads).

        inputs[i]: what layer i received in this forward (inputs[0]: X in the network's dtype);
        input_grads[i] = dJ / d inputs[i], layer 0's included. The backward is loss_and_grad's
        own code, the activations' in-place `backward_`; it copies an upstream gradient
        before an activation overwrites it only where that gradient is kept here. All arrays
        are the network's own, valid until its next call.
        """
        J, input_grads = self._loss_and_grad(theta, X, y, train, keep_input_grads=True)
        return J, self.grad, list(self.inputs), input_grads

    def data_loss_and_grad(self, X: np.ndarray, y: np.ndarray, train: bool = True) -> float:
        """The data term alone on (X, y) at the current theta, its gradient in grad (no penalty):
        one part of a batch (netcli.nn.split), for a network that splits_by_rows."""
        self.inputs, self.zs, self.activations = [], [], []
        out = self._run(self._check_input(X), train, 0, fused_output=self.loss.fused_activation is not None)
        data = float(self.loss.forward(out, y.astype(self.dtype, copy=False)))
        self._backward(self.loss.backward())
        return data

    def add_weight_penalties(self, grad: np.ndarray) -> float:
        """The weight penalties' value at theta; their gradient added into grad (theta's shape)."""
        self._add_weight_penalty_grads(grad)
        return float(sum(p.value(self.theta[:self.n_weights]) for p in self.weight_penalties))

    def _add_weight_penalty_grads(self, grad: np.ndarray) -> None:
        w, gw = self.theta[:self.n_weights], grad[:self.n_weights]
        for p in self.weight_penalties:
            p.add_grad(w, gw)

    def _loss_and_grad(self, theta, X, y, train, keep_input_grads):
        data, penalty = self.objective(theta, X, y, train)
        self.last_terms = (data, penalty)
        input_grads = self._backward(self.loss.backward(), keep_input_grads)
        self._add_weight_penalty_grads(self.grad)
        return data + penalty, input_grads

    def _backward(self, d_out, keep_input_grads: bool = False) -> list[np.ndarray] | None:
        """Backpropagate d_out (d loss / d output) through the layers into grad; with
        keep_input_grads, return d J / d (layer i's input) for every layer i."""
        last = len(self.layers) - 1
        fused = self.loss.fused_activation is not None
        by_layer = {}
        for p in self.activation_penalties:
            by_layer.setdefault(p.layer, []).append(p)
        input_grads = [None] * len(self.layers) if keep_input_grads else None
        d = d_out.astype(self.dtype, copy=False)
        for i in range(last, -1, -1):
            layer = self.layers[i]
            kept = keep_input_grads and i < last   # d is input_grads[i + 1] (or a view of it)
            for p in by_layer.get(i, ()):
                d = d + p.grad(self.activations[i])
                kept = False
            act = layer.activation
            if act is not None and not (fused and i == last):
                # d is this step's own array (from the loss, the layer above or the sum with a
                # penalty's gradient), so the activation may overwrite it, unless it is kept
                if kept:
                    d = d.copy(order="K")
                d = act.backward_(self.zs[i], self.activations[i], d)
            d = layer.backward(d, need_dx=i > 0 or keep_input_grads)
            if keep_input_grads:
                input_grads[i] = d
        for layer in self.layers:
            layer.finish_backward()
        return input_grads

    def kink_patterns(self) -> list[np.ndarray]:
        """Discrete choices of the last forward: ReLU sides, maxout and max-pool winners."""
        patterns = []
        for layer, z in zip(self.layers, self.zs):
            for p in (layer.kink_pattern(),
                      layer.activation.kink_pattern(z) if layer.activation is not None else None):
                if p is not None:
                    patterns.append(np.array(p, copy=True))
        return patterns
