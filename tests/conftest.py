"""Shared fixtures: a test-only activation with a wrong derivative, registered for one test; a
Dask cluster for the sweep tests."""

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


@pytest.fixture(scope="module")
def client():
    """A LocalCluster set up as `netcli sweep` sets up its own: 2 single-threaded processes."""
    import logging
    from distributed import Client, LocalCluster

    from netcli.sweep import ONE_THREAD_ENV
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env=ONE_THREAD_ENV, preload=["netcli.sweep"])
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
