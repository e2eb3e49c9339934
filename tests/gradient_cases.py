"""The one table of gradient cases: adding a component means adding an entry here.

CASES[kind][name] is a factory, or a list of factories (one per case), each returning a fresh
helpers.Case: a short stack of layers on a real Network, its input shape, loss, targets and
penalties. Every kind is one registry; `name` is the registered name the case exercises:

    layer        the layer itself, alone or in the short stack it needs
    activation   on a dense layer
    loss         on a dense layer with the activation the loss fuses (if any)
    regularizer  in the network's penalties

tests/test_gradients.py runs every case through the layer harness (tests/helpers.py:
check_case, which calls netcli.gradcheck.check_network), and fails when a registered name has
no entry here, or an entry's cases do not use the component they are filed under.
Inputs and parameters are drawn from normal distributions, so no two values in a max-pool or
maxout window tie (almost surely) and no coordinate sits on a kink.
"""

from __future__ import annotations

from helpers import Case
from netcli.nn import ACTIVATIONS, LAYERS, LOSSES, REGULARIZERS


def layer(name, *args, **kwargs):
    return LAYERS.get(name)(*args, **kwargs)


def dense(units, activation="linear"):
    return layer("dense", units, activation)


LAYER_CASES = {
    "dense": [
        lambda: Case([dense(5)], (4,)),                                     # x: (N, D)
        lambda: Case([dense(3, "tanh")], (6, 4)),                           # x: (N, T, D): time carried
    ],
    "maxout": [
        lambda: Case([layer("maxout", 4, pieces=3)], (5,)),
        lambda: Case([layer("maxout", 3)], (2, 4)),                         # x: (N, T, D)
        lambda: Case([layer("maxout", 2, pieces=1)], (3,)),                 # one piece: an affine layer
    ],
    "dense_tied": [                                                         # decoders of earlier dense layers
        lambda: Case([dense(3), layer("dense_tied", 0)], (5,)),
        lambda: Case([dense(4, "sigmoid"), dense(2, "tanh"), layer("dense_tied", 1),
                      layer("dense_tied", 0)], (2, 3)),
    ],
    # images x: (N, C, H, W) and signals x: (N, C, L)
    "conv2d": [
        lambda: Case([layer("conv2d", 3, 3)], (2, 5, 5)),
        lambda: Case([layer("conv2d", 3, 3, stride=2, padding=1)], (2, 7, 6)),          # stride, padding
        lambda: Case([layer("conv2d", 2, [2, 3], stride=[2, 1], padding=[1, 0], dilation=[1, 2])], (3, 6, 7)),
        lambda: Case([layer("conv2d", 2, [2, 3], stride=[1, 2], padding=[0, 1], dilation=[2, 1])], (3, 6, 7)),
        lambda: Case([layer("conv2d", 3, 3, padding=1)], (1, 5, 4)),                     # one input channel
        lambda: Case([layer("conv2d", 2, 1)], (3, 3, 2)),                                # 1x1
        lambda: Case([layer("conv2d", 3, 3, padding=1, activation="relu"), layer("maxpool2d", 2),
                      layer("flatten"), dense(4, "softmax")], (2, 6, 6), batch=5,       # a tiny CNN
                     loss="cross_entropy", targets="one_hot", kinks=True),   # max-pool ties among ReLU zeros
    ],
    "conv1d": [
        lambda: Case([layer("conv1d", 3, 3)], (2, 7)),
        lambda: Case([layer("conv1d", 2, 2, stride=2, padding=1, dilation=2)], (3, 8)),
        lambda: Case([layer("conv1d", 3, 3, stride=2, padding=1)], (2, 9)),
        lambda: Case([layer("conv1d", 2, 2, dilation=3, padding=2)], (3, 7)),
        lambda: Case([layer("conv1d", 2, 4)], (1, 6)),                                   # one input channel
    ],
    # pooling and shape layers also run on a conv's output, whose memory is channels-last
    "maxpool2d": [
        lambda: Case([layer("maxpool2d", 2)], (2, 4, 4)),                                # windows tile the image
        lambda: Case([layer("maxpool2d", 2)], (2, 4, 6)),
        lambda: Case([layer("maxpool2d", 3, stride=[1, 2])], (2, 5, 6)),                 # overlapping windows
        lambda: Case([layer("maxpool2d", 3, stride=2)], (2, 7, 6)),
        lambda: Case([layer("maxpool2d", [2, 3])], (1, 5, 7)),                           # leftover rows, columns
        lambda: Case([layer("conv2d", 3, 3, padding=1), layer("maxpool2d", 2)], (2, 4, 4)),
    ],
    "maxpool1d": [
        lambda: Case([layer("maxpool1d", 2)], (3, 6)),
        lambda: Case([layer("maxpool1d", 2)], (3, 8)),
        lambda: Case([layer("maxpool1d", 3, stride=2)], (2, 7)),
        lambda: Case([layer("maxpool1d", 3, stride=2)], (2, 9)),
    ],
    "avgpool2d": [
        lambda: Case([layer("avgpool2d", 2)], (2, 4, 4)),
        lambda: Case([layer("avgpool2d", 2)], (2, 4, 6)),
        lambda: Case([layer("avgpool2d", [2, 3], stride=1)], (2, 4, 5)),
        lambda: Case([layer("avgpool2d", 3, stride=2)], (2, 7, 6)),
        lambda: Case([layer("avgpool2d", [3, 2], stride=[3, 1])], (1, 7, 5)),
        lambda: Case([layer("conv2d", 3, 3, padding=1), layer("avgpool2d", 2)], (2, 4, 4)),
    ],
    "avgpool1d": [
        lambda: Case([layer("avgpool1d", 2)], (3, 6)),
        lambda: Case([layer("avgpool1d", 2)], (3, 8)),
        lambda: Case([layer("avgpool1d", 3, stride=2)], (2, 7)),
        lambda: Case([layer("avgpool1d", 3, stride=2)], (2, 10)),
    ],
    "flatten": [
        lambda: Case([layer("flatten")], (2, 3, 4)),
        lambda: Case([layer("conv2d", 2, 3, padding=1), layer("flatten")], (2, 3, 3)),
    ],
    "reshape": [
        lambda: Case([layer("reshape", [3, -1])], (12,)),
        lambda: Case([layer("reshape", [2, 3, 2])], (12,)),
        lambda: Case([layer("reshape", [-1, 4])], (2, 6)),
    ],
    # x: (N, T, D); full BPTT, bptt None or bptt >= T, which is the same: a truncated gradient is
    # not the finite-difference one (tests/test_recurrent_layers.py checks it against its own
    # truncated objective)
    "rnn": [
        lambda: Case([layer("rnn", 4)], (5, 3)),                                          # many-to-one
        lambda: Case([layer("rnn", 4, return_sequences=True)], (5, 3)),                   # many-to-many
        lambda: Case([layer("rnn", 3, return_sequences=True)], (4, 2)),
        lambda: Case([layer("rnn", 3, return_sequences=True)], (5, 2)),
        lambda: Case([layer("rnn", 3, return_sequences=True, bptt=4)], (4, 2)),           # bptt = T: full
        lambda: Case([layer("rnn", 4, return_sequences=True), layer("lstm", 3), dense(1)], (6, 2), batch=4),
    ],
    "lstm": [
        lambda: Case([layer("lstm", 4)], (5, 3)),
        lambda: Case([layer("lstm", 4, return_sequences=True)], (5, 3)),
        lambda: Case([layer("lstm", 3, return_sequences=True)], (4, 2)),
        lambda: Case([layer("lstm", 3, return_sequences=True)], (5, 2)),
        lambda: Case([layer("lstm", 3, return_sequences=True, bptt=4)], (4, 2)),
        lambda: Case([layer("lstm", 2, bptt=9)], (4, 3)),                                  # bptt > T: full
        lambda: Case([layer("lstm", 5), dense(2)], (5, 3), batch=4),
    ],
    "gru": [
        lambda: Case([layer("gru", 4)], (5, 3)),
        lambda: Case([layer("gru", 4, return_sequences=True)], (5, 3)),
        lambda: Case([layer("gru", 3, return_sequences=True)], (4, 2)),
        lambda: Case([layer("gru", 3, return_sequences=True)], (5, 2)),
        lambda: Case([layer("gru", 3, return_sequences=True, bptt=4)], (4, 2)),
        lambda: Case([layer("gru", 2, return_sequences=True, bptt=4)], (4, 3)),
        lambda: Case([layer("gru", 4, return_sequences=True), dense(2, "tanh")], (5, 3), batch=4),
    ],
    # random in training: the harness reseeds before every evaluation, so all see one draw
    "dropout": [
        lambda: Case([layer("dropout", 0.5)], (6,)),
        lambda: Case([layer("dropout", 0.2)], (3, 4)),
    ],
    "corrupt": [
        lambda: Case([layer("corrupt", 0.3, kind="mask")], (6,)),
        lambda: Case([layer("corrupt", 0.3, kind="gaussian")], (6,)),
    ],
}

