"""Sweeps: many ordinary runs of one config, fanned out on a Dask cluster.

    runs/sweeps/<config-name>-<timestamp>/
      sweep.yaml        the base config, the resolved axes and the list of trials
      trials.jsonl      one JSON object per trial that ended, appended as each one ends
      study.journal     a search's Optuna study (JournalStorage), and its lock file while written
      t000-lr0.01-l2_0.001/
                        an ordinary run directory (config.yaml, metrics.jsonl, ...)
      ...

A trial is the base config with its overrides applied through the same path as
`--set` (config.apply_override), plus a seed derived from the base seed and the
trial's replicate index:

    seed = SeedSequence(base_seed).spawn(K)[r].generate_state(1)[0]     r = 0 .. K-1 (--seeds K)

so every point of a grid starts from the same initial draw for a given replicate
(common random numbers: differences between trials come from the axes, not the seed).
Every trial is validated before anything is submitted.

The trials run on a dask.distributed LocalCluster (one single-threaded process per
worker, BLAS limited to one thread) or on any running scheduler by address. A worker
that dies has its trial rescheduled by Dask, and the trial carries on from its
checkpoint. Ctrl-C stops new trials from starting and lets running ones stop at the
end of their current epoch with a checkpoint; `--resume` runs what trials.jsonl lacks.

A search (`--search tpe|random|grid --trials N [--prune median|halving]`) asks an Optuna
study for its trials one at a time instead; search.py says who asks, tells and prunes.

The modules, by job:

    axes.py       --grid, --range, --random, --seeds and the config's sweep: section -> Axes;
                  random draws and derived seeds
    search.py     --search, --trials, --prune (and the section's keys) -> Search; the Optuna
                  distributions, samplers, pruners and study; a worker's reports to the pruner
    planning.py   Axes + base config -> validated Trials (plan), or a sweep directory -> the
                  same (load); a search's trials one by one (make_trial); trial names
    store.py      the sweep directory's files: sweep.yaml, trials.jsonl, the stop file
    worker.py     what runs on a Dask worker: one trial (run_trial), the worker check
    sources.py    the driver's next trial: a fixed list, or a study's ask and tell
    cluster.py    the client side: the cluster, submitting, collecting, Ctrl-C (run)
    ranking.py    a trial's score, the best trial, the summary table's rows

Nothing here imports dask (distributed), optuna or the training loop until a sweep runs.
"""

from netcli.sweep.axes import (Axes, Range, axes_from_section, derived_seed, make_range, merge_axes,
                               parse_grid, parse_range, random_values, split_values)
from netcli.sweep.cluster import ONE_THREAD_ENV, SweepResult, dask_setup, run
from netcli.sweep.planning import (PATH_KEYS, Sweep, Trial, check_trials, load, load_sweep_config, make_trial,
                                   plan, short_keys)
from netcli.sweep.ranking import best_trial, score, table_rows
from netcli.sweep.search import PRUNED, Search, open_study
from netcli.sweep.store import ENDED, STOP_FILE, STUDY_FILE, SWEEP_FILE, TRIALS_FILE, read_trials, write_sweep_file
from netcli.sweep.worker import check_worker, run_trial

__all__ = [
    "Axes", "Range", "axes_from_section", "derived_seed", "make_range", "merge_axes", "parse_grid",
    "parse_range", "random_values", "split_values",
    "ONE_THREAD_ENV", "SweepResult", "dask_setup", "run",
    "PATH_KEYS", "Sweep", "Trial", "check_trials", "load", "load_sweep_config", "make_trial", "plan", "short_keys",
    "best_trial", "score", "table_rows",
    "PRUNED", "Search", "open_study",
    "ENDED", "STOP_FILE", "STUDY_FILE", "SWEEP_FILE", "TRIALS_FILE", "read_trials", "write_sweep_file",
    "check_worker", "run_trial",
]
