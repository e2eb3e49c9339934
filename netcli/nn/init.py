"""Weight initializers: (rng, shape, fan_in, fan_out) -> array. Biases start at zero."""

from __future__ import annotations

import numpy as np

from netcli.registry import Registry

INITIALIZERS: Registry = Registry("initializer")


@INITIALIZERS.register("glorot_uniform")
def glorot_uniform(rng: np.random.Generator, shape, fan_in: int, fan_out: int) -> np.ndarray:
    """U(-r, r), r = sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio 2010)"""
    r = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, size=shape)


@INITIALIZERS.register("glorot_normal")
def glorot_normal(rng, shape, fan_in, fan_out):
    """N(0, 2 / (fan_in + fan_out))"""
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


@INITIALIZERS.register("he_normal")
def he_normal(rng, shape, fan_in, fan_out):
    """N(0, 2 / fan_in)  (He et al. 2015, for ReLU units)"""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


@INITIALIZERS.register("he_uniform")
def he_uniform(rng, shape, fan_in, fan_out):
    """U(-r, r), r = sqrt(6 / fan_in)"""
    r = np.sqrt(6.0 / fan_in)
    return rng.uniform(-r, r, size=shape)


@INITIALIZERS.register("small_uniform")
def small_uniform(rng, shape, fan_in, fan_out):
    """U(-0.01, 0.01): the notes' "small random values near zero" that break symmetry"""
    return rng.uniform(-0.01, 0.01, size=shape)


@INITIALIZERS.register("zeros")
def zeros(rng, shape, fan_in, fan_out):
    """All zeros (biases; for weights it leaves every unit of a layer identical)"""
    return np.zeros(shape)
