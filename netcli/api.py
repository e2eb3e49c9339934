"""A trained run loaded back: the network, its preprocessing, predict and evaluate.
Nothing here trains: predicting needs the network, the weights and the run's statistics only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcli.config import Config, load_config
from netcli.data import Columns, Preprocessing, Split, Table
from netcli.readers import read_frame
from netcli.threads import AUTO, blas_threads, for_inference
from netcli.errors import NetcliError
from netcli.metrics import confusion, evaluate, per_class
from netcli.nn import Network
from netcli.nn.tasks import Task
from netcli.prepare import build_network, load_eval_split
from netcli.runs import resolve_run
from netcli.runs.weights import WEIGHTS, load_weights_into, read_meta


@dataclass
class Run:
    path: Path
    config: Config
    net: Network
    prep: Preprocessing
    task: Task
    columns: Columns | None = None     # the training file's column names: other files are read by name
    summary: dict | None = None
    threads: int | str = AUTO          # BLAS threads for outputs (netcli.threads.for_inference)

    @property
    def run_dir(self) -> Path:
        return self.path

    @property
    def classes(self):
        return self.prep.classes

    def outputs(self, X, batch_size: int = 1024, layer: int | None = None) -> np.ndarray:
        """Raw feature rows -> network outputs (probabilities for classification);
        layer=N gives layer N's activations instead (an autoencoder's code). X: an array
        (m, features) in the training columns' order, or a pandas DataFrame, its features
        taken by name (other columns ignored)."""
        table = self.prep.encode(self.raw_table(X))
        X = self.prep.inputs(table.X, self.net.dtype, table.source)
        return self.network_outputs(X, batch_size, layer)

    def raw_table(self, X) -> Table:
        """Rows given in memory, read as a data file would be: a DataFrame by column name
        (category columns checked against the run's), an array by position."""
        if hasattr(X, "columns") and hasattr(X, "iloc"):     # a pandas DataFrame
            named = self.columns.features if self.columns is not None else None
            return read_frame(X, "input", need_target=False, columns=named, categories=self.prep.categories,
                              missing=self.prep.impute != "error", source="input")
        if self.prep.categories:
            raise NetcliError(f"this run one-hot encodes {', '.join(self.prep.categories)}: pass a pandas "
                              f"DataFrame with the feature columns by name, not an array")
        return Table(np.asarray(X), None, "input")

    def network_outputs(self, X: np.ndarray, batch_size: int = 1024, layer: int | None = None) -> np.ndarray:
        """Preprocessed rows (m, *input_shape) -> outputs, batch_size rows at a time; layer=N:
        layer N's activations."""
        self.check_layer(layer)
        parts = []
        with blas_threads(for_inference(self.threads, len(X), len(self.net.theta)).count):
            for s in range(0, len(X), batch_size):
                if layer is None:
                    parts.append(self.net.outputs_and_loss(X[s:s + batch_size])[0])
                else:
                    parts.append(self.net.forward(X[s:s + batch_size], upto=layer))
        return np.concatenate(parts) if parts else np.empty((0, *self.net.output_shape))

    def check_layer(self, layer: int | None, name: str = "layer") -> None:
        """A layer index the model has (None: the output); `name` is how the caller called it."""
        if layer is not None and not 0 <= layer < len(self.net.layers):
            raise NetcliError(f"{name} {layer}: the model has layers 0..{len(self.net.layers) - 1}")

    def decode(self, out: np.ndarray) -> np.ndarray:
        """Outputs -> answers: class labels for classification, 0/1 for binary, values otherwise."""
        return self.task.decode(out, self.classes)

    def predict(self, X: np.ndarray, proba: bool = False) -> np.ndarray:
        out = self.outputs(X)
        return out if proba else self.decode(out)

    def split(self, path: str, need_target: bool = True, stdin=None, keep: list[str] = ()) -> Split:
        """A file to evaluate or predict on, its features taken by name where it has a header."""
        return load_eval_split(self.config, self.prep, self.task, path, self.net.dtype, need_target, stdin,
                               self.columns, keep)

    def split_outputs(self, split: Split, layer: int | None = None, limit: int | None = None):
        """(inputs, outputs) of a split's first `limit` rows (all by default)."""
        X, _ = split.take(np.arange(len(split) if limit is None else min(limit, len(split))))
        return X, self.network_outputs(X, layer=layer)

    def evaluate(self, split: Split) -> dict:
        """loss plus accuracy, per-class scores and confusion (classification) or mse, mae, r2."""
        with blas_threads(for_inference(self.threads, len(split), len(self.net.theta)).count):
            result = evaluate(self.net, split, self.task)
        result["examples"] = len(split)
        if self.task.labelled:
            X, y = split.take(np.arange(len(split)))
            pred = self.network_outputs(X).argmax(-1)
            cm = confusion(pred, y.argmax(-1), len(self.classes))
            result["per_class"] = per_class(cm, self.classes)
            result["confusion"] = cm.tolist()
            result["classes"] = [c.item() for c in self.classes]
        return result


def load_run(path: str | Path) -> Run:
    path = resolve_run(path)
    config = load_config(path / "config.yaml")
    net = build_network(config)
    weights = path / WEIGHTS
    if not weights.exists():
        raise NetcliError(f"{path}: no {WEIGHTS} yet (is the run still training, or did it fail "
                          f"before its first epoch?)")
    arrays = load_weights_into(net, weights)
    prep, task, columns = read_meta(weights, arrays, outputs=net.output_shape[-1])
    return Run(path, config, net, prep, task, columns)
