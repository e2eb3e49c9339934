"""A trained run as an ONNX model, written node by node with onnx.helper (no torch.onnx).

The graph takes raw feature rows, as the CSV has them, and does the rest itself:

    features: float32 (batch, n_features)           n_features = prod(model.input)
      -> imputation of empty cells (Where(IsNaN(x), fill, x)), when the run has it
      -> the run's normalization ((x - offset) / scale), when it has one
      -> reshape to (batch, *model.input)
      -> every layer and its activation, the output activation included
    output: float32 (batch, *output shape)          class probabilities for a classifier,
                                                    values for regression and autoencoders
    label:  (batch,) the argmax's class label       classification (labels as the run has them:
            (batch, k) 0/1 or labels, out > 0.5     int64, string or double), binary

Parameters are initializers under their weights.npz names and layouts (`layers.0.W`: (out, in));
the graph transposes them where ONNX wants another layout (onnxruntime folds those constants
when it loads the model). The recurrent layers are the exception: ONNX stacks their gates in
another order, so they get reordered copies (`layers.<i>.onnx_W` ...):

    netcli lstm  i, f, g, o    -> ONNX LSTM  i, o, f, c
    netcli gru   r, z, n       -> ONNX GRU   z, r, h, with linear_before_reset=1 (PyTorch's GRU,
                                  whose b_hn sits inside r * (.))
    rnn, lstm: netcli's one bias b is ONNX's Wb; Rb = 0

ONNX's recurrent ops take time-major input (T, N, D) (onnxruntime's CPU kernels support no
other layout), so the graph transposes around them. Dropout and input corruption are the
identity, as at evaluation. The graph is float32 whatever the run's dtype.
"""

from __future__ import annotations

import json

import numpy as np

from netcli import __version__
from netcli.errors import NetcliError
from netcli.export.common import RawInput, raw_input, require
from netcli.files import to_plain
from netcli.nn import activations as acts
from netcli.nn.layers import conv, dense, gru, lstm, maxout, noise, pool, rnn, shape

OPSET = 17        # onnxruntime has run every op used here since 1.13
IR_VERSION = 8    # the IR of opset 17
INPUT = "features"
OUTPUT = "output"
LABEL = "label"
DTYPE = np.float32


class Graph:
    """Nodes and initializers being collected; every value gets a fresh, readable name."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self.names: set[str] = {INPUT, OUTPUT, LABEL}   # the fixed names, given only with `out`
        self.params: dict[str, np.ndarray] = {}   # the run's parameters, by weights.npz name
        self.param_names: dict[str, str] = {}     # those made initializers so far -> their names

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def const(self, name: str, array, dtype=DTYPE) -> str:
        """An initializer; floats are cast to the graph's float32, other kinds kept."""
        a = np.asarray(array)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
        elif a.dtype.kind in "US":
            a = a.astype(object)
        name = self.fresh(name)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(a) if a.dtype != object
                                                              else a, name))
        return name

    def param(self, name: str) -> str:
        """The initializer of a parameter (`layers.0.W`), under its own name, added on first use
        (the recurrent layers use reordered copies instead: an unused initializer is noise)."""
        if name not in self.param_names:
            self.param_names[name] = self.const(name, self.params[name])
        return self.param_names[name]

    def node(self, op: str, inputs: list[str], scope: str, outputs: int = 1, out: str | None = None,
             **attrs) -> str | list[str]:
        """One node; -> its output name (a list when outputs > 1); out: a fixed name for the one output."""
        names = [out] if out else [self.fresh(f"{scope}/{op}" + (f":{k}" if outputs > 1 else ""))
                                   for k in range(outputs)]
        self.nodes.append(self.helper.make_node(op, inputs, names, name=self.fresh(f"{scope}/{op}.node"),
                                                **attrs))
        return names if outputs > 1 else names[0]


# -- activations: each registered activation a layer may use -> its ONNX op ----------------

ACTIVATION_OPS = {
    acts.Linear: None,
    acts.Sigmoid: lambda g, a, x, s: g.node("Sigmoid", [x], s),
    acts.Tanh: lambda g, a, x, s: g.node("Tanh", [x], s),
    acts.ReLU: lambda g, a, x, s: g.node("Relu", [x], s),
    acts.LeakyReLU: lambda g, a, x, s: g.node("LeakyRelu", [x], s, alpha=float(a.alpha)),
    acts.Softplus: lambda g, a, x, s: g.node("Softplus", [x], s),
    acts.Softmax: lambda g, a, x, s: g.node("Softmax", [x], s, axis=-1),   # opset 13+: this axis alone
}


def activation(g: Graph, act, x: str, scope: str) -> str:
    if act is None:
        return x
    if type(act) not in ACTIVATION_OPS:
        raise NetcliError(f"{scope}: activation {act.describe()!r} has no ONNX form in netcli's exporter "
                          f"(it knows {', '.join(sorted(c.registered_name for c in ACTIVATION_OPS))})")
    op = ACTIVATION_OPS[type(act)]
    return x if op is None else op(g, act, x, scope)


