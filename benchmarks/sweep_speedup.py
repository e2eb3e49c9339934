"""The speed-up of an 8-trial sweep on 2 local Dask workers over the same trials one by one.

    python benchmarks/sweep_speedup.py [--epochs 100] [--repeats 3] [--workers 2] [--default-blas]

The trials: configs/digits_mlp.yaml (64-256-10, Adam, 1437 training rows) with a 10% validation
split and `epochs` epochs, over optimizer.lr = 0.001, 0.003, 0.01, 0.03 x regularization.l2 = 0, 1e-3.

Timed `repeats` times each:
  one by one, 1 BLAS thread   the 8 trials trained in this process one after the other, BLAS
                              limited to one thread as in each sweep worker
  one by one, default BLAS    (--default-blas) the same with BLAS's default threads (one per
                              core), as `netcli train` runs: as fast on an idle machine, far
                              slower when other processes keep the cores busy
  sweep                       netcli.sweep.run(..., workers=N) end to end: LocalCluster start,
                              the check on the workers, the 8 trials, the cluster's shutdown
  sweep, warm                 the same on a LocalCluster started beforehand
  cluster start               starting that LocalCluster and waiting for its workers
  ceiling                     what the machine allows: the throughput of N plain processes
                              training one trial each at once over one process alone
The speed-up is stated over the fastest one-by-one time, for the median and for the best of the
repeats (on a machine shared with other work, the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ("optimizer.lr=0.001,0.003,0.01,0.03", "regularization.l2=0,1e-3")


def plan(tmp: Path, name: str, epochs: int):
    from netcli import sweep
    return sweep.plan(ROOT / "configs" / "digits_mlp.yaml", GRID, sweep_dir=tmp / name,
                      overrides=[f"training.epochs={epochs}", "data.validation_split=0.1"])


def one_by_one(tmp: Path, name: str, epochs: int, one_thread: bool) -> float:
    from threadpoolctl import threadpool_limits

    from netcli.training import train
    trials = plan(tmp, name, epochs).trials
    start = time.perf_counter()
    with threadpool_limits(limits=1 if one_thread else None):
        for trial in trials:
            train(trial.config, run_dir=tmp / name / trial.name)
    return time.perf_counter() - start


def swept(tmp: Path, name: str, epochs: int, workers: int, client=None) -> float:
    from netcli import sweep
    p = plan(tmp, name, epochs)
    start = time.perf_counter()
    result = sweep.run(p, workers=workers, client=client)
    seconds = time.perf_counter() - start
    statuses = [r["status"] for r in result.records]
    if statuses != ["finished"] * len(p.trials):
        raise SystemExit(f"a trial did not finish: {statuses}")
    return seconds


_ONE_TRIAL = """
import sys, time
from threadpoolctl import threadpool_limits
from netcli.config import load_config
from netcli.training import train
config = load_config(sys.argv[1], ["training.epochs=" + sys.argv[2], "data.validation_split=0.1"])
with threadpool_limits(limits=1):
    start = time.perf_counter()
    train(config, run_dir=sys.argv[3])
print(time.perf_counter() - start)
"""


def ceiling(tmp: Path, name: str, epochs: int, workers: int) -> float:
    """The machine's own limit: the throughput of `workers` plain processes training one trial
    each at once, over one process alone (no Dask; timed inside each process)."""
    import subprocess

    def start(i):
        return subprocess.Popen([sys.executable, "-c", _ONE_TRIAL, str(ROOT / "configs" / "digits_mlp.yaml"),
                                 str(epochs), str(tmp / name / str(i))], stdout=subprocess.PIPE, text=True)

    alone = float(start("alone").communicate()[0])
    together = [start(i) for i in range(workers)]
    slowest = max(float(p.communicate()[0]) for p in together)
    return workers * alone / slowest


def warm_cluster(workers: int):
    from distributed import Client, LocalCluster

    from netcli import sweep
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env=sweep.ONE_THREAD_ENV, preload=["netcli.sweep"])
    client = Client(cluster)
    client.wait_for_workers(workers)
    return cluster, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--default-blas", action="store_true",
                        help="also time one by one with BLAS's default threads")
    args = parser.parse_args()

    times: dict[str, list[float]] = {"one by one, 1 BLAS thread": []}
    if args.default_blas:
        times["one by one, default BLAS"] = []
    times.update({"sweep": [], "sweep, warm": [], "cluster start": []})
    ceilings: list[float] = []
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sweep-speedup-"))
    try:
        for r in range(args.repeats):
            times["one by one, 1 BLAS thread"].append(one_by_one(tmp, f"seq1-{r}", args.epochs, True))
            if args.default_blas:
                times["one by one, default BLAS"].append(one_by_one(tmp, f"seq-{r}", args.epochs, False))
            times["sweep"].append(swept(tmp, f"sweep-{r}", args.epochs, args.workers))
            t0 = time.perf_counter()
            cluster, client = warm_cluster(args.workers)
            times["cluster start"].append(time.perf_counter() - t0)
            try:
                times["sweep, warm"].append(swept(tmp, f"warm-{r}", args.epochs, args.workers, client))
            finally:
                client.close()
                cluster.close()
            ceilings.append(ceiling(tmp, f"ceiling-{r}", args.epochs, args.workers))
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
                  + f", ceiling {ceilings[-1]:.2f}x", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"8 trials of digits_mlp, {args.epochs} epochs each, {args.workers} workers, {args.repeats} repeats")
    for label, pick in (("median", statistics.median), ("best (least disturbed by other processes)", min)):
        value = {k: pick(v) for k, v in times.items()}
        base = min(v for k, v in value.items() if k.startswith("one by one"))
        print(f" {label}:")
        for key, seconds in value.items():
            ratio = f"   speed-up {base / seconds:.2f}x" if key.startswith("sweep") else ""
            print(f"  {key:<27} {seconds:7.2f} s{ratio}")
        print(f"  {'one trial, one by one':<27} {base / 8:7.2f} s")
        print(f"  {'ceiling':<27} {pick(ceilings):7.2f} x   ({args.workers} plain processes at once, "
              f"one trial each, over one alone)")
    print(f"  load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}, "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
