"""`netcli runs`: one row per run directory under a folder, newest first."""

from __future__ import annotations

from pathlib import Path

from netcli.errors import NetcliError
from netcli.files import read_json
from netcli.metrics import best_validation, headline
from netcli.runs.directory import LATEST, RunDir


def list_runs(folder: str | Path) -> list[dict]:
    """Every run directory under folder (sweep trials included), newest first.
    best_val and test: [metric, value] or None."""
    base = Path(folder)
    if not base.is_dir():
        raise NetcliError(f"{folder}: no such folder")
    found = [p.parent for p in base.glob("*/config.yaml")] + [p.parent for p in base.glob("*/*/config.yaml")]
    rows = []
    for path in sorted(set(found), key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True):
        if path.is_symlink() or path.name == LATEST:
            continue
        summary = read_json(path / "summary.json")
        summary = summary if isinstance(summary, dict) else {}
        metrics = RunDir(path).read_metrics()
        status = summary.get("status", "running" if metrics else "new")
        if status == "running" and not RunDir(path).in_use():
            status = "killed"     # no live process holds it: it was killed mid-run (SIGKILL, power loss)
        running = status in ("running", "new", "killed")  # its summary predates the end: count the log
        test = summary.get("test")
        rows.append({"run": str(path.relative_to(base)), "config": summary.get("config"),
                     "status": status,
                     "epochs": len(metrics) if running else summary.get("epochs", len(metrics)),
                     "best_val": _pair(best_validation(metrics)),
                     "test": _pair(headline(test if isinstance(test, dict) else None)),
                     "wall_seconds": None if running else summary.get("wall_seconds")})
    return rows


def _pair(found: dict | None):
    return None if found is None else [found["metric"], found["value"]]
