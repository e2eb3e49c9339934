"""How many threads a job computes on, and how: a number the user gives (`--threads N`,
`training.threads: N`), or `auto`, which measures.

More than one thread can be used two ways (`training.parallel`):
    blas   BLAS's own threads inside each GEMM; NumPy's elementwise passes stay on one core;
    batch  the batch cut in N row parts computed at once, one thread each, BLAS on one thread
           (netcli.nn.split; only for networks whose gradient splits by rows: no sparsity
           penalty).

`auto` for training times a training step (Trainer.probe_step: the gradient and the
optimizer's update on one of the first batches, the parameters and random streams left as
they were) at 1 thread and at each power of two up to the cores this process may use, both
ways, in blocks alternating with one thread's, and takes more threads only when they are at
least MIN_SPEEDUP faster, by the median and in most rounds; a step so short that threads cannot
pay (under TINY_STEP seconds on one thread) is not probed at all. On a machine that other work
shares, one thread usually wins: OpenBLAS's threads wait for each other at every GEMM, and a
thread that lost its core stalls them all (measured: 9-20x slower steps for small nets). A
pinned count N with `parallel: auto` probes the two ways at N, and takes BLAS's threads only
when they beat the batch way by MIN_SPEEDUP.

Thread counts and ways change the last bits of the gradient (OpenBLAS splits large products
differently; parts are summed in another order), so what a run used is recorded in its
summary.json; `--resume` reuses it.
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
BLOCK_SECONDS = 20e-3  # a round times consecutive steps for about this long (2 to 8 steps), after one
                       # untimed step: a way's first step after another way's is slow (a sleeping core
                       # wakes, BLAS's threads spin on), not what training, which stays on one, sees
INFERENCE_WORK = 5e7   # rows x parameters above which eval / predict use every core (measured on W1's
                       # network, idle, 2 cores: 2 threads 5.8x slower at 7e6, 0.76x at 2.4e7, 0.6x at 7e7)


BLAS, BATCH = "blas", "batch"   # the two ways of using more than one thread (training.parallel)


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a job uses, how (`way`: BLAS or BATCH), and why (said in the training log)."""

    count: int
    setting: int | str          # what was asked: a number, or 'auto'
    reason: str
    way: str = BLAS

    @property
    def split(self) -> int:
        """Row parts per batch: count for the batch way, else 1 (BLAS threads within one part)."""
        return self.count if self.way == BATCH and self.count > 1 else 1

    @property
    def blas(self) -> int:
        """Threads BLAS itself gets."""
        return 1 if self.split > 1 else self.count

    def describe(self) -> str:
        way = "" if self.count == 1 else (", batch cut in parts" if self.split > 1 else ", in BLAS")
        return f"{self.count}{way} ({self.setting}: {self.reason})"

    def as_dict(self) -> dict:
        return {"setting": self.setting, "used": self.count, "way": self.way, "reason": self.reason}


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
                 clock: Callable[[], float] = time.perf_counter, parallel: str = AUTO,
                 split_step: Callable[[int], Callable[[], object]] | None = None) -> ThreadChoice:
    """The threads to train with: `setting` itself, or for 'auto' the fastest of 1, 2, 4, ...
    cores threads at `step` (one training step that changes nothing) that beats one thread by
    MIN_SPEEDUP, by the median and in most of the interleaved rounds; a limit BLAS already has
    (the environment's, a sweep worker's) is kept.

    parallel: 'blas', 'batch' or 'auto' (both are timed); split_step(n): the same step with the
    batch cut in n parts, or None when the network cannot split (then the way is BLAS).
    """
    ways = [w for w in (BLAS, BATCH) if parallel in (AUTO, w) and (w == BLAS or split_step is not None)]
    unsplit = ""
    if not ways:
        ways, unsplit = [BLAS], ("; in BLAS, as parallel: batch needs a network whose gradient splits by "
                                 "rows (no sparsity penalty)")
    if setting != AUTO:
        n = int(setting)
        if n == 1 or len(ways) == 1:
            return ThreadChoice(n, n, "asked for" + unsplit, ways[0])
        # the batch way first: BLAS's threads must beat it by MIN_SPEEDUP, as they lose more in the
        # training loop than probe steps show (measured, 2 cores: W3's epoch 2.02 s on BLAS's two
        # threads, 1.36 s in batch parts; W4's 2.0-2.3 against 1.5-1.9)
        return _probe(n, [(n, BATCH), (n, BLAS)], step, split_step, clock, pinned=True)
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
    return _probe(AUTO, [(1, BLAS)] + [(n, way) for n in counts[1:] for way in ways], step, split_step, clock)


