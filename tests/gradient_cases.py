"""One table of gradient cases per registry: adding a component means adding one entry here.

Each value is a factory (or a list of factories, one per case) returning:

    LAYER_CASES        (layer, per-example input shape)     the batch axis N is added by the test;
                       or ([layers], shape) for a short stack, when a layer needs another
                       (dense_tied decodes with an earlier dense layer's weights)
    ACTIVATION_CASES   (activation, shape of z)
    LOSS_CASES         (loss, shape of out, target kind)    target kind: see make_targets
    REGULARIZER_CASES  (penalty, shape of w or a)

Factories build fresh components, so a case never sees state left by another.
test_gradients.py checks every case with netcli.gradcheck.check_array, and
fails when a registered name has no entry here.
"""

from __future__ import annotations

import numpy as np

from netcli.nn import ACTIVATIONS, LAYERS, LOSSES, REGULARIZERS


def _tied(layers, in_shape):
    """Wire each dense_tied layer to the layer it names, as Network does."""
    for layer in layers:
        if getattr(layer, "tied_to", None) is not None:
            layer.source = layers[layer.tied_to]
    return layers, in_shape


LAYER_CASES = {
    "dense": [
        lambda: (LAYERS.get("dense")(5, "linear"), (4,)),          # x: (N, D)
        lambda: (LAYERS.get("dense")(3, "tanh"), (6, 4)),          # x: (N, T, D): time carried through
    ],
    "maxout": [
        lambda: (LAYERS.get("maxout")(4, pieces=3), (5,)),
        lambda: (LAYERS.get("maxout")(3), (2, 4)),                  # x: (N, T, D)
        lambda: (LAYERS.get("maxout")(2, pieces=1), (3,)),          # one piece: an affine layer
    ],
    "dense_tied": [
        lambda: _tied([LAYERS.get("dense")(3, "linear"), LAYERS.get("dense_tied")(0)], (5,)),
        lambda: _tied([LAYERS.get("dense")(4, "sigmoid"), LAYERS.get("dense")(2, "tanh"),
                       LAYERS.get("dense_tied")(1), LAYERS.get("dense_tied")(0)], (2, 3)),
    ],
    # images x: (N, C, H, W) and signals x: (N, C, L)
    "conv2d": [
        lambda: (LAYERS.get("conv2d")(3, 3), (2, 5, 5)),
        lambda: (LAYERS.get("conv2d")(2, [2, 3], stride=[2, 1], padding=[1, 0], dilation=[1, 2]), (3, 6, 7)),
    ],
    "conv1d": [
        lambda: (LAYERS.get("conv1d")(3, 3), (2, 7)),
        lambda: (LAYERS.get("conv1d")(2, 2, stride=2, padding=1, dilation=2), (3, 8)),
    ],
    "maxpool2d": [
        lambda: (LAYERS.get("maxpool2d")(2), (2, 4, 4)),               # windows tile the image
        lambda: (LAYERS.get("maxpool2d")(3, stride=[1, 2]), (2, 5, 6)),  # overlapping windows
    ],
    "maxpool1d": [
        lambda: (LAYERS.get("maxpool1d")(2), (3, 6)),
        lambda: (LAYERS.get("maxpool1d")(3, stride=2), (2, 7)),
    ],
    "avgpool2d": [
        lambda: (LAYERS.get("avgpool2d")(2), (2, 4, 4)),
        lambda: (LAYERS.get("avgpool2d")([2, 3], stride=1), (2, 4, 5)),
    ],
    "avgpool1d": [
        lambda: (LAYERS.get("avgpool1d")(2), (3, 6)),
        lambda: (LAYERS.get("avgpool1d")(3, stride=2), (2, 7)),
    ],
    "flatten": lambda: (LAYERS.get("flatten")(), (2, 3, 4)),
    "reshape": lambda: (LAYERS.get("reshape")([3, -1]), (12,)),
    # x: (N, T, D); full BPTT (bptt >= T is full too: a truncated gradient is not the FD one)
    "rnn": [
        lambda: (LAYERS.get("rnn")(4), (5, 3)),
        lambda: (LAYERS.get("rnn")(3, return_sequences=True), (4, 2)),
        lambda: (LAYERS.get("rnn")(3, return_sequences=True, bptt=4), (4, 2)),
    ],
    "lstm": [
        lambda: (LAYERS.get("lstm")(4), (5, 3)),
        lambda: (LAYERS.get("lstm")(3, return_sequences=True), (4, 2)),
        lambda: (LAYERS.get("lstm")(3, return_sequences=True, bptt=4), (4, 2)),
    ],
    "gru": [
        lambda: (LAYERS.get("gru")(4), (5, 3)),
        lambda: (LAYERS.get("gru")(3, return_sequences=True), (4, 2)),
        lambda: (LAYERS.get("gru")(3, return_sequences=True, bptt=4), (4, 2)),
    ],
    # random in training: the test reseeds layer.rng before every forward, so all see one mask
    "dropout": [
        lambda: (LAYERS.get("dropout")(0.5), (6,)),
        lambda: (LAYERS.get("dropout")(0.2), (3, 4)),
    ],
    "corrupt": [
        lambda: (LAYERS.get("corrupt")(0.3, kind="mask"), (6,)),
        lambda: (LAYERS.get("corrupt")(0.3, kind="gaussian"), (6,)),
    ],
}

