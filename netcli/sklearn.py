"""scikit-learn estimators built on netcli's config: NetClassifier and NetRegressor.

    from netcli.sklearn import NetClassifier
    clf = NetClassifier(layers=[{"type": "dense", "units": 64, "activation": "relu"}],
                        optimizer={"type": "adam", "lr": 0.01}, epochs=20, normalize="standard")
    clf.fit(X_train, y_train).score(X_test, y_test)
    NetClassifier("configs/digits_mlp.yaml", epochs=5)   # a config file; arguments override its keys

They are ordinary estimators: fit / predict / predict_proba (classifier) / score, get_params and
set_params, clone, Pipeline, GridSearchCV, cross_val_score, pickle; they pass scikit-learn's
`check_estimator` (tests/test_sklearn.py; EXPECTED_FAILED_CHECKS lists what they do not do).

**The config.** `config` is a YAML file or a dict of its keys; every other argument sets one
config key (ARGUMENTS below) and replaces what the config has there, as `--set` does; None
keeps the config's value, or netcli's default. `layers` are the hidden layers: after them
comes the output layer, `{type: dense, units: auto, activation: ...}` with the activation the
loss is fused with (softmax for cross_entropy, sigmoid for binary_cross_entropy, linear for
mse), its units taken from the data (the classes, the target's width), unless the list ends
with an output layer already (a block with `units: auto`, or with that activation). A config
file's `model.layers` are its whole model, as the CLI reads them. With neither, the hidden
layers are one dense layer of 100 ReLU units. The data section's file keys (train, val,
test, target, features, drop, header, delimiter) are not used: fit's X and y are the data;
its preprocessing keys (normalize, validation_split, impute, categorical, shuffle) are.
`overrides=("training.clip_grad_norm=1.0", ...)` sets any other key, as `--set`. A mistake is
a ParameterError (a ValueError) raised by fit, naming the argument and the key:
`NetClassifier(optimizer=...): optimizer.lr: must be > 0.0, got -1`.

**The data.** X is an array (n_samples, n_features) of numbers, taken by position, or a pandas
DataFrame, read as netcli reads a Parquet file: its columns are the features, by name; columns
of text (and those named in `categorical`) are one-hot encoded with the categories of the
training rows; at predict time its features are taken by name, whatever their order, and
other columns are ignored (a missing one, or an unseen category, is an error). y: class
labels of any kind (classifier: `classes_` is np.unique(y)) or numbers, one or more columns
(regressor). Mistakes in X and y are InputErrors (a ValueError).

**Where the run goes: nowhere, by default.** fit trains in memory and writes no file: no run
directory, no checkpoint (a search fits hundreds of models, and an estimator that litters the
disk surprises). The trained run is `run_` (a netcli.api.Run: its network, preprocessing and
`outputs(X, layer=...)`), the per-epoch metrics `history_`; a pickled estimator carries its
weights. `run_dir="runs/x"` keeps the run instead, as `netcli train --run-dir runs/x --overwrite`
makes it (config.yaml, weights.npz, metrics, checkpoint), for `netcli eval`, `predict`, `plot`;
refitting replaces it, so give each model its own run_dir (and none to a search's candidates:
fit the best one again with a run_dir).

**Randomness.** `random_state` (scikit-learn's name) or `seed` (netcli's) is the config's seed:
an int, a RandomState or Generator (a seed is drawn from it), or None for the config's seed (0
by default). The same seed gives the same predictions, and the same numbers as `netcli train`
on the same rows in a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SKLEARN_INSTALL = "pip install 'netcli[sklearn]'"

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (check_array, check_consistent_length, check_is_fitted, column_or_1d,
                                          validate_data)
except ImportError as e:   # scikit-learn missing, or older than 1.6 (validate_data, __sklearn_tags__)
    raise ImportError(f"netcli.sklearn needs scikit-learn 1.6 or later ({e}); install it with: "
                      f"{SKLEARN_INSTALL}") from e

from netcli.api import Run
from netcli.config import (AUTO, Config, ConfigSpec, absolute_paths, apply_override, config_from_mapping,
                           load_mapping, parse_path, read_config_text, validate)
from netcli.errors import ConfigError, DataError, JobFailed, NetcliError
from netcli.files import plain
from netcli.log import Reporter
from netcli.nn import LAYERS, LOSSES
from netcli.prepare import build_network, prepare, rng_streams
from netcli.readers import Table, read_frame
from netcli.registry import UnknownName
from netcli.runs.weights import read_meta, weight_arrays
from netcli.training import Trainer

__all__ = ["NetClassifier", "NetRegressor", "ParameterError", "InputError", "ARGUMENTS",
           "EXPECTED_FAILED_CHECKS"]

# constructor argument -> the config key it sets
ARGUMENTS = {
    "layers": "model.layers", "init": "model.init", "loss": "loss", "optimizer": "optimizer",
    "lr": "optimizer.lr", "epochs": "training.epochs", "batch_size": "training.batch_size",
    "schedule": "training.schedule", "early_stopping": "training.early_stopping",
    "l2": "regularization.l2", "l1": "regularization.l1",
    "normalize": "data.normalize", "validation_split": "data.validation_split",
    "categorical": "data.categorical", "impute": "data.impute", "dtype": "dtype",
    "random_state": "seed", "seed": "seed",
}
DATA_FILE_KEYS = ("train", "val", "test", "target", "features", "drop", "header", "delimiter")
DEFAULT_HIDDEN = ({"type": "dense", "units": 100, "activation": "relu"},)

# scikit-learn checks these estimators are expected to fail, with why; for parametrize_with_checks
# and check_estimator (expected_failed_checks=). None today: every check of check_estimator passes.
# Not in check_estimator, and failing by design: check_dataframe_column_names_consistency, which
# wants a DataFrame with its columns reordered refused; netcli takes them by name, as the CLI does.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


class ParameterError(ConfigError, ValueError):
    """A constructor argument, or the config it builds on, is wrong: netcli's message, naming the
    argument and the config key; a ValueError, as scikit-learn raises for bad parameters."""


class InputError(DataError, ValueError):
    """X or y cannot be trained on or predicted from: netcli's message; a ValueError, as
    scikit-learn raises for bad input."""


class _NetEstimator(BaseEstimator):
    """What NetClassifier and NetRegressor share: the config from the arguments, training, outputs."""

    _default_loss = "mse"

    def __init__(self, config=None, *, layers=None, loss=None, optimizer=None, lr=None, epochs=None,
                 batch_size=None, l2=None, l1=None, normalize=None, validation_split=None,
                 early_stopping=None, schedule=None, init=None, dtype=None, categorical=None, impute=None,
                 overrides=None, random_state=None, seed=None, run_dir=None, verbose=False):
        self.config = config
        self.layers = layers
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.l1 = l1
        self.normalize = normalize
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.schedule = schedule
        self.init = init
        self.dtype = dtype
        self.categorical = categorical
        self.impute = impute
        self.overrides = overrides
        self.random_state = random_state
        self.seed = seed
        self.run_dir = run_dir
        self.verbose = verbose

    # the config ------------------------------------------------------------------

    def _config(self) -> tuple[Config, dict[tuple, str]]:
        """The validated config -> (config, {config key path: the argument that set it})."""
        name = type(self).__name__
        given: dict[tuple, str] = {}
        with _sklearn_errors(name, given):
            data, lines, source = self._base_mapping()
            for arg, key in ARGUMENTS.items():
                value = getattr(self, arg)
                if value is None or arg in ("layers", "random_state", "seed"):
                    continue
                if arg == "early_stopping" and isinstance(value, bool):
                    value = {} if value else None        # True: netcli's defaults; False: none
                if arg == "lr" and data.get("optimizer") is None:
                    data["optimizer"] = _default_optimizer()   # the learning rate of netcli's default
                _put(data, parse_path(key), plain(value))
                given[parse_path(key)] = arg
            seed = self._seed()
            if seed is not None:
                data["seed"] = seed
                given[("seed",)] = "random_state" if self.random_state is not None else "seed"
            data.setdefault("loss", self._default_loss)
            self._put_layers(data, given)
            for item in self.overrides or ():
                given[apply_override(data, item)] = "overrides"
            absolute_paths(data, Path.cwd())
            if isinstance(data.get("data"), dict):
                for key in DATA_FILE_KEYS:
                    data["data"].pop(key, None)
            config = validate(data, source, lines, set(given))
            self._check_loss(config)
        return config, given

    def _base_mapping(self) -> tuple[dict, dict, str]:
        """(the config's mapping, its lines, its source) before the arguments are applied."""
        if self.config is None:
            return {}, {}, type(self).__name__
        if isinstance(self.config, Mapping):
            return plain(self.config), {}, "<dict>"
        path = os.fspath(self.config)
        data, lines = load_mapping(read_config_text(path), path)
        absolute_paths(data, Path(path).parent)
        return data, lines, path

    def _seed(self):
        seeds = [_seed_of(v) for v in (self.random_state, self.seed) if v is not None]
        if len(seeds) == 2 and seeds[0] != seeds[1]:
            raise ConfigError(f"{type(self).__name__}: random_state={self.random_state!r} and "
                              f"seed={self.seed!r}: both set the config's seed; give one of them")
        return seeds[0] if seeds else None

    def _put_layers(self, data: dict, given: dict) -> None:
        """model.layers: the hidden layers given (or the default ones) and the output layer, unless
        the config's own layers are used as they are."""
        model = data.get("model")
        if self.layers is None and isinstance(model, dict) and "layers" in model:
            return
        layers = plain(DEFAULT_HIDDEN if self.layers is None else self.layers)
        if self.layers is not None:
            given[("model", "layers")] = "layers"
        if isinstance(layers, list):
            activation = _output_activation(data.get("loss"))
            if not (layers and _is_output(layers[-1], activation)):
                layers.append({"type": "dense", "units": AUTO, "activation": activation or "linear"})
        _put(data, ("model", "layers"), layers)

    def _check_loss(self, config: Config) -> None:
        """The loss must be one this kind of estimator answers with."""

    # training --------------------------------------------------------------------

    def fit(self, X, y):
        """Train on X (an array, or a DataFrame: columns by name, text columns one-hot) and y."""
        config, given = self._config()
        with _sklearn_errors(type(self).__name__, given):
            table = self._train_table(X, y, config)
            if self.run_dir is None:
                run, history = _train_in_memory(config, table, self.verbose)
            else:
                run, history = _train_into(config, table, self.run_dir, self.verbose)
        self._check_fitted_run(run)
        self.run_ = run
        self.history_ = history
        self.n_iter_ = run.summary["epochs"]
        self.run_dir_ = None if self.run_dir is None else Path(run.path)
        return self

    def _train_table(self, X, y, config: Config) -> Table:
        """X and y, checked as scikit-learn checks them, as the Table netcli trains on."""
        d = config.spec.data
        missing = d.impute != "error"
        y_name = getattr(y, "name", None)
        if _is_frame(X):
            validate_data(self, X, y, skip_check_array=True)   # n_features_in_, feature_names_in_; y given
            y = self._checked_y(check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True))
            check_consistent_length(X, y)
            table = read_frame(X, "input", need_target=False, categories=dict.fromkeys(d.categorical),
                               auto_categories=True, missing=missing, source="X")
        else:
            X, y = validate_data(self, X, y, dtype=np.float64,
                                 ensure_all_finite="allow-nan" if missing else True, **self._y_checks)
            y = self._checked_y(y)
            table = Table(np.asarray(X).view(np.ndarray), None, "X")
        target_name = y_name if isinstance(y_name, str) else ""    # a Series' name: the run's target column
        return replace(table, target=self._target(y, config), target_name=target_name)

    # what NetClassifier and NetRegressor do their own way
    _y_checks: dict = {}            # validate_data's checks of y beside X

    def _checked_y(self, y):
        """y checked (and the fitted attributes it gives set)."""
        return y

    def _target(self, y, config: Config) -> np.ndarray:
        """y as netcli's target column."""
        return y

    def _check_fitted_run(self, run: Run) -> None:
        """Our own consistency checks on a trained run."""

    # outputs ---------------------------------------------------------------------

    def _outputs(self, X) -> np.ndarray:
        """The network's outputs for X, (n_samples, outputs) float64."""
        check_is_fitted(self, "run_")
        run = self.run_
        with _sklearn_errors(type(self).__name__, {}):
            if _is_frame(X):
                if not hasattr(self, "feature_names_in_"):   # fitted on columns by position
                    validate_data(self, X, reset=False, skip_check_array=True)
                out = run.outputs(X)
            else:
                X = validate_data(self, X, reset=False, dtype=np.float64,
                                  ensure_all_finite="allow-nan" if run.prep.fill is not None else True)
                out = run.outputs(np.asarray(X).view(np.ndarray))
        return np.asarray(out, dtype=np.float64).reshape(len(out), -1)

    # pickling: the fitted run travels as its config and weights ---------------------

    def __getstate__(self):
        state = dict(super().__getstate__())
        if isinstance(state.get("run_"), Run):
            state["run_"] = _PackedRun.of(state["run_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("run_"), _PackedRun):
            state = {**state, "run_": state["run_"].unpack()}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.impute in ("mean", "median")
        return tags


class NetClassifier(ClassifierMixin, _NetEstimator):
    """A netcli network as a scikit-learn classifier (softmax cross-entropy by default).

    Parameters are config keys (netcli.sklearn.ARGUMENTS; None: the config's value or netcli's
    default): config (a YAML path or a dict), layers (the hidden layers), loss (cross_entropy,
    or binary_cross_entropy for two classes), optimizer, lr, epochs, batch_size, l2, l1, normalize,
    validation_split, early_stopping (True, False or its block), schedule, init, dtype,
    categorical, impute, overrides ("key=value" strings), random_state / seed; run_dir (keep the
    run there; default: no files), verbose (progress on stderr).

    Attributes after fit: classes_, n_features_in_, feature_names_in_ (a DataFrame's column
    names, when all are strings), run_ (the trained netcli.api.Run), history_ (metrics per
    epoch), n_iter_ (epochs trained), run_dir_ (None when no run was kept).
    """

    _default_loss = "cross_entropy"

    def _check_loss(self, config):
        task = config.task
        if not task.classifies:
            raise config.error("loss", f"{config.spec.loss!r} is not a classification loss; "
                                       f"{type(self).__name__} trains with cross_entropy or "
                                       f"binary_cross_entropy")

    def _checked_y(self, y):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise InputError(f"{type(self).__name__}: y holds 1 class ({self.classes_[0]!r}); a classifier "
                             f"needs at least 2 classes")
        return y

    def _target(self, y, config):
        """Class labels as netcli reads a target column: numbers or text, in np.unique's order.
        binary_cross_entropy: text labels, or else 0/1 (is it classes_[1])."""
        labels = np.asarray(y.tolist()) if y.dtype.kind == "O" else y
        labels = labels if labels.dtype.kind in "biufUS" else labels.astype(str)
        if config.task.binary and labels.dtype.kind not in "US":
            if len(self.classes_) != 2:
                raise InputError(f"{type(self).__name__}: binary_cross_entropy needs 2 classes in y, found "
                                 f"{len(self.classes_)}; for more use loss='cross_entropy'")
            return (y == self.classes_[1]).astype(np.float64)
        return labels

    def _check_fitted_run(self, run):
        # netcli's classes and classes_ are the same labels in the same (sorted) order
        assert run.classes is None or len(run.classes) == len(self.classes_), (run.classes, self.classes_)

    def predict_proba(self, X) -> np.ndarray:
        """(n_samples, n_classes) probabilities, columns in classes_' order."""
        out = self._outputs(X)
        if self.run_.task.binary:
            return np.column_stack([1.0 - out[:, 0], out[:, 0]])
        return out

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (labels from classes_)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class NetRegressor(RegressorMixin, _NetEstimator):
    """A netcli network as a scikit-learn regressor (mean squared error, linear outputs).

    Parameters as NetClassifier's (loss: mse). y: one target (n_samples,) or several
    (n_samples, n_targets); predict returns the same shape.

    Attributes after fit: n_features_in_, feature_names_in_, n_outputs_, run_, history_,
    n_iter_, run_dir_ (as NetClassifier's).
    """

    _default_loss = "mse"
    _y_checks = {"multi_output": True, "y_numeric": True}

    def _check_loss(self, config):
        task = config.task
        if task.classifies or task.reconstructs:
            raise config.error("loss", f"{config.spec.loss!r} is not a regression loss; "
                                       f"{type(self).__name__} trains with mse")

    def _checked_y(self, y):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            y = check_array(y, ensure_2d=False, dtype=np.float64)
        self._one_target = y.ndim == 1
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return y.astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """(n_samples,) for one target, (n_samples, n_targets) for several, as y was."""
        out = self._outputs(X)
        return out[:, 0] if self._one_target else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# -- training without files ------------------------------------------------------------

class _NoFiles:
    """The run directory of an in-memory fit: what the Trainer writes to it (metrics, summary,
    receipt) is dropped, and the paths it names lie under /dev/null, so that nothing can be
    written there; the Trainer keeps the history itself (progress.history)."""

    path = Path(os.devnull)

    def append_metrics(self, record: dict) -> None:
        pass

    def rewrite_metrics(self, records: list[dict]) -> None:
        pass

    def write_text(self, name: str, text: str) -> None:
        pass

    def write_json(self, name: str, obj) -> None:
        pass


class _InMemoryTrainer(Trainer):
    """The Trainer, keeping no files: no checkpoint (nothing resumes an in-memory fit), no
    weights.npz (the network itself is the result)."""

    def write_checkpoint(self) -> None:
        pass

    def write_weights(self) -> None:
        pass


def _train_in_memory(config: Config, table: Table, verbose: bool) -> tuple[Run, list[dict]]:
    """netcli.training.train's steps with the data in memory and no run directory."""
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs, train_table=table)
    reporter = Reporter(quiet=not verbose)
    reporter.info(f"read {prepared.describe()}")
    trainer = _InMemoryTrainer(prepared, _NoFiles(), reporter, rngs)
    try:
        summary = trainer.fit_on_threads()     # training.threads, as the CLI's train does
    except JobFailed as e:      # its message names the checkpoint an in-memory fit does not keep
        raise JobFailed(str(e).split(" The last good state")[0]) from None
    finally:
        reporter.stop()
    run = Run(None, prepared.config, prepared.net, prepared.prep, prepared.task, prepared.columns, summary)
    return run, list(trainer.progress.history)


def _train_into(config: Config, table: Table, run_dir, verbose: bool) -> tuple[Run, list[dict]]:
    """netcli.training.train into run_dir (replacing a run there), and the run loaded back."""
    from netcli.api import load_run
    from netcli.runs import RunDir
    from netcli.training import train

    result = train(config, run_dir=run_dir, overwrite=True, quiet=not verbose, train_table=table)
    run = load_run(result.run_dir)
    run.summary = result.summary
    return run, RunDir(result.run_dir).read_metrics()


@dataclass
class _PackedRun:
    """A fitted Run as plain values, for pickle: the resolved config and weights.npz's arrays."""

    config: dict
    arrays: dict
    path: str | None
    summary: dict | None

    @classmethod
    def of(cls, run: Run) -> "_PackedRun":
        return cls(run.config.as_dict(), weight_arrays(run.net, run.prep, run.task, run.columns),
                   None if run.path is None else str(run.path), run.summary)

    def unpack(self) -> Run:
        config = config_from_mapping(self.config, source="<pickled run>")
        net = build_network(config)
        for name, param in net.params.items():
            param[...] = self.arrays[name]
        prep, task, columns = read_meta(Path("<pickled run>"), self.arrays)
        path = None if self.path is None else Path(self.path)
        return Run(path, config, net, prep, task, columns, self.summary)


# -- helpers ---------------------------------------------------------------------------

def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")     # a pandas DataFrame


def _put(data: dict, path: tuple, value) -> None:
    """data[path[0]][path[1]]... = value, making the mappings on the way (a component named by
    a string, `optimizer: sgd`, becomes `{type: sgd}`, as --set does)."""
    for key in path[:-1]:
        if isinstance(data.get(key), str):
            data[key] = {"type": data[key]}
        elif not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


def _seed_of(value):
    """random_state / seed -> the config's seed: an int as it is, one drawn from a generator."""
    if isinstance(value, np.random.RandomState):
        return int(value.randint(np.iinfo(np.int32).max))
    if isinstance(value, np.random.Generator):
        return int(value.integers(2**63 - 1))
    return plain(value)


def _default_optimizer() -> str:
    """The optimizer a config without one trains with (adam)."""
    return ConfigSpec.model_fields["optimizer"].get_default(call_default_factory=True).type


def _output_activation(loss) -> str | None:
    """The output activation a loss is fused with (linear for one that has none)."""
    try:
        return LOSSES.get(loss).fused_activation or "linear"
    except (UnknownName, TypeError):
        return None          # an unknown loss: validation says so


def _is_output(block, activation: str | None) -> bool:
    """Whether a layer block is an output layer: its units auto, or the loss's activation."""
    if not isinstance(block, dict):
        return False
    if block.get("units") == AUTO:
        return True
    act = block.get("activation", _default_activation(block.get("type")))
    act = act.get("type") if isinstance(act, dict) else act
    return activation is not None and act == activation


def _default_activation(layer_type):
    import inspect
    try:
        parameter = inspect.signature(LAYERS.get(layer_type).__init__).parameters.get("activation")
    except (UnknownName, TypeError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


_SET_PLACE = re.compile(r"^--set (\S+?): ", re.M)


@contextmanager
def _sklearn_errors(name: str, given: dict[tuple, str]):
    """netcli's errors as scikit-learn's kinds: config mistakes as ParameterError, with the keys
    the arguments set named by their argument; data mistakes as InputError (both ValueErrors)."""
    try:
        yield
    except ConfigError as e:
        if isinstance(e, ParameterError):
            raise
        raise ParameterError(_SET_PLACE.sub(lambda m: _place(m, name, given), str(e))) from None
    except (JobFailed, KeyboardInterrupt):
        raise
    except NetcliError as e:
        if isinstance(e, InputError) or e.exit_code != 2:
            raise
        raise InputError(str(e)) from None


def _place(match, name: str, given: dict[tuple, str]) -> str:
    """'--set KEY: ' (a key an argument set) -> 'NetClassifier(ARGUMENT=...): '."""
    path = parse_path(match.group(1))
    for n in range(len(path), 0, -1):
        if path[:n] in given:
            return f"{name}({given[path[:n]]}=...): "
    return match.group(0)
