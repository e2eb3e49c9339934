"""YAML -> a validated, typed spec. Errors name the file, the line and the key path.

A config block that names a component (`{type: dense, units: 64}`) is checked
against that component's constructor signature: its keys are the arguments,
unknown keys are refused with the closest valid one suggested.
"""

from __future__ import annotations

import difflib
import os
import re
import reprlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model,
                      model_serializer, model_validator)

from netcli.constraints import NonNegativeFloat, PositiveFloat, PositiveInt, UnitFloat
from netcli.errors import ConfigError
from netcli.files import plain
from netcli.nn import ACTIVATIONS, LAYERS, LOSSES, REGULARIZERS
from netcli.nn.tasks import Task, task_for
from netcli.optim import OPTIMIZERS, SCHEDULES
from netcli.registry import Registry, UnknownName

# -- the schema ---------------------------------------------------------------

# -- components checked against their constructors -----------------------------

@lru_cache(maxsize=None)
def component_model(cls) -> type[BaseModel]:
    """A pydantic model of cls's constructor arguments (`units: PositiveInt` -> units > 0)."""
    fields = {}
    for name, p in inspect.signature(cls.__init__, eval_str=True).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[name] = (Any if p.annotation is p.empty else p.annotation, default)
    return create_model(f"{cls.__name__}Args", __config__=STRICT, **fields)





def _batch_size(value):
    if value == "full" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"must be a positive integer or 'full', got {_SHORT.repr(value)}")


AUTO = "auto"   # model.input, and the output layer's units: taken from the training data


def _threads(value):
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"must be a positive integer or 'auto', got {_SHORT.repr(value)}")


