"""netcli beside scikit-learn's MLPClassifier, the NumPy peer, on the same networks; and how
netcli's epoch time grows with rows and with width.

    python -m benchmarks.sklearn_side [--threads 1,2] [--rounds 3] [--quick] [--no-scaling | --no-peer]

W1 and W2 (benchmarks.workloads): the same layers, activations (relu / logistic), softmax
cross-entropy, SGD with momentum 0.9 (no Nesterov), learning rate, batch size, L2 weight and
shuffling, on the same data; netcli computes in float32 (its default dtype), scikit-learn in
the dtype of the array it is given: float32, and float64 as pandas.read_csv returns it. scikit-learn's epoch time is the difference of two fits (1 and
1 + EXTRA epochs, tol=0 so neither stops early) divided by EXTRA: its set-up and
validation-free bookkeeping cancel. netcli's is the median `seconds` of the epochs after the
first (the training loop's own time). The two sides alternate, `rounds` times, in one process,
with BLAS pinned to the same thread count; medians are reported.

Scaling: W1's network at 1x, 4x, 16x the rows, and W1 with its hidden layers at 1/4, 1x, 4x the
width, netcli only: seconds per epoch, and microseconds per row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

EXTRA = 3           # epochs in the second scikit-learn fit beyond the first
EPOCHS = 4          # netcli epochs per measurement (the first is a warm-up)


def netcli_epoch(config: dict, folder: Path, threads: int) -> float:
    """Median seconds of netcli's epochs after the first (metrics.jsonl), BLAS on `threads`."""
    import yaml

    from netcli.config import load_config
    from netcli.training import train
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    train(load_config(path, [f"training.threads={threads}"]), run_dir=folder / "run", overwrite=True)
    lines = (folder / "run" / "metrics.jsonl").read_text().splitlines()
    return statistics.median(json.loads(line)["seconds"] for line in lines[1:])


def sklearn_epoch(workload, X, y, threads: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits
    hidden = tuple(b["units"] for b in workload.layers[:-1])
    activation = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh"}[workload.layers[0]["activation"]]

    def fit(epochs: int) -> float:
        model = MLPClassifier(hidden, activation=activation, solver="sgd", learning_rate_init=0.01,
                              momentum=0.9, nesterovs_momentum=False, batch_size=workload.batch_size,
                              alpha=1e-4, max_iter=epochs, tol=0.0, n_iter_no_change=10**9, shuffle=True,
                              random_state=0, early_stopping=False)
        with threadpool_limits(limits=threads, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model.fit(X, y)
            return time.perf_counter() - start

    return (fit(1 + EXTRA) - fit(1)) / EXTRA


def peer(names: list[str], threads: list[int], rounds: int, quick: bool, folder: Path) -> list[str]:
    from benchmarks.workloads import WORKLOADS, write_data
    lines = ["| workload | threads | netcli s / epoch | scikit-learn s / epoch, float32 X | netcli / it | "
             "scikit-learn s / epoch, float64 X | netcli / it | target |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        w = WORKLOADS[name]
        data = write_data(w, folder, quick)
        with np.load(data) as npz:
            X, y = npz["X"], npz["y"]
        config = w.config_dict(data, EPOCHS)
        config["regularization"] = {"l2": 1e-4}
        for t in threads:
            ours, single, double = [], [], []
            for _ in range(rounds):
                ours.append(netcli_epoch(config, folder / f"{name}-{t}", t))
                single.append(sklearn_epoch(w, X, y, t))
                double.append(sklearn_epoch(w, X.astype(np.float64), y, t))
            a, b, c = (statistics.median(v) for v in (ours, single, double))
            target = "<= 0.5" if name == "W1" else ""
            lines.append(f"| {name} ({len(X):,} rows) | {t} | {a:.3f} | {b:.3f} | **{a / b:.2f}** | {c:.3f} | "
                         f"**{a / c:.2f}** | {target} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def scaling(rounds: int, quick: bool, folder: Path) -> list[str]:
    from dataclasses import replace

    from benchmarks.workloads import WORKLOADS, write_data
    base = WORKLOADS["W1"]
    lines = ["| W1 variant | rows | hidden | s / epoch | us / row |", "|---|---|---|---|---|"]
    rows = base.n(quick)
    variants = [(f"{k}x rows", replace(base, name=f"W1-{k}x", samples=rows * k, quick_samples=rows * k), None)
                for k in (1, 4, 16)]
    for f in (0.25, 4):
        layers = [dict(b, units=int(b["units"] * f)) if i < 2 else dict(b) for i, b in enumerate(base.layers)]
        variants.append((f"{f:g}x width", replace(base, name=f"W1-w{f:g}", layers=layers), None))
    for label, w, _ in variants:
        data = write_data(w, folder, quick)
        n = w.n(quick)
        times = [netcli_epoch(w.config_dict(data, EPOCHS), folder / w.name, 1) for _ in range(rounds)]
        t = statistics.median(times)
        hidden = "-".join(str(b["units"]) for b in w.layers[:-1])
        lines.append(f"| {label} | {n:,} | {hidden} | {t:.3f} | {t / n * 1e6:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the workloads' small data sizes")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="only the scaling table")
    args = ap.parse_args(argv)
    import os

    import sklearn
    threads = [int(t) for t in args.threads.split(",")]
    out = [f"netcli vs scikit-learn {sklearn.__version__} MLPClassifier; medians of {args.rounds} rounds; "
           f"load at start {os.getloadavg()[0]:.2f}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_peer:
            out += peer(args.workloads.split(","), threads, args.rounds, args.quick, Path(tmp))
        if not args.no_scaling:
            out += ["", "How netcli's epoch time grows (1 thread):", ""] + scaling(args.rounds, args.quick, Path(tmp))
    out.append(f"\nload at end {os.getloadavg()[0]:.2f}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
