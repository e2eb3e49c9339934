"""`netcli runs`: one row per run directory under a folder, newest first."""

from __future__ import annotations

import json
import math
from pathlib import Path

from netcli.errors import NetcliError
from netcli.metrics import best_validation, headline
from netcli.runs.directory import LATEST, METRICS, RunDir

DAMAGED = "damaged"   # the status shown for a summary.json that is not a JSON object or whose status is no text
SUMMARY = "summary.json"


def list_runs(folder: str | Path) -> list[dict]:
    """Every run directory under folder (sweep trials included), newest first.
    best_val and test: [metric, value] or None. A summary.json field of the wrong kind is shown
    as None, and a summary.json that is not a JSON object as status "damaged" (a run without one
    is new, running or killed); a summary.json or metrics.jsonl that cannot be read, by the status."""
    base = Path(folder)
    if not base.is_dir():
        raise NetcliError(f"{folder}: no such folder")
    found = [p.parent for p in base.glob("*/config.yaml")] + [p.parent for p in base.glob("*/*/config.yaml")]
    rows = []
    for path in sorted(set(found), key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True):
        if path.is_symlink() or path.name == LATEST:
            continue
        summary, summary_problem = _read_summary(path / SUMMARY)
        try:
            metrics, unreadable = RunDir(path).read_metrics(), None
        except NetcliError:    # no permission, an I/O error of the disk
            metrics, unreadable = [], f"cannot read {METRICS}"
        status = summary_problem or summary.get("status", "running" if metrics else "new")
        status = status if isinstance(status, str) else DAMAGED
        if status == "running" and not RunDir(path).in_use():
            status = "killed"     # no live process holds it: it was killed mid-run (SIGKILL, power loss)
        running = status in ("running", "new", "killed")  # its summary predates the end: count the log
        test = summary.get("test")
        config = summary.get("config")
        rows.append({"run": str(path.relative_to(base)), "config": config if isinstance(config, str) else None,
                     "status": unreadable or status,
                     "epochs": None if running and unreadable else len(metrics) if running
                     else _count(summary.get("epochs", len(metrics))),
                     "best_val": _pair(best_validation(metrics)),
                     "test": _pair(headline(test if isinstance(test, dict) else None)),
                     "wall_seconds": None if running else _seconds(summary.get("wall_seconds"))})
    return rows


def _read_summary(path: Path) -> tuple[dict, str | None]:
    """summary.json's object and None; {} and None when there is none (a run that has not
    written one yet, or an older netcli's); {} and the status to show when it is there but
    cannot be read or is not a JSON object."""
    try:
        text = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}, None
    except OSError:    # no permission, a folder, an I/O error of the disk
        return {}, f"cannot read {SUMMARY}"
    try:
        summary = json.loads(text)
    except ValueError:  # not JSON, or not UTF-8 text
        summary = None
    return (summary, None) if isinstance(summary, dict) else ({}, DAMAGED)


def _pair(found: dict | None):
    return None if found is None else [found["metric"], found["value"]]


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return value if ok else None
