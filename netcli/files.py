"""Files netcli writes and reads back, written once: atomic writes, NPZ arrays, JSON files and
lines, plain JSON values, and new timestamped folders (run directories, sweep directories)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from netcli.errors import NetcliError


@contextmanager
def atomic_write(path: Path, mode: str = "w"):
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a run should read like any other file
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)     # the rename itself survives a power loss only once its folder is on disk
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new file or link in it) to disk, where the OS allows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass   # file systems that cannot sync a folder
    finally:
        os.close(fd)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an NPZ file netcli wrote; any damage (or a missing required array) is a NetcliError."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise NetcliError(f"{path}: not found") from None
    except Exception as e:  # truncated, bit-flipped, encrypted flag, unknown compression, ...
        raise NetcliError(f"{path}: cannot read it ({type(e).__name__}: {e}); the file is truncated "
                          f"or corrupt") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise NetcliError(f"{path}: has no {', '.join(missing)}; the file is damaged or not netcli's")
    return arrays



def shown_array(a: np.ndarray) -> str:
    """An array read from a damaged file, as a message shows it: its values when it holds a
    few, else its shape; at most 40 characters."""
    text = repr(a.tolist()) if a.size <= 4 else f"an array of shape {list(a.shape)}"
    return text if len(text) <= 40 else text[:37] + "..."

def to_plain(value):
    """json.dumps(default=to_plain): NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def plain(value):
    """A copy of a Python value as plain YAML/JSON values: mappings as dicts, tuples and lists as
    lists, NumPy scalars and arrays as numbers and lists, os.PathLike as str; the rest as they are."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: Path, obj) -> None:
    """obj as indented JSON (NumPy values as plain ones), written atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2, default=to_plain) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
    """One JSON object as one line at the end of path, flushed to disk before returning."""
    with open(path, "a") as f:
        f.write(json.dumps(record, default=to_plain) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list:
    """The JSON values of path's lines, up to the first line that does not parse (one cut short
    by a kill: everything before it is good); [] for a missing file, a NetcliError for one that
    cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:   # no permission, a folder, an I/O error of the disk
        raise NetcliError(f"{path}: cannot read it ({e.strerror or e})") from None
    out = []
    for line in data.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:   # not JSON, or not UTF-8 text
            break
    return out


def read_json(path: Path):
    """A JSON file's value, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def safe_name(name: str) -> str:
    """A run or trial name that stays one plain folder inside its parent (no '/', '..', hidden)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.=+-]", "_", name).lstrip(".")
    return cleaned or "run"


def timestamped_path(base: str | Path, name: str) -> Path:
    """base/<name>-<YYYYmmdd-HHMMSS>, with -2, -3, ... added when that exists already
    (the folder is not created); a base that cannot be looked into is a NetcliError."""
    name = safe_name(name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path(base) / f"{name}-{stamp}", 1
    try:
        while path.exists():
            n += 1
            path = Path(base) / f"{name}-{stamp}-{n}"
    except OSError as e:   # base lies in a folder that cannot be entered, or its name is too long
        raise NetcliError(f"{base}: cannot make a folder in it ({e.strerror or e})") from None
    return path