# -- layers: each layer class -> a function (graph, i, layer, x, in_shape) -> y -----------------
# (a layer's parameters: g.param(f"layers.{i}.W") and the like)

CONVERTERS = {}


def converts(*classes):
    def add(fn):
        for c in classes:
            CONVERTERS[c] = fn
        return fn
    return add


def affine(g: Graph, i: int, x: str, W: str, transpose: bool) -> str:
    """x @ W.T + b (transpose) or x @ W + b, W the parameter named W and b layer i's bias, over any
    leading axes (MatMul broadcasts; Gemm is 2-D only)."""
    s = f"layers.{i}"
    w = g.node("Transpose", [g.param(W)], s) if transpose else g.param(W)
    return g.node("Add", [g.node("MatMul", [x, w], s), g.param(f"{s}.b")], s)


@converts(dense.Dense)
def _dense(g, i, layer, x, in_shape):
    return affine(g, i, x, f"layers.{i}.W", transpose=True)


@converts(dense.TiedDense)
def _tied(g, i, layer, x, in_shape):
    return affine(g, i, x, f"layers.{layer.tied_to}.W", transpose=False)


@converts(maxout.Maxout)
def _maxout(g, i, layer, x, in_shape):
    s = f"layers.{i}"
    z = affine(g, i, x, f"{s}.W", transpose=True)      # (N, ..., units * pieces)
    target = g.const(f"{s}.pieces_shape", np.array([-1, *in_shape[:-1], layer.units, layer.pieces], np.int64))
    return g.node("ReduceMax", [g.node("Reshape", [z, target], s)], s, axes=[-1], keepdims=0)


@converts(conv.Conv1D, conv.Conv2D)
def _conv(g, i, layer, x, in_shape):
    s = f"layers.{i}"   # ONNX pads: the starts of every axis, then the ends
    return g.node("Conv", [x, g.param(f"{s}.W"), g.param(f"{s}.b")], s, kernel_shape=list(layer.k),
                  strides=list(layer.s), pads=[*layer.p, *layer.p], dilations=list(layer.d))


@converts(pool.MaxPool1D, pool.MaxPool2D)
def _maxpool(g, i, layer, x, in_shape):
    return g.node("MaxPool", [x], f"layers.{i}", kernel_shape=list(layer.k), strides=list(layer.s))


@converts(pool.AvgPool1D, pool.AvgPool2D)
def _avgpool(g, i, layer, x, in_shape):
    return g.node("AveragePool", [x], f"layers.{i}", kernel_shape=list(layer.k), strides=list(layer.s))


@converts(shape.Flatten)
def _flatten(g, i, layer, x, in_shape):
    return g.node("Flatten", [x], f"layers.{i}", axis=1)


@converts(shape.Reshape)
def _reshape(g, i, layer, x, in_shape):
    target = g.const(f"layers.{i}.shape", np.array([-1, *layer.out_shape], np.int64))
    return g.node("Reshape", [x, target], f"layers.{i}")


@converts(noise.Dropout, noise.Corrupt)
def _identity(g, i, layer, x, in_shape):
    return x   # random in training only


def _gates(W: np.ndarray, order: list[int]) -> np.ndarray:
    """Gate blocks stacked along axis 0, (k H, ...), reordered; -> (1, k H, ...) for one direction."""
    blocks = np.asarray(W).reshape(len(order), -1, *np.shape(W)[1:])
    return blocks[order].reshape(1, *np.shape(W))


def _recurrent(g, i, layer, x, op, W, R, B, **attrs):
    """(N, T, D) -> time-major -> the ONNX op -> (N, T, H) or the last step's (N, H)."""
    s = f"layers.{i}"
    xt = g.node("Transpose", [x], s, perm=[1, 0, 2])
    ws = [g.const(f"{s}.onnx_W", W), g.const(f"{s}.onnx_R", R), g.const(f"{s}.onnx_B", B)]
    y, y_h = g.node(op, [xt, *ws], s, outputs=2, hidden_size=layer.units, **attrs)
    if layer.return_sequences:                           # Y: (T, 1, N, H)
        seq = g.node("Squeeze", [y, g.const(f"{s}.axis1", np.array([1], np.int64))], s)
        return g.node("Transpose", [seq], s, perm=[1, 0, 2])
    return g.node("Squeeze", [y_h, g.const(f"{s}.axis0", np.array([0], np.int64))], s)   # Y_h: (1, N, H)


@converts(rnn.RNN)
def _rnn(g, i, layer, x, in_shape):
    b = np.asarray(layer.b)
    return _recurrent(g, i, layer, x, "RNN", _gates(layer.W_ih, [0]), _gates(layer.W_hh, [0]),
                      np.concatenate([b, np.zeros_like(b)])[None], activations=["Tanh"])


