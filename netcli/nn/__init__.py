"""The mathematics, pure NumPy, no I/O: layers, activations, losses, regularizers, the network."""

from netcli.nn.activations import ACTIVATIONS
from netcli.nn.layers import LAYERS
from netcli.nn.losses import LOSSES
from netcli.nn.regularizers import REGULARIZERS
from netcli.nn.init import INITIALIZERS
from netcli.nn.network import Network

__all__ = ["ACTIVATIONS", "LAYERS", "LOSSES", "REGULARIZERS", "INITIALIZERS", "Network"]
