"""The sweep directory's own files: sweep.yaml (written when the sweep starts; a search's again
when --resume --trials asks for more), trials.jsonl (one record appended as each trial ends),
the stop file Ctrl-C leaves for the workers, and a search's Optuna study (study.journal, which
netcli.sweep.search opens). The trials' run directories beside them are ordinary runs
(netcli.runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from netcli import __version__
from netcli.errors import NetcliError
from netcli.files import append_jsonl, atomic_write

if TYPE_CHECKING:
    from netcli.sweep.planning import Sweep

SWEEP_FILE = "sweep.yaml"
TRIALS_FILE = "trials.jsonl"
STOP_FILE = ".stop"
STUDY_FILE = "study.journal"
ENDED = ("finished", "pruned", "failed", "diverged")  # statuses --resume does not run again


def write_sweep_file(sweep: Sweep) -> None:
    """sweep.yaml: the base config, the axes, the trials (a search's are in its study instead)."""
    doc = {"netcli_version": __version__, "config": sweep.source, "cwd": sweep.cwd,
           "created": sweep.created or time.strftime("%Y-%m-%d %H:%M:%S"),
           "axes": sweep.axes.as_dict(sweep.trials)}
    if sweep.search is not None:
        doc["search"] = sweep.search.as_dict()
    doc.update({"trials": [] if sweep.search is not None else [t.entry() for t in sweep.trials],
                "base": sweep.base})
    with atomic_write(sweep.path / SWEEP_FILE) as f:
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=100)


def read_sweep_file(sweep_dir: str | Path):
    """The document sweep.yaml holds (netcli.sweep.load makes the Sweep of it)."""
    path = Path(sweep_dir)
    file = path / SWEEP_FILE
    if not file.is_file():
        raise NetcliError(f"{path}: not a sweep directory (no {SWEEP_FILE})")
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise damaged(file, e) from None


def damaged(file: Path, error: Exception) -> NetcliError:
    return NetcliError(f"{file}: cannot read ({type(error).__name__}: {error}); was it edited?")


def read_trials(sweep_dir: str | Path) -> dict[str, dict]:
    """trials.jsonl -> the latest record of each trial, by name. A line cut short by a kill is
    skipped and the lines after it still count (unlike files.read_jsonl, which stops there): the
    records a --resume appended after it are good."""
    path = Path(sweep_dir) / TRIALS_FILE
    records: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                records[record["name"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return records


def append_record(sweep_dir: str | Path, record: dict) -> None:
    """One ended trial's record at the end of trials.jsonl, on disk before this returns."""
    append_jsonl(Path(sweep_dir) / TRIALS_FILE, record)
