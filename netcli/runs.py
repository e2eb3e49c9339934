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
import re
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
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a run should read like any other file
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


def load_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of a run's NPZ file; any damage (or a missing required array) is a NetcliError."""
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


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, config_name: str, base: str | Path = "runs", run_dir: str | Path | None = None,
               overwrite: bool = False) -> "RunDir":
        """A new run directory: run_dir if given, else base/<config-name>-<timestamp>
        (then base/latest points at it)."""
        if run_dir is None:
            config_name = safe_name(config_name)
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
        if run_dir is None:
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


def safe_name(name: str) -> str:
    """A run or trial name that stays one plain folder inside its parent (no '/', '..', hidden)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.=+-]", "_", name).lstrip(".")
    return cleaned or "run"


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


def list_runs(folder: str | Path) -> list[dict]:
    """Every run directory under folder (sweep trials included), newest first."""
    base = Path(folder)
    if not base.is_dir():
        raise NetcliError(f"{folder}: no such folder")
    found = [p.parent for p in base.glob("*/config.yaml")] + [p.parent for p in base.glob("*/*/config.yaml")]
    rows = []
    for path in sorted(set(found), key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True):
        if path.is_symlink() or path.name == LATEST:
            continue
        summary = {}
        try:
            summary = json.loads((path / "summary.json").read_text())
        except (OSError, json.JSONDecodeError):
            pass
        metrics = RunDir(path).read_metrics()
        status = summary.get("status", "running" if metrics else "new")
        running = status in ("running", "new")  # its summary predates epoch 1: count the log
        rows.append({"run": str(path.relative_to(base)), "config": summary.get("config"),
                     "status": status,
                     "epochs": len(metrics) if running else summary.get("epochs", len(metrics)),
                     "best_val": _best_val(metrics), "test": _test_metric(summary.get("test")),
                     "wall_seconds": None if running else summary.get("wall_seconds")})
    return rows


def _best_val(metrics: list[dict]):
    for key, best in (("val_accuracy", max), ("val_mse", min), ("val_loss", min)):
        values = [r[key] for r in metrics if r.get(key) is not None]
        if values:
            return [key, best(values)]
    return None


def _test_metric(test: dict | None):
    if not test:
        return None
    key = "accuracy" if "accuracy" in test else "mse" if "mse" in test else "loss"
    return [key, test[key]]
