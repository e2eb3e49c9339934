"""Sweeps: many ordinary runs of one config, fanned out on a Dask cluster.

    runs/sweeps/<config-name>-<timestamp>/
      sweep.yaml        the base config, the resolved axes and the list of trials
      trials.jsonl      one JSON object per trial that ended, appended as each one ends
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
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netcli import __version__
from netcli.config import Config, apply_override, load_yaml, parse_path, read_config_text, validate
from netcli.errors import ConfigError, Interrupted, NetcliError
from netcli.log import Reporter
from netcli.runs import safe_name

SWEEP_FILE = "sweep.yaml"
TRIALS_FILE = "trials.jsonl"
STOP_FILE = ".stop"
ENDED = ("finished", "failed", "diverged")  # statuses --resume does not run again
PATH_KEYS = (("data", "train"), ("data", "val"), ("data", "test"), ("model", "init_from"))
SECTION_KEYS = ("grid", "range", "random", "seeds")
CONNECT_TIMEOUT = "10s"  # for --scheduler


# -- axes --------------------------------------------------------------------------

@dataclass
class Range:
    """A random-search axis: uniform (or log-uniform) between low and high, both inclusive;
    integers when both ends are integers."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def text(self) -> str:
        return f"{_num(self.low)}:{_num(self.high)}" + (":log" if self.log else "")

    def sample(self, rng: np.random.Generator):
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        if self.integer and not self.log:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        value = rng.uniform(lo, hi)
        value = math.exp(value) if self.log else value
        if self.integer:
            return int(min(max(round(value), self.low), self.high))
        return min(max(float(f"{value:.4g}"), self.low), self.high)  # 4 significant digits


@dataclass
class Axes:
    grid: dict[str, list[str]] = field(default_factory=dict)   # key -> values as YAML text
    ranges: dict[str, Range] = field(default_factory=dict)
    random: int = 0
    seeds: int = 1
    origin: dict[str, str] = field(default_factory=dict)       # key -> where it was given (for errors)

    def keys(self) -> list[str]:
        return list(self.grid) + list(self.ranges)

    def as_dict(self, trials: list[Trial] = ()) -> dict:
        """The axes as sweep.yaml keeps them: grid values as the trials ran with them."""
        grid = {}
        for key, texts in self.grid.items():
            ran = list(dict.fromkeys(json.dumps(t.overrides[key]) for t in trials if key in t.overrides))
            grid[key] = [json.loads(v) for v in ran] if len(ran) == len(texts) else \
                [_plain_value(yaml.safe_load(t)) for t in texts]
        return {"grid": grid,
                "range": {k: r.text() for k, r in self.ranges.items()},
                "random": self.random, "seeds": self.seeds}


