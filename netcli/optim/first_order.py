"""First-order steppers: theta <- theta - update(grad), in place on the flat vector.

Each keeps its state in flat arrays shaped like theta, saved in checkpoints.

A step allocates nothing: every update is written in place, through one scratch vector
where a formula needs an intermediate, with the scalar factors as Python floats (a NumPy
float64 scalar would turn a float32 update into a float64 one). `y += a x` is BLAS axpy
(one fused pass instead of NumPy's two and a temporary), called on pieces of PIECE elements
so the several updates of one step run over each piece while it is in cache.

A step runs with BLAS limited to one thread (`one_blas_thread`): these updates are
memory-bound, a second thread buys little, and OpenBLAS's hand-off to it stalls when the
machine is busy. (Keeping every call under OpenBLAS's own threading threshold instead,
10,000 elements, took 8x the calls: W2's momentum step on two threads 1,044 -> 858 us.)
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy.linalg import blas

from netcli.constraints import OpenUnitFloat, PositiveFloat, UnitFloat
from netcli.optim import OPTIMIZERS

PIECE = 65536  # elements per BLAS call: three vectors' pieces (768 KiB of float32) stay in L2

_blas_libraries = None


@contextmanager
def one_blas_thread():
    """BLAS on one thread inside the block, as it was after it (~3 us both ways)."""
    global _blas_libraries
    if _blas_libraries is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:   # BLAS cannot be inspected: leave its threads alone
            _blas_libraries = []
    saved = [(lib, lib.get_num_threads()) for lib in _blas_libraries]
    for lib, n in saved:
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in saved:
            if n != 1:
                lib.set_num_threads(n)


def _level1(*arrays):
    """BLAS (scal, axpy) for these flat vectors, or None when BLAS cannot update them in place
    (another dtype, a strided view): then the caller uses NumPy."""
    y = arrays[0]
    if y.dtype.char not in "fd" or any(a.dtype != y.dtype or a.ndim != 1 or not a.flags.c_contiguous
                                       for a in arrays):
        return None
    return blas.get_blas_funcs(("scal", "axpy"), (y,))


def _into(target: np.ndarray, result: np.ndarray) -> None:
    """f2py updates a contiguous vector of its own dtype in place and returns it; were it ever to
    hand back a copy instead, write the copy into place."""
    if result is not target:
        target[...] = result


def squared_norms(grad: np.ndarray, parts: list[tuple[int, int]] | None) -> np.ndarray | None:
    """(len(parts),) float64: sum of grad[lo:hi]^2 for each part (None for None)."""
    if parts is None:
        return None
    return np.array([float(np.dot(grad[lo:hi], grad[lo:hi])) for lo, hi in parts])


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """y += a * x in place."""
    fs = _level1(y, x)
    if fs is None:
        y += a * x
        return
    f, a = fs[1], float(a)
    for s in range(0, y.size, PIECE):
        ys = y[s:s + PIECE]
        _into(ys, f(x[s:s + PIECE], ys, a=a))


def scale_add(b: float, y: np.ndarray, a: float, x: np.ndarray) -> None:
    """y <- b * y + a * x in place."""
    fs = _level1(y, x)
    if fs is None:
        y *= b
        y += a * x
        return
    (scal, f), a, b = fs, float(a), float(b)
    for s in range(0, y.size, PIECE):
        ys = y[s:s + PIECE]
        _into(ys, f(x[s:s + PIECE], scal(b, ys), a=a))


class Stepper:
    full_batch = False
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: PositiveFloat = 0.01):
        self.lr = lr
        self.t = 0

    def setup(self, theta: np.ndarray) -> None:
        for name in self.state_names:
            setattr(self, name, np.zeros_like(theta))

    def scratch(self, like: np.ndarray) -> np.ndarray:
        """A work vector shaped like theta, kept between steps (not part of the state)."""
        buf = getattr(self, "_scratch", None)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self._scratch = np.empty_like(like)
        return buf

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        with one_blas_thread():
            self._update(theta, grad, lr, None)

    def step_and_measure(self, theta: np.ndarray, grad: np.ndarray, lr: float,
                         parts: list[tuple[int, int]]) -> np.ndarray:
        """step(), and the squared norm of each part grad[lo:hi] (the parts cover grad, each
        index once): (len(parts),) float64. Steppers that read the gradient piece by piece
        (sgd, momentum, nesterov) sum the squares as they go, while each piece is in cache."""
        with one_blas_thread():
            return self._update(theta, grad, lr, parts)

    def _update(self, theta, grad, lr, parts) -> np.ndarray | None:
        """The step in place; returns squared_norms(grad, parts), measured before grad changes."""
        raise NotImplementedError

    @staticmethod
    def _pieces(size: int, parts: list[tuple[int, int]] | None, grad: np.ndarray,
                update) -> np.ndarray | None:
        """update(s, e) over [0, size) in pieces of PIECE; with parts, the pieces end at the
        parts' bounds, and the squared norm of each part of grad is summed from its pieces
        just before update reads them."""
        if parts is None:
            for s in range(0, size, PIECE):
                update(s, s + PIECE)
            return None
        dot = blas.get_blas_funcs("dot", (grad,))
        squares = np.zeros(len(parts))
        for k, (lo, hi) in enumerate(parts):
            for s in range(lo, hi, PIECE):
                e = min(s + PIECE, hi)
                gs = grad[s:e]
                squares[k] += dot(gs, gs)
                update(s, e)
        return squares

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

    def _update(self, theta, grad, lr, parts):
        fs = _level1(theta, grad)
        if fs is None:
            squares = squared_norms(grad, parts)
            theta -= lr * grad
            return squares
        f, a = fs[1], -float(lr)

        def update(s, e):
            ts = theta[s:e]
            _into(ts, f(grad[s:e], ts, a=a))

        return self._pieces(theta.size, parts, grad, update)


@OPTIMIZERS.register("momentum")
class Momentum(Stepper):
    """v <- mu v - lr g;  theta <- theta + v"""

    state_names = ("v",)

    def __init__(self, lr: PositiveFloat = 0.01, momentum: UnitFloat = 0.9):
        super().__init__(lr)
        self.momentum = momentum

    def _update(self, theta, grad, lr, parts):
        v, mu, lr = self.v, float(self.momentum), float(lr)
        a, b = self._theta_factors(mu, lr)       # theta <- theta + a v + b g
        fs = _level1(theta, grad, v)
        if fs is None:
            squares = squared_norms(grad, parts)
            scale_add(mu, v, -lr, grad)
            theta += a * v
            if b:
                theta += b * grad
            return squares
        scal, f = fs

        def update(s, e):   # all updates per piece, while v's piece is in cache
            vs, gs, ts = v[s:e], grad[s:e], theta[s:e]
            _into(vs, f(gs, scal(mu, vs), a=-lr))      # v <- mu v - lr g
            _into(ts, f(vs, ts, a=a))                    # theta <- theta + a v
            if b:
                _into(ts, f(gs, ts, a=b))                #          + b g

        return self._pieces(theta.size, parts, grad, update)

    @staticmethod
    def _theta_factors(mu: float, lr: float) -> tuple[float, float]:
        return 1.0, 0.0


@OPTIMIZERS.register("nesterov")
class Nesterov(Momentum):
    """Nesterov momentum in the form that needs the gradient at theta only (Sutskever 2013):
    v <- mu v - lr g;  theta <- theta + mu v - lr g"""

    @staticmethod
    def _theta_factors(mu, lr):
        return mu, -lr


@OPTIMIZERS.register("adagrad")
class AdaGrad(Stepper):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps)"""

    state_names = ("G",)

    def __init__(self, lr: PositiveFloat = 0.01, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.eps = eps

    def _update(self, theta, grad, lr, parts):
        squares = squared_norms(grad, parts)
        tmp = self.scratch(theta)
        np.multiply(grad, grad, out=tmp)
        self.G += tmp
        np.sqrt(self.G, out=tmp)
        tmp += self.eps
        np.divide(grad, tmp, out=tmp)
        axpy(-lr, tmp, theta)
        return squares


@OPTIMIZERS.register("rmsprop")
class RMSProp(Stepper):
    """s <- rho s + (1 - rho) g^2;  theta <- theta - lr g / (sqrt(s) + eps)"""

    state_names = ("s",)

    def __init__(self, lr: PositiveFloat = 0.001, rho: OpenUnitFloat = 0.9, eps: PositiveFloat = 1e-8):
        super().__init__(lr)
        self.rho, self.eps = rho, eps

    def _update(self, theta, grad, lr, parts):
        squares = squared_norms(grad, parts)
        tmp = self.scratch(theta)
        np.multiply(grad, grad, out=tmp)
        scale_add(self.rho, self.s, 1.0 - self.rho, tmp)
        np.sqrt(self.s, out=tmp)
        tmp += self.eps
        np.divide(grad, tmp, out=tmp)
        axpy(-lr, tmp, theta)
        return squares


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

    def _update(self, theta, grad, lr, parts):
        squares = squared_norms(grad, parts)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        tmp = self.scratch(theta)
        scale_add(b1, self.m, 1.0 - b1, grad)
        np.multiply(grad, grad, out=tmp)
        scale_add(b2, self.v, 1.0 - b2, tmp)
        root = (1.0 - b2 ** self.t) ** 0.5             # Python floats: no float64 upcast
        step_size = lr * root / (1.0 - b1 ** self.t)
        np.sqrt(self.v, out=tmp)
        tmp += self.eps * root                            # denominator sqrt(v_hat) + eps, times root
        np.divide(self.m, tmp, out=tmp)
        axpy(-step_size, tmp, theta)
        return squares


