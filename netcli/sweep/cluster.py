"""The sweep on the client: start (or reach) a Dask cluster, check its workers, submit the trials
that are not recorded yet (a search's as its study gives them, netcli.sweep.sources), and record
each one as it ends; Ctrl-C stops new trials and lets the running ones stop at their epoch's end."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netcli import __version__
from netcli.errors import Interrupted, NetcliError
from netcli.sweep.planning import Sweep, Trial
from netcli.sweep.ranking import best_trial, score
from netcli.sweep.sources import StudyTrials, TrialList
from netcli.sweep.store import ENDED, STOP_FILE, append_record, write_sweep_file
from netcli.sweep.worker import check_worker, run_trial

CONNECT_TIMEOUT = "10s"  # for --scheduler
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


@dataclass
class SweepResult:
    path: Path
    records: list[dict]            # one per trial, in trial order (status "pending" if it never ran)
    best: dict | None
    ran: int = 0                   # trials run by this call (the rest were recorded already)


def run(sweep: Sweep, workers: int | None = None, scheduler: str | None = None, console=None,
        hook: Callable | None = None, new: bool = True, client=None, parallel: int | None = None) -> SweepResult:
    """Run the trials missing from trials.jsonl on Dask -> every trial's record.

    workers: LocalCluster processes (default: the CPU count; at most one per trial to run);
    scheduler: the address of a running scheduler instead; client: a connected
    distributed.Client to use (and leave open) instead of either. new: a sweep from plan()
    (writes sweep.yaml), False for one from load() (runs what trials.jsonl lacks).
    parallel: a search's most trials in flight at once (default: the cluster's worker threads;
    1 makes a TPE search the same on any cluster). hook(task, epoch_record) is called on the
    worker at the end of every epoch (tests use it to crash a worker mid-trial). Raises
    Interrupted on Ctrl-C once the running trials have stopped."""
    import logging
    from distributed import Client, LocalCluster

    say = (lambda text: console.print(text, markup=False, highlight=False)) if console else (lambda text: None)
    source = StudyTrials(sweep, new, parallel) if sweep.search is not None else TrialList(sweep, new)
    done = source.done
    if not source.remaining:
        say(f"all {source.total} trials of {sweep.path} are recorded already")
        return _result(source, done, 0)
    cluster = None
    own_client = client is None
    created = False
    try:
        if client is not None:
            pass
        elif scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise NetcliError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({e})") from None
            _wait_for_workers(client, scheduler)
        else:
            n = max(1, min(workers or os.cpu_count() or 1, source.remaining))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR, env=ONE_THREAD_ENV, preload=[__name__])
            client = Client(cluster)
        if not sweep.path.exists():
            sweep.path.mkdir(parents=True)
            created = True
        _check_workers(client, sweep, source, created)
        if new:
            write_sweep_file(sweep)
        source.start(sum(client.nthreads().values()))
        stop_file = sweep.path / STOP_FILE
        stop_file.unlink(missing_ok=True)
        n_workers = len(client.scheduler_info()["workers"])
        where = f"the Dask scheduler at {scheduler} ({n_workers} workers)" if scheduler else \
            f"a local Dask cluster of {n_workers} workers" if cluster else f"{n_workers} Dask workers"
        what = f"{sweep.search.describe()}" if sweep.search else f"sweep of {source.total} trials"
        say(f"{what} into {sweep.path}: running {source.remaining}"
            + (f" ({len(done)} recorded already)" if done else "")
            + (f", at most {source.capacity} at once" if source.capacity else "") + f" on {where}")
        return _submit_and_collect(client, sweep, source, stop_file, hook, say)
    finally:
        if own_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def dask_setup(worker) -> None:
    """Dask's preload hook, run in every LocalCluster worker (restarted ones too): the terminal's
    Ctrl-C reaches the whole process group, and it is the client's to handle (stop the sweep
    cleanly), not the workers' (which would die mid-trial)."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait_for_workers(client, address: str) -> None:
    try:
        client.wait_for_workers(1, timeout=30)
    except (TimeoutError, OSError):
        raise NetcliError(f"--scheduler {address}: the scheduler has no workers; start some with "
                          f"`dask worker {address}`") from None


def _check_workers(client, sweep: Sweep, source, created: bool) -> None:
    """Every worker must see the data and the sweep directory (a cluster on other machines needs
    them on a shared file system) and run the same netcli (and have Optuna, to report to a pruner)."""
    paths = source.paths()
    sweep_dir = str(sweep.path.resolve())
    try:
        answers = client.run(check_worker, paths, sweep_dir, source.needs_optuna)
    except Exception as e:
        answers = None
        problem = f"the workers cannot run netcli ({type(e).__name__}: {e}); install netcli {__version__} " \
                  f"in the workers' Python environment"
    else:
        problem = None
        for address, a in answers.items():
            if a["missing"]:
                here = [p for p in a["missing"] if not os.path.exists(p)]
                problem = f"worker {address} cannot see {', '.join(a['missing'])}; " + (
                    f"{'it does' if len(here) == 1 else 'they do'} not exist here either" if here else
                    "data and the sweep directory must be on a file system every worker shares, at the same path")
            elif not a["writable"]:
                problem = f"worker {address} cannot write to {sweep_dir}; the sweep directory must be " \
                          f"on a file system every worker shares, at the same path (--sweep-dir)"
            elif a["netcli"] != __version__:
                problem = f"worker {address} runs netcli {a['netcli']}, this is {__version__}"
            elif source.needs_optuna and not a.get("optuna"):
                problem = f"worker {address} cannot import optuna, which --prune needs on every worker: " \
                          f"pip install 'netcli[search]' in the workers' Python environment"
            if problem:
                break
    if problem:
        if created:
            try:
                sweep.path.rmdir()
            except OSError:
                pass
        raise NetcliError(problem)


