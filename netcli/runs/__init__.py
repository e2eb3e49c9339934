"""Run directories and the files in them.

    directory.py    the layout, atomic writes of a run's files, finding a run (runs/latest)
    weights.py      weights.npz: parameters plus what predict needs
    checkpoint.py   checkpoint.npz: what --resume needs
    receipt.py      receipt.json: what the run was made from, and theta's hash (train --check)
    listing.py      `netcli runs`: a row per run
"""

from netcli.files import load_npz, save_npz
from netcli.runs.directory import LATEST, METRICS, RunDir, holds, resolve_run
from netcli.runs.listing import list_runs

__all__ = ["LATEST", "METRICS", "RunDir", "holds", "resolve_run", "list_runs", "load_npz", "save_npz"]