@converts(lstm.LSTM)
def _lstm(g, i, layer, x, in_shape):
    order = [0, 3, 1, 2]                                  # netcli i, f, g, o -> ONNX i, o, f, c
    b = _gates(layer.b, order)[0]
    return _recurrent(g, i, layer, x, "LSTM", _gates(layer.W_ih, order), _gates(layer.W_hh, order),
                      np.concatenate([b, np.zeros_like(b)])[None])


@converts(gru.GRU)
def _gru(g, i, layer, x, in_shape):
    order = [1, 0, 2]                                     # netcli r, z, n -> ONNX z, r, h
    B = np.concatenate([_gates(layer.b_ih, order)[0], _gates(layer.b_hh, order)[0]])[None]
    return _recurrent(g, i, layer, x, "GRU", _gates(layer.W_ih, order), _gates(layer.W_hh, order), B,
                      linear_before_reset=1)


def supported_layers() -> list[str]:
    return sorted(c.registered_name for c in CONVERTERS)


# -- the whole model ------------------------------------------------------------------

def _inputs(g: Graph, raw: RawInput) -> str:
    x = INPUT
    if raw.fill is not None:
        fill = g.const("meta.fill", raw.fill.reshape(1, -1))
        x = g.node("Where", [g.node("IsNaN", [x], "preprocess"), fill, x], "preprocess")
    if raw.offset is not None:
        x = g.node("Sub", [x, g.const("meta.offset", raw.offset.reshape(1, -1))], "preprocess")
        x = g.node("Div", [x, g.const("meta.scale", raw.scale.reshape(1, -1))], "preprocess")
    if len(raw.input_shape) != 1:
        x = g.node("Reshape", [x, g.const("meta.input_shape", np.array([-1, *raw.input_shape], np.int64))],
                   "preprocess")
    return x


def _labels(g: Graph, task, classes, out: str) -> tuple[str, np.ndarray | None]:
    """The answers beside the outputs, as Task.decode gives them: (LABEL or "" when the task has
    none, the label array, or None for 0/1 answers)."""
    direct = LABEL if classes is None else None
    if task.labelled:
        index = g.node("ArgMax", [out], "labels", axis=-1, keepdims=0, out=direct)
    elif task.binary:
        yes = g.node("Greater", [out, g.const("labels.half", np.array(0.5))], "labels")
        index = g.node("Cast", [yes], "labels", to=7, out=direct)   # 7: TensorProto.INT64
    else:
        return "", None
    if classes is None:
        return index, None
    classes = np.asarray(classes)
    return g.node("Gather", [g.const("meta.classes", classes), index], "labels", out=LABEL), classes


def build_model(run):
    """The run as an onnx.ModelProto (checked with onnx.checker)."""
    onnx = require("onnx", "export", "ONNX export")
    from onnx import TensorProto, helper, numpy_helper

    net, task = run.net, run.task
    raw = raw_input(run.prep, net.input_shape, f"{run.path}")
    g = Graph(helper, numpy_helper)
    g.params = net.params
    x = _inputs(g, raw)
    for i, layer in enumerate(net.layers):
        convert = CONVERTERS.get(type(layer))
        if convert is None:
            raise NetcliError(f"model.layers[{i}]: layer {layer.describe()!r} has no ONNX form in netcli's "
                              f"exporter (it knows {', '.join(supported_layers())})")
        x = convert(g, i, layer, x, net.shapes[i])
        x = activation(g, layer.activation, x, f"layers.{i}")
    g.node("Identity", [x], "output", out=OUTPUT)   # a fixed name; onnxruntime drops the node
    out_shape = ["batch", *net.output_shape]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_shape)]
    label, classes = _labels(g, task, run.classes, OUTPUT)
    if label:
        kind = (TensorProto.INT64 if classes is None else
                helper.np_dtype_to_tensor_dtype(classes.dtype) if classes.dtype.kind not in "US"
                else TensorProto.STRING)
        outputs.append(helper.make_tensor_value_info(LABEL, kind, out_shape[:-1] if task.labelled else out_shape))
    features = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", raw.n_features])
    graph = helper.make_graph(
        g.nodes, run.path.name, [features], outputs, g.initializers,
        doc_string=f"netcli run {run.path.name}: raw feature rows '{INPUT}' (float32, batch x "
                   f"{raw.n_features}) -> '{OUTPUT}'" + (f", '{LABEL}'" if label else ""))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="netcli", producer_version=__version__)
    meta = {"task": task.name, "netcli_version": __version__, "normalize": run.prep.normalize,
            "input_shape": json.dumps(list(net.input_shape)),
            "layers": json.dumps(run.config.as_dict()["model"]["layers"], default=to_plain)}
    if run.classes is not None:
        meta["classes"] = json.dumps([str(c) for c in np.asarray(run.classes).tolist()])
    if run.columns is not None and run.columns.features is not None:
        meta["features"] = json.dumps(run.columns.features)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model