def _task(sweep: Sweep, trial: Trial, stop_file: Path, hook, extra: dict) -> dict:
    return {**trial.entry(), "config": trial.data, "source": sweep.source,
            "run_dir": str((sweep.path / trial.name).resolve()), "stop_file": str(stop_file.resolve()),
            "hook": hook, **extra}


def _submit_and_collect(client, sweep, source, stop_file, hook, say) -> SweepResult:
    """Submit what the source gives (up to its capacity in flight), record each trial as it ends
    and tell the source, which may then give more."""
    from distributed import as_completed

    records = dict(source.done)
    futures = {}
    total, count = source.total, len(records)
    pending = set()
    flowing = as_completed()
    ran = 0

    def record_ended(record: dict) -> None:
        nonlocal count
        append_record(sweep.path, record)
        records[record["name"]] = record
        count += 1
        say(_progress_line(record, count, total))

    def fill() -> None:
        nonlocal ran
        while source.capacity is None or len(pending) < source.capacity:
            trial = source.next()
            if trial is None:
                return
            ran += 1
            if isinstance(trial, dict):   # a trial that could not be made: its record
                record_ended(trial)
                continue
            key = f"netcli-trial-{trial.name}-{os.urandom(4).hex()}"
            future = client.submit(run_trial, _task(sweep, trial, stop_file, hook, source.task(trial)),
                                   key=key, pure=False)
            futures[future] = trial
            pending.add(future)
            flowing.add(future)

    def collect(future):
        pending.discard(future)
        record = _record_of(future, futures[future], sweep)
        if record["status"] in ("not started", "cancelled"):
            return
        record_ended(record)
        source.ended(futures[future], record)

    try:
        fill()
        for future in flowing:
            collect(future)
            if not stop_file.exists():
                fill()
    except KeyboardInterrupt:
        stop_file.touch()
        say("interrupted: no new trial starts; running trials stop at the end of their epoch and keep "
            "a checkpoint (Ctrl-C again to stop waiting)")
        _cancel_queued(client, pending)
        try:
            for future in as_completed([f for f in pending if not f.cancelled()]):
                collect(future)
        except KeyboardInterrupt:
            pass
        finished = sum(r["status"] in ENDED for r in records.values())
        raise Interrupted(f"interrupted; {finished} of {total} trials are recorded in {sweep.trials_file}; "
                          f"carry on with: netcli sweep --resume {sweep.path}") from None
    finally:
        stop_file.unlink(missing_ok=True)
    return _result(source, records, ran)


def _cancel_queued(client, pending: set) -> None:
    """Cancel the trials no worker has started (the others stop at their next epoch's end)."""
    try:
        running = {k for keys in client.processing().values() for k in keys}
    except Exception:
        running = {f.key for f in pending}
    queued = [f for f in pending if f.key not in running and not f.done()]
    if queued:
        client.cancel(queued)


def _record_of(future, trial: Trial, sweep: Sweep) -> dict:
    if future.status == "finished":
        return future.result()
    if future.cancelled():
        return {**trial.entry(), "status": "cancelled"}
    error = future.exception()
    name = type(error).__name__
    message = f"{name}: {error}"
    if name == "KilledWorker":
        message = f"the workers running this trial died repeatedly ({error}); see the worker logs"
    return {**trial.entry(), "run_dir": str((sweep.path / trial.name).resolve()), "status": "failed",
            "message": message}


def _progress_line(record: dict, count: int, total: int) -> str:
    s = score(record)
    shown = f" {s[0]} {s[1]:.4g}" if s else ""
    wall = f" in {record['wall_seconds']:.1f}s" if record.get("wall_seconds") is not None else ""
    resumed = f" (resumed from epoch {record['resumed_from_epoch']})" if "resumed_from_epoch" in record else ""
    message = (record.get("message") or "").splitlines()[0][:300] if record.get("message") else ""
    if message.startswith(f"{record['status']} "):    # 'pruned by the median pruner at epoch 4: ...'
        return f"[{count}/{total}] {record['name']}: {message}{wall}{resumed}"
    line = f"[{count}/{total}] {record['name']}: {record['status']}{shown}{wall}{resumed}"
    if record["status"] != "finished" and message:
        line += f": {message}"
    return line


def _result(source, records: dict, ran: int) -> SweepResult:
    ordered = []
    for entry in source.entries():
        ordered.append(records.get(entry["name"]) or {**entry, "status": "pending"})
    return SweepResult(source.sweep.path, ordered, best_trial(ordered), ran)
