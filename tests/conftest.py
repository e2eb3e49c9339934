"""Shared fixtures: a test-only activation with a wrong derivative, registered for one test."""

import numpy as np
import pytest

from netcli.nn import ACTIVATIONS
from netcli.nn.activations import Activation

BROKEN = "broken_tanh"


class BrokenTanh(Activation):
    """f(z) = tanh(z) with the wrong derivative a (1 - a) (the sigmoid's), for gradcheck to catch."""

    def forward_(self, z):
        return np.tanh(z, out=z)

    def backward_(self, z, a, da):
        da *= a * (1.0 - a)
        return da


@pytest.fixture
def broken_activation():
    """Registers BROKEN for the duration of one test; yields its name."""
    ACTIVATIONS.register(BROKEN)(BrokenTanh)
    try:
        yield BROKEN
    finally:
        ACTIVATIONS.unregister(BROKEN)
