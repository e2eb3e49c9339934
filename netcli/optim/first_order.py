"""First-order steppers: theta <- theta - update(grad), in place on the flat vector.

Each stepper writes its textbook formula once, as `update` on one piece (slice) of the flat
vectors; the base class's driver (`Stepper.step`, `Stepper.step_and_measure`) is the only
caller, and the only place that

- runs the step with BLAS limited to one thread (`one_blas_thread`): these updates are
  memory-bound, a second thread buys little, and OpenBLAS's hand-off to it stalls when the
  machine is busy. (Keeping every call under OpenBLAS's own threading threshold instead,
  10,000 elements, took 8x the calls: W2's momentum step on two threads 1,044 -> 858 us.)
- walks theta, the gradient and the state in pieces of PIECE elements, so the several
  updates of one step run over each piece while it is in cache (the slices are made once and
  kept while the training loop passes the same arrays),
- sums each part's squared gradient norm (one part per tensor) from the spans of it in each
  piece, just before the update reads the piece: BLAS dot, while the piece is in cache.

A step allocates nothing: the kernels below write in place, through one piece-sized scratch
vector where a formula needs an intermediate, with the scalar factors as Python floats (a NumPy
float64 scalar would turn a float32 update into a float64 one). `y += a x` is BLAS axpy (one
fused pass instead of NumPy's two and a temporary); a vector BLAS cannot update in place
(another dtype, a strided view) goes through NumPy instead.

Each keeps its state in flat arrays shaped like theta, saved in checkpoints.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.linalg import blas

from netcli.constraints import OpenUnitFloat, PositiveFloat, UnitFloat
from netcli.optim import OPTIMIZERS
from netcli.threads import blas_count

PIECE = 65536  # elements per piece: three vectors' pieces (768 KiB of float32) stay in L2


def one_blas_thread():
    """BLAS on one thread inside the block, as it was after it (~3 us both ways)."""
    return blas_count(1)


def squared_norms(grad: np.ndarray, parts: list[tuple[int, int]] | None) -> np.ndarray | None:
    """(len(parts),) float64: sum of grad[lo:hi]^2 for each part (None for None)."""
    if parts is None:
        return None
    return np.array([float(np.dot(grad[lo:hi], grad[lo:hi])) for lo, hi in parts])


# -- kernels: y <- f(y, x, ...) in place on one piece; scalars are Python floats ---------

_LEVEL1 = {np.dtype(c): blas.get_blas_funcs(("scal", "axpy", "dot"), dtype=c) for c in "fd"}


def _level1(y: np.ndarray, x: np.ndarray):
    """BLAS (scal, axpy, dot) for y and x, or None when BLAS cannot update y from x in place
    (another dtype, a strided view): then the kernel uses NumPy."""
    fs = _LEVEL1.get(y.dtype)
    if fs is not None and x.dtype is y.dtype and y.flags.c_contiguous and x.flags.c_contiguous:
        return fs
    return None


def _into(target: np.ndarray, result: np.ndarray) -> None:
    """f2py updates a contiguous vector of its own dtype in place and returns it; were it ever to
    hand back a copy instead, write the copy into place."""
    if result is not target:
        target[...] = result


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """y <- y + a x"""
    fs = _level1(y, x)
    if fs is None:
        y += a * x
    else:
        _into(y, fs[1](x, y, y.size, a))     # positional: f2py parses keywords slowly


def scale_add(b: float, y: np.ndarray, a: float, x: np.ndarray) -> None:
    """y <- b y + a x"""
    fs = _level1(y, x)
    if fs is None:
        y *= b
        y += a * x
    else:
        _into(y, fs[1](x, fs[0](b, y), y.size, a))


def add_square(y: np.ndarray, x: np.ndarray, tmp: np.ndarray) -> None:
    """y <- y + x^2   (tmp: scratch shaped like y)"""
    np.multiply(x, x, out=tmp)
    y += tmp


def scale_add_square(b: float, y: np.ndarray, a: float, x: np.ndarray, tmp: np.ndarray) -> None:
    """y <- b y + a x^2   (tmp: scratch shaped like y)"""
    np.multiply(x, x, out=tmp)
    scale_add(b, y, a, tmp)


def add_ratio(y: np.ndarray, a: float, x: np.ndarray, s: np.ndarray, eps: float,
              tmp: np.ndarray) -> None:
    """y <- y + a x / (sqrt(s) + eps)   (tmp: scratch shaped like y)"""
    np.sqrt(s, out=tmp)
    tmp += eps
    np.divide(x, tmp, out=tmp)
    axpy(a, tmp, y)


# -- the driver ------------------------------------------------------------------------

class Stepper:
    """A first-order optimizer, called once per minibatch.

    A subclass names its state vectors (`state_names`, flat, shaped like theta, zero at the
    start) and writes its formula as

        update(*factors, theta, g, *state, tmp)

    where `factors = begin_step(lr)` are this step's scalars as Python floats, computed once
    per step, and theta, g, each state vector in `state_names` order and tmp (scratch, contents
    undefined) are the same piece of the flat vectors, all updated in place with the kernels
    above. The driver (step, step_and_measure) is update's only caller: it owns the BLAS
    thread scope, the pieces and the gradient norms, so no update can forget them.
    """

    full_batch = False      # the one place that says so: steppers take minibatches
    state_names: tuple[str, ...] = ()
    _tmp = _plan = None     # the driver's scratch piece and its slices (see _pieces)

    def __init__(self, lr: PositiveFloat = 0.01):
        self.lr = lr
        self.t = 0

    def setup(self, theta: np.ndarray) -> None:
        for name in self.state_names:
            setattr(self, name, np.zeros_like(theta))

    def begin_step(self, lr: float) -> tuple[float, ...]:
        """Once per step, before any piece: the scalars update takes first."""
        return (lr,)

    def update(self, *factors_and_pieces) -> None:
        """The formula on one piece, in place (see the class docstring)."""
        raise NotImplementedError

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self._drive(theta, grad, lr, None)

    def step_and_measure(self, theta: np.ndarray, grad: np.ndarray, lr: float,
                         parts: list[tuple[int, int]]) -> np.ndarray:
        """step(), and the squared norm of each part grad[lo:hi] (the parts tile grad, each
        index once): (len(parts),) float64, summed from each piece while it is in cache."""
        return self._drive(theta, grad, lr, parts)

    def _drive(self, theta, grad, lr, parts) -> np.ndarray | None:
        """update() over [0, theta.size) in pieces of PIECE, on one BLAS thread. With parts, each
        part's squared norm of grad is summed from its spans in each piece, just before update
        reads the piece (update may change grad)."""
        with one_blas_thread():
            update = partial(self.update, *self.begin_step(float(lr)))
            pieces = self._pieces(theta, grad, parts)
            if parts is None:
                for args, _ in pieces:
                    update(*args)
                return None
            fs = _level1(grad, grad)
            dot = np.dot if fs is None else fs[2]
            squares = [0.0] * len(parts)
            for args, spans in pieces:
                for k, gs in spans:
                    squares[k] += float(dot(gs, gs))
                update(*args)
            return np.array(squares)

    def _pieces(self, theta, grad, parts) -> list[tuple[tuple[np.ndarray, ...], list]]:
        """Per piece [s, s + PIECE) of [0, theta.size): update's vectors (theta, grad and each
        state vector sliced to the piece, and the scratch) and the spans (k, grad[a:b]) of the
        parts parts[k] = (lo, hi) inside it. Kept while the arrays and parts stay the same, as
        they do from one training step to the next (the network's theta and gradient buffer)."""
        vectors = (theta, grad, *[getattr(self, name) for name in self.state_names])
        key = (PIECE, parts if parts is None else tuple(parts), *map(id, vectors))
        if self._plan is not None and self._plan[0] == key:   # the plan holds the vectors: ids stay theirs
            return self._plan[2]
        size = theta.size
        tmp = self._tmp                       # scratch, not part of the state
        if tmp is None or tmp.size < min(PIECE, size) or tmp.dtype != theta.dtype:
            tmp = self._tmp = np.empty(min(PIECE, size), dtype=theta.dtype)
        spans: list[list] = [[] for _ in range(0, size, PIECE)]
        for k, (lo, hi) in enumerate(parts or ()):
            a = lo
            while a < hi:
                b = min(hi, (a // PIECE + 1) * PIECE)
                spans[a // PIECE].append((k, grad[a:b]))
                a = b
        pieces = [((*[x[s:s + PIECE] for x in vectors], tmp[:min(PIECE, size - s)]), spans[i])
                  for i, s in enumerate(range(0, size, PIECE))]
        self._plan = (key, vectors, pieces)
        return pieces

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name) for name in self.state_names}
        state["t"] = np.array(self.t)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state_names:
            getattr(self, name)[...] = state[name]
        self.t = int(state["t"])


# -- the steppers: each update is its docstring's formula ------------------------------

@OPTIMIZERS.register("sgd")
class SGD(Stepper):
    """theta <- theta - lr g"""

    def update(self, lr, theta, g, tmp):
        axpy(-lr, g, theta)                         # theta <- theta - lr g


@OPTIMIZERS.register("momentum")
class Momentum(Stepper):
    """v <- mu v - lr g;  theta <- theta + v"""

    state_names = ("v",)

    def __init__(self, lr: PositiveFloat = 0.01, momentum: UnitFloat = 0.9):
        super().__init__(lr)
        self.momentum = momentum

    def begin_step(self, lr):
        return lr, float(self.momentum)

    def update(self, lr, mu, theta, g, v, tmp):
        scale_add(mu, v, -lr, g)                    # v <- mu v - lr g
        axpy(1.0, v, theta)                         # theta <- theta + v


@OPTIMIZERS.register("nesterov")
class Nesterov(Momentum):
    """Nesterov momentum in the form that needs the gradient at theta only (Sutskever 2013):
    v <- mu v - lr g;  theta <- theta + mu v - lr g"""

    def update(self, lr, mu, theta, g, v, tmp):
        scale_add(mu, v, -lr, g)                    # v <- mu v - lr g
        axpy(mu, v, theta)                          # theta <- theta + mu v
        axpy(-lr, g, theta)                         #                - lr g


@OPTIMIZERS.register("adagrad")
class AdaGrad(Stepper):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps)"""

    state_names = ("G",)

    def __init__(self, lr: PositiveFloat = 0.01, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.eps = eps

    def begin_step(self, lr):
        return lr, float(self.eps)

    def update(self, lr, eps, theta, g, G, tmp):
        add_square(G, g, tmp)                       # G <- G + g^2
        add_ratio(theta, -lr, g, G, eps, tmp)       # theta <- theta - lr g / (sqrt(G) + eps)


@OPTIMIZERS.register("rmsprop")
class RMSProp(Stepper):
    """s <- rho s + (1 - rho) g^2;  theta <- theta - lr g / (sqrt(s) + eps)"""

    state_names = ("s",)

    def __init__(self, lr: PositiveFloat = 0.001, rho: OpenUnitFloat = 0.9, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.rho, self.eps = rho, eps

    def begin_step(self, lr):
        return lr, float(self.rho), float(self.eps)

    def update(self, lr, rho, eps, theta, g, s, tmp):
        scale_add_square(rho, s, 1.0 - rho, g, tmp)  # s <- rho s + (1 - rho) g^2
        add_ratio(theta, -lr, g, s, eps, tmp)        # theta <- theta - lr g / (sqrt(s) + eps)


@OPTIMIZERS.register("adam")
class Adam(Stepper):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta - lr m_hat / (sqrt(v_hat) + eps), with the bias corrections
    m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)  (Kingma & Ba 2015), t = 1, 2, ... the step.

    Computed as their section 2's cheaper order, folding both corrections into two scalars per
    step: theta <- theta - lr_t m / (sqrt(v) + eps_t), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),
    eps_t = eps sqrt(1 - b2^t) (the same value: numerator and denominator times sqrt(1 - b2^t))."""

    state_names = ("m", "v")

    def __init__(self, lr: PositiveFloat = 0.001, beta1: UnitFloat = 0.9, beta2: UnitFloat = 0.999,
                 eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def begin_step(self, lr):
        self.t += 1
        b1, b2 = float(self.beta1), float(self.beta2)
        root = (1.0 - b2 ** self.t) ** 0.5
        return b1, b2, lr * root / (1.0 - b1 ** self.t), float(self.eps) * root

    def update(self, b1, b2, lr_t, eps_t, theta, g, m, v, tmp):
        scale_add(b1, m, 1.0 - b1, g)               # m <- b1 m + (1 - b1) g
        scale_add_square(b2, v, 1.0 - b2, g, tmp)   # v <- b2 v + (1 - b2) g^2
        add_ratio(theta, -lr_t, m, v, eps_t, tmp)   # theta <- theta - lr_t m / (sqrt(v) + eps_t)
