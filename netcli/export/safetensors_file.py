"""A run's weights.npz as a safetensors file: every numeric array under its weights.npz name,
everything else in the header's metadata (string values only, JSON where a value is a list).

    tensors     layers.<i>.<param> (PyTorch layouts, the run's dtype), meta.offset, meta.scale,
                meta.input_shape, and any other numeric meta.* array the run keeps
                (meta.classes too, when the labels are numbers)
    metadata    format ("netcli-run"), netcli_version, task, normalize, input_shape (JSON),
                dtype, loss, model (JSON: input, layers, init as the resolved config has them),
                classes (JSON list of strings), features and target_column when the training
                file named its columns

Read back with safetensors.numpy.load_file(path) for the tensors and
safetensors.safe_open(path, "np").metadata() for the metadata.
"""

from __future__ import annotations

import json

import numpy as np

from netcli.export.common import raw_input, require
from netcli.files import load_npz, to_plain
from netcli.runs.weights import weights_file

FORMAT = "netcli-run"


def tensors_and_metadata(run) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    raw_input(run.prep, run.net.input_shape, str(run.path))   # refuses what a reader could not redo
    arrays = load_npz(weights_file(run.path))
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v.dtype.kind in "fiub"}
    spec = run.config.as_dict()
    meta = {"format": FORMAT, "netcli_version": str(arrays.get("meta.netcli_version", "")),
            "task": run.task.name, "normalize": run.prep.normalize,
            "input_shape": json.dumps(list(run.net.input_shape)), "dtype": str(run.net.dtype),
            "loss": json.dumps(spec["loss"], default=to_plain),
            "model": json.dumps(spec["model"], default=to_plain)}
    if run.classes is not None:
        meta["classes"] = json.dumps([str(c) for c in np.asarray(run.classes).tolist()])
    if run.columns is not None and run.columns.features is not None:
        meta["features"] = json.dumps(run.columns.features)
        if run.columns.target:
            meta["target_column"] = run.columns.target
    return tensors, meta


def serialize(run) -> bytes:
    st = require("safetensors.numpy", "export", "safetensors export")
    tensors, meta = tensors_and_metadata(run)
    return st.save(tensors, metadata=meta)
