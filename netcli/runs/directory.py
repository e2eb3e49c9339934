"""A run directory: its layout, its files written atomically, finding it again.

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
from dataclasses import dataclass
from pathlib import Path

from netcli.errors import NetcliError
from netcli.files import append_jsonl, atomic_write, read_jsonl, timestamped_path, to_plain

LATEST = "latest"
METRICS = "metrics.jsonl"


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, config_name: str, base: str | Path = "runs", run_dir: str | Path | None = None,
               overwrite: bool = False) -> "RunDir":
        """A new run directory: run_dir if given, else base/<config-name>-<timestamp>
        (then base/latest points at it)."""
        if run_dir is None:
            path = timestamped_path(base, config_name)
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
        self.write_text(name, json.dumps(obj, indent=2, default=to_plain) + "\n")

    def append_metrics(self, record: dict) -> None:
        append_jsonl(self.path / METRICS, record)

    def read_metrics(self) -> list[dict]:
        """metrics.jsonl's records (a line cut short by a kill, and all after it, left out)."""
        return [r for r in read_jsonl(self.path / METRICS) if isinstance(r, dict)]

    def rewrite_metrics(self, records: list[dict]) -> None:
        self.write_text(METRICS, "".join(json.dumps(r, default=to_plain) + "\n" for r in records))


def resolve_run(path: str | Path) -> Path:
    """A run directory (or runs/latest) that holds a config and weights."""
    p = Path(path)
    if not p.is_dir():
        raise NetcliError(f"{path}: no such run directory")
    p = p.resolve()
    if not (p / "config.yaml").exists():
        raise NetcliError(f"{path}: not a run directory (no config.yaml)")
    return p
