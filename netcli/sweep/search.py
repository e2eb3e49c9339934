"""A search: trials asked one by one from an Optuna study instead of enumerated up front, and
pruned at the end of an epoch when they fall behind the others.

    netcli sweep CONFIG --search tpe|random|grid [--trials N] [--prune median|halving]

The axes are today's: a --range becomes a FloatDistribution (an IntDistribution when both ends
are integers; log=True with :log), a --grid a CategoricalDistribution of its values (as YAML
texts, the way --set reads them). `--search grid` is Optuna's GridSampler over the --grid
values (and every integer of an integer range); a continuous range has no grid points.

The study lives in the sweep directory, `study.journal` (JournalStorage over a
JournalFileBackend: appends under a lock file beside it, on the shared file system a Dask
cluster already needs). Its sampler and pruner are built from sweep.yaml's `search:` block, with
every argument written out, by the driver and by every worker (a worker that built Optuna's
default pruner would judge its trial by other rules than the ones the sweep asked for).

Who does what (netcli.sweep.sources has the driver's side, netcli.sweep.worker the worker's):

  - The driver (the `netcli sweep` process) asks every trial and tells how it ended. It asks
    only when a worker is free (at most `parallel` trials in flight: by default as many as the
    cluster has worker threads), so TPE's next guess has seen every trial that has ended, and
    TPE's constant_liar makes the trials still running count against their region, so two
    free workers are not sent to the same point. One process asks, so no sampler state is
    shared between processes: trial n is drawn by a sampler seeded with
    SeedSequence(seed, spawn_key=(SAMPLER_KEY, n)) (seed: the config's), so a random search
    asks the same points whatever the number of workers and across --resume; a TPE search is
    the same when it runs on one worker (on several, what it has seen depends on which trial
    ended first). The grid's order is GridSampler's shuffle with the same seed.
  - Each worker reports its trial's validation metric at the end of every epoch
    (trial.report(value, step=epoch), epochs counted from 1 as metrics.jsonl counts them) and
    asks the pruner (trial.should_prune). A pruned trial ends at that epoch's end the way early
    stopping ends a run: the trainer writes its checkpoint, weights and summary.json (status
    finished, message `pruned by ...`), and trials.jsonl records it as `pruned`. The last epoch
    is never pruned (the trial has finished).
  - A worker that dies: Dask runs the same task on another worker, which opens the same study
    trial and carries on from the checkpoint; an epoch the dead worker had reported already is
    kept as it was (Optuna ignores a step reported twice; training from the same checkpoint
    gives the same value anyway).
  - A driver that stops (Ctrl-C, a kill): the trials asked and not told stay RUNNING in the
    journal; --resume runs them again under their names (from their checkpoints) before asking
    for new ones. `--resume DIR --trials N` carries the same study on to N trials.

What is told: a finished trial's score, by the sweep table's own rule (netcli.sweep.ranking:
the best value over its epochs of the validation metric, val_<task metric>, else the final
training loss when there is no validation data); a pruned trial as PRUNED (Optuna keeps its
last reported value); a failed or diverged one as FAIL.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcli.errors import ConfigError, NetcliError
from netcli.metrics import VALIDATION_ORDER, higher_is_better
from netcli.sweep.axes import Axes, axes_from_doc
from netcli.sweep.store import STUDY_FILE, read_sweep_file

STUDY_NAME = "netcli"
SAMPLER_KEY = 2**32 - 2          # the spawn key of the samplers' seeds (random_values uses 2**32 - 1)
GRID_LIMIT = 1_000_000           # GridSampler keeps every point of the grid in memory
INSTALL = "pip install 'netcli[search]'"

# Each sampler's and pruner's arguments: name -> (default, smallest value; None for a flag).
# Defaults are Optuna's, but for SuccessiveHalvingPruner's min_resource, which Optuna guesses
# from the first trial to complete ('auto'): then nothing is pruned before one has, and which
# trials are depends on timing.
SAMPLERS = {
    "tpe": {"n_startup_trials": (10, 0), "multivariate": (False, None), "constant_liar": (True, None)},
    "random": {},
    "grid": {},
}
PRUNERS = {
    "median": {"n_startup_trials": (5, 0), "n_warmup_steps": (0, 0), "interval_steps": (1, 1),
               "n_min_trials": (1, 1)},
    "halving": {"min_resource": (1, 1), "reduction_factor": (4, 2), "min_early_stopping_rate": (0, 0),
                "bootstrap_count": (0, 0)},
}


def require_optuna():
    """optuna, or the error that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise NetcliError(f"--search needs Optuna, which is not installed: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # no line per trial on stderr
    return optuna


# -- what was asked for: the command line over the config's sweep: section ---------------------

@dataclass
class Choice:
    """The search as given, before it meets the axes and the config."""

    sampler: dict                  # {"type": "tpe", **arguments}
    pruner: dict | None
    trials: int | None
    where: dict                    # "search", "prune", "trials" -> where it was given, for errors


def choose(section, source: str, lines: dict, search: str | None = None, trials: int | None = None,
           prune: str | None = None) -> Choice | None:
    """--search, --trials and --prune over the sweep: section's search, trials and prune keys
    (each a name, or for search and prune a mapping {type: NAME, ARG: VALUE}) -> a Choice, or
    None for a sweep that is not a search."""
    section = section if isinstance(section, dict) else {}

    def where(key):
        line = lines.get(("sweep", key)) or lines.get(("sweep",))
        return f"{source}:{line}: sweep.{key}"

    at = {}
    blocks = {}
    for key, given, table in (("search", search, SAMPLERS), ("prune", prune, PRUNERS)):
        if given is not None:
            at[key], blocks[key] = f"--{key} {given}", _block(given, table, f"--{key}")
        elif section.get(key) is not None:
            at[key], blocks[key] = where(key), _block(section[key], table, where(key))
    if trials is not None:
        at["trials"], count = f"--trials {trials}", trials
    else:
        count = section.get("trials")
        at["trials"] = where("trials")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ConfigError(f"{at['trials']}: must be a positive integer, got {count!r}")
    if "search" not in blocks:
        for key, flag in (("prune", "--prune"), ("trials", "--trials")):
            if (blocks.get(key) if key == "prune" else count) is not None:
                raise ConfigError(f"{at[key]}: needs a search (--search tpe, random or grid); a grid or "
                                  f"--random sweep trains every trial to the end"
                                  + ("" if key == "prune" else ", and --random N says how many points it draws"))
        return None
    return Choice(blocks["search"], blocks.get("prune"), count, at)


def _block(given, table: dict, where: str) -> dict:
    """'tpe' or {type: tpe, n_startup_trials: 5} -> {type, every argument}, defaults filled in."""
    if isinstance(given, str):
        given = {"type": given}
    if not isinstance(given, dict) or not isinstance(given.get("type"), str):
        raise ConfigError(f"{where}: expected one of {', '.join(table)}, or {{type: NAME, ...arguments}}, "
                          f"got {given!r}")
    kind = given["type"]
    if kind not in table:
        raise ConfigError(f"{where}: unknown {kind!r}; valid: {', '.join(table)}")
    args = table[kind]
    block = {"type": kind}
    for name, (default, least) in args.items():
        value = given.get(name, default)
        if least is None:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
        if not ok:
            want = "true or false" if least is None else f"an integer >= {least}"
            raise ConfigError(f"{where}: {name} must be {want}, got {value!r}")
        block[name] = value
    unknown = [k for k in given if k != "type" and k not in args]
    if unknown:
        raise ConfigError(f"{where}: {kind} takes no {unknown[0]!r}; "
                          + (f"its arguments: {', '.join(args)}" if args else "it takes no arguments"))
    return block


# -- the search as sweep.yaml keeps it ----------------------------------------------------------

@dataclass
class Search:
    sampler: dict                  # {"type": "tpe", **arguments}, every argument written out
    pruner: dict | None
    trials: int                    # how many trials the study is asked for in all
    seed: int                      # the samplers' seeds derive from it (the config's seed)
    metric: str                    # reported each epoch, told at the end: the table's validation metric
    direction: str                 # "maximize" or "minimize"

    def as_dict(self) -> dict:
        return {"sampler": self.sampler, "pruner": self.pruner, "trials": self.trials, "seed": self.seed,
                "metric": self.metric, "direction": self.direction, "study": STUDY_FILE}

    @classmethod
    def from_dict(cls, doc: dict) -> Search:
        return cls(dict(doc["sampler"]), dict(doc["pruner"]) if doc["pruner"] else None, int(doc["trials"]),
                   int(doc["seed"]), doc["metric"], doc["direction"])

    def describe(self) -> str:
        pruning = f", pruned by the {self.pruner['type']} pruner" if self.pruner else ""
        return f"{self.sampler['type']} search of {self.trials} trials on {self.metric}{pruning}"


def make_search(choice: Choice, axes: Axes, config, seed: int) -> Search:
    """The Choice for these axes and this (validated base) config -> the Search; the errors of
    combinations that cannot work."""
    kind = choice.sampler["type"]
    validation = config.spec.data.validation_split > 0 or bool(config.spec.data.val)
    metric = f"val_{config.task.metric}" if validation else "loss"
    if validation and metric not in VALIDATION_ORDER:
        metric = "val_loss"
    if choice.pruner is not None and not validation:
        raise ConfigError(f"{choice.where['prune']}: pruning judges each epoch by a validation metric and "
                          f"this config has no validation data: set data.validation_split (e.g. 0.1) or data.val")
    trials = choice.trials
    if kind == "grid":
        size = grid_size(axes, choice.where["search"])
        if size > GRID_LIMIT:
            raise ConfigError(f"{choice.where['search']}: the grid has {size:,} points (more than {GRID_LIMIT:,}); "
                              f"narrow the integer ranges or give --grid points")
        if trials is None:
            trials = size
        elif trials > size:
            raise ConfigError(f"{choice.where['trials']}: the grid has {size} points; ask for at most {size} "
                              f"(or leave --trials out for all of them)")
    elif trials is None:
        raise ConfigError(f"{choice.where['search']}: needs --trials N, the number of trials to ask the study for")
    seed = int(np.random.SeedSequence(seed, spawn_key=(SAMPLER_KEY,)).generate_state(1)[0])
    return Search(choice.sampler, choice.pruner, trials, seed, metric,
                  "maximize" if higher_is_better(metric) else "minimize")


def grid_size(axes: Axes, where: str = "--search grid") -> int:
    """The number of points of a grid search over these axes (an integer range counts each integer)."""
    size = 1
    for key, rng in axes.ranges.items():
        if not rng.integer:
            raise ConfigError(f"{where}: the range {key}={rng.text()} is continuous and a grid needs its points: "
                              f"give them with --grid {key}=V1,V2,... (an integer range is taken whole)")
        size *= int(rng.high) - int(rng.low) + 1
    for texts in axes.grid.values():
        size *= len(texts)
    return size


def canonical_choices(axes: Axes) -> None:
    """Write each --grid value as sweep.yaml will give it back ('1e-4' as '0.0001'): the study's
    categorical choices must be the same texts when --resume reads the axes from sweep.yaml."""
    from netcli.config import parse_value
    from netcli.files import plain
    from netcli.sweep.axes import yaml_text
    axes.grid = {key: [yaml_text(plain(parse_value(t))) for t in texts] for key, texts in axes.grid.items()}


# -- the Optuna objects, the same on the driver and on every worker ------------------------------

def distributions(axes: Axes) -> dict:
    """The axes as Optuna distributions, by config key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    out = {key: CategoricalDistribution(texts) for key, texts in axes.grid.items()}
    for key, r in axes.ranges.items():
        out[key] = IntDistribution(int(r.low), int(r.high), log=r.log) if r.integer else \
            FloatDistribution(float(r.low), float(r.high), log=r.log)
    return out


def override_texts(axes: Axes, params: dict) -> dict[str, str]:
    """A trial's params -> the override texts its config is made with (as --set takes them)."""
    from netcli.sweep.axes import yaml_text
    return {key: params[key] if key in axes.grid else yaml_text(params[key]) for key in axes.keys()}


def trial_seed(search: Search, number: int) -> int:
    return int(np.random.SeedSequence(search.seed, spawn_key=(SAMPLER_KEY, number)).generate_state(1)[0])


def make_sampler(search: Search, axes: Axes, number: int):
    """The sampler that draws trial `number` (a fresh one per trial: its draws depend on the seed
    and the number only, and on the trials ended before it for TPE)."""
    optuna = require_optuna()
    args = {k: v for k, v in search.sampler.items() if k != "type"}
    kind = search.sampler["type"]
    if kind == "grid":   # one shuffle of the grid for the whole study; trial n takes point n of it
        space = {k: list(texts) for k, texts in axes.grid.items()}
        space.update({k: list(range(int(r.low), int(r.high) + 1)) for k, r in axes.ranges.items()})
        return optuna.samplers.GridSampler(space, seed=search.seed)
    seed = trial_seed(search, number)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():   # multivariate and constant_liar are "experimental" in some versions
        warnings.simplefilter("ignore")
        return optuna.samplers.TPESampler(seed=seed, **args)


def make_pruner(search: Search):
    optuna = require_optuna()
    if search.pruner is None:
        return optuna.pruners.NopPruner()
    args = {k: v for k, v in search.pruner.items() if k != "type"}
    if search.pruner["type"] == "median":
        return optuna.pruners.MedianPruner(**args)
    return optuna.pruners.SuccessiveHalvingPruner(**args)


def open_study(sweep_dir: str | Path, search: Search, axes: Axes, create: bool = False, number: int = 0):
    """The sweep's study (created when `create`), with its sampler (for trial `number`) and pruner."""
    optuna = require_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(str(Path(sweep_dir) / STUDY_FILE)))
    sampler, pruner = make_sampler(search, axes, number), make_pruner(search)
    if create:
        return optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner,
                                   direction=search.direction)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise NetcliError(f"{Path(sweep_dir) / STUDY_FILE}: holds no study {STUDY_NAME!r}; was it removed?") from None


