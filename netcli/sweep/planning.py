"""A sweep's trials, every one validated before anything runs: from a config and its axes
(plan), or from the sweep.yaml an earlier run of the sweep wrote (load). Nothing is written here.
The seeds and the trial names follow the rules in the package's docstring (netcli.sweep)."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from netcli.config import (PATH_KEYS, Config, absolute_paths, apply_override, load_mapping, parse_path, parse_value,
                           read_config_text, validate)
from netcli.errors import ConfigError, NetcliError
from netcli.files import plain, safe_name, timestamped_path
from netcli.sweep.axes import Axes, axes_from_section, derived_seed, merge_axes, parse_range, random_values, \
    yaml_text
from netcli.sweep.store import SWEEP_FILE, TRIALS_FILE, damaged, read_sweep_file



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


def load_sweep_config(path: str | Path) -> tuple[dict, dict, dict | None]:
    """A config file -> (its mapping without `sweep:`, line numbers, the sweep: section); its
    paths made absolute from its folder."""
    data, lines = load_mapping(read_config_text(path), str(path))
    absolute_paths(data, Path(path).parent)
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
    if sweep_dir is None:
        path = timestamped_path(base_dir, Path(source).stem)
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


def load(sweep_dir: str | Path) -> Sweep:
    """A sweep directory written by a previous run, ready to run what trials.jsonl lacks."""
    path = Path(sweep_dir)
    doc = read_sweep_file(path)
    file = path / SWEEP_FILE
    try:
        axes_doc = doc["axes"]
        axes = Axes(grid={k: [yaml_text(v) for v in vs] for k, vs in axes_doc["grid"].items()},
                    ranges={k: parse_range(f"{k}={v}")[1] for k, v in axes_doc["range"].items()},
                    random=axes_doc["random"], seeds=axes_doc["seeds"])
        sweep = Sweep(path, doc["config"], doc["base"], axes, [], {}, doc.get("cwd") or os.getcwd())
        for entry in doc["trials"]:
            texts = {k: yaml_text(v) for k, v in entry["overrides"].items()}
            seed = None if "seed" in texts else entry["seed"]
            data, config = _apply(sweep, texts, seed, f"{file}: trial {entry['name']}")
            sweep.trials.append(Trial(entry["index"], entry["name"], entry["overrides"], entry["seed"],
                                      entry["replicate"], data, config))
    except (KeyError, TypeError, AttributeError) as e:
        raise damaged(file, e) from None
    return sweep


def _check_axes(sweep: Sweep) -> None:
    """Each axis value alone on the base config: the error names the axis and the value."""
    for key, texts in sweep.axes.grid.items():
        for text in texts:
            _apply(sweep, {key: text}, None, f"{sweep.axes.origin[key]} {key}={text}")
    for key, rng in sweep.axes.ranges.items():
        for end in (rng.low, rng.high):
            _apply(sweep, {key: yaml_text(end)}, None, f"{sweep.axes.origin[key]} {key}={rng.text()}")


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
    """Paths an axis or --set gave, made absolute from cwd (the file's own already are, from its
    folder): workers run elsewhere. A sweep cannot read stdin."""
    for section, key in PATH_KEYS:
        block = data.get(section)
        if isinstance(block, dict) and block.get(key) == "-":
            raise ConfigError(f"{section}.{key}: a sweep cannot read standard input (-); give a file")
    absolute_paths(data, cwd)


def _make_trials(sweep: Sweep) -> list[Trial]:
    axes = sweep.axes
    base_seed = validate(copy.deepcopy(sweep.base)).spec.seed
    if base_seed < 0 and "seed" not in axes.keys():
        raise ConfigError(f"{sweep.source}: seed: a sweep derives its seeds from a seed >= 0, got {base_seed}")
    points = [dict(zip(axes.grid, combo)) for combo in itertools.product(*axes.grid.values())]
    draws = [{k: yaml_text(v) for k, v in d.items()} for d in random_values(axes, max(base_seed, 0))] or [{}]
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
    from netcli.prepare import build_network
    built = set()
    for trial in sweep.trials:
        where = f"trial {trial.name}"
        config = trial.config
        r = config.as_dict()
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
    value: Any = config.as_dict()
    for part in parse_path(key):
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return plain(parse_value(text))
    return plain(value) if isinstance(value, (int, float, str, bool)) or value is None \
        else plain(parse_value(text))


# -- trial names ---------------------------------------------------------------------

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