ACTIVATION_CASES = {
    "linear": lambda: Case([dense(5, "linear")], (3,), batch=4),
    "sigmoid": lambda: Case([dense(5, "sigmoid")], (3,), batch=4),
    "tanh": lambda: Case([dense(5, "tanh")], (3,), batch=4),
    "relu": lambda: Case([dense(5, "relu")], (3,), batch=4),
    "leaky_relu": [
        lambda: Case([dense(5, "leaky_relu")], (3,), batch=4),
        lambda: Case([dense(4, {"type": "leaky_relu", "alpha": 0.3})], (3, 2), batch=2),  # z: (N, T, D)
    ],
    "softplus": lambda: Case([dense(5, "softplus")], (3,), batch=4),
    "softmax": [
        lambda: Case([dense(5, "softmax")], (3,), batch=4),         # under mse: its own backward
        lambda: Case([dense(4, "softmax")], (3, 2), batch=2),       # over the last axis only
    ],
}

LOSS_CASES = {
    "mse": [
        lambda: Case([dense(3)], (4,), batch=5),
        lambda: Case([dense(4)], (2, 3), batch=3),                  # out: (N, T, D)
    ],
    "cross_entropy": [                                              # softmax fused: d/d logits
        lambda: Case([dense(4, "softmax")], (5,), batch=6, loss="cross_entropy", targets="one_hot"),
        lambda: Case([dense(3, "softmax")], (4,), batch=4, loss="cross_entropy",
                     targets="soft"),                               # rows of y need not sum to 1
        lambda: Case([dense(3, "softmax")], (2, 4), batch=3, loss="cross_entropy",
                     targets="one_hot"),                            # out: (N, T, K)
    ],
    "binary_cross_entropy": lambda: Case([dense(3, "sigmoid")], (4,), batch=5, loss="binary_cross_entropy",
                                         targets="binary"),
}

