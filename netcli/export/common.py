"""What every export format needs: the optional libraries, imported late with a one-line error
when missing, and the run's preprocessing in a form a graph can apply."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from netcli.errors import NetcliError


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional library, or say which extra installs it: netcli.export imports onnx,
    onnxruntime, safetensors and torch only here, inside the export that needs them."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NetcliError(f"{what} needs the {module.split('.')[0]} package, which is not installed; "
                          f"pip install 'netcli[{extra}]'") from None


@dataclass(frozen=True)
class RawInput:
    """How a raw feature row (as the CSV has it) becomes the network's input, for a graph:

        x = where(isnan(row), fill, row)     (fill: the imputed values; None: no imputation)
        x = (x - offset) / scale             (None: no normalization)
        x = x.reshape(input_shape)

    exactly the order and the operations of netcli.data.Preprocessing.inputs (a subtraction and
    a division in the network's dtype, not a multiplication by 1 / scale)."""

    n_features: int
    input_shape: tuple[int, ...]
    offset: np.ndarray | None
    scale: np.ndarray | None
    fill: np.ndarray | None


def raw_input(prep, input_shape: tuple[int, ...], what: str) -> RawInput:
    """The run's preprocessing as a RawInput; a NetcliError for what a graph cannot do yet.

    String (category) columns are refused: the graph would have to take strings and one-hot
    them (netcli.encoding does that before the network sees a row). `categories` and `fill` are read with getattr:
    runs from before they existed have neither."""
    categories = getattr(prep, "categories", None)
    if categories:
        names = ", ".join(map(str, categories)) if isinstance(categories, dict) else ""
        raise NetcliError(f"{what}: export does not one-hot string columns yet; this run's data has "
                          f"category columns{f' ({names})' if names else ''}. Export a run trained on "
                          f"numeric columns, or encode them as numbers in the data")
    n = int(np.prod(input_shape))
    offset = None if prep.offset is None else np.asarray(prep.offset, dtype=np.float64).reshape(-1)
    scale = None if prep.scale is None else np.asarray(prep.scale, dtype=np.float64).reshape(-1)
    fill = getattr(prep, "fill", None)
    fill = None if fill is None else np.asarray(fill, dtype=np.float64).reshape(-1)
    for name, values in (("offset", offset), ("scale", scale), ("fill", fill)):
        if values is not None and values.size != n:
            raise NetcliError(f"{what}: the run's preprocessing {name} has {values.size} values but the "
                              f"model takes {n} features; the run's weights.npz does not fit its config")
    if (offset is None) != (scale is None):
        raise NetcliError(f"{what}: the run's preprocessing has an offset or a scale but not both; "
                          f"its weights.npz is damaged")
    return RawInput(n, tuple(int(d) for d in input_shape), offset, scale, fill)


def describe(run) -> str:
    """'run-name (4 layers, 1,234 parameters)' for messages on stderr."""
    return f"{run.path.name} ({len(run.net.layers)} layers, {run.net.size:,} parameters)"
