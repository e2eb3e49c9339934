"""What a network's outputs mean: how its targets look, how outputs become answers, how
they are scored. A loss declares its task (`SoftmaxCrossEntropy.task = CLASSIFICATION`), so
no other module compares loss names; `task_for` adds the one case a loss cannot know, an
autoencoder (the target is the input itself)."""

from __future__ import annotations

import numpy as np


class Task:
    """out, y: (m, *output_shape) arrays of outputs (after the output activation) and targets."""

    name = ""
    labelled = False        # targets are class labels, one-hot encoded over the training classes
    binary = False          # outputs are independent yes/no probabilities: the answer is out > 0.5
    reconstructs = False    # the target is the input itself (no target column)
    metric = "mse"          # the headline metric of `score` (val_<metric> in metrics.jsonl)

    @property
    def classifies(self) -> bool:
        """The answers are classes (one of k labels, or yes/no), not values."""
        return self.labelled or self.binary

    def score(self, out: np.ndarray, y: np.ndarray) -> dict:
        diff = (out - y).astype(np.float64)
        ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
        return {"mse": float(np.mean(diff ** 2)), "mae": float(np.mean(np.abs(diff))),
                "r2": 1.0 - float((diff ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")}

    def decode(self, out: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
        """Outputs -> answers: here the values themselves."""
        return out

    def random_targets(self, rng: np.random.Generator, X: np.ndarray, shape: tuple) -> np.ndarray:
        """Targets of this task's kind for random inputs X: (m, *output_shape) = shape (gradcheck --random)."""
        return rng.normal(size=shape)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


class Regression(Task):
    name = "regression"


class Reconstruction(Regression):
    """An autoencoder: the target is the (preprocessed) input."""

    name = "autoencoder"
    reconstructs = True

    def random_targets(self, rng, X, shape):
        return X.copy()


class Classification(Task):
    """One of k classes: softmax outputs (m, k), one-hot targets; the answer is the argmax's label."""

    name = "classification"
    labelled = True
    metric = "accuracy"

    def score(self, out, y):
        return {"accuracy": float(np.mean(out.argmax(-1) == y.argmax(-1)))}

    def decode(self, out, classes):
        return classes[out.argmax(axis=-1)]

    def random_targets(self, rng, X, shape):
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]


class Binary(Task):
    """Independent yes/no outputs in (0, 1) against 0/1 targets; the answer is out > 0.5.
    Two text labels (`spam`, `ham`) are the classes [first, second] in sorted order: the
    second is 1, and answers are given as the labels."""

    name = "binary"
    binary = True
    metric = "accuracy"

    def score(self, out, y):
        return {"accuracy": float(np.mean((out > 0.5) == (y > 0.5)))}

    def decode(self, out, classes):
        yes = (out > 0.5).astype(np.int64)
        return yes if classes is None else classes[yes]

    def random_targets(self, rng, X, shape):
        return rng.integers(0, 2, size=shape).astype(float)


REGRESSION, RECONSTRUCTION, CLASSIFICATION, BINARY = Regression(), Reconstruction(), Classification(), Binary()
TASKS = {t.name: t for t in (REGRESSION, RECONSTRUCTION, CLASSIFICATION, BINARY)}


def task_for(loss_task: Task, target) -> Task:
    """The task of a loss on a data section's target ('input': an autoencoder)."""
    return RECONSTRUCTION if target == "input" else loss_task
