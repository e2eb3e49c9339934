"""Run directories: layout, atomic writes, loading a run back.

    runs/<config-name>-<timestamp>/
      config.yaml     the resolved config
      metrics.jsonl   one JSON object per epoch, appended and flushed
      weights.npz     layers.<i>.<param>, plus meta.* (preprocessing, classes, version)
      checkpoint.npz  parameters, optimizer state, RNG state, epoch: for --resume
      summary.json    final metrics, wall time, status
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcli.errors import NetcliError

LATEST = "latest"


@contextmanager
def atomic_write(path: Path, mode: str = "w"):
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise NetcliError(f"{path}: not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise NetcliError(f"{path}: cannot read ({e}); the file is truncated or corrupt") from None


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, config_name: str, base: str | Path = "runs", run_dir: str | Path | None = None,
               overwrite: bool = False) -> "RunDir":
        """A new run directory: run_dir if given, else base/<config-name>-<timestamp>."""
        if run_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path(base) / f"{config_name}-{stamp}"
            n = 1
            while path.exists():
                n += 1
                path = Path(base) / f"{config_name}-{stamp}-{n}"
        else:
            path = Path(run_dir)
            if path.exists() and any(path.iterdir()) and not overwrite:
                raise NetcliError(f"{path}: run directory exists and is not empty; "
                                  f"choose another --run-dir or pass --overwrite")
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in ("metrics.jsonl", "checkpoint.npz", "weights.npz", "summary.json"):
                (path / name).unlink(missing_ok=True)
        run = cls(path)
        run.point_latest()
        return run

    def point_latest(self) -> None:
        """runs/latest -> this run (a relative symlink beside it)."""
        link = self.path.parent / LATEST
        try:
            tmp = self.path.parent / f".{LATEST}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path.name)
            os.replace(tmp, link)
        except OSError:
            pass  # file systems without symlinks: runs/latest is a convenience only

    def write_text(self, name: str, text: str) -> None:
        with atomic_write(self.path / name) as f:
            f.write(text)

    def write_json(self, name: str, obj) -> None:
        self.write_text(name, json.dumps(obj, indent=2, default=_plain) + "\n")

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_plain) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything before it is good
        return out

    def rewrite_metrics(self, records: list[dict]) -> None:
        self.write_text("metrics.jsonl", "".join(json.dumps(r, default=_plain) + "\n" for r in records))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def resolve_run(path: str | Path) -> Path:
    """A run directory (or runs/latest) that holds a config and weights."""
    p = Path(path)
    if not p.is_dir():
        raise NetcliError(f"{path}: no such run directory")
    p = p.resolve()
    if not (p / "config.yaml").exists():
        raise NetcliError(f"{path}: not a run directory (no config.yaml)")
    return p