ACTIVATION_CASES = {
    "linear": lambda: (ACTIVATIONS.get("linear")(), (4, 5)),
    "sigmoid": lambda: (ACTIVATIONS.get("sigmoid")(), (4, 5)),
    "tanh": lambda: (ACTIVATIONS.get("tanh")(), (4, 5)),
    "relu": lambda: (ACTIVATIONS.get("relu")(), (4, 5)),
    "leaky_relu": [
        lambda: (ACTIVATIONS.get("leaky_relu")(), (4, 5)),
        lambda: (ACTIVATIONS.get("leaky_relu")(alpha=0.3), (2, 3, 4)),
    ],
    "softplus": lambda: (ACTIVATIONS.get("softplus")(), (4, 5)),
    "softmax": [
        lambda: (ACTIVATIONS.get("softmax")(), (4, 5)),             # standalone: its own backward
        lambda: (ACTIVATIONS.get("softmax")(), (2, 3, 4)),          # over the last axis only
    ],
}

LOSS_CASES = {
    "mse": [
        lambda: (LOSSES.get("mse")(), (5, 3), "real"),
        lambda: (LOSSES.get("mse")(), (3, 2, 4), "real"),
    ],
    "cross_entropy": [
        lambda: (LOSSES.get("cross_entropy")(), (6, 4), "one_hot"),
        lambda: (LOSSES.get("cross_entropy")(), (4, 3), "soft"),     # rows of y need not sum to 1
    ],
    "binary_cross_entropy": lambda: (LOSSES.get("binary_cross_entropy")(), (5, 3), "binary"),
}

REGULARIZER_CASES = {
    "l2": lambda: (REGULARIZERS.get("l2")(0.3), (20,)),
    "l1": lambda: (REGULARIZERS.get("l1")(0.2), (20,)),
    "sparsity": [
        lambda: (REGULARIZERS.get("sparsity")(layer=0, rho=0.1, beta=3.0), (6, 4)),
        lambda: (REGULARIZERS.get("sparsity")(layer=1), (3, 5)),    # defaults: rho 0.05, beta 3
    ],
}

TABLES = {
    "layer": (LAYERS, LAYER_CASES),
    "activation": (ACTIVATIONS, ACTIVATION_CASES),
    "loss": (LOSSES, LOSS_CASES),
    "regularizer": (REGULARIZERS, REGULARIZER_CASES),
}


def cases(table: dict) -> list[tuple[str, object]]:
    """{name: factory or [factories]} -> [(id, factory)], ids like 'dense[1]'."""
    out = []
    for name, value in table.items():
        factories = value if isinstance(value, list) else [value]
        for i, factory in enumerate(factories):
            out.append((f"{name}[{i}]", factory))
    return out


def make_targets(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """real: N(0, 1); one_hot: one 1 per row; soft: nonnegative rows of any sum; binary: 0/1."""
    if kind == "real":
        return rng.normal(size=shape)
    if kind == "one_hot":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "soft":
        return rng.uniform(0.0, 1.0, size=shape)
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    raise ValueError(f"unknown target kind {kind!r}")
