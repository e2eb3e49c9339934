"""Per-step time of the first-order optimizers, and (with --old) the same against another
implementation of netcli/optim/first_order.py, side by side in one process.

    python -m benchmarks.optimizer_steps [--old PATH] [--sizes 2400000,20000] [--rounds 25]
                                         [--dtype float32] [--optimizers sgd,adam]

Theta is split into the tensors of a 784-h-h-10 MLP (h chosen to reach each size), so
step_and_measure walks the same parts the training loop hands it. BLAS runs on one thread
(the steps run on one anyway). Each round times every optimizer and implementation once, in
alternating order, over enough steps to last a few milliseconds; the table gives the median
of the rounds in microseconds of CPU time per step, and the ratio of wall-time medians beside
it (the machine is shared: quote medians, compare within one run).

With --old, first prints how far the two implementations drift apart: 50 steps of each
optimizer from the same theta and gradients (float32 and float64, 300,000 parameters, parts
whose bounds fall inside pieces; a strided float32 view and a float16 vector for the NumPy
fallback), the max abs difference of theta and the max relative difference of the squared
norms step_and_measure returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from netcli.optim import OPTIMIZERS
from netcli.registry import Registry

NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


def load_old(path: str) -> dict[str, type]:
    """The optimizer classes of another first_order.py, registered in a registry of their own."""
    import netcli.optim as optim
    registry, saved = Registry("optimizer"), optim.OPTIMIZERS
    optim.OPTIMIZERS = registry          # the file registers its classes under the same names
    try:
        spec = importlib.util.spec_from_file_location("old_first_order", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        optim.OPTIMIZERS = saved
    return {name: registry.get(name) for name in registry.names()}


def mlp_parts(size: int) -> list[tuple[int, int]]:
    """Tensor spans of a 784-h-h-10 MLP (W1, b1, W2, b2, W3, b3) with about `size` parameters."""
    h = max(1, int((-796 + (796 ** 2 + 4 * max(size - 10, 0)) ** 0.5) / 2))
    bounds, lo = [], 0
    for n in (784 * h, h, h * h, h, 10 * h, 10):
        bounds.append((lo, lo + n))
        lo += n
    return bounds


# -- differences -----------------------------------------------------------------------

def run_steps(cls, theta, grads, parts):
    opt = cls()
    opt.setup(theta)
    squares = []
    for g in grads:
        if parts is None:
            opt.step(theta, g.copy(), 0.01)
        else:
            squares.append(opt.step_and_measure(theta, g.copy(), 0.01, parts))
    return theta, opt, squares


def max_diff(a, b) -> float:
    """max |a - b| in float64, where equal values (the same inf, nan beside nan) count as 0 and
    a value beside nan or another inf as nan."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    return float(np.max(d)) if d.size else 0.0