def _input_shape(value):
    def positive(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0
    if value == AUTO or positive(value) or (isinstance(value, list) and value and all(positive(v) for v in value)):
        return value
    raise ValueError(f"must be a positive integer, a list of them ([C, H, W], [T, D]) or auto "
                     f"(from the data), got {_SHORT.repr(value)}")


# Strict: YAML already gives every value its type, so `units: true` or `epochs: yes` is a mistake,
# not the number 1; and no setting of a network is infinite or NaN (`lr: .inf`).
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Section(BaseModel):
    model_config = STRICT


class Component(BaseModel):
    """A registered component as a config names it: `{type: dense, units: 64}` or just `adam`.

    Read as written; `validate` then checks `args` against the component's constructor and
    fills in its defaults, so a validated config holds every argument. Written back (YAML,
    JSON) as the one mapping `{type: ..., **args}`; `Registry.build` makes the component.
    """

    registry: ClassVar[Registry]
    type: Any = None          # a registered name, checked by validate (None: the key is missing)
    args: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_config(cls, value):
        if isinstance(value, (Component, dict)) and set(value) == {"type", "args"}:
            return value   # already split (model_copy, defaults)
        if isinstance(value, str):
            return {"type": value, "args": {}}
        if isinstance(value, dict):
            return {"type": value.get("type"), "args": {k: v for k, v in value.items() if k != "type"}}
        raise ValueError(f"must be a {cls.registry.kind} name or a mapping with a 'type' key, "
                         f"got {_SHORT.repr(value)}")

    @model_serializer
    def _as_mapping(self) -> dict:
        return {"type": self.type, **self.args}

    def build(self):
        """The component itself, made from its registry."""
        return self.registry.build(self.model_dump())


class LayerBlock(Component):
    registry: ClassVar[Registry] = LAYERS


class OptimizerBlock(Component):
    registry: ClassVar[Registry] = OPTIMIZERS


class ScheduleBlock(Component):
    registry: ClassVar[Registry] = SCHEDULES


class EarlyStopping(Section):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    monitor: str = "val_loss"
    patience: PositiveInt = 5
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = True


def _stdin_dash(value):
    """`train: -` is YAML for a list holding null; in a data path it means standard input."""
    return "-" if value == [None] else value


DataPath = Annotated[str | None, BeforeValidator(_stdin_dash)]


class DataSection(Section):
    train: DataPath = Field(None, description="CSV, NPZ, NPY or Parquet file, or - for stdin; "
                            "relative to the config file")
    val: DataPath = None
    test: DataPath = None
    header: bool = Field(True, description="CSV: the first row names the columns (false: every row is data)")
    delimiter: str | None = Field(None, min_length=1, max_length=1,
                                  description="CSV cell separator (default: ',' or a tab for .tsv)")
    target: str | int | None = Field(None, description="column name or index (CSV; default: last), "
                                     "NPZ key (default: y), or 'input' for autoencoders")
    features: str | list[str | int] | None = Field(None, description="NPZ key (default: X) or CSV columns")
    drop: list[str | int] = Field(default_factory=list, description="CSV columns to ignore (e.g. the "
                                  "label column of an autoencoder's data)")
    categorical: list[str] = Field(default_factory=list, description="feature columns to one-hot encode "
                                   "(columns of text are found without being listed)")
    impute: Literal["error", "mean", "median"] = Field("error", description="empty feature cells: an error, "
                                                        "or filled with the training rows' mean or median")
    validation_split: UnitFloat = 0.0
    normalize: Literal["none", "standard", "minmax", "minmax_global"] = "none"
    shuffle: bool = True


class ModelSection(Section):
    input: Annotated[int | list[int] | str, BeforeValidator(_input_shape)] = AUTO
    layers: Annotated[list[LayerBlock], Field(min_length=1)]
    init: str = "glorot_uniform"
    init_from: str | None = None


SparsityArgs = component_model(REGULARIZERS.get("sparsity"))   # {layer, rho, beta}: KLSparsity's arguments


class RegularizationSection(Section):
    l2: NonNegativeFloat = 0.0
    l1: NonNegativeFloat = 0.0
    sparsity: SparsityArgs | None = None


class TrainingSection(Section):
    epochs: PositiveInt = 10
    batch_size: Annotated[int | str, BeforeValidator(_batch_size)] = 32
    early_stopping: EarlyStopping | None = None
    schedule: ScheduleBlock = Field(default_factory=lambda: ScheduleBlock(type="constant"))
    clip_grad_norm: PositiveFloat | None = None
    checkpoint_every: PositiveInt = 1
    threads: Annotated[int | str, BeforeValidator(_threads)] = Field(
        "auto", description="BLAS threads: a number, or auto (measured at the start of training)")
    parallel: Literal["auto", "blas", "batch"] = Field(
        "auto", description="how more than one thread is used: blas (BLAS's own threads), batch (the "
                            "batch cut in parts, one thread each), or auto (measured with the threads)")


class ConfigSpec(Section):
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    dtype: Literal["float32", "float64"] = "float32"
    data: DataSection = DataSection()
    model: ModelSection
    loss: str = "mse"
    regularization: RegularizationSection = RegularizationSection()
    optimizer: OptimizerBlock = Field(default_factory=lambda: OptimizerBlock(type="adam"))
    training: TrainingSection = TrainingSection()


# -- loading -------------------------------------------------------------------

@dataclass
class Config:
    """A validated config: `spec` is the typed tree, every default and component argument filled in."""

    spec: ConfigSpec
    source: str = "<config>"
    lines: dict = field(default_factory=dict)
    overridden: set = field(default_factory=set)

    @property
    def name(self) -> str:
        # "<config>", "<dict>" and other <...> sources (and "-", stdin) name no file
        return "config" if self.source == "-" or self.source.startswith("<") else Path(self.source).stem

    def as_dict(self) -> dict:
        """The plain mapping the run directory keeps as config.yaml."""
        return self.spec.model_dump()

    @property
    def task(self) -> Task:
        """What the outputs mean: the loss's task, or an autoencoder's (data.target: input)."""
        return task_of(self.spec)

    @property
    def auto_sizes(self) -> list[str]:
        """The keys left to the data: model.input, model.layers[-1].units (when auto)."""
        keys = ["model.input"] if self.spec.model.input == AUTO else []
        if self.spec.model.layers[-1].args.get("units") == AUTO:
            keys.append(f"model.layers[{len(self.spec.model.layers) - 1}].units")
        return keys

    def with_sizes(self, input_shape: tuple[int, ...], units: int) -> "Config":
        """This config with its auto sizes filled in from the data."""
        spec = self.spec.model_copy(deep=True)
        if spec.model.input == AUTO:
            spec.model.input = input_shape[0] if len(input_shape) == 1 else list(input_shape)
        if spec.model.layers[-1].args.get("units") == AUTO:
            spec.model.layers[-1].args["units"] = units
        return Config(spec, self.source, self.lines, self.overridden)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(_locate(self.source, self.lines, self.overridden, parse_path(key), message))


def load_config(path: str | Path | Mapping, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read, override and validate a YAML config file, or a mapping of the same keys (a dict)."""
    if isinstance(path, Mapping):
        return config_from_mapping(path, overrides=overrides)
    return parse_config(read_config_text(path), str(path), overrides)


def config_from_mapping(mapping: Mapping, source: str = "<dict>", overrides=()) -> Config:
    """A config given as a Python mapping of the YAML file's keys, validated exactly as a file is:
    messages name `source` and the key path (`<dict>: model.layers[0].units: must be > 0, got -3`).
    Python values are first taken as the YAML values they stand for (tuples as lists, NumPy
    scalars as numbers, paths as strings); data paths are relative to the working directory.
    The mapping itself is not changed."""
    data = plain(mapping)
    overridden = set()
    for item in overrides:
        overridden.add(apply_override(data, item))
    absolute_paths(data, Path.cwd())
    return validate(data, source, {}, overridden)


def read_config_text(path: str | Path) -> str:
    """The text of a config file; a missing or unreadable file is a ConfigError."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    except OSError as e:   # a folder, no permission, an I/O error of the disk
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None


def parse_config(text: str, source: str = "<config>", overrides=()) -> Config:
    """Data paths written in the file are relative to the file's folder; paths given with --set,
    to the working directory. The validated config holds them absolute, so a run directory's
    config.yaml works from anywhere."""
    data, lines = load_mapping(text, source)
    absolute_paths(data, Path(source).parent if source not in ("<config>", "-") else Path.cwd())
    overridden = set()
    for item in overrides:
        overridden.add(apply_override(data, item))
    absolute_paths(data, Path.cwd())
    return validate(data, source, lines, overridden)


PATH_KEYS = (("data", "train"), ("data", "val"), ("data", "test"), ("model", "init_from"))


def absolute_paths(data: dict, base: str | Path) -> None:
    """The config's relative file paths (data files, model.init_from) made absolute from base,
    in place; '-' (stdin) and values of other types are left as they are."""
    for section, key in PATH_KEYS:
        block = data.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        if isinstance(value, str) and value and value != "-" and not os.path.isabs(value):
            block[key] = os.path.normpath(os.path.join(os.path.abspath(base), value))


class ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader, reading `1e-3` as the number it means (YAML 1.1 wants `1.0e-3`)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_value(text: str, where: str | None = None):
    """One YAML value as a config reads it (`--set` values, sweep axes), held to a config file's
    rules before it is built: an alias bomb, an alias that contains itself or a key given twice
    is a ConfigError naming `where` (`--set optimizer`; default: the text). Text that is not
    YAML raises yaml.YAMLError, as yaml.load does."""
    where = where or f"value {_SHORT.repr(text)}"
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, where, lines=False)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_STDIN_PATH = re.compile(r"^(\s*(?:train|val|test)\s*:\s*)-(\s*(?:#.*)?)$", re.M)


def load_mapping(text: str, source: str) -> tuple[dict, dict]:
    """A config's YAML text -> (its top-level mapping, {key path: line}); an empty text is {}.
    `train: -` (stdin) is read as the string '-', which plain YAML refuses to parse."""
    data, lines = load_yaml(_STDIN_PATH.sub(r'\1"-"\2', text), source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the config must be a mapping of keys (seed, data, model, ...), "
                          f"got {type(data).__name__}")
    return data, lines


def load_yaml(text: str, source: str):
    """-> (data, {key path: line}). Aliases are followed once: a recursive alias is an error,
    and a shared node is walked once, so an 'alias bomb' costs nothing."""
    try:
        loader = ConfigLoader(text)
    except yaml.YAMLError as e:  # characters YAML does not allow (NUL, control codes)
        raise ConfigError(f"{source}: not a YAML text: {e}") from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise ConfigError(f"{source}:{mark.line + 1}: {e.problem}; netcli reads plain YAML only "
                          f"(no !!python tags)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as e:  # e.g. `!!float abc`
        raise ConfigError(f"{source}: a tagged YAML value cannot be read: {e}") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n, path):
        if id(n) in seen:
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            # merge keys are flattened by now: merged pairs first, so a key that overrides one
            # (`{<<: *base, units: 32}`) comes last and names its own line
            for key, value in n.value:
                p = path + (key.value,)
                lines[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if node is not None:
        walk(node, ())
    return data, lines


MAX_VALUES = 100_000   # values a config may expand to, aliases followed; real configs have hundreds


MERGE_TAG = "tag:yaml.org,2002:merge"   # the `<<` of `{<<: *base, units: 32}`


def _check_nodes(root, source: str, lines: bool = True) -> None:
    """A YAML document's node graph, before anything is built from it: no alias that contains
    itself, no alias bomb, no key given twice. lines: name the line in `source` (a file); a
    `--set` value or a sweep axis is named by `source` alone."""
    _check_no_cycles(root, source, lines)
    _check_size(root, source, lines)
    _check_unique_keys(root, source, lines)


def _at(source: str, node, lines: bool) -> str:
    return f"{source}:{node.start_mark.line + 1}" if lines else source


def _check_unique_keys(root, source: str, lines: bool = True) -> None:
    """A key given twice in one mapping is refused: YAML would keep only the last, silently.
    Checked on the nodes as written, before the constructor flattens merge keys into the
    mapping, so a key that overrides a merged one (`{<<: *base, units: 32}`) is fine, as YAML
    means it to be. Each shared node is checked once, in the order of the text."""
    seen: set[int] = set()
    stack = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children = []
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
                    if key.value in first:
                        where = format_path(path + (key.value,))
                        also = f" (first on line {first[key.value].start_mark.line + 1})" if lines else ""
                        raise ConfigError(f"{_at(source, key, lines)}: {where}: key given twice{also}; "
                                          f"YAML would keep only the last")
                    first[key.value] = key
                children.append((value, path + (key.value,)))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, path + (i,)) for i, item in enumerate(node.value)]
        stack.extend(reversed(children))


