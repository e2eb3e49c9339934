"""A run directory: its layout, its files written atomically, finding it again.

    runs/<config-name>-<timestamp>/
      config.yaml     the resolved config
      metrics.jsonl   one JSON object per epoch, appended and flushed
      weights.npz     layers.<i>.<param>, plus meta.* (preprocessing, classes, version)
      checkpoint.npz  parameters, optimizer state, RNG state, epoch: for --resume
      summary.json    final metrics, wall time, status, the BLAS threads used
      receipt.json    data files' SHA-256, versions, BLAS, seed, theta's SHA-256 (runs/receipt.py)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:   # not POSIX: runs are not locked
    fcntl = None

from netcli.errors import NetcliError
from netcli.files import (append_jsonl, atomic_write, fsync_dir, read_json, read_jsonl, timestamped_path, to_plain,
                          write_json)

LATEST = "latest"
METRICS = "metrics.jsonl"
LOCK = ".lock"   # held (flock) by the process training the run; the kernel drops it when that process dies


@dataclass
class RunDir:
    path: Path
    _lock: "_Held | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, config_name: str, base: str | Path = "runs", run_dir: str | Path | None = None,
               overwrite: bool = False) -> "RunDir":
        """A new run directory: run_dir if given, else base/<config-name>-<timestamp>
        (then base/latest points at it)."""
        if run_dir is None:
            path = timestamped_path(base, config_name)
        else:
            path = Path(run_dir)
            try:
                if path.exists() and not path.is_dir():
                    raise NetcliError(f"{path}: is a file, not a run directory; choose another --run-dir")
                if path.exists() and any(path.iterdir()) and not overwrite:
                    raise NetcliError(f"{path}: run directory exists and is not empty; "
                                      f"choose another --run-dir or pass --overwrite")
            except OSError as e:   # under a folder that cannot be entered, a name too long
                raise NetcliError(f"{path}: cannot use it as the run directory ({e.strerror or e})") from None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NetcliError(f"{path}: cannot create the run directory ({e.strerror or e})") from None
        run = cls(path)
        run.lock()
        if overwrite:
            for name in (METRICS, "checkpoint.npz", "weights.npz", "summary.json", "receipt.json"):
                (path / name).unlink(missing_ok=True)
        if run_dir is None:
            run.point_latest()
        return run

    def lock(self) -> None:
        """Take the run for this process until unlock() or exit; a run another live process
        trains is refused (two writers would interleave metrics.jsonl)."""
        if fcntl is None or self._lock is not None:
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise NetcliError(f"{self.path}: cannot write in the run directory ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise NetcliError(f"{self.path}: the run is in use by netcli (pid {owner}); wait for it to end, "
                              f"or choose another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = _Held(fd)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def in_use(self) -> bool:
        """Whether a live process holds the run's lock (False where runs are not locked)."""
        if fcntl is None or not (self.path / LOCK).exists():
            return False
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    def point_latest(self) -> None:
        """runs/latest -> this run (a relative symlink beside it)."""
        link = self.path.parent / LATEST
        try:
            tmp = self.path.parent / f".{LATEST}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path.name)
            os.replace(tmp, link)
            fsync_dir(link.parent)
        except OSError:
            pass  # file systems without symlinks: runs/latest is a convenience only

    def write_text(self, name: str, text: str) -> None:
        with atomic_write(self.path / name) as f:
            f.write(text)

    def write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)

    def append_metrics(self, record: dict) -> None:
        append_jsonl(self.path / METRICS, record)

    def read_metrics(self) -> list[dict]:
        """metrics.jsonl's records (a line cut short by a kill, and all after it, left out)."""
        return [r for r in read_jsonl(self.path / METRICS) if isinstance(r, dict)]

    def read_summary(self) -> dict:
        """summary.json's object ({} when missing or damaged)."""
        summary = read_json(self.path / "summary.json")
        return summary if isinstance(summary, dict) else {}

    def rewrite_metrics(self, records: list[dict]) -> None:
        self.write_text(METRICS, "".join(json.dumps(r, default=to_plain) + "\n" for r in records))


class _Held:
    """An open, flock-ed lock file; closing it (or losing the last reference) releases the lock."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    __del__ = close


def resolve_run(path: str | Path) -> Path:
    """A run directory (or runs/latest) that holds a config and weights."""
    p = Path(path)
    try:
        if not p.is_dir():
            raise NetcliError(f"{path}: no such run directory")
        p = p.resolve()
        if not (p / "config.yaml").exists():
            raise NetcliError(f"{path}: not a run directory (no config.yaml)")
    except OSError as e:   # under a folder that cannot be entered, a name too long
        raise NetcliError(f"{path}: cannot read the run directory ({e.strerror or e})") from None
    return p


def holds(folder: str | Path, name: str) -> bool:
    """Whether folder holds a file `name`; a folder that cannot be looked into is a NetcliError."""
    try:
        return (Path(folder) / name).is_file()
    except OSError as e:
        raise NetcliError(f"{folder}: cannot read the run directory ({e.strerror or e})") from None