def differences(old: dict, names: list[str], steps: int = 50, size: int = 300_000) -> None:
    parts = [(0, 100_003), (100_003, 100_010), (100_010, 250_010), (250_010, size)]
    cases = [("float32", np.float32, False), ("float64", np.float64, False),
             ("float32 strided", np.float32, True), ("float16", np.float16, False)]
    print(f"## old vs new after {steps} steps ({size:,} parameters, parts {parts})\n")
    print("| optimizer | dtype | theta, step() | theta, step_and_measure() | state | squared norms (rel.) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        for label, dtype, strided in cases:
            rng = np.random.default_rng(0)
            scale = 0.01 if dtype == np.float16 else 1.0   # float16: squared norms within range
            start = rng.normal(size=size).astype(dtype)
            grads = [(rng.normal(size=size) * scale).astype(dtype) for _ in range(steps)]
            row = []
            results = {}
            for mode in ("step", "measure"):
                for which, cls in (("old", old[name]), ("new", OPTIMIZERS.get(name))):
                    if strided:
                        holder = np.zeros(2 * size, dtype=dtype)
                        theta = holder[::2]
                        theta[...] = start
                        gs = []
                        for g in grads:
                            gh = np.zeros(2 * size, dtype=dtype)
                            gh[::2] = g
                            gs.append(gh[::2])
                    else:
                        theta, gs = start.copy(), grads
                    results[mode, which] = run_steps(cls, theta, gs, None if mode == "step" else parts)
            for mode in ("step", "measure"):
                row.append(max_diff(results[mode, "old"][0], results[mode, "new"][0]))
            o, n = results["measure", "old"][1].state_dict(), results["measure", "new"][1].state_dict()
            row.append(max(max_diff(o[k], n[k]) for k in o))
            so, sn = np.array(results["measure", "old"][2]), np.array(results["measure", "new"][2])
            row.append(float(np.max(np.abs(so - sn) / np.abs(so))))
            print(f"| {name} | {label} | " + " | ".join(f"{v:.3g}" for v in row) + " |")
    print()


# -- timings ---------------------------------------------------------------------------

def timings(impls: dict[str, dict], names: list[str], sizes: list[int], dtype, rounds: int,
            target_s: float = 0.004) -> dict:
    """{(name, size, mode, impl, "cpu" | "wall"): [us per step, one per round]}"""
    out = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        parts = mlp_parts(size)
        n = parts[-1][1]
        grad = (rng.normal(size=n) * 0.1).astype(dtype)
        setups = {}
        for name in names:
            for impl, classes in impls.items():
                opt = classes[name]()
                theta = rng.normal(size=n).astype(dtype)
                opt.setup(theta)
                setups[name, impl] = (opt, theta)
        for mode in ("measure", "step"):
            # steps per timing: enough for target_s, from one warm-up timing of each
            reps = {}
            for key, (opt, theta) in setups.items():
                t0 = time.perf_counter()
                for _ in range(3):
                    call(opt, theta, grad, parts, mode)
                per = (time.perf_counter() - t0) / 3
                reps[key] = max(1, int(target_s / per))
            for r in range(rounds):
                for name in names:
                    order = list(impls) if r % 2 == 0 else list(reversed(impls))
                    for impl in order:
                        opt, theta = setups[name, impl]
                        k = reps[name, impl]
                        c0, t0 = time.process_time(), time.perf_counter()
                        for _ in range(k):
                            call(opt, theta, grad, parts, mode)
                        t1, c1 = time.perf_counter(), time.process_time()
                        out.setdefault((name, n, mode, impl, "cpu"), []).append((c1 - c0) / k * 1e6)
                        out.setdefault((name, n, mode, impl, "wall"), []).append((t1 - t0) / k * 1e6)
    return out


def call(opt, theta, grad, parts, mode):
    if mode == "measure":
        opt.step_and_measure(theta, grad, 1e-4, parts)
    else:
        opt.step(theta, grad, 1e-4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.optimizer_steps")
    ap.add_argument("--old", metavar="PATH", help="another first_order.py to compare with")
    ap.add_argument("--sizes", default="2400000,20000")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--optimizers", default=",".join(NAMES))
    ap.add_argument("--no-differences", action="store_true", help="with --old: timings only")
    args = ap.parse_args(argv)
    names = args.optimizers.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    impls = {"new": {name: OPTIMIZERS.get(name) for name in names}}
    if args.old:
        impls = {"old": load_old(args.old), **impls}
    with threadpool_limits(1, user_api="blas"):
        if args.old and not args.no_differences:
            differences(impls["old"], names)
        print(f"## us (CPU time) per step, median of {args.rounds} rounds, {args.dtype}, BLAS on 1 thread\n",
              flush=True)
        t = timings(impls, names, sizes, np.dtype(args.dtype), args.rounds)
    n_sizes = sorted({key[1] for key in t}, reverse=True)
    head = "| optimizer | parameters | call | " + " | ".join(f"{i} (CPU)" for i in impls)
    head += " | new/old (CPU) | new/old (wall) |" if args.old else " | wall |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for n in n_sizes:
        for mode in ("measure", "step"):
            for name in names:
                cpu = {i: statistics.median(t[name, n, mode, i, "cpu"]) for i in impls}
                wall = {i: statistics.median(t[name, n, mode, i, "wall"]) for i in impls}
                row = f"| {name} | {n:,} | {'step_and_measure' if mode == 'measure' else 'step'} | "
                row += " | ".join(f"{cpu[i]:,.1f}" for i in impls)
                if args.old:
                    row += f" | {cpu['new'] / cpu['old']:.3f} | {wall['new'] / wall['old']:.3f}"
                else:
                    row += f" | {wall['new']:,.1f}"
                print(row + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
