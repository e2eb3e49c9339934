"""A trained run as a torch.nn.Sequential (needs torch: pip install 'netcli[torch]').

    model = build_sequential("runs/latest")             # the run's weights copied in
    model = build_sequential(run, weights=False)        # the architecture alone, then
    model.load_state_dict(torch.load("runs/latest/model.pt"), strict=True)
    model(torch.as_tensor(X))                           # X: raw feature rows, as in the CSV

The model is Sequential(preprocess, layers):

    preprocess   the run's imputation (fill) and normalization, (x - offset) / scale, as buffers,
                 then the reshape to (N, *model.input); it takes flat rows (N, n_features) or rows
                 already of the model's input shape
    layers       one module per entry of model.layers, at the same index (layers without
                 parameters count too, as in weights.npz): layers.0.weight is netcli's
                 layers.0.W. A layer's activation is part of its module; the last one gives
                 the class probabilities of a classifier, as `netcli predict --proba` does.

Parameters keep PyTorch's layouts, which are netcli's (dense and conv weights (out, in, ...),
LSTM gates i, f, g, o, GRU gates r, z, n). netcli's rnn and lstm have one bias b, PyTorch's
two: bias_ih = b and bias_hh = 0. A tied decoder (dense_tied) holds only its bias and reads
its source layer's weight. dropout is nn.Dropout (identity in eval mode); corrupt, noise for
training a denoising autoencoder, is nn.Identity. The model is in eval mode and in the run's
dtype (float32 or float64).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netcli.errors import NetcliError
from netcli.export.common import raw_input
from netcli.nn import activations as acts
from netcli.nn.layers import conv, dense, gru, lstm, maxout, noise, pool, rnn, shape


class Preprocess(nn.Module):
    """Raw rows (N, n_features) or (N, *input_shape) -> network input (N, *input_shape):
    x = where(isnan(x), fill, x); x = (x - offset) / scale (each only when the run has it)."""

    def __init__(self, input_shape, offset=None, scale=None, fill=None, dtype=torch.float32):
        super().__init__()
        self.input_shape = tuple(input_shape)
        for name, values in (("fill", fill), ("offset", offset), ("scale", scale)):
            if values is not None:
                self.register_buffer(name, torch.as_tensor(np.asarray(values), dtype=dtype).reshape(-1))
            else:
                setattr(self, name, None)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        if self.fill is not None:
            x = torch.where(torch.isnan(x), self.fill, x)
        if self.offset is not None:
            x = (x - self.offset) / self.scale
        return x.reshape(x.shape[0], *self.input_shape)


class Softplus(nn.Module):
    """log(1 + e^x) as netcli computes it (logaddexp), without nn.Softplus's linear cut at x > 20."""

    def forward(self, x):
        return torch.logaddexp(x, torch.zeros((), dtype=x.dtype))


ACTIVATIONS = {
    acts.Linear: lambda a: nn.Identity(),
    acts.Sigmoid: lambda a: nn.Sigmoid(),
    acts.Tanh: lambda a: nn.Tanh(),
    acts.ReLU: lambda a: nn.ReLU(),
    acts.LeakyReLU: lambda a: nn.LeakyReLU(float(a.alpha)),
    acts.Softplus: lambda a: Softplus(),
    acts.Softmax: lambda a: nn.Softmax(dim=-1),
}


def activation_module(act, where: str) -> nn.Module:
    if act is None:
        return nn.Identity()
    if type(act) not in ACTIVATIONS:
        raise NetcliError(f"{where}: activation {act.describe()!r} has no PyTorch form in netcli's exporter "
                          f"(it knows {', '.join(sorted(c.registered_name for c in ACTIVATIONS))})")
    return ACTIVATIONS[type(act)](act)


class Dense(nn.Linear):
    """netcli's dense: activation(x @ W.T + b) over any leading axes."""

    def __init__(self, d_in, units, activation, **kw):
        super().__init__(d_in, units, **kw)
        self.activation = activation

    def forward(self, x):
        return self.activation(super().forward(x))


class TiedDense(nn.Module):
    """netcli's dense_tied: activation(x @ W_src + b); W_src is the source layer's weight, read
    at each call (not registered here, so the state_dict holds it once)."""

    def __init__(self, source: nn.Linear, units, activation, **kw):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(units, **kw))
        self.activation = activation
        object.__setattr__(self, "_source", source)   # not a submodule

    def forward(self, x):
        return self.activation(x @ self._source.weight + self.bias)


class Maxout(nn.Linear):
    """netcli's maxout: max over the pieces of each unit; row u * pieces + k is piece k of unit u."""

    def __init__(self, d_in, units, pieces, **kw):
        super().__init__(d_in, units * pieces, **kw)
        self.units, self.pieces = units, pieces

    def forward(self, x):
        z = super().forward(x)
        return z.reshape(*z.shape[:-1], self.units, self.pieces).amax(dim=-1)


class Conv1d(nn.Conv1d):
    def __init__(self, *args, activation, **kw):
        super().__init__(*args, **kw)
        self.activation = activation

    def forward(self, x):
        return self.activation(super().forward(x))


class Conv2d(nn.Conv2d):
    def __init__(self, *args, activation, **kw):
        super().__init__(*args, **kw)
        self.activation = activation

    def forward(self, x):
        return self.activation(super().forward(x))


class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


class _Sequences:
    """(N, T, D) batch-first -> (N, T, H) with return_sequences, else the last step's (N, H)."""

    def forward(self, x):
        y = super().forward(x)[0]
        return y if self.return_sequences else y[:, -1]


class RNN(_Sequences, nn.RNN):
    def __init__(self, d_in, units, return_sequences, **kw):
        super().__init__(d_in, units, batch_first=True, nonlinearity="tanh", **kw)
        self.return_sequences = return_sequences