def _check_size(root, source: str, lines: bool = True) -> None:
    """Refuse a config whose aliases expand to more than MAX_VALUES values (an 'alias bomb':
    nine levels of nine aliases are 387 million values), naming the keys that hold them.
    Counted over the node graph, each shared node once, so counting costs no more than the text."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    if sizes[id(root)] <= MAX_VALUES:
        return
    pairs = root.value if isinstance(root, yaml.MappingNode) else \
        [(None, v) for v in root.value] if isinstance(root, yaml.SequenceNode) else []
    big = [(k, v) for k, v in pairs if sizes[id(v)] > MAX_VALUES] or [(None, root)]
    keys = ", ".join(k.value for k, _ in big if k is not None)
    where = _at(source, big[0][0] or big[0][1], lines)
    raise ConfigError(f"{where}: {keys + ': ' if keys else ''}the YAML aliases here expand to more "
                      f"than {MAX_VALUES:,} values; a config needs far fewer (is it an alias bomb?)")


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [v for pair in node.value for v in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _check_no_cycles(root, source: str, lines: bool = True) -> None:
    """A YAML alias that contains itself (`a: &x [*x]`) has no value."""
    done, stack = set(), [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            done.add(id(node))
            continue
        if id(node) in on_path:
            raise ConfigError(f"{_at(source, node, lines)}: a YAML alias refers to itself")
        if id(node) in done:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ConfigError(f"{_at(source, child, lines)}: a YAML alias refers to itself")
            stack.append((child, False))


def parse_path(key: str) -> tuple:
    """'model.layers[2].units' or 'model.layers.2.units' -> ('model', 'layers', 2, 'units')"""
    parts = []
    for piece in key.replace("[", ".").replace("]", "").split("."):
        if piece:
            parts.append(int(piece) if piece.isascii() and piece.isdigit() else piece)
    return tuple(parts)


def format_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def apply_override(data: dict, item: str) -> tuple:
    """'optimizer.lr=0.01' -> data['optimizer']['lr'] = 0.01 (the value parsed as a YAML scalar)."""
    key, sep, value = item.partition("=")
    path = parse_path(key.strip())
    if not sep or not path:
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. optimizer.lr=0.01")
    try:
        parsed = parse_value(value, f"--set {format_path(path)}")
    except yaml.YAMLError:
        parsed = value
    target = data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(target, list):
            if not isinstance(part, int) or part >= len(target):
                raise ConfigError(f"--set {key}: {format_path(path[:depth + 1])} is not an index of "
                                  f"a list of {len(target)}")
            target = target[part]
            continue
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {format_path(path[:depth])} is not a mapping")
        if isinstance(target.get(part), str) and not isinstance(nxt, int):
            target[part] = {"type": target[part]}  # optimizer: adam  ->  optimizer: {type: adam}
        target = target.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(target, list):
        if not isinstance(last, int) or last >= len(target):
            raise ConfigError(f"--set {key}: index {last} is outside a list of {len(target)}")
    elif not isinstance(target, dict):
        raise ConfigError(f"--set {key}: {format_path(path[:-1])} is not a mapping")
    target[last] = parsed
    return path


def _locate(source, lines, overridden, path, message) -> str:
    shown = format_path(path)
    for n in range(len(path), 0, -1):
        if path[:n] in overridden:
            return f"--set {format_path(path[:n])}: {shown}: {message}"
    if path not in lines:  # a section that exists only because --set created it
        for o in sorted(overridden):
            if o[:len(path)] == path:
                return f"--set {format_path(o)}: {shown}: {message}"
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return f"{source}:{lines[path[:n]]}: {shown}: {message}"
    return f"{source}: {shown}: {message}" if shown else f"{source}: {message}"


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 60, 60, 6, 6, 2


def _describe_error(err: dict, fields: list[str]) -> str:
    kind, ctx, got = err["type"], err.get("ctx", {}), _Shown(err.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}valid keys: {', '.join(fields)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {sign} {bound}, got {got!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {got!r}"
    if kind.startswith("int_"):
        return f"must be an integer, got {got!r}"
    if kind.startswith("float_"):
        return f"must be a number, got {got!r}"
    if kind.startswith("bool_"):
        return f"must be true or false, got {got!r}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    msg = err["msg"]
    return f"{msg[0].lower()}{msg[1:]}, got {got!r}"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Names of the keys valid beside loc[-1] (for 'did you mean')."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        ann = f.annotation if f else None
        for cand in (ann, *get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return []
    return list(model.model_fields)


def _clean_loc(model: type[BaseModel], loc: tuple) -> tuple:
    """pydantic's error location without the union-member tags it adds below a leaf key."""
    out, current = [], model
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif current is not None:
            out.append(part)
            field = current.model_fields.get(part)
            ann = field.annotation if field else None
            current = next((c for c in (ann, *get_args(ann))
                            if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return tuple(out)


def _field_depth(loc: tuple) -> int:
    """Length of loc without trailing list indices (kernel[1] belongs to kernel)."""
    n = len(loc)
    while n and isinstance(loc[n - 1], int):
        n -= 1
    return n


def _is_type_error(err: dict) -> bool:
    return err["type"].endswith(("_type", "_parsing")) or err["type"] == "int_from_float"


class _Shown:
    """A value quoted in a message, cut short however large it is (`got [1, 2, 3, ...]`)."""

    def __init__(self, value):
        self.text = _SHORT.repr(value)

    def __repr__(self):
        return self.text


class _Collector:
    def __init__(self, source, lines, overridden):
        self.source, self.lines, self.overridden = source, lines, overridden
        self.messages: list[str] = []

    def add(self, path: tuple, message: str):
        self.messages.append(_locate(self.source, self.lines, self.overridden, path, message))

    def add_validation(self, prefix: tuple, error: ValidationError, model: type[BaseModel]):
        """One message per key. A value that fits no member of a union (kernel: int | list)
        yields one error per member; the most specific one is kept."""
        errors = [(_clean_loc(model, tuple(err["loc"])), err) for err in error.errors()]
        specific = {loc[:_field_depth(loc)] for loc, err in errors if not _is_type_error(err)}
        shown = set()
        for loc, err in errors:
            if loc in shown or (_is_type_error(err) and loc[:_field_depth(loc)] in specific):
                continue
            shown.add(loc)
            self.add(prefix + loc, _describe_error(err, _fields_at(model, loc)))

    def raise_if_any(self):
        if self.messages:
            raise ConfigError("\n".join(self.messages))


def check_component(registry: Registry, block, path: tuple, errors: _Collector) -> dict | None:
    """{type: name, **args} (or a name) -> the same with every argument's default filled in,
    or None after recording errors."""
    if isinstance(block, str):
        block = {"type": block}
    if not isinstance(block, dict):
        errors.add(path, f"must be a {registry.kind} name or a mapping with a 'type' key, got {block!r}")
        return None
    if block.get("type") is None:
        errors.add(path + ("type",), f"is required; known {registry.kind}s: {', '.join(registry.names())}")
        return None
    try:
        cls = registry.get(block["type"])
    except UnknownName as e:
        errors.add(path + ("type",), str(e))
        return None
    model = component_model(cls)
    args = {k: v for k, v in block.items() if k != "type"}
    try:
        values = model.model_validate(args).model_dump()
    except ValidationError as e:
        errors.add_validation(path, e, model)
        return None
    if "activation" in values:
        act = check_component(ACTIVATIONS, values["activation"], path + ("activation",), errors)
        if act is None:
            return None
        values["activation"] = act["type"] if len(act) == 1 else act
    return {"type": block["type"], **values}


def _check_block(component: Component, path: tuple, errors: _Collector) -> None:
    """Fill a Component's arguments from its constructor, in place (errors are recorded)."""
    checked = check_component(component.registry, component.model_dump(), path, errors)
    if checked is not None:
        component.args = {k: v for k, v in checked.items() if k != "type"}


def task_of(spec: ConfigSpec) -> Task:
    return task_for(LOSSES.get(spec.loss).task, spec.data.target)


def _takes_units(block: Component) -> bool:
    """Whether a layer block names a registered layer with a `units` argument."""
    try:
        cls = block.registry.get(block.type)
    except (UnknownName, TypeError):
        return False
    return "units" in inspect.signature(cls.__init__).parameters


def validate(data: dict, source="<config>", lines=None, overridden=()) -> Config:
    """Check everything before any work starts; report every mistake found, each with its place."""
    lines, overridden = lines or {}, set(overridden)
    errors = _Collector(source, lines, overridden)
    try:
        spec = ConfigSpec.model_validate(data)
    except ValidationError as e:
        errors.add_validation((), e, ConfigSpec)
        errors.raise_if_any()
    output = spec.model.layers[-1]
    auto_units = _takes_units(output) and output.args.get("units", AUTO) == AUTO
    if auto_units:
        output.args["units"] = 1          # checked as a number; filled from the data by prepare
    for i, block in enumerate(spec.model.layers):
        _check_block(block, ("model", "layers", i), errors)
    if auto_units:
        output.args["units"] = AUTO
    _check_block(spec.optimizer, ("optimizer",), errors)
    _check_block(spec.training.schedule, ("training", "schedule"), errors)
    if spec.loss not in LOSSES:
        errors.add(("loss",), LOSSES.unknown_message(spec.loss))
    if data.get("model", {}).get("init") is not None:
        from netcli.nn import INITIALIZERS
        if spec.model.init not in INITIALIZERS:
            errors.add(("model", "init"), INITIALIZERS.unknown_message(spec.model.init))
    es = spec.training.early_stopping
    if es is not None and not (spec.data.validation_split > 0 or spec.data.val):
        errors.add(("training", "early_stopping"),
                   "needs validation data: set data.validation_split (e.g. 0.1) or data.val")
    if es is not None and spec.loss in LOSSES:
        allowed = ["val_loss", f"val_{task_of(spec).metric}", "loss"]
        if es.monitor not in allowed:
            errors.add(("training", "early_stopping", "monitor"),
                       f"must be one of {', '.join(allowed)} for this loss; got {es.monitor!r}")
    errors.raise_if_any()
    return Config(spec, source, lines, overridden)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.as_dict(), sort_keys=False, default_flow_style=None)


def json_schema() -> dict:
    """A JSON Schema of the config, with one branch per registered layer, optimizer, schedule."""
    def branches(registry, shorthand=True):
        out = [{"enum": registry.names(), "description": f"a {registry.kind} name with its defaults"}]
        out = out if shorthand else []
        for name in registry.names():
            schema = component_model(registry.get(name)).model_json_schema()
            schema["properties"] = {"type": {"const": name}, **schema.get("properties", {})}
            schema["required"] = ["type", *schema.get("required", [])]
            schema["title"] = name
            out.append(schema)
        return {"anyOf": out}

    schema = ConfigSpec.model_json_schema()
    schema["title"] = "netcli config"
    defs = schema.setdefault("$defs", {})
    for block in ("LayerBlock", "OptimizerBlock", "ScheduleBlock"):   # replaced by the branches below
        defs.pop(block, None)
    defs["ModelSection"]["properties"]["layers"]["items"] = branches(LAYERS, shorthand=False)
    schema["properties"]["optimizer"] = {**branches(OPTIMIZERS), "default": {"type": "adam"}}
    defs["TrainingSection"]["properties"]["schedule"] = {**branches(SCHEDULES), "default": "constant"}
    schema["properties"]["loss"] = {"enum": LOSSES.names(), "default": "mse"}
    return schema
