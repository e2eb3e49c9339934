"""A validated config -> a network and its data, ready to train or evaluate: the network built
from the registries, the training data read, split and preprocessed, and test or prediction
files read with the training run's statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netcli.config import Config
from netcli.data import (Columns, Preprocessing, Split, Table, check_table_finite, class_labels, make_split,
                         read_table, split_indices)
from netcli.encoding import count_gaps, encode, fit_categories, fit_fill
from netcli.errors import DataError, NetcliError
from netcli.nn import LOSSES, Network
from netcli.nn.layers.base import BuildError
from netcli.nn.regularizers import make_penalties
from netcli.nn.tasks import Task
from netcli.runs.weights import load_weights_into


@dataclass
class Prepared:
    """A network and its data, ready to train or evaluate."""

    config: Config
    net: Network
    train: Split
    val: Split | None
    prep: Preprocessing
    task: Task
    test: Split | None = None     # data.test, read before training so its mistakes show at once
    columns: "Columns | None" = None
    imputed: int = 0              # empty cells of the training file filled (data.impute)

    def describe(self) -> str:
        """What was read, in one line: rows, features, classes, the split, normalization."""
        n_in = int(np.prod(self.net.input_shape))
        parts = [f"{self.train.source}: {len(self.train)} rows for training"]
        if self.val is not None:
            parts[0] += f", {len(self.val)} for validation" + ("" if self.config.spec.data.val
                                                                else f" (data.validation_split "
                                                                     f"{self.config.spec.data.validation_split:g})")
        if self.prep.categories and self.columns is not None and self.columns.features:
            parts.append(f"{len(self.columns.features)} feature columns as {n_in} inputs")
        else:
            parts.append(f"{n_in} features" + (f" as {list(self.net.input_shape)}" if len(self.net.input_shape) > 1
                                               else ""))
        if self.task.labelled:
            parts.append(f"{len(self.prep.classes)} classes ({_preview(self.prep.classes)})")
        elif not self.task.reconstructs:
            parts.append(f"{self.net.output_shape[-1]} target value(s)")
        if self.prep.categories:
            parts.append("one-hot " + ", ".join(f"{name} ({len(labels)})" for name, labels in
                                                self.prep.categories.items()))
        if self.prep.fill is not None:
            parts.append(f"impute {self.prep.impute} ({self.imputed} empty cell{'' if self.imputed == 1 else 's'})")
        parts.append(f"normalize {self.prep.normalize}")
        if self.test is not None:
            parts.append(f"test {self.test.source}: {len(self.test)} rows")
        return "; ".join(parts)


def rng_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for each use of randomness, all from the one seed."""
    names = ("init", "split", "shuffle", "layers")
    return {n: np.random.default_rng(s) for n, s in zip(names, np.random.SeedSequence(seed).spawn(4))}


def input_shape(config: Config) -> tuple[int, ...]:
    shape = config.spec.model.input
    return (shape,) if isinstance(shape, int) else tuple(shape)


def build_network(config: Config, dtype=None, rng: np.random.Generator | None = None) -> Network:
    """Layers, loss and penalties from the config; parameters drawn from rng (default: the
    config's seed) with the config's initializer. dtype overrides config.dtype (gradcheck: float64)."""
    if config.auto_sizes:
        raise config.error(config.auto_sizes[0], "is auto: it comes from the training data, so this needs "
                                                 "data.train (or give the size)")
    layers = [block.build() for block in config.spec.model.layers]
    try:
        regularization = {k: v for k, v in config.spec.regularization.model_dump().items() if v is not None}
        net = Network(layers, input_shape(config), LOSSES.build(config.spec.loss), *make_penalties(regularization),
                      dtype=dtype or config.spec.dtype)
    except BuildError as e:
        raise config.error(e.key, str(e)) from None
    except (MemoryError, OverflowError, ValueError) as e:  # sizes beyond what can be allocated
        raise config.error("model", f"this network cannot be built here ({type(e).__name__}: {e}); "
                                    f"check the sizes in model.input and model.layers") from None
    rng = np.random.default_rng(config.spec.seed) if rng is None else rng
    net.init_params(rng, config.spec.model.init)
    net.set_rng(rng)
    return net


