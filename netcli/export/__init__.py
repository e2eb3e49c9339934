"""Taking a trained run elsewhere: `netcli export RUN --format onnx|torch|safetensors`.

    onnx          RUN/model.onnx          onnx_graph.py: the whole model, preprocessing included,
                                          written with onnx.helper; runs in onnxruntime
    torch         RUN/model.pt            torch_model.py: a state_dict (torch.save) for the
                                          Sequential that build_sequential(run) makes
    safetensors   RUN/model.safetensors   safetensors_file.py: weights.npz's tensors, the rest
                                          as header metadata

onnx, onnxruntime, safetensors and torch are optional (the `export` and `torch` extras) and
imported only inside the export that uses them; a missing one is a NetcliError that names the
extra to install.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from netcli.errors import NetcliError
from netcli.export.common import describe, require
from netcli.files import atomic_write


@dataclass(frozen=True)
class Format:
    name: str
    filename: str                       # the default file inside the run directory
    serialize: Callable[..., bytes]     # a loaded Run -> the file's bytes


def _onnx(run) -> bytes:
    from netcli.export.onnx_graph import build_model
    return build_model(run).SerializeToString()


def _torch(run) -> bytes:
    torch = require("torch", "torch", "PyTorch export")
    from netcli.export.torch_model import build_sequential
    buf = io.BytesIO()
    torch.save(build_sequential(run).state_dict(), buf)
    return buf.getvalue()


def _safetensors(run) -> bytes:
    from netcli.export.safetensors_file import serialize
    return serialize(run)


FORMATS = {f.name: f for f in (Format("onnx", "model.onnx", _onnx),
                               Format("torch", "model.pt", _torch),
                               Format("safetensors", "model.safetensors", _safetensors))}


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None, reporter=None) -> Path:
    """Write RUN's model in format fmt to out (default: RUN/<FORMATS[fmt].filename>; a folder: that
    file name in it) -> the path.
    The file is written to a temporary name and renamed into place."""
    from netcli.api import load_run

    if fmt not in FORMATS:
        raise NetcliError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    run = load_run(run_dir)
    path = Path(out) if out else run.path
    if path.is_dir():
        path = path / FORMATS[fmt].filename
    if not path.parent.is_dir():
        raise NetcliError(f"--out {path}: folder {path.parent} does not exist")
    data = FORMATS[fmt].serialize(run)
    with atomic_write(path, "wb") as f:
        f.write(data)
    if reporter is not None:
        reporter.info(f"exported {describe(run)} as {fmt}: {len(data):,} bytes")
    return path


__all__ = ["FORMATS", "export"]