def split_values(text: str) -> list[str]:
    """'0.01,0.1' -> ['0.01', '0.1']; commas inside [...], {...} or quotes do not split."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def parse_grid(item: str) -> tuple[str, list[str]]:
    """'optimizer.lr=0.001,0.01' -> ('optimizer.lr', ['0.001', '0.01'])"""
    key, sep, values = item.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. optimizer.lr=0.001,0.01")
    texts = split_values(values)
    if any(t == "" for t in texts):
        raise ConfigError(f"--grid {item!r}: an empty value; separate values with single commas")
    return key, texts


def parse_range(item: str, where: str | None = None) -> tuple[str, Range]:
    """'optimizer.lr=1e-4:1e-1:log' -> ('optimizer.lr', Range(1e-4, 0.1, log=True))"""
    key, sep, spec = item.partition("=")
    key = key.strip()
    where = where or f"--range {item!r}"
    parts = [p.strip() for p in spec.split(":")]
    if not sep or not key or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ConfigError(f"{where}: expected KEY=LOW:HIGH or KEY=LOW:HIGH:log, e.g. optimizer.lr=1e-4:1e-1:log")
    return key, make_range(parts[0], parts[1], len(parts) == 3, where)


def make_range(low, high, log: bool, where: str) -> Range:
    ends = []
    for end in (low, high):
        value = yaml.safe_load(end) if isinstance(end, str) else end
        try:
            if isinstance(value, bool):
                raise ValueError
            ends.append(value if isinstance(value, int) else float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {end!r} is not a number") from None
    lo, hi = ends
    if not lo <= hi:
        raise ConfigError(f"{where}: the low end {_num(lo)} is above the high end {_num(hi)}")
    if log and lo <= 0:
        raise ConfigError(f"{where}: a log range needs a low end > 0, got {_num(lo)}")
    return Range(lo, hi, bool(log), isinstance(lo, int) and isinstance(hi, int))


def axes_from_section(section, source: str, lines: dict) -> Axes:
    """The `sweep:` section of a config file -> Axes; errors name the file and line."""
    def where(*path):
        line = lines.get(("sweep", *path)) or lines.get(("sweep",))
        return f"{source}:{line}: sweep" + "".join(f".{p}" for p in path)

    axes = Axes()
    if section is None:
        return axes
    if not isinstance(section, dict):
        raise ConfigError(f"{where()}: must be a mapping with keys {', '.join(SECTION_KEYS)}")
    for key in section:
        if key not in SECTION_KEYS:
            raise ConfigError(f"{where(key)}: unknown key; valid keys: {', '.join(SECTION_KEYS)}")
    grid = section.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where('grid')}: must map KEY.PATH to a list of values, "
                          f"e.g. {{optimizer.lr: [0.001, 0.01]}}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where('grid', key)}: must be a non-empty list of values, got {values!r}")
        axes.grid[str(key)] = [_yaml_text(v) for v in values]
        axes.origin[str(key)] = f"{where('grid', key)}:"
    ranges = section.get("range") or {}
    if not isinstance(ranges, dict):
        raise ConfigError(f"{where('range')}: must map KEY.PATH to LOW:HIGH[:log] or {{low, high, log}}")
    for key, spec in ranges.items():
        w = where("range", key)
        if isinstance(spec, str):
            axes.ranges[str(key)] = parse_range(f"{key}={spec}", w)[1]
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            axes.ranges[str(key)] = make_range(spec["low"], spec["high"], bool(spec.get("log")), w)
        else:
            raise ConfigError(f"{w}: expected LOW:HIGH[:log] or {{low: L, high: H, log: true}}, got {spec!r}")
        axes.origin[str(key)] = f"{w}:"
    for name in ("random", "seeds"):
        value = section.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "random" else 1):
                raise ConfigError(f"{where(name)}: must be a{' non-negative' if name == 'random' else ' positive'} "
                                  f"integer, got {value!r}")
            setattr(axes, name, value)
    return axes


def merge_axes(file_axes: Axes, grid=(), ranges=(), random: int | None = None,
               seeds: int | None = None) -> Axes:
    """The config's sweep: section with the command line's axes on top (a key given on the
    command line replaces the same key from the file)."""
    axes = copy.deepcopy(file_axes)
    cli_keys = set()
    for item in grid:
        key, texts = parse_grid(item)
        if key in cli_keys:
            raise ConfigError(f"--grid {key}: given twice; list every value in one --grid {key}=V1,V2")
        cli_keys.add(key)
        axes.ranges.pop(key, None)
        axes.grid[key] = texts
        axes.origin[key] = "--grid"
    for item in ranges:
        key, rng = parse_range(item)
        if key in cli_keys:
            raise ConfigError(f"--range {key}: given twice, or given as --grid too")
        cli_keys.add(key)
        axes.grid.pop(key, None)
        axes.ranges[key] = rng
        axes.origin[key] = "--range"
    if random is not None:
        if random < 0:
            raise ConfigError(f"--random: must be >= 0, got {random}")
        axes.random = random
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
        axes.seeds = seeds
    if axes.ranges and not axes.random:
        raise ConfigError(f"--range {next(iter(axes.ranges))}: needs --random N (how many values to draw)")
    if axes.random and not axes.ranges:
        raise ConfigError("--random: needs at least one --range KEY=LOW:HIGH[:log] to draw from")
    if "seed" in axes.keys() and axes.seeds > 1:
        raise ConfigError("--seeds: cannot be combined with an axis over seed itself")
    if not axes.keys() and axes.seeds == 1:
        raise ConfigError("nothing to sweep: give --grid KEY=V1,V2, --random N with --range KEY=LOW:HIGH, "
                          "--seeds K, or a sweep: section in the config")
    return axes


# -- trials ------------------------------------------------------------------------

@dataclass
class Trial:
    index: int
    name: str
    overrides: dict[str, Any]   # key -> the value the trial runs with
    seed: int
    replicate: int
    data: dict                  # the trial's config mapping: overrides and seed applied, absolute paths
    config: Config | None = field(default=None, repr=False, compare=False)   # data, validated

    def entry(self) -> dict:
        return {"name": self.name, "index": self.index, "overrides": self.overrides,
                "seed": self.seed, "replicate": self.replicate}


@dataclass
class Sweep:
    path: Path
    source: str
    base: dict                  # the config mapping without its sweep: section
    axes: Axes
    trials: list[Trial]
    lines: dict = field(default_factory=dict)
    cwd: str = field(default_factory=os.getcwd)

    @property
    def trials_file(self) -> Path:
        return self.path / TRIALS_FILE


def derived_seed(base_seed: int, replicate: int) -> int:
    """Replicate r's seed: the first 32-bit word of SeedSequence(base_seed).spawn(...)[r]."""
    return int(np.random.SeedSequence(base_seed, spawn_key=(replicate,)).generate_state(1)[0])


