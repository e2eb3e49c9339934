"""A trained run loaded back: the network, its preprocessing, predict and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcli.config import Config, load_config
from netcli.data import Preprocessing, Split
from netcli.metrics import confusion, evaluate, per_class
from netcli.model import build_network
from netcli.nn import Network
from netcli.runs import load_npz, resolve_run
from netcli.training import load_eval_split, load_weights_into


@dataclass
class Run:
    path: Path
    config: Config
    net: Network
    prep: Preprocessing
    task: str
    summary: dict | None = None

    @property
    def run_dir(self) -> Path:
        return self.path

    @property
    def classes(self):
        return self.prep.classes

    def outputs(self, X: np.ndarray, batch_size: int = 1024, layer: int | None = None) -> np.ndarray:
        """Raw feature rows -> network outputs (probabilities for classification);
        layer=N gives layer N's activations instead (an autoencoder's code)."""
        X = self.prep.inputs(np.asarray(X), self.net.dtype, "input")
        return self._batched(X, batch_size, layer)

    def _batched(self, X, batch_size, layer=None):
        parts = []
        for s in range(0, len(X), batch_size):
            if layer is None:
                parts.append(self.net.outputs_and_loss(X[s:s + batch_size])[0])
            else:
                parts.append(self.net.forward(X[s:s + batch_size], upto=layer))
        return np.concatenate(parts) if parts else np.empty((0, *self.net.output_shape))

    def decode(self, out: np.ndarray) -> np.ndarray:
        """Outputs -> answers: class labels for classification, values otherwise."""
        if self.task == "classification":
            return self.classes[out.argmax(axis=-1)]
        if self.task == "binary":
            return (out > 0.5).astype(np.int64)
        return out

    def predict(self, X: np.ndarray, proba: bool = False) -> np.ndarray:
        out = self.outputs(X)
        return out if proba else self.decode(out)

    def split(self, path: str, need_target: bool = True, stdin=None) -> Split:
        return load_eval_split(self.config, self.prep, self.task, path, self.net.dtype, need_target, stdin)

    def evaluate(self, split: Split) -> dict:
        """loss plus accuracy, per-class scores and confusion (classification) or mse, mae, r2."""
        result = evaluate(self.net, split, self.task)
        result["examples"] = len(split)
        if self.task == "classification":
            X, y = split.take(np.arange(len(split)))
            pred = self._batched(X, 1024).argmax(-1)
            cm = confusion(pred, y.argmax(-1), len(self.classes))
            result["per_class"] = per_class(cm, self.classes)
            result["confusion"] = cm.tolist()
            result["classes"] = [c.item() for c in self.classes]
        return result


def load_run(path: str | Path) -> Run:
    path = resolve_run(path)
    config = load_config(path / "config.yaml")
    net = build_network(config)
    weights = path / "weights.npz"
    if not weights.exists():
        from netcli.errors import NetcliError
        raise NetcliError(f"{path}: no weights.npz yet (is the run still training, or did it fail "
                          f"before its first epoch?)")
    arrays = load_npz(weights, ("meta.normalize", "meta.input_shape", "meta.task"))
    load_weights_into(net, weights)
    prep = Preprocessing.from_arrays(arrays)
    return Run(path, config, net, prep, str(arrays["meta.task"]))
