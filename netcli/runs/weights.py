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

import json
import math
from pathlib import Path
from typing import get_args

import numpy as np

from netcli import __version__
from netcli.config import DataSection
from netcli.data import Columns, Preprocessing
from netcli.encoding import IMPUTE
from netcli.errors import NetcliError
from netcli.files import load_npz, save_npz, shown_array
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


def read_meta(path: Path, arrays: dict[str, np.ndarray],
              outputs: int | None = None) -> tuple[Preprocessing, Task, Columns]:
    """The preprocessing, task and training columns a weights.npz records. Each meta.* array must
    be what weight_arrays writes; one that is not is a NetcliError that names its key. outputs:
    the network's output width, when known (a classifier's classes must be as many)."""
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise NetcliError(f"{path}: has no {', '.join(missing)}; the file is damaged or not netcli's")
    task = TASKS.get(str(arrays["meta.task"])) if arrays["meta.task"].ndim == 0 else None
    if task is None:
        raise NetcliError(f"{path}: meta.task {str(arrays['meta.task'])[:40]!r} is not a task netcli knows "
                          f"({', '.join(TASKS)}); the file is damaged or not netcli's")
    _check_meta(path, arrays, task, outputs)
    try:
        features = arrays.get("meta.features")
        target = arrays.get("meta.target_column")
        columns = Columns(None if features is None else [str(f) for f in features.reshape(-1)],
                          None if target is None else str(target))
        return Preprocessing.from_arrays(arrays), task, columns
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise NetcliError(f"{path}: its preprocessing record (meta.*) cannot be read ({type(e).__name__}: "
                          f"{e}); the file is damaged or not netcli's") from None


NORMALIZE = get_args(DataSection.model_fields["normalize"].annotation)   # none, standard, minmax, ...


def _check_meta(path: Path, arrays: dict[str, np.ndarray], task: Task, outputs: int | None) -> None:
    """Each meta.* array as Preprocessing.to_arrays and weight_arrays write it."""
    def damaged(key: str, what: str) -> NetcliError:
        return NetcliError(f"{path}: {key} {what}; the file is damaged or not netcli's")

    def text(key: str, choices=None) -> str:
        a = arrays[key]
        if a.ndim != 0 or a.dtype.kind != "U":
            raise damaged(key, f"is {shown_array(a)}, not a name")
        if choices is not None and str(a) not in choices:
            raise damaged(key, f"is {str(a)[:40]!r}, not one of {', '.join(choices)}")
        return str(a)

    shape = arrays["meta.input_shape"]
    if shape.ndim != 1 or (shape.size and shape.dtype.kind not in "iu") or np.any(shape <= 0):
        raise damaged("meta.input_shape", f"is {shown_array(shape)}, not a shape (positive integers)")
    width = math.prod(int(v) for v in shape)
    normalize = text("meta.normalize", NORMALIZE)
    for key in ("meta.offset", "meta.scale"):
        if key not in arrays:
            if normalize != "none":
                raise damaged(key, f"is missing, which meta.normalize {normalize!r} needs")
            continue
        a = arrays[key]
        if a.dtype.kind not in "iuf" or a.shape != (width,):
            raise damaged(key, f"is {shown_array(a)}, not {width} numbers (one per input of meta.input_shape "
                               f"{shape.tolist()})")
        if not np.all(np.isfinite(a)) or (key == "meta.scale" and np.any(a == 0)):
            raise damaged(key, "holds " + ("zeros" if np.all(np.isfinite(a)) else "NaN or Inf")
                          + " (no training split gives that)")
    classes = arrays.get("meta.classes")
    if classes is None:
        if task.labelled:
            raise damaged("meta.classes", f"is missing, which a {task.name} run needs")
    else:
        if classes.ndim != 1 or classes.dtype.kind not in "biufU" or not len(classes):
            raise damaged("meta.classes", f"is {shown_array(classes)}, not a list of class labels")
        if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)) \
                or not np.array_equal(np.unique(classes), classes):
            raise damaged("meta.classes", f"is {shown_array(classes)}, not distinct labels in sorted order")
        need = 2 if task.binary else outputs if task.labelled else None
        if need is not None and len(classes) != need:
            raise damaged("meta.classes", f"has {len(classes)} labels, the "
                          + ("binary task has 2" if task.binary else f"network has {need} outputs"))
    if "meta.impute" in arrays:
        text("meta.impute", IMPUTE)
    if "meta.fill" in arrays:
        fill = arrays["meta.fill"]
        if fill.ndim != 1 or fill.dtype.kind not in "iuf" or not np.all(np.isfinite(fill)):
            raise damaged("meta.fill", f"is {shown_array(fill)}, not a finite value per numeric feature")
    categories = {}
    if "meta.categories" in arrays:
        try:
            categories = json.loads(text("meta.categories"))
        except ValueError:
            categories = None
        if not isinstance(categories, dict) or not all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in categories.values()):
            raise damaged("meta.categories", "is not an object of category columns and their labels")
    target = text("meta.target_column") if "meta.target_column" in arrays else None
    features = arrays.get("meta.features")
    if features is None:
        if target is not None:
            raise damaged("meta.features", f"is missing, though meta.target_column {target!r} is there "
                                           f"(a file with named columns records both)")
        return
    if features.ndim != 1 or features.dtype.kind != "U":
        raise damaged("meta.features", f"is {shown_array(features)}, not a list of column names")
    encoded = sum(len(categories[name]) if name in categories else 1 for name in features.tolist())
    if encoded != width:
        raise damaged("meta.features", f"names {len(features)} columns, which make {encoded} inputs; "
                                       f"meta.input_shape {shape.tolist()} has {width}")
