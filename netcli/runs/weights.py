"""weights.npz: a run's parameters and what predict needs besides them.

    layers.<i>.<param>    each parameter tensor (i: position in model.layers; PyTorch layouts)
    meta.normalize, meta.offset, meta.scale, meta.input_shape, meta.classes
                          the preprocessing fitted on the training split (Preprocessing.to_arrays)
    meta.task             what the outputs mean (netcli.nn.tasks: classification, binary, ...)
    meta.features, meta.target_column
                          the training file's feature and target column names (CSV, Parquet),
                          so eval and predict take them by name
    meta.netcli_version
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netcli import __version__
from netcli.data import Columns, Preprocessing
from netcli.errors import NetcliError
from netcli.files import load_npz, save_npz
from netcli.nn import Network
from netcli.nn.tasks import TASKS, Task

WEIGHTS = "weights.npz"
REQUIRED = ("meta.normalize", "meta.input_shape", "meta.task")


def weight_arrays(net: Network, prep: Preprocessing, task: Task,
                  columns: Columns | None = None) -> dict[str, np.ndarray]:
    arrays = {name: np.array(p) for name, p in net.params.items()}
    arrays.update(prep.to_arrays())
    arrays["meta.task"] = np.array(task.name)
    if columns is not None and columns.features is not None:
        arrays["meta.features"] = np.array(columns.features, dtype=str)
        if columns.target:
            arrays["meta.target_column"] = np.array(columns.target)
    arrays["meta.netcli_version"] = np.array(__version__)
    return arrays


def save_weights(path: Path, net: Network, prep: Preprocessing, task: Task,
                 columns: Columns | None = None) -> None:
    save_npz(path, weight_arrays(net, prep, task, columns))


def weights_file(source: str | Path) -> Path:
    """A weights.npz path, or a run directory's."""
    path = Path(source)
    return path / WEIGHTS if path.is_dir() else path


def load_weights_into(net: Network, source: str | Path) -> dict[str, np.ndarray]:
    """Copy layers.<i>.<name> arrays from a weights.npz (or a run directory) into net, cast to its
    dtype; -> all the file's arrays."""
    path = weights_file(source)
    arrays = load_npz(path)
    for slot in net.slots:
        if slot.name not in arrays:
            raise NetcliError(f"{path}: has no {slot.name}; it was saved from another architecture "
                              f"(it holds {', '.join(k for k in arrays if k.startswith('layers.'))})")
        if arrays[slot.name].shape != slot.spec.shape:
            raise NetcliError(f"{path}: {slot.name} has shape {list(arrays[slot.name].shape)}, "
                              f"this model needs {list(slot.spec.shape)}; it was saved from another architecture")
        net.params[slot.name][...] = arrays[slot.name]
    return arrays


def read_meta(path: Path, arrays: dict[str, np.ndarray]) -> tuple[Preprocessing, Task, Columns]:
    """The preprocessing, task and training columns a weights.npz records."""
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise NetcliError(f"{path}: has no {', '.join(missing)}; the file is damaged or not netcli's")
    task = TASKS.get(str(arrays["meta.task"])) if arrays["meta.task"].ndim == 0 else None
    if task is None:
        raise NetcliError(f"{path}: meta.task {str(arrays['meta.task'])[:40]!r} is not a task netcli knows "
                          f"({', '.join(TASKS)}); the file is damaged or not netcli's")
    try:
        features = arrays.get("meta.features")
        target = arrays.get("meta.target_column")
        columns = Columns(None if features is None else [str(f) for f in features.reshape(-1)],
                          None if target is None else str(target))
        return Preprocessing.from_arrays(arrays), task, columns
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise NetcliError(f"{path}: its preprocessing record (meta.*) cannot be read ({type(e).__name__}: "
                          f"{e}); the file is damaged or not netcli's") from None
