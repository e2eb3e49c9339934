"""Full-batch minimizers: the same loss_and_grad handed to scipy.optimize.minimize."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import minimize

from netcli.constraints import PositiveFloat, PositiveInt
from netcli.optim import OPTIMIZERS


class StopMinimizing(Exception):
    """Raised from a callback to end the minimization early (early stopping, interrupt)."""


class FullBatch:
    """minimize(fun, theta, callback): fun(theta) -> (J, grad) on all training data.
    callback(theta) is called after each iteration; raising StopMinimizing ends the run."""

    full_batch = True
    method = ""

    def __init__(self, max_iter: PositiveInt = 100, tol: PositiveFloat = 1e-9):
        self.max_iter, self.tol = max_iter, tol

    def minimize(self, fun: Callable, theta: np.ndarray, callback: Callable) -> str:
        """Runs the minimizer in float64 from theta; writes the result into theta. -> scipy's message."""
        best = {"x": theta.astype(np.float64)}

        def fun64(x):
            loss, grad = fun(x.astype(theta.dtype, copy=False))
            return float(loss), grad.astype(np.float64)

        def on_iteration(intermediate_result):
            best["x"] = np.array(intermediate_result.x, copy=True)
            callback(best["x"])

        try:
            result = minimize(fun64, best["x"], jac=True, method=self.method, tol=self.tol,
                              callback=on_iteration, options=self.options())
            best["x"], message = result.x, str(result.message)
        except StopMinimizing as stop:
            message = str(stop) or "stopped"
        theta[...] = best["x"]
        return message

    def options(self) -> dict:
        return {"maxiter": self.max_iter}


@OPTIMIZERS.register("cg")
class ConjugateGradient(FullBatch):
    """Nonlinear conjugate gradient (Polak-Ribiere, scipy's CG), full batch."""

    method = "CG"

    def options(self):
        return {"maxiter": self.max_iter, "gtol": self.tol}


@OPTIMIZERS.register("lbfgs")
class LBFGS(FullBatch):
    """Limited-memory BFGS with bound support (scipy's L-BFGS-B), full batch."""

    method = "L-BFGS-B"

    def __init__(self, max_iter: PositiveInt = 100, tol: PositiveFloat = 1e-9, memory: PositiveInt = 10):
        super().__init__(max_iter, tol)
        self.memory = memory

    def options(self):
        return {"maxiter": self.max_iter, "maxcor": self.memory, "gtol": self.tol, "ftol": self.tol}
