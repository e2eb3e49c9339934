"""Optimizers consume the gradient; they never compute it.

First-order steppers update the flat parameter vector in place once per
minibatch. Full-batch minimizers (cg, lbfgs) hand loss_and_grad to scipy.
"""

from netcli.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")

from netcli.optim import first_order, full_batch, schedules  # noqa: E402,F401

__all__ = ["OPTIMIZERS", "SCHEDULES"]
