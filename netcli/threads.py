"""How many BLAS threads a job computes on: a number the user gives (`--threads N`,
`training.threads: N`), or `auto`, which measures.

`auto` for training times one training step (loss_and_grad on a first batch, the parameters
and random streams left as they were) at 1 thread and at each power of two up to the cores this
process may use, interleaved, and takes more threads only when they are at least
MIN_SPEEDUP faster, by the median and in most rounds: a step so short that threads cannot pay (under TINY_STEP seconds on one
thread) is not probed at all. On a machine that other work shares, one thread usually wins:
OpenBLAS's threads wait for each other at every GEMM, and a thread that lost its core stalls
them all (measured: 9-20x slower steps for small nets).

Thread counts change the last bits of a GEMM (OpenBLAS splits large products differently), so
the count a run used is recorded in its summary.json; `--resume` reuses it.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from netcli.errors import NetcliError

AUTO = "auto"
MIN_SPEEDUP = 1.10     # more threads must make a step this much faster (less than 10% is not worth their risk)
TINY_STEP = 0.5e-3     # seconds: a step shorter than this on one thread stays on one thread
PROBE_SECONDS = 0.5    # about the most a probe spends timing steps (each count gets 3 rounds or more)
BLOCK_SECONDS = 5e-3   # a round times consecutive steps for about this long (at most 8 steps)
INFERENCE_WORK = 5e7   # rows x parameters above which eval / predict use every core (measured on W1's
                       # network, idle, 2 cores: 2 threads 5.8x slower at 7e6, 0.76x at 2.4e7, 0.6x at 7e7)


@dataclass(frozen=True)
class ThreadChoice:
    """The BLAS threads a job uses, and why (said in the training log)."""

    count: int
    setting: int | str          # what was asked: a number, or 'auto'
    reason: str

    def as_dict(self) -> dict:
        return {"setting": self.setting, "used": self.count, "reason": self.reason}


def parse_threads(value) -> int | str:
    """'auto' or a positive whole number (the --threads option, the training.threads key)."""
    if value is None or value == AUTO:
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"+{n}"):
        raise NetcliError(f"--threads: expected auto or a whole number of at least 1, got {value!r}")
    return n


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask; a container's CPU quota is not seen)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:       # macOS, Windows
        return max(1, os.cpu_count() or 1)


@contextmanager
def blas_threads(count: int | None):
    """BLAS (NumPy's OpenBLAS or MKL) limited to `count` threads inside the block (None: as it is)."""
    if count is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=count, user_api="blas"):
        yield


_controllers = None


@contextmanager
def blas_count(count: int):
    """BLAS on `count` threads inside the block, as it was after it: cheap enough around every
    step (~3 us each way), as the library controllers are looked up once, on the first call
    (the libraries loaded by then: NumPy's and, once scipy.optimize is imported, SciPy's)."""
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController
            _controllers = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:   # BLAS cannot be inspected: leave its threads alone
            _controllers = []
    saved = [(lib, lib.get_num_threads()) for lib in _controllers]
    for lib, n in saved:
        if n != count:
            lib.set_num_threads(count)
    try:
        yield
    finally:
        for lib, n in saved:
            if n != count:
                lib.set_num_threads(n)


def blas_limit() -> int | None:
    """The fewest threads any BLAS library of this process is set to now (None: none found)."""
    try:
        from threadpoolctl import threadpool_info
        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    except Exception:
        return None
    return min(counts) if counts else None


def fixed(count: int, reason: str = "asked for") -> ThreadChoice:
    return ThreadChoice(count, count, reason)


def for_inference(setting, rows: int, parameters: int) -> ThreadChoice:
    """eval / predict: one pass, nothing to probe; threads only for a lot of work."""
    if setting != AUTO:
        return fixed(int(setting))
    cores = available_cores()
    if cores == 1 or rows * parameters < INFERENCE_WORK:
        return ThreadChoice(1, AUTO, f"{rows:,} rows x {parameters:,} parameters is little work")
    return ThreadChoice(cores, AUTO, f"{rows:,} rows x {parameters:,} parameters")


def for_training(setting, step: Callable[[], object], cores: int | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> ThreadChoice:
    """The thread count to train with: `setting` itself, or for 'auto' the fastest of 1, 2, 4, ...
    cores threads at `step` (one training step that changes nothing) that beats one thread by
    MIN_SPEEDUP, by the median and in most of the interleaved rounds; a limit BLAS already has
    (the environment's, a sweep worker's) is kept."""
    if setting != AUTO:
        return fixed(int(setting))
    if cores is None:
        cores, limit = available_cores(), blas_limit()
        if limit is not None and limit < cores:   # OMP_NUM_THREADS=1, a sweep worker's limit: kept
            return ThreadChoice(limit, AUTO, f"BLAS is limited to {limit} here (the environment or the caller)")
    if cores == 1:
        return ThreadChoice(1, AUTO, "one core")
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    if counts[-1] != cores:
        counts.append(cores)

    def timed(n: int, steps: int = 1) -> float:
        """Seconds per step over `steps` consecutive steps on n threads."""
        with blas_threads(n):
            start = clock()
            for _ in range(steps):
                step()
            return (clock() - start) / steps

    timed(1)                               # warm: caches, BLAS buffers, the first-call costs
    single = timed(1)
    if single < TINY_STEP:
        return ThreadChoice(1, AUTO, f"a step takes {single * 1e3:.2f} ms on one thread; too short for threads")
    for n in counts[1:]:
        timed(n)
    # blocks of consecutive steps (threads that stay awake, as in training), counts interleaved
    # in every round so that a change of load hits them all; a count wins a round when it is
    # MIN_SPEEDUP faster than one thread there, and is taken only if it wins most rounds too
    steps = max(1, min(8, round(BLOCK_SECONDS / single)))
    rounds = max(3, min(9, int(PROBE_SECONDS / (single * steps * len(counts)))))
    times = {n: [] for n in counts}
    for _ in range(rounds):
        for n in counts:
            times[n].append(timed(n, steps))
    median = {n: statistics.median(t) for n, t in times.items()}
    wins = {n: sum(t * MIN_SPEEDUP < one for t, one in zip(times[n], times[1])) for n in counts}
    faster = [n for n in counts[1:] if median[n] * MIN_SPEEDUP < median[1] and 3 * wins[n] >= 2 * rounds]
    best = min(faster, key=lambda n: (median[n], n)) if faster else 1
    shown = ", ".join(f"{n} thread{'s' if n > 1 else ''} {median[n] * 1e3:.2f} ms" for n in counts)
    return ThreadChoice(best, AUTO, f"probe, median step: {shown}")
