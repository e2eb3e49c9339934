"""Profile netcli alone on one workload: cProfile over the training epochs.

    python -m benchmarks.profile W1 [--threads 1] [--epochs 2] [--quick] [--top 25]

Trains through the same path as the benchmark (validate -> prepare -> Trainer.fit) and
prints the functions by total time (tottime) and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    ap.add_argument("workload")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from threadpoolctl import threadpool_limits
    from benchmarks.workloads import WORKLOADS, write_data
    from benchmarks.worker import HookReporter
    from netcli.runs import RunDir
    from netcli.prepare import prepare, rng_streams
    from netcli.training import Trainer
    w = WORKLOADS[args.workload.upper()]
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads):
        tmp = Path(tmp)
        config = w.config(write_data(w, tmp, args.quick), args.epochs)
        rngs = rng_streams(0)
        prepared = prepare(config, rngs)
        trainer = Trainer(prepared, RunDir.create(w.name, tmp, tmp / "run"), HookReporter(lambda r: None), rngs)
        prof = cProfile.Profile()
        prof.enable()
        trainer.fit()
        prof.disable()
        seconds = [r["seconds"] for r in trainer.progress.history]
        print(f"{w.name}: epoch seconds {seconds}", file=sys.stderr)
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(key).print_stats(args.top)
        print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