REGULARIZER_CASES = {                                               # weights only, never biases
    "l2": lambda: Case([dense(4, "tanh"), dense(2)], (3,), penalties={"l2": 0.3}),
    "l1": lambda: Case([dense(4, "tanh"), dense(2)], (3,), penalties={"l1": 0.2}),
    "sparsity": [                                                   # on a sigmoid layer's mean activation
        lambda: Case([dense(4, "sigmoid"), dense(2)], (3,), batch=6,
                     penalties={"sparsity": {"layer": 0, "rho": 0.1, "beta": 3.0}}),
        lambda: Case([dense(3, "tanh"), dense(5, "sigmoid"), dense(2)], (4,),
                     penalties={"sparsity": {"layer": 1}}),         # defaults: rho 0.05, beta 3
    ],
}

CASES = {
    "layer": LAYER_CASES,
    "activation": ACTIVATION_CASES,
    "loss": LOSS_CASES,
    "regularizer": REGULARIZER_CASES,
}

REGISTRIES = {"layer": LAYERS, "activation": ACTIVATIONS, "loss": LOSSES, "regularizer": REGULARIZERS}


def cases(kinds=tuple(CASES)) -> list[tuple[str, object]]:
    """[(id, factory)] over the kinds' entries, ids like 'layer:dense[1]'."""
    out = []
    for kind in kinds:
        for name, value in CASES[kind].items():
            factories = value if isinstance(value, list) else [value]
            out += [(f"{kind}:{name}[{i}]", factory) for i, factory in enumerate(factories)]
    return out


def uses(case: Case) -> dict[str, set[str]]:
    """The registered names of the components a case's network is made of, by kind."""
    return {
        "layer": {lay.registered_name for lay in case.layers},
        "activation": {lay.activation.registered_name for lay in case.layers if lay.activation is not None},
        "loss": {case.loss},
        "regularizer": set(case.penalties),
    }
