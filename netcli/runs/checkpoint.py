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
from netcli.files import load_npz, save_npz

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
        try:
            best = float(arrays["es.best"])
            progress = Progress(int(arrays["epoch"]), int(arrays["step"]), None if math.isnan(best) else best,
                                int(arrays["es.best_epoch"]), int(arrays["es.bad_epochs"]),
                                arrays.get("es.best_theta"), json.loads(str(arrays["metrics"])),
                                float(arrays.get("wall_seconds", 0.0)))
            return cls(arrays["theta"], {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")},
                       json.loads(str(arrays["rng.shuffle"])), json.loads(str(arrays["rng.layers"])), progress)
        except (ValueError, TypeError, OverflowError) as e:
            raise NetcliError(f"{source}: cannot read it ({type(e).__name__}: {e}); the file is damaged "
                              f"or not netcli's") from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    save_npz(path, checkpoint.to_arrays())


def load_checkpoint(path: Path) -> Checkpoint:
    return Checkpoint.from_arrays(load_npz(path, REQUIRED), str(path))
