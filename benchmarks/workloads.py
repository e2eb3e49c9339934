"""The fixed workloads W1-W5: synthetic data, the netcli config, the FLOP count.

Each workload is an ordinary netcli config (validated by netcli.config.validate) over an
NPZ file in a temporary directory, so the benchmark trains through netcli's normal
path: prepare() reads, checks and splits the data, Trainer runs the epochs.

FLOPs are counted as 3 x the forward pass's multiply-adds x 2 (matmul and conv only;
the backward pass is about two forward passes' worth of GEMMs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED = 0


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    samples: int
    quick_samples: int
    batch_size: int | str
    input: int | list[int]
    layers: list[dict]
    loss: str
    optimizer: dict
    task: str                        # classification | autoencoder
    classes: int = 10
    target: str = "ratio <= 1.0"
    target_ratio: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def full_batch(self) -> bool:
        return self.optimizer["type"] in ("lbfgs", "cg")

    @property
    def per_example_shape(self) -> tuple[int, ...]:
        return (self.input,) if isinstance(self.input, int) else tuple(self.input)

    def n(self, quick: bool) -> int:
        return self.quick_samples if quick else self.samples

    # -- data ----------------------------------------------------------------

    def make_data(self, n: int, seed: int = SEED) -> dict[str, np.ndarray]:
        """float32 features; integer labels from a random linear teacher (learnable, not trivial)."""
        rng = np.random.default_rng(seed)
        shape = self.per_example_shape
        if self.task == "autoencoder":
            X = rng.random((n, *shape), dtype=np.float32)
            return {"X": X}
        X = rng.standard_normal((n, *shape), dtype=np.float32)
        summary = X.reshape(n, -1) if len(shape) != 2 else X.mean(axis=1)   # sequences: mean over time
        teacher = rng.standard_normal((summary.shape[1], self.classes), dtype=np.float32)
        y = np.argmax(summary @ teacher, axis=1).astype(np.int64)
        return {"X": X.reshape(n, -1) if len(shape) == 3 else X, "y": y}   # images as flat rows

    # -- config --------------------------------------------------------------

    def config_dict(self, data_path: str | Path, epochs: int, threads: int | str = "auto",
                    parallel: str = "auto") -> dict:
        optimizer = dict(self.optimizer)
        training = {"epochs": epochs, "batch_size": self.batch_size, "threads": threads, "parallel": parallel,
                    "checkpoint_every": 1_000_000}   # checkpoints are not part of the timed work
        return {
            "seed": SEED,
            "dtype": "float32",
            "data": {"train": str(data_path), "normalize": "none", "shuffle": True,
                     **({"target": "input"} if self.task == "autoencoder" else {})},
            "model": {"input": self.input, "layers": [dict(b) for b in self.layers],
                      "init": "glorot_uniform"},
            "loss": self.loss,
            "optimizer": optimizer,
            "training": training,
        }

    def config(self, data_path: str | Path, epochs: int, source: str | None = None,
               threads: int | str = "auto", parallel: str = "auto"):
        from netcli.config import validate
        return validate(self.config_dict(data_path, epochs, threads, parallel), source=source or f"{self.name}.yaml")

    # -- cost ----------------------------------------------------------------

    def forward_flops(self) -> int:
        """Multiply-adds x 2 of one example's forward pass (dense, conv, lstm)."""
        shape = self.per_example_shape
        flops = 0
        for block in self.layers:
            kind = block["type"]
            if kind == "dense":
                flops += 2 * shape[-1] * block["units"]
                shape = (*shape[:-1], block["units"])
            elif kind == "conv2d":
                c, h, w = shape
                k, p = block["kernel"], block.get("padding", 0)
                ho, wo = h + 2 * p - k + 1, w + 2 * p - k + 1
                flops += 2 * c * k * k * block["channels"] * ho * wo
                shape = (block["channels"], ho, wo)
            elif kind == "maxpool2d":
                c, h, w = shape
                s = block["size"]
                shape = (c, h // s, w // s)
            elif kind == "flatten":
                shape = (math.prod(shape),)
            elif kind == "lstm":
                t, d = shape
                h = block["units"]
                flops += 2 * t * (d + h) * 4 * h
                shape = (h,)
            else:
                raise ValueError(kind)
        return flops

    def flops_per_epoch(self, n: int) -> float:
        return 3.0 * self.forward_flops() * n


def _momentum(lr=0.01):
    return {"type": "momentum", "lr": lr, "momentum": 0.9}


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("W1", "MLP 784-256-128-10 ReLU, softmax CE, SGD momentum 0.9, batch 128",
             60_000, 6_000, 128, 784,
             [{"type": "dense", "units": 256, "activation": "relu"},
              {"type": "dense", "units": 128, "activation": "relu"},
              {"type": "dense", "units": 10, "activation": "softmax"}],
             "cross_entropy", _momentum(), "classification",
             target="ratio <= 0.8, >= 70% of GEMM peak", target_ratio=0.8),
    Workload("W2", "MLP 784-512-512-512-10 sigmoid, softmax CE, SGD momentum 0.9, batch 64",
             20_000, 2_000, 64, 784,
             [{"type": "dense", "units": 512, "activation": "sigmoid"},
              {"type": "dense", "units": 512, "activation": "sigmoid"},
              {"type": "dense", "units": 512, "activation": "sigmoid"},
              {"type": "dense", "units": 10, "activation": "softmax"}],
             "cross_entropy", _momentum(), "classification",
             target="ratio <= 0.9", target_ratio=0.9),
    Workload("W3", "CNN 1x28x28: conv3x3x16 pad 1 ReLU, maxpool 2, conv3x3x32 ReLU, maxpool 2, "
             "dense 10; batch 64", 10_000, 1_000, 64, [1, 28, 28],
             [{"type": "conv2d", "channels": 16, "kernel": 3, "padding": 1, "activation": "relu"},
              {"type": "maxpool2d", "size": 2},
              {"type": "conv2d", "channels": 32, "kernel": 3, "activation": "relu"},
              {"type": "maxpool2d", "size": 2},
              {"type": "flatten"},
              {"type": "dense", "units": 10, "activation": "softmax"}],
             "cross_entropy", _momentum(), "classification",
             target="ratio <= 1.0", target_ratio=1.0),
    Workload("W4", "LSTM T=50, D=32, H=128, last step to dense 10, full BPTT; batch 64",
             5_000, 500, 64, [50, 32],
             [{"type": "lstm", "units": 128},
              {"type": "dense", "units": 10, "activation": "softmax"}],
             "cross_entropy", _momentum(), "classification",
             target="ratio <= 1.2", target_ratio=1.2),
    Workload("W5", "full-batch L-BFGS (scipy L-BFGS-B, 100 iterations), 64-25-64 sigmoid "
             "autoencoder, MSE", 10_000, 2_000, "full", 64,
             [{"type": "dense", "units": 25, "activation": "sigmoid"},
              {"type": "dense", "units": 64, "activation": "sigmoid"}],
             "mse", {"type": "lbfgs", "max_iter": 100}, "autoencoder",
             target="ratio <= 1.0", target_ratio=1.0),
]}


def write_data(workload: Workload, folder: Path, quick: bool) -> Path:
    """The workload's data as an NPZ file in folder (float32 X; int64 labels y)."""
    path = folder / f"{workload.name}.npz"
    if not path.exists():
        np.savez(path, **workload.make_data(workload.n(quick)))
    return path
