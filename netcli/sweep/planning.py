"""A sweep's trials, every one validated before anything runs: from a config and its axes
(plan), or from the sweep.yaml an earlier run of the sweep wrote (load). Nothing is written here.
The seeds and the trial names follow the rules in the package's docstring (netcli.sweep).
A search (netcli.sweep.search) has no list of trials up front: its axes' values are validated
here, each alone and at the corners of the space, and each trial is made (make_trial) as the
study gives its point."""

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
from netcli.sweep.axes import Axes, axes_from_doc, axes_from_section, derived_seed, merge_axes, random_values, \
    yaml_text
from netcli.sweep.search import Search, choose, grid_size, make_search
from netcli.sweep.store import SWEEP_FILE, TRIALS_FILE, damaged, read_sweep_file, write_sweep_file



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
    search: Search | None = None   # a search asks its trials from a study; self.trials: those asked so far
    created: str | None = None

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
         sweep_dir: str | Path | None = None, base_dir: str | Path = "runs/sweeps", overrides=(),
         search: str | None = None, trials: int | None = None, prune: str | None = None) -> Sweep:
    """Every trial of a sweep, validated; nothing is written. Raises ConfigError naming the key.
    overrides ('key=value', as --set) change the base config of every trial. search ('tpe',
    'random', 'grid'), trials and prune make it a search (netcli.sweep.search): its trials are
    asked for while it runs; the sweep: section's search, trials and prune keys do the same."""
    source = str(config_path)
    base, lines, section = load_sweep_config(config_path)
    overridden = {apply_override(base, item) for item in overrides}
    config = validate(copy.deepcopy(base), source, lines, overridden)  # the base config's own mistakes
    choice = choose(section, source, lines, search, trials, prune)
    axes = merge_axes(axes_from_section(section, source, lines), grid, ranges, random, seeds,
                      search=choice.sampler["type"] if choice else None)
    if sweep_dir is None:
        path = timestamped_path(base_dir, Path(source).stem)
    else:
        path = Path(sweep_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise NetcliError(f"--sweep-dir {path}: exists and is not an empty folder; "
                              f"to carry on with a sweep use --resume {path}")
    sweep = Sweep(path, source, base, axes, [], lines)
    if choice is not None:
        from netcli.sweep.search import canonical_choices, require_optuna
        require_optuna()
        sweep.search = make_search(choice, axes, config, _base_seed(sweep))
    _check_axes(sweep)
    if sweep.search is not None:
        canonical_choices(axes)
        check_trials(sweep, _corners(sweep))
        return sweep
    sweep.trials = _make_trials(sweep)
    check_trials(sweep)
    return sweep


def load(sweep_dir: str | Path, trials: int | None = None) -> Sweep:
    """A sweep directory written by a previous run, ready to run what trials.jsonl lacks (a
    search: what its study lacks). trials: a search's new number of trials in all (sweep.yaml
    is written again with it)."""
    path = Path(sweep_dir)
    doc = read_sweep_file(path)
    file = path / SWEEP_FILE
    try:
        axes = axes_from_doc(doc["axes"])
        sweep = Sweep(path, doc["config"], doc["base"], axes, [], {}, doc.get("cwd") or os.getcwd(),
                      created=doc.get("created"))
        if doc.get("search") is not None:
            sweep.search = Search.from_dict(doc["search"])
        for entry in doc["trials"]:
            texts = {k: yaml_text(v) for k, v in entry["overrides"].items()}
            seed = None if "seed" in texts else entry["seed"]
            data, config = _apply(sweep, texts, seed, f"{file}: trial {entry['name']}")
            sweep.trials.append(Trial(entry["index"], entry["name"], entry["overrides"], entry["seed"],
                                      entry["replicate"], data, config))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise damaged(file, e) from None
    if trials is not None:
        if sweep.search is None:
            raise NetcliError(f"--trials: {path} is a grid or --random sweep, not a search; "
                              f"--resume runs the trials it has")
        if trials < 1:
            raise NetcliError(f"--trials: must be >= 1, got {trials}")
        if sweep.search.sampler["type"] == "grid" and trials > grid_size(axes):
            raise NetcliError(f"--trials {trials}: the grid of this search has {grid_size(axes)} points")
        if trials != sweep.search.trials:
            sweep.search.trials = trials
            write_sweep_file(sweep)
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


def _base_seed(sweep: Sweep) -> int:
    base_seed = validate(copy.deepcopy(sweep.base)).spec.seed
    if base_seed < 0 and "seed" not in sweep.axes.keys():
        raise ConfigError(f"{sweep.source}: seed: a sweep derives its seeds from a seed >= 0, got {base_seed}")
    return base_seed


def _make_trials(sweep: Sweep) -> list[Trial]:
    axes = sweep.axes
    base_seed = _base_seed(sweep)
    points = [dict(zip(axes.grid, combo)) for combo in itertools.product(*axes.grid.values())]
    draws = [{k: yaml_text(v) for k, v in d.items()} for d in random_values(axes, max(base_seed, 0))] or [{}]
    combos = [(point, draw, r) for point in points for draw in draws for r in range(axes.seeds)]
    width = max(3, len(str(len(combos) - 1)))
    return [make_trial(sweep, index, {**point, **draw}, r, width, base_seed)
            for index, (point, draw, r) in enumerate(combos)]


def make_trial(sweep: Sweep, index: int, texts: dict[str, str], replicate: int = 0, width: int | None = None,
               base_seed: int | None = None) -> Trial:
    """Trial `index` of the sweep: the base config with these override texts (and replicate's
    derived seed), validated; raises ConfigError naming the trial and its values."""
    if width is None:   # a search: as wide as its last trial's number needs
        width = max(3, len(str(sweep.search.trials - 1)))
    if base_seed is None:
        base_seed = _base_seed(sweep)
    seed = None if "seed" in texts else derived_seed(base_seed, replicate)
    where = f"trial {index} ({', '.join(f'{k}={v}' for k, v in texts.items()) or 'base config'})"
    data, config = _apply(sweep, texts, seed, where)
    overrides = {k: _value_as_run(config, k, t) for k, t in texts.items()}
    name = trial_name(sweep, index, overrides, replicate, width)
    return Trial(index, name, overrides, config.spec.seed, replicate, data, config)


def trial_name(sweep: Sweep, index: int, values: dict, replicate: int = 0, width: int | None = None) -> str:
    """'t003-lr0.01-l2_0.001' (and '-s1' for replicate 1 of several)."""
    if width is None:
        width = max(3, len(str(sweep.search.trials - 1)))
    shorts = short_keys(sweep.axes.keys())
    parts = [f"t{index:0{width}d}"] + [_name_part(shorts[k], v) for k, v in values.items()]
    if sweep.axes.seeds > 1:
        parts.append(f"s{replicate}")
    return safe_name("-".join(parts))[:120]


def _corners(sweep: Sweep) -> list[Trial]:
    """A search's two corners: every axis at its first value (a range at its low end), and every
    axis at its last (high end); the trials they make, for check_trials."""
    ends = []
    for pick in (0, -1):
        texts = {k: v[pick] for k, v in sweep.axes.grid.items()}
        texts.update({k: yaml_text((r.low, r.high)[pick]) for k, r in sweep.axes.ranges.items()})
        ends.append(make_trial(sweep, (0, sweep.search.trials - 1)[pick], texts))
    return ends


def check_trials(sweep: Sweep, trials: list[Trial] | None = None) -> None:
    """Build each distinct network of the (validated) trials once: layer shapes must fit."""
    from netcli.prepare import build_network
    built = set()
    for trial in sweep.trials if trials is None else trials:
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
