"""A validated config -> a Network (layers from the registry, loss, penalties)."""

from __future__ import annotations

import numpy as np

from netcli.config import Config
from netcli.nn import LAYERS, LOSSES, Network
from netcli.nn.network import BuildError
from netcli.nn.regularizers import make_penalties


def input_shape(config: Config) -> tuple[int, ...]:
    shape = config.spec.model.input
    return (shape,) if isinstance(shape, int) else tuple(shape)


def build_network(config: Config, dtype=None, rng: np.random.Generator | None = None) -> Network:
    """Layers, loss and penalties from the config; parameters drawn from rng (default: the
    config's seed) with the config's initializer. dtype overrides config.dtype (gradcheck: float64)."""
    model = config.resolved["model"]
    layers = []
    for block in model["layers"]:
        args = {k: v for k, v in block.items() if k != "type"}
        layers.append(LAYERS.get(block["type"])(**args))
    regularization = {k: v for k, v in config.resolved["regularization"].items() if v is not None}
    weight_penalties, activation_penalties = make_penalties(regularization)
    try:
        net = Network(layers, input_shape(config), LOSSES.get(config.spec.loss)(),
                      weight_penalties, activation_penalties, dtype=dtype or config.spec.dtype)
    except BuildError as e:
        raise config.error(e.key, str(e)) from None
    except (MemoryError, OverflowError, ValueError) as e:  # sizes beyond what can be allocated
        raise config.error("model", f"this network cannot be built here ({type(e).__name__}: {e}); "
                                    f"check the sizes in model.input and model.layers") from None
    rng = np.random.default_rng(config.spec.seed) if rng is None else rng
    net.init_params(rng, config.spec.model.init)
    net.set_rng(rng)
    return net
