"""The one gradient checker: backpropagation against finite differences.

Every check perturbs one coordinate of an array in place, re-evaluates a scalar
objective, and compares the difference quotient with the analytic gradient:

    central (default):  (E(w + eps) - E(w - eps)) / (2 eps)     error O(eps^2)
    forward (the notes): (E(w + eps) - E(w)) / eps              error O(eps)

Relative error alone would fail a correct gradient that is nearly zero (at a trained
minimum the difference quotient is pure rounding noise), so a tensor also passes when its
largest absolute error is under the rounding-noise floor 10 * machine-eps * max(|E|, 1) / eps.

A coordinate whose perturbation changes a discrete choice of the network
(a ReLU crossing 0, a different maxout or max-pool winner) straddles a kink,
where no derivative exists; it is counted under `kinks` and left out of the
comparison instead of reported as a false failure.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

TINY = 1e-300
SPLIT_CHECK = "theta, batch in 2 parts"   # the gradient of a batch cut in parts (netcli.nn.split)


@dataclass
class TensorCheck:
    name: str
    checked: int
    kinks: int
    max_abs_err: float
    rel_err: float
    worst_index: list[int]
    ok: bool
    noise_floor: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def relative_error(g_fd: np.ndarray, g_bp: np.ndarray) -> float:
    """||g_fd - g_bp|| / max(||g_fd|| + ||g_bp||, tiny)"""
    denom = max(float(np.linalg.norm(g_fd) + np.linalg.norm(g_bp)), TINY)
    return float(np.linalg.norm(g_fd - g_bp)) / denom


def pick_coordinates(size: int, max_coords: int | None, rng: np.random.Generator) -> np.ndarray:
    """All flat indices, or a sorted random subset of max_coords of them."""
    if max_coords is None or size <= max_coords:
        return np.arange(size)
    return np.sort(rng.choice(size, max_coords, replace=False))


def check_array(name: str, array: np.ndarray, analytic: np.ndarray, evaluate: Callable[[], float],
                *, eps: float = 1e-6, method: str = "central", tol: float = 1e-6,
                coords: np.ndarray | None = None,
                patterns: Callable[[], list] | None = None) -> TensorCheck:
    """Compare `analytic` (d evaluate / d array) with finite differences over `coords`.

    array: float64, perturbed in place and restored; evaluate() reads it.
    patterns(): the discrete choices of the last evaluate(), for kink detection.
    """
    if array.dtype != np.float64:
        raise TypeError(f"gradcheck runs in float64; {name} is {array.dtype}")
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ValueError(f"{name}: array must be contiguous so it can be perturbed in place")
    coords = np.arange(flat.size) if coords is None else coords
    f0 = evaluate()
    noise_floor = 10 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / eps
    base = patterns() if patterns else None
    fd, bp, kinks = [], [], 0
    kept = []
    for k in coords:
        saved = flat[k]
        flat[k] = saved + eps
        f_plus = evaluate()
        same = _same(base, patterns() if patterns else None)
        if method == "central":
            flat[k] = saved - eps
            f_minus = evaluate()
            same = same and _same(base, patterns() if patterns else None)
            estimate = (f_plus - f_minus) / (2 * eps)
        else:
            estimate = (f_plus - f0) / eps
        flat[k] = saved
        if not same:
            kinks += 1
            continue
        fd.append(estimate)
        bp.append(analytic.reshape(-1)[k])
        kept.append(k)
    evaluate()  # leave the evaluator's state as it was at the unperturbed point
    fd_arr, bp_arr = np.array(fd, dtype=np.float64), np.array(bp, dtype=np.float64)
    abs_err = np.abs(fd_arr - bp_arr)
    worst = int(np.argmax(abs_err)) if abs_err.size else None
    rel = relative_error(fd_arr, bp_arr) if abs_err.size else 0.0
    max_abs = float(abs_err.max()) if abs_err.size else 0.0
    worst_index = [int(i) for i in np.unravel_index(kept[worst], array.shape)] if worst is not None else []
    return TensorCheck(name, len(kept), kinks, max_abs, rel, worst_index,
                       bool(rel <= tol or max_abs <= noise_floor), noise_floor)


def _same(a, b) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@dataclass
class Report:
    ok: bool
    tol: float
    eps: float
    method: str
    tensors: list[TensorCheck]
    backprop_seconds: float
    finite_diff_seconds: float

    @property
    def worst(self) -> TensorCheck:
        return max(self.tensors, key=lambda t: t.rel_err)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tensors"] = [t.as_dict() for t in self.tensors]
        d["cost_ratio"] = self.finite_diff_seconds / max(self.backprop_seconds, 1e-12)
        return d


def check_network(net, X: np.ndarray, y: np.ndarray, *, eps: float = 1e-6, method: str = "central",
                  tol: float = 1e-6, max_coords: int | None = None, inputs: bool = True,
                  seed: int = 0) -> Report:
    """Check every parameter tensor of a float64 network, and every layer's input gradient dx.

    X: (m, *input_shape), y: (m, *output_shape). Randomness inside the network
    (dropout) is reseeded before every evaluation so all of them see the same draw.
    The analytic side is `net.loss_and_input_grads`, whose backward is the in-place code
    that trains; the differences come from `net.objective` (parameters) and
    `net.objective_from(i, x, y)` (layer i's input x). A network that splits by rows may
    train with its batch cut in parts (training.parallel: batch), so that gradient,
    netcli.nn.split's, is checked too, over all of theta ("theta, batch in 2 parts").
    """
    if net.dtype != np.float64:
        raise TypeError("check_network needs a float64 network")
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    net.set_rng(np.random.default_rng(seed))
    rng_states = net.rng_state()

    def reseed():  # every evaluation sees the same dropout / corruption draws
        net.set_rng_state(rng_states)

    reseed()
    start = time.perf_counter()
    _, _, inputs, dinputs = net.loss_and_input_grads(net.theta, X, y)
    backprop_seconds = time.perf_counter() - start
    grads = {name: g.copy() for name, g in net.grads.items()}
    layer_inputs = [x.copy() for x in inputs]
    input_grads = [g.copy() for g in dinputs]

    def whole_objective():
        reseed()
        return sum(net.objective(net.theta, X, y))

    start = time.perf_counter()
    checks = []
    for slot in sorted(net.slots, key=lambda s: s.layer):
        array = net.params[slot.name]
        coords = pick_coordinates(array.size, max_coords, rng)
        checks.append(check_array(slot.name, array, grads[slot.name], whole_objective, eps=eps,
                                  method=method, tol=tol, coords=coords, patterns=net.kink_patterns))
    if inputs:
        for i, (x, dx) in enumerate(zip(layer_inputs, input_grads)):
            def from_layer(i=i, x=x):
                reseed()
                return sum(net.objective_from(i, x, y))
            coords = pick_coordinates(x.size, max_coords, rng)
            checks.append(check_array(f"layers.{i}.input", x, dx, from_layer, eps=eps, method=method,
                                      tol=tol, coords=coords, patterns=net.kink_patterns))
    if net.splits_by_rows and len(X) > 1 and net.size:
        from netcli.nn.split import SplitBatch
        reseed()   # the parts see the batch's own dropout / corruption draws, cut in rows
        with SplitBatch(net, 2) as split:
            split.loss_and_grad(net.theta, X, y)
        coords = pick_coordinates(net.theta.size, max_coords, rng)
        checks.append(check_array(SPLIT_CHECK, net.theta, net.grad.copy(), whole_objective,
                                  eps=eps, method=method, tol=tol, coords=coords, patterns=net.kink_patterns))
    fd_seconds = time.perf_counter() - start
    return Report(all(c.ok for c in checks), tol, eps, method, checks, backprop_seconds, fd_seconds)
