"""Layers, registered by name: `{type: dense, units: 64}` in a config."""

from netcli.registry import Registry

LAYERS: Registry = Registry("layer")

from netcli.nn.layers.base import Layer, ParamSpec  # noqa: E402
from netcli.nn.layers import dense, maxout, conv, pool, shape, noise, rnn, lstm, gru  # noqa: E402,F401

__all__ = ["LAYERS", "Layer", "ParamSpec"]
