"""The axes of a sweep: grid values, random-search ranges, the number of random draws and of
seed replicates, from the command line (--grid, --range, --random, --seeds) and from a config's
`sweep:` section; and the draws and seeds they give."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import yaml

from netcli.config import parse_value
from netcli.errors import ConfigError
from netcli.files import plain

if TYPE_CHECKING:
    from netcli.sweep.planning import Trial

SECTION_KEYS = ("grid", "range", "random", "seeds")
SEARCH_KEYS = ("search", "trials", "prune")   # read by netcli.sweep.search


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
                [plain(parse_value(t)) for t in texts]
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
        value = parse_value(end) if isinstance(end, str) else end
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
    valid = SECTION_KEYS + SEARCH_KEYS
    if not isinstance(section, dict):
        raise ConfigError(f"{where()}: must be a mapping with keys {', '.join(valid)}")
    for key in section:
        if key not in valid:
            raise ConfigError(f"{where(key)}: unknown key; valid keys: {', '.join(valid)}")
    grid = section.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where('grid')}: must map KEY.PATH to a list of values, "
                          f"e.g. {{optimizer.lr: [0.001, 0.01]}}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where('grid', key)}: must be a non-empty list of values, got {values!r}")
        axes.grid[str(key)] = [yaml_text(v) for v in values]
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
               seeds: int | None = None, search: str | None = None) -> Axes:
    """The config's sweep: section with the command line's axes on top (a key given on the
    command line replaces the same key from the file). search: the sampler of a search (whose
    ranges need no --random: its trials are asked from the study), None for a grid or --random."""
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
    if search is not None:
        if axes.random:
            raise ConfigError(f"--random: draws its points without Optuna; --search {search} asks the study for "
                              f"each trial: give the number of trials with --trials N")
        if axes.seeds > 1:
            raise ConfigError(f"--seeds: --search {search} trains each point it asks for once; "
                              f"give --seeds to a --grid or --random sweep")
        if not axes.keys():
            raise ConfigError(f"--search {search}: nothing to search; give --range KEY=LOW:HIGH[:log] "
                              f"or --grid KEY=V1,V2,... (or a sweep: section in the config)")
        return axes
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


def axes_from_doc(doc: dict) -> Axes:
    """sweep.yaml's axes: (as Axes.as_dict wrote them) -> Axes."""
    return Axes(grid={k: [yaml_text(v) for v in vs] for k, vs in doc["grid"].items()},
                ranges={k: parse_range(f"{k}={v}")[1] for k, v in doc["range"].items()},
                random=doc["random"], seeds=doc["seeds"])


def derived_seed(base_seed: int, replicate: int) -> int:
    """Replicate r's seed: the first 32-bit word of SeedSequence(base_seed).spawn(...)[r]."""
    return int(np.random.SeedSequence(base_seed, spawn_key=(replicate,)).generate_state(1)[0])


def random_values(axes: Axes, base_seed: int) -> list[dict]:
    """axes.random draws of every range axis, reproducible from the base seed."""
    rng = np.random.default_rng(np.random.SeedSequence(base_seed, spawn_key=(2**32 - 1,)))
    return [{key: r.sample(rng) for key, r in axes.ranges.items()} for _ in range(axes.random)]


def yaml_text(value) -> str:
    """A value as one line of YAML that apply_override parses back to the same value."""
    return yaml.safe_dump(plain(value), default_flow_style=True, width=10**9).strip() \
        .removesuffix("...").strip()


def _num(x) -> str:
    """Short, and read back as the same number (sweep.yaml keeps ranges as text)."""
    return (f"{x:g}" if float(f"{x:g}") == x else repr(x)) if isinstance(x, float) else str(x)
