"""Reading a large CSV of floats: netcli's reader against plain pandas.read_csv and (when git
can show it) the reader before the pandas one, the csv module cell by cell.

    python -m benchmarks.csv_read [--rows 200000] [--cols 100] [--runs 3] [--old-rev ce21c87]

Writes a CSV of rows x cols floats (the last column the target 'y') into a temporary folder,
then reads it once per run and reader, each time in a fresh subprocess, which reports its wall
time and its peak RSS (ru_maxrss) above the RSS after its imports. Prints a markdown table of
the medians; writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READERS = ["new", "pandas", "old"]


def make_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    """rows x cols normal floats, six significant digits, header x0..x{cols-2},y."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(cols - 1)] + ["y"]
    with open(path, "w") as f:
        for start in range(0, rows, 20000):
            block = pd.DataFrame(rng.normal(size=(min(20000, rows - start), cols)), columns=names)
            block.to_csv(f, index=False, header=start == 0, float_format="%.6g", lineterminator="\n")


def old_reader(rev: str):
    """read_table of netcli/data.py at git revision rev, or None when git cannot show it."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:netcli/data.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("netcli_data_old")
    sys.modules[module.__name__] = module      # dataclasses look their module up
    exec(compile(source, f"{rev}:netcli/data.py", "exec"), module.__dict__)
    return module.read_table


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux: KiB


def worker(reader: str, path: str, rev: str) -> dict:
    """One read in this process -> {seconds, peak_mib above the post-import baseline, shape}."""
    import numpy as np
    import pandas as pd
    from netcli.readers import read_table
    old = old_reader(rev) if reader == "old" else None     # compiled before the baseline
    read = {"new": lambda: read_table(path, "y").X,
            "pandas": lambda: pd.read_csv(path),
            "old": lambda: old(path, "y").X}[reader]
    np.zeros(1)
    baseline = _rss_mib()
    start = time.perf_counter()
    result = read()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _rss_mib() - baseline, "shape": list(result.shape)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-rev", default="ce21c87", help="git revision of the csv-module reader")
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--worker", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.old_rev)))
        return 0
    readers = args.readers.split(",")
    if "old" in readers and old_reader(args.old_rev) is None:
        print(f"(git cannot show {args.old_rev}:netcli/data.py; the old reader is left out)", file=sys.stderr)
        readers.remove("old")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floats.csv"
        make_csv(path, args.rows, args.cols)
        mib = path.stat().st_size / 2**20
        array_mib = args.rows * (args.cols - 1) * 8 / 2**20
        results = {r: [] for r in readers}
        for _ in range(args.runs):
            for r in readers:
                out = subprocess.run([sys.executable, "-m", "benchmarks.csv_read", "--old-rev", args.old_rev,
                                      "--worker", r, str(path)], cwd=ROOT, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"{r}: {out.stderr}")
                results[r].append(json.loads(out.stdout))
    pandas_s = statistics.median(x["seconds"] for x in results["pandas"]) if "pandas" in results else None
    print(f"{args.rows:,} x {args.cols} floats, {mib:.0f} MiB of CSV; the feature array is {array_mib:.0f} MiB; "
          f"medians of {args.runs} runs, one subprocess each\n")
    print("| reader | seconds | x pandas | peak MiB above baseline | x feature array |")
    print("|---|---|---|---|---|")
    names = {"new": "netcli read_table (pandas C parser)", "pandas": "pandas.read_csv(path)",
             "old": f"netcli at {args.old_rev} (csv module)"}
    for r, runs in results.items():
        s = statistics.median(x["seconds"] for x in runs)
        peak = statistics.median(x["peak_mib"] for x in runs)
        ratio = f"{s / pandas_s:.2f}" if pandas_s else "-"
        print(f"| {names[r]} | {s:.2f} | {ratio} | {peak:.0f} | {peak / array_mib:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