class LSTM(_Sequences, nn.LSTM):
    def __init__(self, d_in, units, return_sequences, **kw):
        super().__init__(d_in, units, batch_first=True, **kw)
        self.return_sequences = return_sequences


class GRU(_Sequences, nn.GRU):
    def __init__(self, d_in, units, return_sequences, **kw):
        super().__init__(d_in, units, batch_first=True, **kw)
        self.return_sequences = return_sequences


# -- netcli layer -> (module, {torch parameter name: netcli parameter values}) ------------------

MODULES = {}


def makes(*classes):
    def add(fn):
        for c in classes:
            MODULES[c] = fn
        return fn
    return add


@makes(dense.Dense)
def _dense(layer, i, built, kw):
    m = Dense(layer.d_in, layer.units, activation_module(layer.activation, f"model.layers[{i}]"), **kw)
    return m, {"weight": layer.W, "bias": layer.b}


@makes(dense.TiedDense)
def _tied(layer, i, built, kw):
    m = TiedDense(built[layer.tied_to], layer.units, activation_module(layer.activation, f"model.layers[{i}]"),
                  **kw)
    return m, {"bias": layer.b}


@makes(maxout.Maxout)
def _maxout(layer, i, built, kw):
    return Maxout(layer.d_in, layer.units, layer.pieces, **kw), {"weight": layer.W, "bias": layer.b}


@makes(conv.Conv1D, conv.Conv2D)
def _conv(layer, i, built, kw):
    cls = Conv1d if isinstance(layer, conv.Conv1D) else Conv2d
    m = cls(layer.c_in, layer.channels, layer.k, stride=layer.s, padding=layer.p, dilation=layer.d,
            activation=activation_module(layer.activation, f"model.layers[{i}]"), **kw)
    return m, {"weight": layer.W, "bias": layer.b}


POOLS = {pool.MaxPool1D: nn.MaxPool1d, pool.MaxPool2D: nn.MaxPool2d,
         pool.AvgPool1D: nn.AvgPool1d, pool.AvgPool2D: nn.AvgPool2d}


@makes(*POOLS)
def _pool(layer, i, built, kw):
    return POOLS[type(layer)](layer.k, stride=layer.s), {}


@makes(shape.Flatten)
def _flatten(layer, i, built, kw):
    return nn.Flatten(), {}


@makes(shape.Reshape)
def _reshape(layer, i, built, kw):
    return Reshape(layer.out_shape), {}


@makes(noise.Dropout)
def _dropout(layer, i, built, kw):
    return nn.Dropout(layer.rate), {}


@makes(noise.Corrupt)
def _corrupt(layer, i, built, kw):
    return nn.Identity(), {}


@makes(rnn.RNN, lstm.LSTM)
def _one_bias(layer, i, built, kw):
    cls = RNN if isinstance(layer, rnn.RNN) else LSTM
    b = np.asarray(layer.b)
    return cls(layer.d_in, layer.units, layer.return_sequences, **kw), {
        "weight_ih_l0": layer.W_ih, "weight_hh_l0": layer.W_hh, "bias_ih_l0": b, "bias_hh_l0": np.zeros_like(b)}


@makes(gru.GRU)
def _gru(layer, i, built, kw):
    return GRU(layer.d_in, layer.units, layer.return_sequences, **kw), {
        "weight_ih_l0": layer.W_ih, "weight_hh_l0": layer.W_hh, "bias_ih_l0": layer.b_ih, "bias_hh_l0": layer.b_hh}


def supported_layers() -> list[str]:
    return sorted(c.registered_name for c in MODULES)


def build_sequential(run, weights: bool = True, dtype=None) -> nn.Sequential:
    """A run (a netcli.api.Run or its directory) -> Sequential(preprocess, layers), in eval mode.

    weights: copy the run's parameters and preprocessing in (False: PyTorch's own initial
    values, for load_state_dict). dtype: torch.float32 / torch.float64 (default: the run's)."""
    if isinstance(run, (str, Path)):
        from netcli.api import load_run
        run = load_run(run)
    net = run.net
    dtype = dtype or (torch.float64 if net.dtype == np.float64 else torch.float32)
    kw = {"dtype": dtype}
    raw = raw_input(run.prep, net.input_shape, str(run.path))
    pre = Preprocess(raw.input_shape, raw.offset, raw.scale, raw.fill, dtype=dtype)
    built, values = [], {}
    for i, layer in enumerate(net.layers):
        make = MODULES.get(type(layer))
        if make is None:
            raise NetcliError(f"model.layers[{i}]: layer {layer.describe()!r} has no PyTorch form in netcli's "
                              f"exporter (it knows {', '.join(supported_layers())})")
        module, params = make(layer, i, built, kw)
        built.append(module)
        values.update({f"layers.{i}.{k}": v for k, v in params.items()})
    model = nn.Sequential(OrderedDict(preprocess=pre, layers=nn.Sequential(*built)))
    if weights:
        state = model.state_dict()
        missing = set(state) - set(values) - {k for k in state if k.startswith("preprocess.")}
        assert not missing, f"no netcli values for {sorted(missing)}"
        with torch.no_grad():
            for name, v in values.items():
                target = state[name]
                source = torch.as_tensor(np.ascontiguousarray(v), dtype=dtype)
                assert target.shape == source.shape, (name, target.shape, source.shape)
                target.copy_(source)
    else:
        with torch.no_grad():   # the preprocessing is the run's; reset it too, so a load must restore it
            for name, buf in pre.named_buffers():
                buf.fill_(1.0 if name == "scale" else 0.0)
    return model.eval()
