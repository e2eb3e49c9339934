"""Learning-rate schedules: lr(epoch) from the base rate, epoch counted from 0.

Each says whether it uses the total number of epochs (uses_total): one that does gives other
rates to the same epoch when a run is extended (--resume --set training.epochs=N), so the
extended run is not the run it would have been had it been configured longer."""

from __future__ import annotations

import math

from netcli.constraints import NonNegativeFloat, OpenUnitFloat, PositiveInt
from netcli.optim import SCHEDULES


@SCHEDULES.register("constant")
class Constant:
    """lr"""

    uses_total = False

    def __call__(self, base_lr: float, epoch: int, epochs: int) -> float:
        return base_lr


@SCHEDULES.register("step")
class Step:
    """lr * gamma^(epoch // step_size)"""

    uses_total = False

    def __init__(self, step_size: PositiveInt = 10, gamma: OpenUnitFloat = 0.1):
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, base_lr, epoch, epochs):
        return base_lr * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register("exponential")
class Exponential:
    """lr * gamma^epoch"""

    uses_total = False

    def __init__(self, gamma: OpenUnitFloat = 0.95):
        self.gamma = gamma

    def __call__(self, base_lr, epoch, epochs):
        return base_lr * self.gamma ** epoch


@SCHEDULES.register("cosine")
class Cosine:
    """min_lr + (lr - min_lr) (1 + cos(pi epoch / epochs)) / 2"""

    uses_total = True

    def __init__(self, min_lr: NonNegativeFloat = 0.0):
        self.min_lr = min_lr

    def __call__(self, base_lr, epoch, epochs):
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
