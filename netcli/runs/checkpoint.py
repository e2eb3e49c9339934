"""checkpoint.npz: everything `train --resume` needs to carry on exactly where a run stopped.

    theta                 the flat parameter vector
    opt.<name>            the optimizer's state vectors and step count (first-order optimizers)
    rng.shuffle           the minibatch-order generator's state (JSON)
    rng.layers            each layer's generator state (dropout, corruption; JSON)
    epoch, step           epochs and optimizer steps done
    es.best, es.best_epoch, es.bad_epochs, es.best_theta
                          early stopping's record (best is NaN before the first validation)
    metrics               the metrics.jsonl records up to this epoch (JSON)
    wall_seconds          training time so far, over every session of the run
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from netcli.errors import NetcliError
from netcli.files import load_npz, save_npz, shown_array

CHECKPOINT = "checkpoint.npz"
REQUIRED = ("theta", "epoch", "step", "rng.shuffle", "rng.layers", "es.best", "es.best_epoch",
            "es.bad_epochs", "metrics")


@dataclass
class Progress:
    """Where training stands, besides the parameters and the optimizer's state."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    best_theta: np.ndarray | None = None
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0


@dataclass
class Checkpoint:
    """One moment of training, as checkpoint.npz holds it."""

    theta: np.ndarray
    optimizer: dict[str, np.ndarray]
    rng_shuffle: dict
    rng_layers: list
    progress: Progress

    @classmethod
    def take(cls, theta, optimizer_state: dict, shuffle: np.random.Generator, layer_states: list,
             progress: Progress) -> "Checkpoint":
        """A copy of the live state, safe from later steps."""
        return cls(theta.copy(), {k: np.array(v, copy=True) for k, v in optimizer_state.items()},
                   shuffle.bit_generator.state, layer_states,
                   replace(progress, history=list(progress.history)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        pr = self.progress
        arrays = {"theta": self.theta, "epoch": np.array(pr.epoch), "step": np.array(pr.step),
                  "rng.shuffle": np.array(json.dumps(self.rng_shuffle)),
                  "rng.layers": np.array(json.dumps(self.rng_layers)),
                  "es.best": np.array(np.nan if pr.best is None else pr.best),
                  "es.best_epoch": np.array(pr.best_epoch), "es.bad_epochs": np.array(pr.bad_epochs),
                  "metrics": np.array(json.dumps(pr.history)), "wall_seconds": np.array(pr.wall_seconds)}
        arrays.update({f"opt.{k}": np.asarray(v) for k, v in self.optimizer.items()})
        if pr.best_theta is not None:
            arrays["es.best_theta"] = pr.best_theta
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], source: str) -> "Checkpoint":
        """The checkpoint an NPZ's arrays hold. Each array must be the kind of value to_arrays
        writes; one that is not is a NetcliError that names its key (the file is damaged)."""
        f = _Fields(arrays, source)
        theta = f.vector("theta")
        epoch, history = f.count("epoch"), f.json("metrics")
        if not _epoch_records(history):
            raise f.damaged("metrics", "is not a list of epoch records (objects with epoch 1, 2, ... and "
                                       "numbers)")
        if epoch != len(history):
            raise f.damaged("epoch", f"is {epoch}, but metrics holds {len(history)} epochs")
        best, best_epoch, bad_epochs = f.number("es.best"), f.count("es.best_epoch"), f.count("es.bad_epochs")
        if best_epoch > epoch or bad_epochs > epoch:
            raise f.damaged("es.best_epoch" if best_epoch > epoch else "es.bad_epochs",
                            f"is {max(best_epoch, bad_epochs)}, after the checkpoint's epoch {epoch}")
        if math.isnan(best) != (best_epoch == 0) or math.isinf(best):   # a best is a finite epoch's value
            raise f.damaged("es.best", f"is {best} for es.best_epoch {best_epoch}")
        wall = f.number("wall_seconds", 0.0)
        if not (math.isfinite(wall) and wall >= 0):
            raise f.damaged("wall_seconds", f"is {wall}, not a time")
        shuffle, layers = f.json("rng.shuffle"), f.json("rng.layers")
        if not isinstance(shuffle, dict):
            raise f.damaged("rng.shuffle", "is not a generator's state (a JSON object)")
        if not isinstance(layers, list) or not all(s is None or isinstance(s, dict) for s in layers):
            raise f.damaged("rng.layers", "is not a list of generator states (JSON objects or null)")
        best_theta = f.vector("es.best_theta", theta.size) if "es.best_theta" in arrays else None
        progress = Progress(epoch, f.count("step"), None if math.isnan(best) else best, best_epoch, bad_epochs,
                            best_theta, history, wall)
        # opt.t: the optimizer's step count; every other opt.<name>, a state vector shaped like theta
        optimizer = {k[4:]: np.array(f.count(k)) if k == "opt.t" else f.vector(k, theta.size)
                     for k in arrays if k.startswith("opt.")}
        return cls(theta, optimizer, shuffle, layers, progress)


class _Fields:
    """checkpoint.npz's arrays, each taken as the kind of value to_arrays writes, or refused by key."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str):
        self.arrays, self.source = arrays, source

    def damaged(self, key: str, what: str) -> NetcliError:
        return NetcliError(f"{self.source}: {key} {what}; the file is damaged or not netcli's")

    def _scalar(self, key: str, kinds: str, what: str) -> np.ndarray:
        a = np.asarray(self.arrays[key])
        if a.ndim != 0 or a.dtype.kind not in kinds:
            raise self.damaged(key, f"is {shown_array(a)}, not {what}")
        return a

    def count(self, key: str) -> int:
        """A non-negative integer (epoch, step, es.best_epoch, es.bad_epochs)."""
        value = int(self._scalar(key, "iu", "a count"))
        if value < 0:
            raise self.damaged(key, f"is {value}, not a count")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        if default is not None and key not in self.arrays:
            return default
        return float(self._scalar(key, "iuf", "a number"))

    def vector(self, key: str, size: int | None = None) -> np.ndarray:
        """A flat vector of finite floats (theta; es.best_theta and the optimizer's state, `size`
        values like theta)."""
        a = np.asarray(self.arrays[key])
        if a.ndim != 1 or a.dtype.kind != "f":
            raise self.damaged(key, f"is {shown_array(a)}, not a vector of parameters")
        if size is not None and a.size != size:
            raise self.damaged(key, f"has {a.size} values, theta {size}")
        if not np.all(np.isfinite(a)):
            raise self.damaged(key, "holds NaN or Inf")
        return a

    def json(self, key: str):
        text = self._scalar(key, "U", "JSON text")
        try:
            return json.loads(str(text))
        except ValueError as e:
            raise self.damaged(key, f"is not JSON ({e})") from None


def _epoch_records(history) -> bool:
    """Whether history holds metrics.jsonl's records: objects whose epochs count 1, 2, ... and
    whose values are numbers (lr null for a full-batch optimizer)."""
    return isinstance(history, list) and all(
        isinstance(r, dict) and type(r.get("epoch")) is int and r["epoch"] == i and _real(r.get("loss"))
        and all(v is None or _real(v) for v in r.values()) for i, r in enumerate(history, 1))


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    save_npz(path, checkpoint.to_arrays())


def load_checkpoint(path: Path) -> Checkpoint:
    return Checkpoint.from_arrays(load_npz(path, REQUIRED), str(path))