def _probe(setting, candidates: list[tuple[int, str]], step, split_step, clock, pinned: bool = False) -> ThreadChoice:
    """Time the candidates (count, way) in interleaved rounds, each against one thread in the same
    round; take the fastest that beats the first candidate by MIN_SPEEDUP, by the median and in
    most rounds, else the first.

    The candidates that leave BLAS on one thread (one thread, the batch way) are timed first, in
    rounds of their own, and BLAS's threads only after them: OpenBLAS's threads spin on a core
    for a while after each threaded call (measured: W3's batch parts 14-18 ms a step just after
    BLAS's two threads, 9-10 ms in a row), which training on the batch way never sees.
    """
    one = (1, BLAS)
    steps_for = {c: step if c[1] == BLAS else split_step(c[0]) for c in {one, *candidates}}

    def timed(c: tuple[int, str], steps: int = 1, lead_in: bool = False) -> float:
        """Seconds per step over `steps` consecutive steps of candidate c (after one untimed)."""
        n, way = c
        with blas_threads(n if way == BLAS else 1):
            if lead_in:
                steps_for[c]()
            start = clock()
            for _ in range(steps):
                steps_for[c]()
            return (clock() - start) / steps

    timed(one)                             # warm: caches, BLAS buffers, the first-call costs
    first = timed(one)
    if first < TINY_STEP:
        if pinned:
            return ThreadChoice(candidates[0][0], setting, f"a step takes {first * 1e3:.2f} ms; too short "
                                f"to measure the ways", BLAS)
        return ThreadChoice(1, AUTO, f"a step takes {first * 1e3:.2f} ms on one thread; too short for threads")
    quiet = [c for c in candidates if c != one and (c[0] == 1 or c[1] == BATCH)]
    loud = [c for c in candidates if c != one and c not in quiet]
    # blocks of consecutive steps (threads that stay awake, as in training), interleaved with
    # one thread's in every round so that a change of load hits them all
    steps = max(2, min(8, round(BLOCK_SECONDS / first)))
    blocks = 2 + len(quiet) + len(loud)
    rounds = max(3, min(9, int(PROBE_SECONDS / (first * (steps + 1) * blocks))))
    ratio: dict = {one: [1.0] * rounds}
    median_time: dict = {}
    for phase in (quiet, loud):
        if not phase:
            continue
        for c in phase:
            timed(c)
        times = {c: [] for c in (one, *phase)}
        for _ in range(rounds):
            for c in (one, *phase):
                times[c].append(timed(c, steps, lead_in=True))
        for c in phase:
            ratio[c] = [t / t1 for t, t1 in zip(times[c], times[one])]
            median_time[c] = statistics.median(times[c])
        median_time.setdefault(one, statistics.median(times[one]))
    base = candidates[0]
    median = {c: statistics.median(r) for c, r in ratio.items()}
    wins = {c: sum(q * MIN_SPEEDUP < b for q, b in zip(ratio[c], ratio[base])) for c in ratio}
    faster = [c for c in candidates[1:] if median[c] * MIN_SPEEDUP < median[base] and 3 * wins[c] >= 2 * rounds]
    best = min(faster, key=lambda c: (median[c], c)) if faster else base

    def name(c):
        n, way = c
        return "1 thread" if n == 1 else f"{n} threads {'in BLAS' if way == BLAS else 'batch parts'}"
    shown = ", ".join(f"{name(c)} {median_time[c] * 1e3:.2f} ms" for c in (one, *quiet, *loud))
    return ThreadChoice(best[0], setting, f"probe, median step: {shown}", best[1])
