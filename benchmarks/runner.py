"""`python -m benchmarks`: netcli's training path and PyTorch CPU on workloads W1-W5.

For each thread count and workload, one worker process (benchmarks/worker.py):
  - builds the workload's config with netcli.config.validate over an NPZ file, prepares it
    with netcli.training.prepare and trains it with netcli.training.Trainer, the code
    `netcli train` runs;
  - trains the same network in PyTorch, started from the same parameters, on the same
    float32 data in the same batch order, one PyTorch epoch after each netcli epoch
    (alternating, so both see the same machine load); the first epoch of each is a warm-up;
  - BLAS (threadpoolctl + OPENBLAS_NUM_THREADS) and PyTorch (set_num_threads) get the same
    thread count; netcli uses them as `netcli train` does with training.threads pinned to it:
    on more than one thread, its probe picks the way (BLAS's threads, or the batch cut in
    parts, one thread each; --parallel pins it), said in the table.
Then per workload, peak RSS of netcli alone and PyTorch alone (one process each), the cost
of W1's gradient check against one backprop gradient, and NumPy's float32 GEMM rate, the
ceiling for all of it. Medians throughout. Writes benchmarks/RESULTS.md (and results.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def worker(mode: str, threads: int, *extra: str) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-W", "ignore", "-m", "benchmarks.worker", mode, "--threads", str(threads), *extra]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_version() -> str | None:
    try:
        return md.version("torch")
    except md.PackageNotFoundError:
        return None


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy as np  # noqa: F401
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_info
    blas = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                   "num_threads", "prefix")} for d in threadpool_info()]
    versions = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "torch", "threadpoolctl", "netcli"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(), "blas": blas,
            "versions": versions}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: a tenth of the samples, 3 timed epochs; writes RESULTS.md only with --out")
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5", help="comma-separated subset, e.g. W1,W3")
    ap.add_argument("--threads", default=None,
                    help="thread count(s) for BLAS and PyTorch, e.g. 2 or 1,2 (default: 1 and all cores)")
    ap.add_argument("--repeats", type=int, default=None, help="timed epochs per side (default 5; quick 3)")
    ap.add_argument("--fd-coords", type=int, default=None,
                    help="coordinates per tensor for W1's gradient check (0: all; default 2000, quick 100)")
    ap.add_argument("--no-torch", action="store_true", help="netcli only")
    ap.add_argument("--parallel", choices=["auto", "blas", "batch"], default="auto",
                    help="netcli's training.parallel on more than one thread (default auto: probed)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument("--no-time", action="store_true", help="skip the timing (memory and FD only)")
    ap.add_argument("--render", type=Path, default=None, metavar="RESULTS_JSON",
                    help="only rewrite the report from a results.json of an earlier run")
    ap.add_argument("--out", type=Path, default=None, help="where to write the report "
                    "(default benchmarks/RESULTS.md; with --quick, nowhere)")
    args = ap.parse_args(argv)

    from benchmarks.workloads import WORKLOADS, write_data
    if args.render is not None:
        results = json.loads(args.render.read_text())
        text = report(results, list(results["time"].get(str(results["threads"][0])) or results["memory"]))
        print(text)
        (args.out or HERE / "RESULTS.md").write_text(text)
        return 0
    names = [n.strip().upper() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    cores = os.cpu_count() or 1
    threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else sorted({1, cores})
    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 3:
        ap.error("--repeats must be at least 3 (a median of at least 3 timed epochs)")
    fd_coords = args.fd_coords if args.fd_coords is not None else (100 if args.quick else 2000)
    with_torch = not args.no_torch and torch_version() is not None
    out = args.out if args.out is not None else (None if args.quick else HERE / "RESULTS.md")

    info = machine()
    info["load_start"] = os.getloadavg()
    info["started"] = dt.datetime.now().isoformat(timespec="seconds")
    log(f"netcli benchmarks: {', '.join(names)}; threads {threads}; {repeats} timed epochs; "
        f"torch {'yes' if with_torch else 'no'}; load {info['load_start'][0]:.2f}")
    results: dict = {"machine": info, "quick": args.quick, "repeats": repeats, "threads": threads,
                     "gemm": {}, "time": {}, "memory": {}, "fd": None}
    with tempfile.TemporaryDirectory(prefix="netcli-bench-data-") as tmp:
        tmp = Path(tmp)
        data = {n: write_data(WORKLOADS[n], tmp, args.quick) for n in names}
        for t in threads:
            g = worker("gemm", t)
            results["gemm"].setdefault(str(t), []).append(g)
            log(f"  GEMM float32, {t} thread(s): " +
                ", ".join(f"{k}: {v:.0f} GFLOP/s" for k, v in g["gflops"].items()))
        for t in ([] if args.no_time else threads):
            for n in names:
                extra = ["--workload", n, "--data", str(data[n]), "--repeats", str(repeats),
                         "--parallel", args.parallel]
                r = worker("time", t, *extra, *([] if with_torch else ["--no-torch"]))
                results["time"].setdefault(str(t), {})[n] = r
                ratio = med(r["netcli_s"]) / med(r["torch_s"]) if r["torch_s"] else float("nan")
                way = r.get("netcli_way", {}).get("way", "blas") if t > 1 else ""
                log(f"  {n} {t} thread(s){' (' + way + ')' if way else ''}: netcli {med(r['netcli_s']):.4f} s, torch "
                    f"{med(r['torch_s']) if r['torch_s'] else float('nan'):.4f} s, ratio {ratio:.2f}  "
                    f"(load {r['load_during'][1]:.1f})")
        if not args.no_memory:
            t = max(threads)
            for n in names:
                m = {"netcli": worker("mem-netcli", t, "--workload", n, "--data", str(data[n]))}
                if with_torch:
                    m["torch"] = worker("mem-torch", t, "--workload", n, "--data", str(data[n]))
                results["memory"][n] = m
                log(f"  {n} peak RSS: netcli {m['netcli']['peak_mb']:.0f} MiB"
                    + (f", torch {m['torch']['peak_mb']:.0f} MiB" if "torch" in m else ""))
        if "W1" in names:
            fd = worker("fd", min(threads), "--workload", "W1", "--data", str(data["W1"]),
                        "--coords", str(fd_coords))
            results["fd"] = fd
            log(f"  FD: gradcheck over W1's {fd['params']} parameters ~ {fd['fd_all_params_s']:.1f} s "
                f"vs one backprop {fd['backprop_s'] * 1e3:.2f} ms ({fd['ratio']:,.0f}x)")
        for t in threads:
            results["gemm"][str(t)].append(worker("gemm", t))
    info["load_end"] = os.getloadavg()
    info["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    text = report(results, names)
    print(text)
    if out is not None:
        out.write_text(text)
        out.with_name("results.json").write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {out}")
    return 0


# -- the report ----------------------------------------------------------------------

def gemm_peak(results: dict, t: int) -> float:
    return max(max(g["gflops"].values()) for g in results["gemm"][str(t)])


def best_of(results: dict, n: str) -> dict | None:
    """Each side at its own fastest thread setting: the comparison the verdicts use."""
    rows = [(t, results["time"][str(t)][n]) for t in results["threads"] if n in results["time"].get(str(t), {})]
    rows = [(t, r) for t, r in rows if r["torch_s"]]
    if not rows:
        return None
    tn, rn = min(rows, key=lambda tr: med(tr[1]["netcli_s"]))
    tt, rt = min(rows, key=lambda tr: med(tr[1]["torch_s"]))
    netcli_s, torch_s = med(rn["netcli_s"]), med(rt["torch_s"])
    share = rn["flops"] / netcli_s / 1e9 / gemm_peak(results, tn)
    return {"netcli_s": netcli_s, "netcli_threads": tn, "torch_s": torch_s, "torch_threads": tt,
            "ratio": netcli_s / torch_s, "share": share}


def verdicts(results: dict, names: list[str]) -> dict[str, str]:
    """Per workload: the ratio at each thread count (like for like), and each side at its own
    fastest thread count (best against best); met or missed for each."""
    from benchmarks.workloads import WORKLOADS
    out = {}
    for n in names:
        w = WORKLOADS[n]
        parts = []
        for t in results["threads"]:
            r = results["time"].get(str(t), {}).get(n)
            if not r or not r["torch_s"]:
                continue
            ratio = med(r["netcli_s"]) / med(r["torch_s"])
            ok = ratio <= w.target_ratio
            text = f"{t} thread(s): {ratio:.2f}"
            if n == "W1":
                share = r["flops"] / med(r["netcli_s"]) / 1e9 / gemm_peak(results, t)
                ok = ok and share >= 0.70
                text += f", {share:.0%} of the {t}-thread GEMM peak"
            parts.append(f"{text} ({'met' if ok else 'missed'})")
        b = best_of(results, n)
        if b is None:
            out[n] = "not compared (no PyTorch)"
            continue
        ok = b["ratio"] <= w.target_ratio and (n != "W1" or b["share"] >= 0.70)
        share = f", {b['share']:.0%} of GEMM peak" if n == "W1" else ""
        parts.append(f"best against best: {b['ratio']:.2f}{share}, netcli {b['netcli_s']:.4f} s at "
                     f"{b['netcli_threads']} thread(s), PyTorch {b['torch_s']:.4f} s at {b['torch_threads']} "
                     f"thread(s) ({'met' if ok else 'missed'})")
        if n == "W1":
            mem = results["memory"].get("W1", {}).get("netcli")
            if mem:
                budget = 2 * (mem["data_mb"] + mem["params_mb"])
                parts.append(f"peak RSS {mem['peak_mb']:.0f} MiB against 2 x (data + params) = {budget:.0f} MiB "
                             f"({'met' if mem['peak_mb'] < budget else 'missed'})")
        out[n] = "; ".join(parts)
    return out


def report(results: dict, names: list[str]) -> str:
    from benchmarks.workloads import WORKLOADS
    m = results["machine"]
    v = m["versions"]
    lines = ["# netcli vs PyTorch CPU: benchmark results", ""]
    lines.append(f"Generated by `python -m benchmarks{' --quick' if results['quick'] else ''}` "
                 f"({m['started']} to {m['finished']}). Do not edit by hand: the notes at the end "
                 f"come from `benchmarks/notes.md`.")
    if results["quick"]:
        lines += ["", "**Quick run**: a tenth of the samples, 3 timed epochs; for a smoke test, not for quoting."]
    lines += ["", "## Machine", "",
              f"- CPU: {m['cpu']}, {m['cores']} cores ({m['platform']})",
              "- BLAS (threadpoolctl): " + "; ".join(
                  f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['threading_layer']}, "
                  f"{b['prefix']})" for b in m["blas"]),
              f"- Python {v['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}, PyTorch {v['torch']}, "
              f"threadpoolctl {v['threadpoolctl']}, netcli {v['netcli']}",
              f"- Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in m['load_start'])}; "
              f"at end: {', '.join(f'{x:.2f}' for x in m['load_end'])}. The machine is shared: a load "
              f"above {m['cores']} means other processes were competing for the {m['cores']} cores "
              f"during the measurement.",
              "", "## The ceiling: NumPy float32 GEMM (n x n @ n x n)", "",
              "| threads | " + " | ".join(f"n = {k}" for k in results["gemm"][str(results["threads"][0])][0]["gflops"])
              + " | peak used below |",
              "|---|" + "---|" * (len(results["gemm"][str(results["threads"][0])][0]["gflops"]) + 1)]
    for t in results["threads"]:
        runs = results["gemm"][str(t)]
        sizes = runs[0]["gflops"].keys()
        cells = [" / ".join(f"{r['gflops'][s]:.0f}" for r in runs) for s in sizes]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {gemm_peak(results, t):.0f} GFLOP/s |")
    lines += ["", "GFLOP/s, median of 7 products, measured before / after the workloads; the peak is "
              "the best of these (the load changes between the two).", ""]
    lines += ["## Time per epoch", "",
              f"Median of {results['repeats']} timed epochs per side (the first epoch of each is a "
              "warm-up), netcli and PyTorch alternating epoch by epoch in one process, same data, "
              "same initial parameters, same batch order. netcli's time is the training loop's own "
              "epoch time (`seconds` in metrics.jsonl: batches, forward, backward, optimizer, "
              "bookkeeping; not validation or checkpoint writing). W5's unit is one whole L-BFGS run "
              "of 100 iterations. Brackets: fastest and slowest timed epoch. On more than one thread, "
              "netcli's way of using them follows its time: blas (BLAS's own threads) or batch (the "
              "batch cut in parts, one thread each), as its probe chose. FLOPs: 3 x the forward "
              "pass's matmul/conv FLOPs.", ""]
    for t in [t for t in results["threads"] if results["time"].get(str(t))]:
        peak = gemm_peak(results, t)
        lines += [f"### {t} thread(s)", "",
                  "| workload | netcli s | PyTorch s | ratio | target | netcli GFLOP/s | % of GEMM peak | "
                  "load (1 min) |", "|---|---|---|---|---|---|---|---|"]
        for n in names:
            r = results["time"][str(t)][n]
            w = WORKLOADS[n]
            nc, tt = r["netcli_s"], r["torch_s"]
            gf = r["flops"] / med(nc) / 1e9
            ratio = f"**{med(nc) / med(tt):.2f}**" if tt else "-"
            tcell = f"{med(tt):.4f} [{min(tt):.4f}-{max(tt):.4f}]" if tt else "-"
            way = r.get("netcli_way", {}).get("way")
            way = f" ({way})" if t > 1 and way else ""
            lines.append(f"| {n} | {med(nc):.4f} [{min(nc):.4f}-{max(nc):.4f}]{way} | {tcell} | {ratio} | "
                         f"{w.target} | {gf:.1f} | {gf / peak:.0%} | "
                         f"{r['load_during'][0]:.1f} -> {r['load_during'][1]:.1f} |")
        lines.append("")
    lines += ["Workloads:", ""]
    first = results["time"].get(str(results["threads"][0]), {})
    for n in names:
        w = WORKLOADS[n]
        samples = f"{first[n]['n']:,} samples; " if n in first else ""
        lines.append(f"- **{n}** {w.title}; {samples}"
                     f"{w.forward_flops() * 3 / 1e6:.2f} MFLOP per sample per step.")
    w5 = first.get("W5")
    if w5:
        lines.append(f"- W5 function evaluations per run: netcli {w5['netcli_evals'][0]}, PyTorch "
                     f"{w5['torch_evals'][0] if w5['torch_evals'] else '-'} (both through scipy's "
                     f"L-BFGS-B with the same options and the same float32 start).")
    lines.append("")
    checks = []
    for t in results["threads"]:
        for n in names:
            r = results["time"].get(str(t), {}).get(n, {})
            if "initial_loss" in r:
                il = r["initial_loss"]
                checks.append(abs(il["netcli"] - il["torch"]) <= 1e-4 * max(1.0, abs(il["torch"])))
    if checks:
        lines += [f"Same networks: the initial loss on the first 256 examples agrees between netcli and "
                  f"PyTorch to 1e-4 in {sum(checks)} of {len(checks)} runs; per-epoch losses are in "
                  f"results.json.", ""]
    if results["memory"]:
        lines += ["## Peak memory", "",
                  "Peak RSS (VmHWM) of a process that trains the workload for 2 epochs (W5: one "
                  "run) through `netcli.train()`, or PyTorch alone; the baseline is the RSS after the "
                  "imports, before the data is read. Data: float32 features plus float32 one-hot "
                  "targets, as netcli holds them.", "",
                  "| workload | data + params | netcli peak | netcli / (data + params) | netcli baseline | "
                  "PyTorch peak | PyTorch baseline |", "|---|---|---|---|---|---|---|"]
        for n in names:
            mm = results["memory"].get(n)
            if not mm:
                continue
            a = mm["netcli"]
            size = a["data_mb"] + a["params_mb"]
            b = mm.get("torch")
            lines.append(f"| {n} | {size:.1f} MiB | {a['peak_mb']:.0f} MiB | {a['peak_mb'] / size:.2f}x | "
                         f"{a['baseline_mb']:.0f} MiB | "
                         + (f"{b['peak_mb']:.0f} MiB | {b['baseline_mb']:.0f} MiB |" if b else "- | - |"))
        lines.append("")
    fd = results["fd"]
    if fd:
        how = ("over every parameter" if fd["full_sweep"] else
               f"on {fd['coords_checked']:,} of the {fd['params']:,} coordinates (at most "
               f"{max(1, fd['coords_checked'] // 6):,}-ish per tensor), extrapolated linearly to all of them")
        lines += ["## Finite differences vs backpropagation (W1)", "",
                  f"`netcli gradcheck` (central differences, float64, 4 examples as the command's default) "
                  f"{how}: {fd['fd_per_coord_s'] * 1e3:.3f} ms per coordinate, "
                  f"{fd['fd_all_params_s']:,.0f} s for all {fd['params']:,} parameters, against "
                  f"{fd['backprop_s'] * 1e3:.3f} ms for one backprop gradient of all of them: "
                  f"**{fd['ratio']:,.0f}x**. Each coordinate costs two forward passes, each O(W), so the "
                  f"sweep is O(W^2) while backprop is O(W): the ratio grows with the network "
                  f"(about 2W/3 forward passes' worth, W = {fd['params']:,}). Worst relative error of the "
                  f"checked coordinates: {fd['worst_rel_err']:.1e} ({'pass' if fd['ok'] else 'FAIL'}).", ""]
    lines += ["## Targets", "", "Ratios of the median times above: like for like at each thread count, and "
              "each side at its own fastest thread count. W1's share of GEMM peak is against the peak "
              "at the same thread count.", ""]
    from benchmarks.workloads import WORKLOADS as W
    for n, text in verdicts(results, names).items():
        lines.append(f"- {n} ({W[n].target}): {text}")
    lines.append("")
    notes = HERE / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    return "\n".join(lines)
