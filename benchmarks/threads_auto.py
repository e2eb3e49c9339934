"""`training.threads: auto` against fixed thread counts, on an idle machine and beside one
competing CPU-bound process.

    python -m benchmarks.threads_auto [--cases digits_mlp,W1,...] [--epochs 4] [--rounds 2] [--quick]

Cases: the bundled configs (configs/*.yaml) and the workloads W1-W5 (benchmarks.workloads, their
quick data sizes with --quick). For each load (idle; `busy`: one `while True` process started
before and killed after) and each setting (1 thread; 2, 4, ..., the cores threads both ways,
`blas` and `batch` (training.parallel); and auto), a fresh subprocess (no thread variables in its
environment) trains `epochs` epochs (iterations for cg and L-BFGS) through netcli.training.train.
A network whose gradient does not split by rows (a sparsity penalty) has no batch way: its
`batch` cells are blank. Its time per epoch is the median of the epochs after the first
(`seconds` in metrics.jsonl: the training loop's own time); the settings alternate, `rounds`
times, and the medians of the rounds are reported. For auto, the thread count it chose and the
probe's own cost (its wall time before the first epoch, minus a fixed run's) are shown.
"Fixed" below means a pinned count and way.

Prints a markdown table; writes nothing into the repository. Goal (issue 15): auto within 10% of
the best fixed setting in every case (judged by choice / best), and never more than 1.2x one
thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["digits_mlp", "deep_mlp", "digits_cnn", "adding_lstm", "sparse_autoencoder", "digits_lbfgs",
           "regression"]
WORKLOADS = ["W1", "W2", "W3", "W4", "W5"]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")


def case_config(case: str, folder: Path, epochs: int, quick: bool) -> Path:
    """A config file for the case, `epochs` long (max_iter for full-batch optimizers)."""
    import yaml
    from netcli.config import load_config
    if case in WORKLOADS:
        from benchmarks.workloads import WORKLOADS as ALL, write_data
        w = ALL[case]
        cfg = w.config_dict(write_data(w, folder, quick), epochs)
    else:
        cfg = load_config(ROOT / "configs" / f"{case}.yaml").as_dict()
        cfg["training"]["epochs"] = epochs
        cfg["training"]["checkpoint_every"] = 1_000_000
        cfg["data"]["test"] = None
    if cfg["optimizer"]["type"] in ("cg", "lbfgs"):
        cfg["optimizer"]["max_iter"] = epochs
    path = folder / f"{case}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def setting_overrides(setting: str) -> list[str]:
    """'1', '2 blas', '2 batch', 'auto' -> the --set overrides that pin (or not) the threads and way."""
    count, _, way = setting.partition(" ")
    return [f"training.threads={count}", f"training.parallel={way or 'auto'}"]


def label(threads: dict) -> str:
    """summary.json's threads -> the fixed setting it equals."""
    return "1" if threads["used"] == 1 else f"{threads['used']} {threads.get('way', 'blas')}"


def measure(config: Path, setting: str, run_dir: Path) -> dict:
    """One training in a fresh process: {"epoch": median seconds per epoch after the first,
    "threads": the fixed setting the run equals, "reason", "startup": wall seconds before the
    first epoch}."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import json, sys, time; t0 = time.perf_counter(); from netcli.training import train; "
            "from netcli.log import Reporter\n"
            "class R(Reporter):\n"
            "    def epoch(self, record):\n"
            "        self.first = getattr(self, 'first', time.perf_counter())\n"
            f"r = R(quiet=True); s = train({str(config)!r}, run_dir={str(run_dir)!r}, overwrite=True, "
            f"overrides={setting_overrides(setting)!r}, reporter=r).summary\n"
            "print(json.dumps({'summary': s, 'startup': r.first - t0}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{config.name} {setting}: {done.stderr.strip().splitlines()[-1]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = [json.loads(line)["seconds"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    used = out["summary"]["threads"]
    return {"epoch": statistics.median(seconds[1:] or seconds), "threads": label(used),
            "reason": used["reason"], "startup": out["startup"]}


class Competitor:
    """One CPU-bound process (a Python busy loop) for the duration of a `with` block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def run_case(case: str, settings: list[str], epochs: int, rounds: int, quick: bool, folder: Path) -> list[dict]:
    """Per round, {setting: measure(...)}: the settings alternate within each round."""
    config = case_config(case, folder, epochs, quick)
    return [{s: measure(config, s, folder / f"run-{case}-{s}") for s in settings} for _ in range(rounds)]


def report(case: str, load: str, rounds: list[dict], all_fixed: list[str]) -> str:
    """One table row. `auto / best` compares auto's own runs with the best fixed count's;
    `choice / best` judges auto's choice alone: the time of the fixed count it chose, in the same
    round, against that round's best fixed count (the noise between processes, up to +-30% on
    this shared machine, then cancels out of the choice)."""
    fixed = [s for s in all_fixed if all(r[s]["threads"] == s for r in rounds)]   # no batch way: left out
    median = {s: statistics.median(r[s]["epoch"] for r in rounds) for s in [*fixed, "auto"]}
    best = min(fixed, key=lambda s: median[s])
    choice = statistics.median(r[r["auto"]["threads"]]["epoch"] / min(r[s]["epoch"] for s in fixed)
                               for r in rounds if r["auto"]["threads"] in fixed)
    vs_best, vs_one = median["auto"] / median[best], median["auto"] / median["1"]
    cells = " | ".join(f"{median[s] * 1e3:.1f}" if s in median else "" for s in all_fixed)
    probe = statistics.median(r["auto"]["startup"] - statistics.median(r[s]["startup"] for s in fixed)
                              for r in rounds)
    chose = "/".join(r["auto"]["threads"] for r in rounds)
    ok = choice <= 1.10 and vs_one <= 1.20
    return (f"| {case} | {load} | {cells} | {median['auto'] * 1e3:.1f} | {chose} | {best} | {vs_best:.2f} | "
            f"{choice:.2f} | {vs_one:.2f} | {probe:+.2f} | {'yes' if ok else '**no**'} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CONFIGS + WORKLOADS))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the workloads' small data sizes")
    ap.add_argument("--loads", default="idle,busy")
    args = ap.parse_args(argv)
    from netcli.threads import available_cores
    cores = available_cores()
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    fixed = ["1"] + [f"{c} {way}" for c in (counts + [cores])[1:] for way in ("blas", "batch")]
    settings = fixed + ["auto"]
    head = " | ".join(f"{s} ms" for s in fixed)
    lines = [f"{cores} cores; ms per epoch (median of epochs 2..{args.epochs}, median of {args.rounds} rounds); "
             f"load at start {os.getloadavg()[0]:.2f}", "",
             f"| case | load | {head} | auto ms | auto chose (by round) | best fixed | auto / best | "
             f"choice / best | auto / 1 thr | probe s | goal met |",
             "|---|---|" + "---|" * len(fixed) + "---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for load in args.loads.split(","):
            for case in args.cases.split(","):
                folder = Path(tmp) / load / case
                folder.mkdir(parents=True)
                if load == "busy":
                    with Competitor():
                        res = run_case(case, settings, args.epochs, args.rounds, args.quick, folder)
                else:
                    res = run_case(case, settings, args.epochs, args.rounds, args.quick, folder)
                print(report(case, load, res, fixed), flush=True)
    print(f"\nload at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
