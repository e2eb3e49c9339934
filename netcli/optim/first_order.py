"""First-order steppers: theta <- theta - update(grad), in place on the flat vector.

Each keeps its state in flat arrays shaped like theta, saved in checkpoints.
"""

from __future__ import annotations

import numpy as np

from netcli.nn.types import OpenUnitFloat, PositiveFloat, UnitFloat
from netcli.optim import OPTIMIZERS


class Stepper:
    full_batch = False
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: PositiveFloat = 0.01):
        self.lr = lr
        self.t = 0

    def setup(self, theta: np.ndarray) -> None:
        for name in self.state_names:
            setattr(self, name, np.zeros_like(theta))

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name) for name in self.state_names}
        state["t"] = np.array(self.t)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state_names:
            getattr(self, name)[...] = state[name]
        self.t = int(state["t"])


@OPTIMIZERS.register("sgd")
class SGD(Stepper):
    """theta <- theta - lr g"""

    def step(self, theta, grad, lr):
        theta -= lr * grad


@OPTIMIZERS.register("momentum")
class Momentum(Stepper):
    """v <- mu v - lr g;  theta <- theta + v"""

    state_names = ("v",)

    def __init__(self, lr: PositiveFloat = 0.01, momentum: UnitFloat = 0.9):
        super().__init__(lr)
        self.momentum = momentum

    def step(self, theta, grad, lr):
        self.v *= self.momentum
        self.v -= lr * grad
        theta += self.v


@OPTIMIZERS.register("nesterov")
class Nesterov(Momentum):
    """Nesterov momentum in the form that needs the gradient at theta only (Sutskever 2013):
    v <- mu v - lr g;  theta <- theta + mu v - lr g"""

    def step(self, theta, grad, lr):
        self.v *= self.momentum
        self.v -= lr * grad
        theta += self.momentum * self.v - lr * grad


@OPTIMIZERS.register("adagrad")
class AdaGrad(Stepper):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps)"""

    state_names = ("G",)

    def __init__(self, lr: PositiveFloat = 0.01, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.eps = eps

    def step(self, theta, grad, lr):
        self.G += grad * grad
        theta -= lr * grad / (np.sqrt(self.G) + self.eps)


@OPTIMIZERS.register("rmsprop")
class RMSProp(Stepper):
    """s <- rho s + (1 - rho) g^2;  theta <- theta - lr g / (sqrt(s) + eps)"""

    state_names = ("s",)

    def __init__(self, lr: PositiveFloat = 0.001, rho: OpenUnitFloat = 0.9, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.rho, self.eps = rho, eps

    def step(self, theta, grad, lr):
        self.s *= self.rho
        self.s += (1 - self.rho) * grad * grad
        theta -= lr * grad / (np.sqrt(self.s) + self.eps)


@OPTIMIZERS.register("adam")
class Adam(Stepper):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta - lr m_hat / (sqrt(v_hat) + eps), with the bias corrections
    m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)  (Kingma & Ba 2015)"""

    state_names = ("m", "v")

    def __init__(self, lr: PositiveFloat = 0.001, beta1: UnitFloat = 0.9, beta2: UnitFloat = 0.999,
                 eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, theta, grad, lr):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m *= b1
        self.m += (1 - b1) * grad
        self.v *= b2
        self.v += (1 - b2) * grad * grad
        step_size = lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        denom = np.sqrt(self.v)
        denom += self.eps * np.sqrt(1 - b2 ** self.t)
        theta -= step_size * (self.m / denom)


