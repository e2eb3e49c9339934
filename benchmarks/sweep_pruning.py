"""What pruning saves: one 16-trial search run without a pruner, with the median pruner and
with successive halving; the epochs trained and the best validation metric of each.

    python benchmarks/sweep_pruning.py [--trials 16] [--epochs 30] [--sampler random] [--workers 2]
                                       [--parallel N]

The trials: configs/digits_mlp.yaml (64-256-10, Adam, cosine schedule, 1437 training rows) with a
10% validation split and `epochs` epochs, over optimizer.lr = 1e-4:1e-1:log and
regularization.l2 = 1e-6:1e-2:log, asked from an Optuna study (netcli.sweep.search) with the
pruners' defaults as `--prune median` and `--prune halving` give them (MedianPruner: 5 complete
trials before any is pruned, from epoch 1; SuccessiveHalvingPruner: rungs at epochs 1, 4, 16,
the best quarter promoted).

With `--sampler random` (the default) every run asks the same 16 points (trial n's point comes
from the seed and n), so the three rows differ only by what the pruner stopped. With TPE the
points depend on what the earlier trials scored, so the rows differ by more. Which trials a
pruner stops depends on which trials had ended when it was asked: with several workers that is
a matter of timing, and the epochs can differ a little between runs; --parallel 1 runs the trials
one at a time and the numbers are the same on every run.

Reported for each run: the epochs trained in all (of trials x epochs), the trials finished and
pruned, the best trial's validation accuracy (what the sweep ranks by) and the lowest validation
loss of the finished trials, the best trial's test accuracy, and the wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANGES = ("optimizer.lr=1e-4:1e-1:log", "regularization.l2=1e-6:1e-2:log")
PRUNERS = (None, "median", "halving")


def searched(tmp: Path, prune: str | None, args, client) -> dict:
    from netcli import sweep
    from netcli.files import read_jsonl
    plan = sweep.plan(ROOT / "configs" / "digits_mlp.yaml", (), RANGES, search=args.sampler, trials=args.trials,
                      prune=prune, sweep_dir=tmp / (prune or "none"),
                      overrides=[f"training.epochs={args.epochs}", "data.validation_split=0.1"])
    start = time.perf_counter()
    result = sweep.run(plan, client=client, parallel=args.parallel)
    seconds = time.perf_counter() - start
    records = result.records
    bad = [r["status"] for r in records if r["status"] not in ("finished", "pruned")]
    if bad:
        raise SystemExit(f"a trial neither finished nor was pruned: {bad}")
    finished = [r for r in records if r["status"] == "finished"]
    val_losses = [m["val_loss"] for r in finished for m in read_jsonl(result.path / r["name"] / "metrics.jsonl")]
    best = result.best
    return {"pruner": prune or "none", "epochs": sum(r["epochs"] for r in records),
            "finished": len(finished), "pruned": len(records) - len(finished),
            "best_val_accuracy": best["best"]["value"], "best_val_loss": min(val_losses),
            "test_accuracy": best["test"]["accuracy"], "best": best["name"], "seconds": seconds,
            "points": [r["overrides"] for r in records]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sampler", choices=("random", "tpe"), default="random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallel", type=int, help="most trials at once [default: one per worker]")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from netcli import sweep
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sweep-pruning-"))
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env=sweep.ONE_THREAD_ENV, preload=["netcli.sweep"])
    client = Client(cluster)
    rows = []
    try:
        client.wait_for_workers(args.workers)
        for prune in PRUNERS:
            rows.append(searched(tmp, prune, args, client))
            r = rows[-1]
            print(f"{r['pruner']}: {r['epochs']} epochs, {r['seconds']:.1f}s", file=sys.stderr, flush=True)
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)

    same = all(r["points"] == rows[0]["points"] for r in rows)
    print(f"{args.sampler} search of {args.trials} trials x {args.epochs} epochs of digits_mlp "
          f"(lr, l2), {args.workers} workers, at most {args.parallel or args.workers} trials at once"
          f"{'; the same points in every run' if same else ''}")
    header = f"  {'pruner':<8} {'epochs':>13} {'finished':>8} {'pruned':>6} {'best val_acc':>12} " \
             f"{'best val_loss':>13} {'test acc':>8} {'wall':>7}  best trial"
    print(header)
    total = args.trials * args.epochs
    for r in rows:
        print(f"  {r['pruner']:<8} {r['epochs']:>5} of {total:<5} {r['finished']:>8} {r['pruned']:>6} "
              f"{r['best_val_accuracy']:>12.4f} {r['best_val_loss']:>13.4f} {r['test_accuracy']:>8.4f} "
              f"{r['seconds']:>6.1f}s  {r['best']}")
    print(f"  load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
