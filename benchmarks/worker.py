"""One measurement in its own process, so thread settings are clean and peak RSS is per workload.

    python -m benchmarks.worker MODE --workload W1 --data W1.npz --threads 1 [--repeats 5]

MODE: time (netcli and PyTorch, alternating epochs), mem-netcli / mem-torch (peak RSS of
one side alone), fd (W1's gradcheck cost), gemm (NumPy float32 GEMM GFLOP/s).
Prints one JSON object on stdout. The parent sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS;
threadpoolctl and torch.set_num_threads pin the same count again after the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set, MiB: VmHWM, the high-water mark of this process image.
    (ru_maxrss would do, but on Linux it carries over the parent's RSS at fork time.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def limit_threads(n: int, with_torch: bool):
    from threadpoolctl import threadpool_limits
    import scipy.optimize  # noqa: F401  (load scipy's BLAS too, so the limit reaches it)
    if with_torch:
        import torch
        torch.set_num_threads(n)
    return threadpool_limits(limits=n)


class HookReporter:
    """A quiet netcli Reporter that calls `on_epoch(record)` after each netcli epoch: the
    place where the PyTorch epoch runs, so the two alternate epoch by epoch."""

    def __init__(self, on_epoch):
        from netcli.log import Reporter
        self._inner = Reporter(quiet=True)
        self.on_epoch = on_epoch

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def epoch(self, record):
        self.on_epoch(record)


# -- time ------------------------------------------------------------------------------

def time_workload(w, data: Path, threads: int, repeats: int, tmp: Path, with_torch: bool,
                  parallel: str = "auto") -> dict:
    import numpy as np
    from netcli.runs import RunDir
    from netcli.prepare import prepare, rng_streams
    from netcli.threads import blas_count, blas_threads
    from netcli.training import Trainer

    limiter = limit_threads(threads, with_torch)  # noqa: F841  (held for the process's life)
    epochs = repeats + 1   # the first of each side is a warm-up, not timed
    config = w.config(data, epochs, threads=threads, parallel=parallel)
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs)
    net = prepared.net
    arrays = dict(np.load(data))
    torch_run = None
    out = {"workload": w.name, "threads": threads, "n": len(prepared.train), "epochs_timed": repeats}
    if with_torch:
        from benchmarks.torch_side import TorchRun
        torch_run = TorchRun(w, arrays, net.params)
        probe = np.arange(min(256, len(prepared.train)))
        X, y = prepared.train.take(probe)
        data_term, _ = net.objective(net.theta, X, y, train=False)
        out["initial_loss"] = {"netcli": data_term, "torch": torch_run.loss_on(probe)}
    load0 = os.getloadavg()[0]

    # netcli on `threads` threads as `netcli train` uses them: training.threads pinned, and with
    # training.parallel auto the way (BLAS's threads or the batch in parts) probed at that count
    choice = Trainer(prepared, RunDir.create(w.name, tmp, tmp / "probe"), HookReporter(lambda r: None),
                     rngs).choose_threads()
    out["netcli_way"] = {"used": choice.count, "way": choice.way, "reason": choice.reason}
    if w.full_batch:
        theta0 = net.theta.copy()
        options = {"maxiter": w.optimizer["max_iter"], "maxcor": 10, "gtol": 1e-9, "ftol": 1e-9}
        nc, tt, nc_evals, tt_evals, nc_wall, nc_cpu, tt_cpu = [], [], [], [], [], [], []
        for rep in range(epochs):
            net.theta[...] = theta0
            run = RunDir.create(w.name, tmp, tmp / "run", overwrite=True)
            trainer = Trainer(prepared, run, HookReporter(lambda r: None), rngs)
            trainer.threads = choice           # as training does: the threads for loss_and_grad,
            t0, c0 = time.perf_counter(), time.process_time()
            with blas_count(1):                # scipy's L-BFGS-B on one (training._fit)
                trainer.fit()
            run.unlock()          # the next repetition takes the same run directory
            nc_wall.append(time.perf_counter() - t0)
            nc_cpu.append(time.process_time() - c0)
            nc.append(sum(r["seconds"] for r in trainer.progress.history))
            nc_evals.append(trainer.progress.step)
            if torch_run is not None:
                from benchmarks.torch_side import load_params
                load_params(torch_run.names, {s.name: theta0[s.offset:s.offset + s.size].reshape(s.spec.shape)
                                              for s in net.slots})
                t0, c0 = time.perf_counter(), time.process_time()
                with blas_count(1):            # scipy on one BLAS thread here too
                    nfev, _ = torch_run.minimize(net.slots, theta0, options, 1e-9,
                                                 around_gradient=lambda: blas_count(threads))
                tt.append(time.perf_counter() - t0)
                tt_cpu.append(time.process_time() - c0)
                tt_evals.append(nfev)
        out.update(netcli_s=nc[1:], torch_s=tt[1:], netcli_evals=nc_evals[1:], torch_evals=tt_evals[1:],
                   netcli_wall_s=nc_wall[1:], netcli_cpu_s=nc_cpu[1:], torch_cpu_s=tt_cpu[1:],
                   unit="run of 100 iterations",
                   final_loss={"netcli": trainer.progress.history[-1]["loss"]})
        evals = statistics.median(nc_evals[1:])
        out["flops"] = w.flops_per_epoch(len(prepared.train)) * evals
    else:
        torch_s, torch_loss, torch_cpu, netcli_cpu = [], [], [], []
        shuffle = rng_streams(config.spec.seed)["shuffle"]   # the same stream netcli's batches draw from
        mark = [0.0]

        def torch_epoch(record):
            # CPU time of netcli's epoch: since the end of the last hook (the epoch plus the last
            # one's few bookkeeping steps); on one thread it leaves out time lost to other processes
            netcli_cpu.append(time.process_time() - mark[0])
            if torch_run is not None:
                perm = shuffle.permutation(len(torch_run))
                t0, c0 = time.perf_counter(), time.process_time()
                torch_loss.append(torch_run.epoch(perm, w.batch_size))
                torch_s.append(time.perf_counter() - t0)
                torch_cpu.append(time.process_time() - c0)
            mark[0] = time.process_time()

        run = RunDir.create(w.name, tmp, tmp / "run", overwrite=True)
        trainer = Trainer(prepared, run, HookReporter(torch_epoch), rngs)
        trainer.threads = choice
        mark[0] = time.process_time()
        with blas_threads(choice.blas):
            trainer.fit()
        history = trainer.progress.history
        out.update(netcli_s=[r["seconds"] for r in history][1:], torch_s=torch_s[1:], unit="epoch",
                   netcli_cpu_s=netcli_cpu[1:], torch_cpu_s=torch_cpu[1:],
                   loss={"netcli": [r["loss"] for r in history], "torch": torch_loss})
        if torch_run is not None:
            out["same_batch_order"] = (shuffle.bit_generator.state == rngs["shuffle"].bit_generator.state)
        out["flops"] = w.flops_per_epoch(len(prepared.train))
    out["load_during"] = [load0, os.getloadavg()[0]]
    out["dtypes"] = sorted({str(a.dtype) for a in (net.theta, net.grad, *net.activations)})
    return out


# -- peak memory of one side alone -----------------------------------------------------

def mem_netcli(w, data: Path, threads: int, tmp: Path) -> dict:
    import numpy as np
    limiter = limit_threads(threads, with_torch=False)  # noqa: F841
    from netcli.training import train
    base = peak_rss_mb()
    config = w.config(data, 2)
    result = train(config, run_dir=tmp / "run", overwrite=True)
    net_bytes = 0
    from netcli.prepare import build_network
    net = build_network(config)
    net_bytes = net.theta.nbytes
    arrays = np.load(data)
    data_bytes = arrays["X"].size * 4 + (0 if "y" not in arrays else len(arrays["y"]) * w.classes * 4)
    return {"workload": w.name, "side": "netcli", "baseline_mb": base, "peak_mb": peak_rss_mb(),
            "data_mb": data_bytes / 2**20, "params_mb": net_bytes / 2**20,
            "status": result.summary["status"]}


def mem_torch(w, data: Path, threads: int) -> dict:
    import numpy as np
    limiter = limit_threads(threads, with_torch=True)  # noqa: F841
    import torch  # noqa: F401
    from benchmarks.torch_side import TorchRun, build_model
    base = peak_rss_mb()
    arrays = dict(np.load(data))
    model, names = build_model(w)
    params = {k: v.detach().numpy().copy() for k, v in names.items()}
    run = TorchRun(w, arrays, params)
    del arrays
    rng = np.random.default_rng(0)
    if w.full_batch:
        from netcli.prepare import build_network
        net = build_network(w.config(data, 1))
        run.minimize(net.slots, net.theta.copy(),
                     {"maxiter": w.optimizer["max_iter"], "maxcor": 10, "gtol": 1e-9, "ftol": 1e-9}, 1e-9)
    else:
        for _ in range(2):
            run.epoch(rng.permutation(len(run)), w.batch_size)
    return {"workload": w.name, "side": "torch", "baseline_mb": base, "peak_mb": peak_rss_mb()}


# -- finite differences vs backprop ----------------------------------------------------

def fd_cost(w, data: Path, threads: int, coords: int) -> dict:
    import numpy as np
    limiter = limit_threads(threads, with_torch=False)  # noqa: F841
    from netcli import gradcheck as gc
    from netcli.data import one_hot
    from netcli.prepare import build_network
    config = w.config(data, 1)
    net = build_network(config, dtype=np.float64)
    arrays = np.load(data)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(arrays["X"]), 4, replace=False))   # `netcli gradcheck`'s 4 examples
    X = arrays["X"][idx].astype(np.float64).reshape(4, *w.per_example_shape)
    y = one_hot(arrays["y"][idx], np.arange(w.classes), "", np.float64)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        net.loss_and_grad(net.theta, X, y)
        times.append(time.perf_counter() - t0)
    backprop = statistics.median(times)
    report = gc.check_network(net, X, y, max_coords=coords or None, inputs=False)
    checked = sum(t.checked + t.kinks for t in report.tensors)
    per_coord = report.finite_diff_seconds / checked
    return {"workload": w.name, "params": int(net.size), "coords_checked": checked,
            "full_sweep": checked == net.size, "fd_seconds": report.finite_diff_seconds,
            "fd_per_coord_s": per_coord, "fd_all_params_s": per_coord * net.size,
            "backprop_s": backprop, "ratio": per_coord * net.size / backprop, "ok": report.ok,
            "worst_rel_err": report.worst.rel_err}


# -- the ceiling -----------------------------------------------------------------------

def gemm(threads: int, sizes=(512, 1024, 2048), reps: int = 7) -> dict:
    import numpy as np
    limiter = limit_threads(threads, with_torch=False)  # noqa: F841
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        np.matmul(a, b, out=c)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - t0)
        out[str(n)] = 2.0 * n ** 3 / statistics.median(times) / 1e9
    return {"threads": threads, "gflops": out, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    ap.add_argument("mode", choices=["time", "mem-netcli", "mem-torch", "fd", "gemm"])
    ap.add_argument("--workload")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--coords", type=int, default=0)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--parallel", choices=["auto", "blas", "batch"], default="auto",
                    help="netcli's training.parallel (how more than one thread is used)")
    args = ap.parse_args(argv)
    from benchmarks.workloads import WORKLOADS
    w = WORKLOADS.get(args.workload)
    with tempfile.TemporaryDirectory(prefix="netcli-bench-") as tmp:
        tmp = Path(tmp)
        if args.mode == "time":
            result = time_workload(w, args.data, args.threads, args.repeats, tmp, not args.no_torch,
                                   args.parallel)
        elif args.mode == "mem-netcli":
            result = mem_netcli(w, args.data, args.threads, tmp)
        elif args.mode == "mem-torch":
            result = mem_torch(w, args.data, args.threads)
        elif args.mode == "fd":
            result = fd_cost(w, args.data, args.threads, args.coords)
        else:
            result = gemm(args.threads)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