def load_search(sweep_dir: str | Path) -> tuple[Search, Axes]:
    """sweep.yaml's search and axes (the worker's way to the same sampler and pruner)."""
    doc = read_sweep_file(sweep_dir)
    return Search.from_dict(doc["search"]), axes_from_doc(doc["axes"])


# -- the worker's side: report each epoch, ask the pruner ---------------------------------------

class TrialPruning:
    """One trial's reports to the study, on the worker that trains it."""

    def __init__(self, sweep_dir: str, trial_id: int, number: int):
        import optuna
        self.search, axes = load_search(sweep_dir)
        self.study = open_study(sweep_dir, self.search, axes, number=number)
        self.trial = optuna.trial.Trial(self.study, trial_id)

    def check(self, record: dict, last_epoch: int | None) -> str | None:
        """Report the epoch's metric; why the trial stops here, if the pruner says it should."""
        value = record.get(self.search.metric)
        if not isinstance(value, (int, float)):
            return None
        epoch = int(record["epoch"])
        with warnings.catch_warnings():     # a step reported already (a rerun after a kill) is ignored
            warnings.simplefilter("ignore")
            self.trial.report(float(value), step=epoch)
        if last_epoch is not None and epoch >= last_epoch:
            return None
        if not self.trial.should_prune():
            return None
        shown = f"{value:.4g}" if math.isfinite(value) else str(value)
        return f"{PRUNED} by the {self.search.pruner['type']} pruner at epoch {epoch}: {self.search.metric} {shown}"


PRUNED = "pruned"   # the status in trials.jsonl, and the first word of such a run's summary message


def was_pruned(summary: dict) -> bool:
    """Whether a run's summary.json is that of a trial its sweep's pruner stopped."""
    return summary.get("status") == "finished" and summary.get("message", "").startswith(f"{PRUNED} by ")