def random_values(axes: Axes, base_seed: int) -> list[dict[str, Any]]:
    """axes.random draws of every range axis, reproducible from the base seed."""
    rng = np.random.default_rng(np.random.SeedSequence(base_seed, spawn_key=(2**32 - 1,)))
    return [{key: r.sample(rng) for key, r in axes.ranges.items()} for _ in range(axes.random)]


def load_sweep_config(path: str | Path) -> tuple[dict, dict, dict | None]:
    """A config file -> (its mapping without `sweep:`, line numbers, the sweep: section)."""
    data, lines = load_yaml(read_config_text(path), str(path))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys (seed, data, model, ...), "
                          f"got {type(data).__name__}")
    section = data.pop("sweep", None)
    return data, lines, section


def plan(config_path: str | Path, grid=(), ranges=(), random: int | None = None, seeds: int | None = None,
         sweep_dir: str | Path | None = None, base_dir: str | Path = "runs/sweeps", overrides=()) -> Sweep:
    """Every trial of a sweep, validated; nothing is written. Raises ConfigError naming the key.
    overrides ('key=value', as --set) change the base config of every trial."""
    source = str(config_path)
    base, lines, section = load_sweep_config(config_path)
    overridden = {apply_override(base, item) for item in overrides}
    validate(copy.deepcopy(base), source, lines, overridden)  # the base config's own mistakes
    axes = merge_axes(axes_from_section(section, source, lines), grid, ranges, random, seeds)
    name = Path(source).stem
    if sweep_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = Path(base_dir) / f"{name}-{stamp}", 1
        while path.exists():
            n += 1
            path = Path(base_dir) / f"{name}-{stamp}-{n}"
    else:
        path = Path(sweep_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise NetcliError(f"--sweep-dir {path}: exists and is not an empty folder; "
                              f"to carry on with a sweep use --resume {path}")
    sweep = Sweep(path, source, base, axes, [], lines)
    _check_axes(sweep)
    sweep.trials = _make_trials(sweep)
    check_trials(sweep)
    return sweep


def _check_axes(sweep: Sweep) -> None:
    """Each axis value alone on the base config: the error names the axis and the value."""
    for key, texts in sweep.axes.grid.items():
        for text in texts:
            _apply(sweep, {key: text}, None, f"{sweep.axes.origin[key]} {key}={text}")
    for key, rng in sweep.axes.ranges.items():
        for end in (rng.low, rng.high):
            _apply(sweep, {key: _yaml_text(end)}, None, f"{sweep.axes.origin[key]} {key}={rng.text()}")


def _apply(sweep: Sweep, texts: dict[str, str], seed: int | None, where: str) -> tuple[dict, Config]:
    """base + overrides (+ seed) -> (the mapping, absolute paths, validated Config)."""
    data = copy.deepcopy(sweep.base)
    overridden = set()
    try:
        for key, text in texts.items():
            overridden.add(apply_override(data, f"{key}={text}"))
        if seed is not None:
            overridden.add(apply_override(data, f"seed={seed}"))
        _absolute_paths(data, sweep.cwd)
        config = validate(data, sweep.source, sweep.lines, overridden)
    except ConfigError as e:
        detail = "\n".join(re.sub(r"^--set [^:]+: ", "", line) for line in str(e).splitlines())
        raise ConfigError(f"{where}: {detail}") from None
    return data, config


def _absolute_paths(data: dict, cwd: str) -> None:
    """Relative data paths (and model.init_from) -> absolute, from cwd: workers run elsewhere."""
    for section, key in PATH_KEYS:
        block = data.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        if value == "-":
            raise ConfigError(f"{section}.{key}: a sweep cannot read standard input (-); give a file")
        if isinstance(value, str) and value and not os.path.isabs(value):
            block[key] = os.path.normpath(os.path.join(cwd, value))


def _make_trials(sweep: Sweep) -> list[Trial]:
    axes = sweep.axes
    base_seed = validate(copy.deepcopy(sweep.base)).spec.seed
    if base_seed < 0 and "seed" not in axes.keys():
        raise ConfigError(f"{sweep.source}: seed: a sweep derives its seeds from a seed >= 0, got {base_seed}")
    points = [dict(zip(axes.grid, combo)) for combo in itertools.product(*axes.grid.values())]
    draws = [{k: _yaml_text(v) for k, v in d.items()} for d in random_values(axes, max(base_seed, 0))] or [{}]
    combos = [(point, draw, r) for point in points for draw in draws for r in range(axes.seeds)]
    width = max(3, len(str(len(combos) - 1)))
    shorts = short_keys(axes.keys())
    trials = []
    for index, (point, draw, r) in enumerate(combos):
        texts = {**point, **draw}
        seed = None if "seed" in texts else derived_seed(base_seed, r)
        where = f"trial {index} ({', '.join(f'{k}={v}' for k, v in texts.items()) or 'base config'})"
        data, config = _apply(sweep, texts, seed, where)
        overrides = {k: _value_as_run(config, k, t) for k, t in texts.items()}
        parts = [f"t{index:0{width}d}"] + [_name_part(shorts[k], v) for k, v in overrides.items()]
        if axes.seeds > 1:
            parts.append(f"s{r}")
        name = safe_name("-".join(parts))[:120]
        trials.append(Trial(index, name, overrides, config.spec.seed, r, data, config))
    return trials


def check_trials(sweep: Sweep) -> None:
    """Build each distinct network of the (validated) trials once: layer shapes must fit."""
    from netcli.model import build_network
    built = set()
    for trial in sweep.trials:
        where = f"trial {trial.name}"
        config = trial.config
        r = config.resolved
        key = json.dumps([r["model"], r["loss"], r["regularization"], r["dtype"]], sort_keys=True, default=str)
        if key in built:
            continue
        built.add(key)
        try:
            build_network(config)
        except NetcliError as e:
            raise ConfigError(f"{where}: {e}") from None


def _value_as_run(config: Config, key: str, text: str):
    """The override's value as the validated config holds it (so '1e-3' is recorded as 0.001)."""
    value: Any = config.resolved
    for part in parse_path(key):
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return _plain_value(yaml.safe_load(text))
    return _plain_value(value) if isinstance(value, (int, float, str, bool)) or value is None \
        else _plain_value(yaml.safe_load(text))


def short_keys(keys: list[str]) -> dict[str, str]:
    """'optimizer.lr' -> 'lr'; 'model.layers.0.units' -> 'units0'; the full key when two collide."""
    shorts = {}
    for key in keys:
        path = parse_path(key)
        names = [p for p in path if isinstance(p, str)]
        shorts[key] = (names[-1] if names else "v") + "".join(str(p) for p in path if isinstance(p, int))
    counts = {}
    for s in shorts.values():
        counts[s] = counts.get(s, 0) + 1
    return {k: (s if counts[s] == 1 else k) for k, s in shorts.items()}


def _name_part(short: str, value) -> str:
    text = _name_value(value)[:24]
    sep = "" if short[-1].isalpha() and text[:1].isdigit() else "_"
    return f"{short}{sep}{text}"


def _name_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(_name_value(v) for v in value)
    if isinstance(value, dict):
        return _name_value(value.get("type", "-".join(map(str, value.values()))))
    return re.sub(r"[^A-Za-z0-9.+_]", "", str(value)) or "_"


def _yaml_text(value) -> str:
    """A value as one line of YAML that apply_override parses back to the same value."""
    return yaml.safe_dump(_plain_value(value), default_flow_style=True, width=10**9).strip() \
        .removesuffix("...").strip()


def _plain_value(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


# -- the sweep directory -----------------------------------------------------------

def write_sweep_file(sweep: Sweep) -> None:
    from netcli.runs import atomic_write
    doc = {"netcli_version": __version__, "config": sweep.source, "cwd": sweep.cwd,
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "axes": sweep.axes.as_dict(sweep.trials),
           "trials": [t.entry() for t in sweep.trials], "base": sweep.base}
    with atomic_write(sweep.path / SWEEP_FILE) as f:
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=100)


def load(sweep_dir: str | Path) -> Sweep:
    """A sweep directory written by a previous run, ready to run what trials.jsonl lacks."""
    path = Path(sweep_dir)
    file = path / SWEEP_FILE
    if not file.is_file():
        raise NetcliError(f"{path}: not a sweep directory (no {SWEEP_FILE})")
    try:
        doc = yaml.safe_load(file.read_text())
        axes_doc = doc["axes"]
        axes = Axes(grid={k: [_yaml_text(v) for v in vs] for k, vs in axes_doc["grid"].items()},
                    ranges={k: parse_range(f"{k}={v}")[1] for k, v in axes_doc["range"].items()},
                    random=axes_doc["random"], seeds=axes_doc["seeds"])
        sweep = Sweep(path, doc["config"], doc["base"], axes, [], {}, doc.get("cwd") or os.getcwd())
        for entry in doc["trials"]:
            texts = {k: _yaml_text(v) for k, v in entry["overrides"].items()}
            seed = None if "seed" in texts else entry["seed"]
            data, config = _apply(sweep, texts, seed, f"{file}: trial {entry['name']}")
            sweep.trials.append(Trial(entry["index"], entry["name"], entry["overrides"], entry["seed"],
                                      entry["replicate"], data, config))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise NetcliError(f"{file}: cannot read ({type(e).__name__}: {e}); was it edited?") from None
    return sweep


def read_trials(sweep_dir: str | Path) -> dict[str, dict]:
    """trials.jsonl -> the latest record of each trial, by name (a line cut short by a kill is skipped)."""
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


def _append_record(sweep: Sweep, record: dict) -> None:
    from netcli.runs import _plain
    with open(sweep.trials_file, "a") as f:
        f.write(json.dumps(record, default=_plain) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- one trial, on a worker ----------------------------------------------------------

class _TrialReporter(Reporter):
    """Quiet. Stops the trial, as Ctrl-C would, when the sweep's stop file appears: checked at the
    first minibatch of each epoch, so the epoch just ended is in the checkpoint (full-batch
    optimizers, which report no minibatches, are checked at the end of each iteration). Calls the
    test hook, if any, at the end of each epoch."""

    def __init__(self, task: dict):
        super().__init__(quiet=True)
        self.task = task
        self.batches = 0

    def _check_stop(self) -> None:
        if os.path.exists(self.task["stop_file"]):
            raise KeyboardInterrupt

    def batch(self, loss: float) -> None:
        if self.batches == 0:
            self._check_stop()
        self.batches += 1

    def epoch(self, record: dict) -> None:
        if self.batches == 0:
            self._check_stop()
        self.batches = 0
        if self.task.get("hook") is not None:
            self.task["hook"](self.task, record)


def run_trial(task: dict) -> dict:
    """Train one trial into its run directory (or carry on from its checkpoint when an earlier
    attempt died) -> its trials.jsonl record. Never raises for a failed trial."""
    from threadpoolctl import threadpool_limits
    from netcli import training

    start = time.perf_counter()
    record = {k: task[k] for k in ("name", "index", "overrides", "seed", "replicate")}
    record["run_dir"] = task["run_dir"]
    if os.path.exists(task["stop_file"]):
        return {**record, "status": "not started"}
    run_dir = Path(task["run_dir"])
    reporter = _TrialReporter(task)
    status, message, resumed_from = None, "", None
    try:
        with threadpool_limits(limits=1):
            previous = _read_json(run_dir / "summary.json")
            if previous and previous.get("status") in ("finished", "diverged"):
                status = previous["status"]   # ended before the record was written: nothing to redo
            elif (run_dir / "checkpoint.npz").exists() and (run_dir / "config.yaml").exists():
                from netcli.runs import load_npz
                resumed_from = int(load_npz(run_dir / "checkpoint.npz")["epoch"])
                status = training.resume(run_dir, reporter=reporter).summary["status"]
            else:
                config = validate(copy.deepcopy(task["config"]), task["source"])
                status = training.train(config, run_dir=run_dir, overwrite=True, reporter=reporter) \
                    .summary["status"]
    except Interrupted:
        status, message = "interrupted", "stopped by Ctrl-C; its last complete epoch is in its checkpoint"
    except NetcliError as e:  # JobFailed (diverged) included: summary.json tells which
        status, message = "failed", str(e)
    except Exception as e:  # a bug or a crash in one trial must not stop the sweep
        status, message = "failed", f"{type(e).__name__}: {e}"
    summary = _read_json(run_dir / "summary.json") or {}
    if status == "failed" and summary.get("status") == "diverged":
        status = "diverged"
    from netcli.runs import RunDir
    metrics = RunDir(run_dir).read_metrics() if run_dir.is_dir() else []
    record.update({"status": status, "message": message or summary.get("message", ""),
                   "epochs": summary.get("epochs", len(metrics)),
                   "final": summary.get("final") or (metrics[-1] if metrics else None),
                   "best": _best_validation(metrics), "test": summary.get("test"),
                   "wall_seconds": round(time.perf_counter() - start, 3),
                   "train_seconds": summary.get("wall_seconds"), "worker": _worker_address()})
    if resumed_from is not None:
        record["resumed_from_epoch"] = resumed_from
    return record


def _best_validation(metrics: list[dict]) -> dict | None:
    """The best validation value over the epochs (the same metric `netcli runs` shows)."""
    for key, higher in (("val_accuracy", True), ("val_mse", False), ("val_loss", False)):
        rows = [r for r in metrics if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if rows:
            best = (max if higher else min)(rows, key=lambda r: r[key])
            return {"metric": key, "value": best[key], "epoch": best["epoch"]}
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def check_worker(paths: list[str], sweep_dir: str) -> dict:
    """On each worker: which of the paths it cannot see, and whether it can write the sweep dir."""
    missing = [p for p in paths if not os.path.exists(p)]
    writable = False
    if os.path.isdir(sweep_dir):
        probe = os.path.join(sweep_dir, f".probe-{os.getpid()}-{time.monotonic_ns()}")
        try:
            with open(probe, "w"):
                pass
            os.unlink(probe)
            writable = True
        except OSError:
            pass
    return {"missing": missing, "sweep_dir": os.path.isdir(sweep_dir), "writable": writable,
            "netcli": __version__}


# -- the sweep, on the client ------------------------------------------------------------

def score(record: dict) -> tuple[str, float, bool] | None:
    """(metric, value, higher is better) a finished trial is ranked by: its best validation metric,
    else its final training loss, else its test metric; None for a trial that did not finish."""
    if record.get("status") != "finished":
        return None
    best = record.get("best")
    if best:
        return best["metric"], best["value"], best["metric"] == "val_accuracy"
    final = record.get("final") or {}
    if isinstance(final.get("loss"), (int, float)) and math.isfinite(final["loss"]):
        return "loss", final["loss"], False
    test = record.get("test") or {}
    for key, higher in (("accuracy", True), ("mse", False), ("loss", False)):
        if key in test:
            return f"test_{key}", test[key], higher
    return None


def best_trial(records: list[dict]) -> dict | None:
    """The finished trial with the best score (first of equals); scores of different metrics are
    not compared: the most common metric among the finished trials decides."""
    scored = [(r, score(r)) for r in records]
    scored = [(r, s) for r, s in scored if s is not None and math.isfinite(s[1])]
    if not scored:
        return None
    metrics = [s[0] for _, s in scored]
    metric = max(dict.fromkeys(metrics), key=metrics.count)
    same = [(r, s) for r, s in scored if s[0] == metric]
    return max(same, key=lambda rs: rs[1][1] if rs[1][2] else -rs[1][1])[0]


@dataclass
class SweepResult:
    path: Path
    records: list[dict]            # one per trial, in trial order (status "pending" if it never ran)
    best: dict | None
    ran: int = 0                   # trials run by this call (the rest were recorded already)


def run(sweep: Sweep, workers: int | None = None, scheduler: str | None = None, console=None,
        hook: Callable | None = None, new: bool = True, client=None) -> SweepResult:
    """Run the trials missing from trials.jsonl on Dask -> every trial's record.

    workers: LocalCluster processes (default: the CPU count; at most one per trial to run);
    scheduler: the address of a running scheduler instead; client: a connected
    distributed.Client to use (and leave open) instead of either. new: a sweep from plan()
    (writes sweep.yaml), False for one from load() (runs what trials.jsonl lacks).
    hook(task, epoch_record) is called on the worker at the end of every epoch (tests use it to
    crash a worker mid-trial). Raises Interrupted on Ctrl-C once the running trials have stopped."""
    import logging
    from distributed import Client, LocalCluster

    say = (lambda text: console.print(text, markup=False, highlight=False)) if console else (lambda text: None)
    done = {n: r for n, r in read_trials(sweep.path).items() if r.get("status") in ENDED} if not new else {}
    todo = [t for t in sweep.trials if t.name not in done]
    if not todo:
        say(f"all {len(sweep.trials)} trials of {sweep.path} are recorded already")
        return _result(sweep, done, 0)
    cluster = None
    own_client = client is None
    created = False
    try:
        if client is not None:
            pass
        elif scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise NetcliError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({e})") from None
            _wait_for_workers(client, scheduler)
        else:
            n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR, env=_ONE_THREAD_ENV, preload=[__name__])
            client = Client(cluster)
        if not sweep.path.exists():
            sweep.path.mkdir(parents=True)
            created = True
        _check_workers(client, sweep, todo, created)
        if new:
            write_sweep_file(sweep)
        stop_file = sweep.path / STOP_FILE
        stop_file.unlink(missing_ok=True)
        n_workers = len(client.scheduler_info()["workers"])
        where = f"the Dask scheduler at {scheduler} ({n_workers} workers)" if scheduler else \
            f"a local Dask cluster of {n_workers} workers" if cluster else f"{n_workers} Dask workers"
        say(f"sweep of {len(sweep.trials)} trials into {sweep.path}: running {len(todo)}"
            + (f" ({len(done)} recorded already)" if done else "") + f" on {where}")
        return _submit_and_collect(client, sweep, todo, done, stop_file, hook, say)
    finally:
        if own_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def dask_setup(worker) -> None:
    """Dask's preload hook, run in every LocalCluster worker (restarted ones too): the terminal's
    Ctrl-C reaches the whole process group, and it is the client's to handle (stop the sweep
    cleanly), not the workers' (which would die mid-trial)."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def _wait_for_workers(client, address: str) -> None:
    try:
        client.wait_for_workers(1, timeout=30)
    except (TimeoutError, OSError):
        raise NetcliError(f"--scheduler {address}: the scheduler has no workers; start some with "
                          f"`dask worker {address}`") from None


def _check_workers(client, sweep: Sweep, todo: list[Trial], created: bool) -> None:
    """Every worker must see the data and the sweep directory (a cluster on other machines needs
    them on a shared file system) and run the same netcli."""
    paths = sorted({t.data[s][k] for t in todo for s, k in PATH_KEYS
                    if isinstance(t.data.get(s), dict) and t.data[s].get(k)})
    sweep_dir = str(sweep.path.resolve())
    try:
        answers = client.run(check_worker, paths, sweep_dir)
    except Exception as e:
        answers = None
        problem = f"the workers cannot run netcli ({type(e).__name__}: {e}); install netcli {__version__} " \
                  f"in the workers' Python environment"
    else:
        problem = None
        for address, a in answers.items():
            if a["missing"]:
                here = [p for p in a["missing"] if not os.path.exists(p)]
                problem = f"worker {address} cannot see {', '.join(a['missing'])}; " + (
                    f"{'it does' if len(here) == 1 else 'they do'} not exist here either" if here else
                    "data and the sweep directory must be on a file system every worker shares, at the same path")
            elif not a["writable"]:
                problem = f"worker {address} cannot write to {sweep_dir}; the sweep directory must be " \
                          f"on a file system every worker shares, at the same path (--sweep-dir)"
            elif a["netcli"] != __version__:
                problem = f"worker {address} runs netcli {a['netcli']}, this is {__version__}"
            if problem:
                break
    if problem:
        if created:
            try:
                sweep.path.rmdir()
            except OSError:
                pass
        raise NetcliError(problem)


def _task(sweep: Sweep, trial: Trial, stop_file: Path, hook) -> dict:
    return {**trial.entry(), "config": trial.data, "source": sweep.source,
            "run_dir": str((sweep.path / trial.name).resolve()), "stop_file": str(stop_file.resolve()),
            "hook": hook}


def _submit_and_collect(client, sweep, todo, done, stop_file, hook, say) -> SweepResult:
    from distributed import as_completed

    records = dict(done)
    futures = {}
    for trial in todo:
        key = f"netcli-trial-{trial.name}-{os.urandom(4).hex()}"
        futures[client.submit(run_trial, _task(sweep, trial, stop_file, hook), key=key, pure=False)] = trial
    total, count = len(sweep.trials), len(done)
    pending = set(futures)

    def collect(future):
        nonlocal count
        pending.discard(future)
        record = _record_of(future, futures[future], sweep)
        if record["status"] in ("not started", "cancelled"):
            return
        _append_record(sweep, record)
        records[record["name"]] = record
        count += 1
        say(_progress_line(record, count, total))

    try:
        for future in as_completed(list(pending)):
            collect(future)
    except KeyboardInterrupt:
        stop_file.touch()
        say("interrupted: no new trial starts; running trials stop at the end of their epoch and keep "
            "a checkpoint (Ctrl-C again to stop waiting)")
        _cancel_queued(client, pending)
        try:
            for future in as_completed([f for f in pending if not f.cancelled()]):
                collect(future)
        except KeyboardInterrupt:
            pass
        finished = sum(r["status"] in ENDED for r in records.values())
        raise Interrupted(f"interrupted; {finished} of {total} trials are recorded in {sweep.trials_file}; "
                          f"carry on with: netcli sweep --resume {sweep.path}") from None
    finally:
        stop_file.unlink(missing_ok=True)
    return _result(sweep, records, len(todo))


def _cancel_queued(client, pending: set) -> None:
    """Cancel the trials no worker has started (the others stop at their next epoch's end)."""
    try:
        running = {k for keys in client.processing().values() for k in keys}
    except Exception:
        running = {f.key for f in pending}
    queued = [f for f in pending if f.key not in running and not f.done()]
    if queued:
        client.cancel(queued)


def _record_of(future, trial: Trial, sweep: Sweep) -> dict:
    if future.status == "finished":
        return future.result()
    if future.cancelled():
        return {**trial.entry(), "status": "cancelled"}
    error = future.exception()
    name = type(error).__name__
    message = f"{name}: {error}"
    if name == "KilledWorker":
        message = f"the workers running this trial died repeatedly ({error}); see the worker logs"
    return {**trial.entry(), "run_dir": str((sweep.path / trial.name).resolve()), "status": "failed",
            "message": message}


def _progress_line(record: dict, count: int, total: int) -> str:
    s = score(record)
    shown = f" {s[0]} {s[1]:.4g}" if s else ""
    wall = f" in {record['wall_seconds']:.1f}s" if record.get("wall_seconds") is not None else ""
    resumed = f" (resumed from epoch {record['resumed_from_epoch']})" if "resumed_from_epoch" in record else ""
    line = f"[{count}/{total}] {record['name']}: {record['status']}{shown}{wall}{resumed}"
    if record["status"] != "finished" and record.get("message"):
        line += f": {record['message'].splitlines()[0][:300]}"
    return line


def _result(sweep: Sweep, records: dict, ran: int) -> SweepResult:
    ordered = []
    for trial in sweep.trials:
        ordered.append(records.get(trial.name) or {**trial.entry(), "status": "pending"})
    return SweepResult(sweep.path, ordered, best_trial(ordered), ran)


def table_rows(result: SweepResult) -> list[dict]:
    """The summary table as plain rows (what --json prints)."""
    rows = []
    for r in result.records:
        s = score(r)
        test = r.get("test") or {}
        test_key = next((k for k in ("accuracy", "mse", "loss") if k in test), None)
        rows.append({"trial": r["name"], "run_dir": str(result.path / r["name"]),
                     "overrides": r.get("overrides", {}), "seed": r.get("seed"), "status": r["status"],
                     "epochs": r.get("epochs"), "score": {"metric": s[0], "value": s[1]} if s else None,
                     "final_loss": (r.get("final") or {}).get("loss"),
                     "test": {"metric": test_key, "value": test[test_key]} if test_key else None,
                     "wall_seconds": r.get("wall_seconds"), "message": r.get("message", ""),
                     "best": result.best is not None and r["name"] == result.best["name"]})
    return rows
