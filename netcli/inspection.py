"""Looking at a network without training it: the gradient check of a config or a run on a
few examples, and the table of layers with the objective being minimized."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netcli import gradcheck
from netcli.config import Config, load_config
from netcli.nn import Network
from netcli.prepare import build_network, prepare, sized
from netcli.runs.weights import load_weights_into


def load_target(target: str | Path, overrides=()) -> tuple[Config, Path | None]:
    """A config file, or a run directory's config -> (config, the run directory or None)."""
    path = Path(target)
    run_path = path if path.is_dir() else None
    return load_config(run_path / "config.yaml" if run_path else path, overrides), run_path


def check_gradients(target: str | Path, overrides=(), examples: int = 4, use_random: bool = False,
                    seed: int = 0, **options) -> tuple[gradcheck.Report, str, int]:
    """gradcheck.check_network on a float64 build of a config (fresh parameters) or a run (its
    trained weights), on `examples` rows of the training data or random ones
    -> (report, where the rows came from, how many)."""
    config, run_path = load_target(target, overrides)
    net = build_network(sized(config), dtype=np.float64)
    if run_path:
        load_weights_into(net, run_path)
    X, y, source = gradcheck_batch(config, net, examples, np.random.default_rng(seed), use_random)
    return gradcheck.check_network(net, X, y, seed=seed, **options), source, len(X)


def gradcheck_batch(config: Config, net: Network, k: int, rng: np.random.Generator, use_random: bool):
    """k examples of the training data (float64), or random inputs and targets of the config's
    task -> (X, y, source)."""
    if not use_random and config.spec.data.train:
        train = prepare(config).train
        idx = rng.choice(len(train), min(k, len(train)), replace=False)
        X, y = train.take(np.sort(idx))
        return X.astype(np.float64), y.astype(np.float64), train.source
    X = rng.normal(size=(k, *net.input_shape))
    return X, config.task.random_targets(rng, X, (k, *net.output_shape)), "random"


def layer_rows(net: Network) -> list[tuple[int, str, list[int], int]]:
    """(index, description, output shape, parameter count) per layer."""
    return [(i, layer.describe(), list(net.shapes[i + 1]), sum(s.size for s in net.slots if s.layer == i))
            for i, layer in enumerate(net.layers)]


def objective_formula(net: Network) -> str:
    """The objective in force with its numbers, e.g. J = -1/m sum y . log softmax(z) + ..."""
    terms = [net.loss.formula]
    terms += [p.formula() for p in net.weight_penalties]
    terms += [p.formula() for p in net.activation_penalties]
    text = "J = " + " + ".join(terms)
    if net.weight_penalties:
        text += ", biases not penalized"
    return text