def prepare(config: Config, rngs: dict | None = None, *, train_table: Table | None = None) -> Prepared:
    """Build the network and read, split and preprocess the training data.

    train_table: the training rows already in memory, used instead of reading data.train: a
    Table as read_table or read_frame returns it (raw features, text category columns in
    `categorical`, read with this config's data.categorical and data.impute), target included."""
    rngs = rngs or rng_streams(config.spec.seed)
    net = None if config.auto_sizes else build_network(config, rng=rngs["init"])  # its mistakes first
    d = config.spec.data
    if not d.train and train_table is None:
        raise config.error("data.train", "is required to train: a CSV, NPZ or NPY file, or - for stdin")
    task = config.task
    table = train_table if train_table is not None else \
        read_table(d.train, d.target, d.features, need_target=not task.reconstructs, drop=d.drop,
                   header=d.header, delimiter=d.delimiter, categories=dict.fromkeys(d.categorical),
                   auto_categories=True, missing=d.impute != "error")
    if table.target is None and not task.reconstructs:
        raise config.error("data.target", f"{table.source} has no target")
    labels = table.target if task.labelled else None
    if d.val:
        train_rows = val_rows = None
    else:
        train_rows, val_rows = split_indices(len(table.X), d.validation_split, rngs["split"], labels)
        if d.validation_split > 0 and (len(val_rows) == 0 or len(train_rows) == 0):
            raise config.error("data.validation_split",
                               f"{d.validation_split:g} of {table.source}'s {len(table.X)} rows leaves "
                               f"{len(train_rows)} for training and {len(val_rows)} for validation; "
                               f"both need at least one")
        if len(val_rows) == 0:
            train_rows = None
    categories = fit_categories(table)
    fill = fit_fill(table, train_rows, d.impute)
    gaps = count_gaps(table) if fill is not None else 0
    table = encode(table, fill if gaps else None, categories)      # (no second scan for gaps)
    if net is None:
        config = config.with_sizes(*sizes_from(table, task))
        net = build_network(config, rng=rngs["init"])
    net.set_rng(rngs["layers"])
    lazy = isinstance(table.X, np.memmap)
    if not lazy or d.normalize != "none":  # lazy data without statistics is checked batch by batch
        check_table_finite(table)
    classes = None
    if task.binary and np.asarray(table.target).dtype.kind in "US":
        classes = class_labels(table.target)
        if len(classes) != 2:
            raise DataError(f"{table.source}: binary_cross_entropy needs two labels in the target column "
                            f"{table.target_name!r}, found {len(classes)} ({_preview(classes)}); "
                            f"for more classes use loss: cross_entropy")
    if task.labelled:
        classes = class_labels(table.target)
        units = net.output_shape[-1]
        if units != len(classes):
            last = len(config.spec.model.layers) - 1
            raise config.error(f"model.layers[{last}].units",
                               f"the output layer has {units} units but {table.source} has "
                               f"{len(classes)} classes ({_preview(classes)}); set units: {len(classes)}")
    val_table = None
    if d.val:
        val_table = encode(read_table(d.val, d.target, d.features, need_target=not task.reconstructs,
                                      drop=d.drop, header=d.header, delimiter=d.delimiter, columns=table.columns,
                                      categories=categories, missing=d.impute != "error"), fill, categories)
        if not isinstance(val_table.X, np.memmap):
            check_table_finite(val_table)
    fit_rows = table.X if train_rows is None else table.X[train_rows]
    prep = Preprocessing.fit(fit_rows if d.normalize != "none" else table.X[:1], d.normalize,
                             classes, net.input_shape)
    prep.impute, prep.fill, prep.categories = d.impute, fill, categories or None
    columns = Columns(table.columns, table.target_name or None)
    dtype = net.dtype
    train = make_split(table, prep, task, dtype, rows=train_rows)
    if val_table is not None:
        val = make_split(val_table, prep, task, dtype)
    elif train_rows is not None:
        val = make_split(table, prep, task, dtype, rows=val_rows)
    else:
        val = None
    for split in (train, val):
        if split is not None and split.y is not None and split.y.shape[1:] != net.output_shape:
            raise NetcliError(f"{split.source}: targets have shape {list(split.y.shape[1:])} per example "
                              f"but the network outputs {list(net.output_shape)}")
    if config.spec.model.init_from:
        load_weights_into(net, config.spec.model.init_from)
    test = load_eval_split(config, prep, task, d.test, dtype, columns=columns) if d.test else None
    return Prepared(config, net, train, val, prep, task, test, columns, gaps)


def sized(config: Config) -> Config:
    """The config with its auto sizes taken from its training data (as it is, when it has none)."""
    return prepare(config).config if config.auto_sizes else config


def sizes_from(table, task: Task) -> tuple[tuple[int, ...], int]:
    """(per-example input shape, output units) a table implies: its feature columns (or array
    shape), and its number of classes, target width, or input width (autoencoders)."""
    shape = tuple(int(v) for v in table.X.shape[1:])
    if task.labelled:
        units = len(class_labels(table.target))
    elif task.reconstructs or table.target is None:
        units = int(np.prod(shape))
    else:
        units = int(np.prod(np.asarray(table.target).shape[1:]))
    return shape, units


def _preview(values, n=6) -> str:
    shown = ", ".join(map(str, values[:n]))
    return shown + (", ..." if len(values) > n else "")


def load_eval_split(config: Config, prep: Preprocessing, task: Task, path: str, dtype,
                    need_target: bool = True, stdin=None, columns: Columns | None = None,
                    keep: list[str] = ()) -> Split:
    """A test or prediction file, preprocessed with the run's training statistics. With the
    training columns, a file with a header has its features taken by name (extra columns are
    ignored; `keep` names those to carry through, in Split.extra)."""
    d = config.spec.data
    by_name = columns is not None and columns.features is not None
    n_features = len(columns.features) if by_name else int(np.prod(prep.input_shape))   # raw columns
    target = columns.target if by_name and columns.target and d.target is None else d.target
    table = read_table(path, target, d.features, need_target=need_target and not task.reconstructs,
                       stdin=stdin, n_features=n_features, drop=d.drop, header=d.header,
                       delimiter=d.delimiter, columns=columns.features if by_name and d.header else None,
                       categories=prep.categories, missing=prep.impute != "error",
                       positional_names=None if by_name and d.header else columns.features if by_name else None)
    for name in keep:
        if name not in table.extra:
            raise DataError(f"{table.source}: --keep {name}: no such column besides the features and the "
                            f"target (others: {', '.join(table.extra) or 'none'})")
    table = prep.encode(table)
    if not isinstance(table.X, np.memmap):
        check_table_finite(table)
    split = make_split(table, prep, task, dtype)
    split.extra = {name: table.extra[name] for name in keep}
    return split
