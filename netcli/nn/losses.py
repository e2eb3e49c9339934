"""Data terms of the objective, each averaged over the m examples of the batch.

forward(out, y) -> scalar; backward() -> d loss / d out, of out's shape.
A loss with `fused_activation` receives the pre-activation of the output layer
(the logits) and folds that activation in, which is both exact and stable.
Targets y have out's shape (one-hot rows for classification).
"""

from __future__ import annotations

import numpy as np

from netcli.nn.activations import logistic
from netcli.nn.tasks import BINARY, CLASSIFICATION, REGRESSION, Task
from netcli.registry import Registry

LOSSES: Registry[type["Loss"]] = Registry("loss")


class Loss:
    task: Task = REGRESSION
    fused_activation: str | None = None
    formula = ""

    def forward(self, out: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError


@LOSSES.register("mse")
class MeanSquaredError(Loss):
    """E = 1/m sum_i 1/2 ||h(x_i) - y_i||^2  (the notes' data term);  dE/dh = (h - y) / m"""

    formula = "1/m sum 1/2 ||h - y||^2"

    def forward(self, out, y):
        self.m = out.shape[0]
        self.diff = out - y
        return 0.5 * float(np.vdot(self.diff, self.diff)) / self.m

    def backward(self):
        return np.multiply(self.diff, 1.0 / self.m)


@LOSSES.register("cross_entropy")
class SoftmaxCrossEntropy(Loss):
    """E = -1/m sum_i sum_k y_ik log softmax(z_i)_k, with log softmax = z - logsumexp(z);
    dE/dz = (softmax(z) * sum_k y_k - y) / m   (= (p - y) / m for one-hot y)
    """

    task = CLASSIFICATION
    fused_activation = "softmax"
    formula = "-1/m sum y . log softmax(z)"

    def forward(self, z, y):
        self.m = z.shape[0]
        shifted = z - z.max(axis=-1, keepdims=True)
        p = np.exp(shifted)
        norm = p.sum(axis=-1, keepdims=True)
        p /= norm
        self.p, self.y = p, y
        self.y_mass = y.sum(axis=-1, keepdims=True)
        # y . log p = y . shifted - (sum_k y_k) log norm: one pass over z's shape fewer
        return -(float(np.vdot(y, shifted)) - float(np.vdot(self.y_mass, np.log(norm)))) / self.m

    def backward(self):
        g = np.multiply(self.p, self.y_mass)
        g -= self.y
        g *= 1.0 / self.m
        return g


@LOSSES.register("binary_cross_entropy")
class SigmoidBinaryCrossEntropy(Loss):
    """E = -1/m sum [y log s(z) + (1 - y) log(1 - s(z))], s the logistic function,
    computed as max(z, 0) - z y + log(1 + e^-|z|) (no log(0), no overflow);
    dE/dz = (s(z) - y) / m
    """

    task = BINARY
    fused_activation = "sigmoid"
    formula = "-1/m sum [y log s(z) + (1-y) log(1-s(z))]"

    def forward(self, z, y):
        self.m = z.shape[0]
        self.z, self.y = z, y
        per_unit = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(per_unit.sum()) / self.m

    def backward(self):
        return (logistic(self.z) - self.y) / self.m
