"""The training loop and its events: validation, early stopping, checkpoints,
divergence and interruption. Progress goes to stderr; nothing here prints to stdout."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from netcli import __version__
from netcli.config import Config, dump_config, load_config
from netcli.data import batches
from netcli.divergence import Diverged, GradientWatch
from netcli.errors import Interrupted, JobFailed, NetcliError
from netcli.log import Reporter
from netcli.metrics import evaluate, improves
from netcli.optim.full_batch import StopMinimizing
from netcli.prepare import Prepared, prepare, rng_streams
from netcli.runs import RunDir, resolve_run
from netcli.runs.checkpoint import CHECKPOINT, Checkpoint, Progress, load_checkpoint, save_checkpoint
from netcli.runs.receipt import write_receipt
from netcli.runs.weights import WEIGHTS, save_weights
from netcli.signals import interrupt_once
from netcli.nn.split import SplitBatch
from netcli.threads import AUTO, BATCH, BLAS, ThreadChoice, blas_count, blas_threads, for_training


class Trainer:
    """One run's training: the epochs, and what each ends with (validation, the log, early
    stopping, a checkpoint); an interrupt or a divergence keeps the last complete epoch."""

    def __init__(self, prepared: Prepared, run: RunDir, reporter: Reporter, rngs: dict):
        self.p = prepared
        self.config = prepared.config
        self.spec = prepared.config.spec
        self.net = prepared.net
        self.run = run
        self.reporter = reporter
        self.rngs = rngs
        self.optimizer = self.spec.optimizer.build()
        self.schedule = self.spec.training.schedule.build()
        self.progress = Progress()
        self.source = prepared.config.source    # the config file the run was made from (kept on --resume)
        self.extended: list[dict] = []           # extensions whose schedule followed the new total
        self.started, self.progress_wall_at_start = time.perf_counter(), 0.0
        self.watch = GradientWatch(self.net)
        if not self.optimizer.full_batch:
            self.optimizer.setup(self.net.theta)
        self.threads: ThreadChoice | None = None     # chosen as fit starts (choose_threads)
        self._splits: dict[int, SplitBatch] = {}     # the batch cut in parts, by count (gradient)
        self.snapshot()

    # state -----------------------------------------------------------------

    def snapshot(self) -> None:
        """Remember the state at an epoch boundary: what an interrupt or divergence keeps."""
        state = {} if self.optimizer.full_batch else self.optimizer.state_dict()
        self.saved = Checkpoint.take(self.net.theta, state, self.rngs["shuffle"], self.net.rng_state(),
                                     self.progress)

    def write_checkpoint(self) -> None:
        save_checkpoint(self.run.path / CHECKPOINT, self.saved)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Carry on from a checkpoint.npz written by write_checkpoint."""
        expected = set() if self.optimizer.full_batch else set(self.optimizer.state_dict())
        missing = sorted(f"opt.{k}" for k in expected - set(checkpoint.optimizer))
        if missing or checkpoint.theta.shape != self.net.theta.shape:
            raise NetcliError(f"{self.run.path / CHECKPOINT}: does not fit this run's config "
                              f"({'missing ' + ', '.join(missing) if missing else 'parameter count differs'})")
        self.net.theta[...] = checkpoint.theta
        try:
            if not self.optimizer.full_batch:
                self.optimizer.load_state_dict(checkpoint.optimizer)
            self.rngs["shuffle"].bit_generator.state = checkpoint.rng_shuffle
            self.net.set_rng_state(checkpoint.rng_layers)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise NetcliError(f"{self.run.path / CHECKPOINT}: its optimizer or random-generator state cannot "
                              f"be read ({type(e).__name__}: {e}); the file is damaged") from None
        self.progress = checkpoint.progress
        self.run.rewrite_metrics(self.progress.history)  # drop epochs logged after the checkpoint
        self.snapshot()

    # threads ---------------------------------------------------------------

    def choose_threads(self, previous: dict | None = None) -> ThreadChoice:
        """training.threads and training.parallel, or what a resumed run used before where they
        are auto (so it matches an uninterrupted one), else the probe's choice (probe_step)."""
        training = self.spec.training
        setting, parallel = training.threads, training.parallel
        if previous and isinstance(previous.get("used"), int) and previous["used"] >= 1 and \
                (setting == AUTO or (setting == previous["used"] and parallel == AUTO)):
            way = previous.get("way", BLAS)          # summaries from before the batch way: BLAS
            if way == BATCH and not self.net.splits_by_rows:
                way = BLAS
            return ThreadChoice(previous["used"], setting, "as this run used before", way)
        split_step = self.probe_step if self.net.splits_by_rows else None
        try:
            return for_training(setting, self.probe_step(), parallel=parallel, split_step=split_step)
        finally:
            self._close_splits()

    def probe_step(self, parts: int = 1):
        """One training step on one of the first batches (up to 4, in turn, as training moves from
        batch to batch; cut in `parts` when more than one): its loss and gradient, and for a
        first-order optimizer its update, applied by an optimizer of its own to a copy of theta
        (the update runs BLAS on one thread: what BLAS's threads do between gradients shows in
        the time). The parameters, the optimizer and the layers' random streams are left as
        they were."""
        train, batch_size = self.p.train, self.spec.training.batch_size
        whole = self.optimizer.full_batch or batch_size == "full"
        batch = {}

        def step():
            if not batch:    # taken at the first step: a fixed count never probes
                rows = len(train) if whole else min(int(batch_size), len(train))
                starts = range(0, min(len(train), 4 * rows) - rows + 1, rows)
                batch["all"] = [train.take(np.arange(a, a + rows)) for a in starts]
                batch["i"] = 0
                batch["rng"] = self.net.rng_state()
                batch["loss_and_grad"] = self.gradient(parts)
                if not self.optimizer.full_batch:
                    batch["theta"], batch["optimizer"] = self.net.theta.copy(), self.spec.optimizer.build()
                    batch["optimizer"].setup(batch["theta"])
            with np.errstate(all="ignore"):
                batch["i"] = (batch["i"] + 1) % len(batch["all"])
                _, grad = batch["loss_and_grad"](self.net.theta, *batch["all"][batch["i"]])
                if "optimizer" in batch:
                    batch["optimizer"].step_and_measure(batch["theta"], grad, self.optimizer.lr, self.watch.parts)
            self.net.set_rng_state(batch["rng"])
        return step

    def gradient(self, parts: int):
        """loss_and_grad(theta, X, y) for the network, with each batch cut in `parts` (SplitBatch,
        made once per count and kept until fit ends) when more than one."""
        if parts == 1:
            return self.net.loss_and_grad
        if parts not in self._splits:
            self._splits[parts] = SplitBatch(self.net, parts)
        return self._splits[parts].loss_and_grad

    def _close_splits(self) -> None:
        while self._splits:
            self._splits.popitem()[1].close()

    def fit_on_threads(self, previous: dict | None = None) -> dict:
        """fit() on the thread count choose_threads gives, said in the log and recorded in the
        running summary.json at once (a killed run resumes on it too). Interrupted while the
        threads are probed, the run is kept as it was (interrupted at its last epoch)."""
        self.started, self.progress_wall_at_start = time.perf_counter(), self.progress.wall_seconds
        with interrupt_once() as interrupts:
            try:
                self.threads = self.choose_threads(previous)
            except KeyboardInterrupt:
                interrupts.hold()
                self._keep_last_good("interrupted")
                raise
        self.reporter.info(f"threads: {self.threads.describe()}")
        self.run.write_json("summary.json", self._summary("running", self.progress.wall_seconds, ""))
        # scipy's minimizers run their own BLAS calls, small ones that threads only slow down
        # (measured: L-BFGS-B 4-18x slower per iteration on two threads); the threads go to the
        # network's loss_and_grad alone (_fit_full_batch)
        with blas_threads(1 if self.optimizer.full_batch else self.threads.blas):
            return self.fit()

    # epochs ----------------------------------------------------------------

    def wall_seconds(self) -> float:
        """Training time of this run over all its sessions, up to now."""
        return self.progress_wall_at_start + time.perf_counter() - self.started

    def fit(self) -> dict:
        """Train to the end; returns summary.json's contents. Raises KeyboardInterrupt, JobFailed."""
        self.started, self.progress_wall_at_start = time.perf_counter(), self.progress.wall_seconds
        status, message = "finished", ""
        parts = self.threads.split if self.threads is not None else 1
        self.loss_and_grad = self.reporter.watch_gradient(self.net, self.gradient(parts))
        with interrupt_once() as interrupts:   # one interrupt: a second cannot cut the save short
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is checked
                    if self.optimizer.full_batch:
                        message = self._fit_full_batch()
                    else:
                        message = self._fit_minibatches()
                es = self.spec.training.early_stopping
                if es is not None and es.restore_best and self.progress.best_theta is not None:
                    self.net.theta[...] = self.progress.best_theta
                return self._finish(status, message)   # interrupted while finishing: the last epoch is kept
            except KeyboardInterrupt:
                interrupts.hold()
                self._keep_last_good("interrupted")
                raise
            except Diverged as e:
                interrupts.hold()
                self._keep_last_good("diverged", str(e))
                raise JobFailed(f"training diverged: {e}. The last good state (epoch {self.saved.progress.epoch}) "
                                f"is kept in {self.run.path}/checkpoint.npz") from None
            finally:
                self._close_splits()

    def _fit_minibatches(self) -> str:
        spec, net, train = self.spec, self.net, self.p.train
        n, epochs = len(train), spec.training.epochs
        batch_size = spec.training.batch_size
        base_lr = self.optimizer.lr
        whole = batch_size == "full" or batch_size >= n
        n_batches = 1 if whole else math.ceil(n / batch_size)
        self.reporter.start(epochs, n_batches, self.progress.epoch)
        # In-memory rows are gathered into one buffer per array, reused by every batch (np.take,
        # no new batch arrays, the dataset itself never copied); lazy (memory-mapped) splits and
        # whole-data batches go through Split.take / the arrays themselves as before.
        gather = train.prep is None and not whole
        if gather:
            rows = min(int(batch_size), n)
            x_buf = np.empty((rows, *train.X.shape[1:]), dtype=train.X.dtype)
            y_buf = None if train.y is None or train.y is train.X else \
                np.empty((rows, *train.y.shape[1:]), dtype=train.y.dtype)
        clip = spec.training.clip_grad_norm
        for epoch in range(self.progress.epoch, epochs):
            lr = self.schedule(base_lr, epoch, epochs)
            t0 = time.perf_counter()
            total = data_total = 0.0
            order = batches(n, batch_size, self.rngs["shuffle"] if spec.data.shuffle and not whole else None)
            for idx in order:
                if gather:
                    Xb = np.take(train.X, idx, axis=0, out=x_buf[:len(idx)], mode="clip")
                    yb = Xb if train.y is train.X else (
                        None if y_buf is None else np.take(train.y, idx, axis=0, out=y_buf[:len(idx)], mode="clip"))
                else:
                    Xb, yb = (train.X, train.y) if whole and train.prep is None else train.take(idx)
                loss, grad = self.loss_and_grad(net.theta, Xb, yb)
                self.progress.step += 1
                if clip is None:
                    # the norms come from the step's own pass over the gradient; a non-finite
                    # step is undone with the rest of the epoch (the snapshot is kept)
                    squares = self.optimizer.step_and_measure(net.theta, grad, lr, self.watch.parts)
                    if not math.isfinite(self.watch.record_squares(loss, squares)):
                        raise Diverged(self._diagnose(epoch, lr))
                else:
                    norm = self.watch.record(loss, grad)
                    if not math.isfinite(norm):
                        raise Diverged(self._diagnose(epoch, lr))
                    if norm > clip:
                        grad *= clip / norm
                    self.optimizer.step(net.theta, grad, lr)
                b = len(idx)
                total += loss * b
                data_total += net.last_terms[0] * b
                self.reporter.batch(loss)
            if not np.all(np.isfinite(net.theta)):
                raise Diverged(self._diagnose(epoch, lr, "the parameters became non-finite"))
            record = {"epoch": epoch + 1, "loss": total / n, "data_loss": data_total / n,
                      "penalty": (total - data_total) / n, "lr": lr}
            if self._end_epoch(record, time.perf_counter() - t0):
                es = self.spec.training.early_stopping
                return self.stop_reason or f"early stopping: no improvement in {es.monitor} for {es.patience} epochs"
        return "completed all epochs"

    def _fit_full_batch(self) -> str:
        net, train = self.net, self.p.train
        X, y = (train.X, train.y) if train.prep is None else train.take(np.arange(len(train)))
        self.reporter.start(self.optimizer.max_iter, 1, self.progress.epoch)
        last = {"x": None, "terms": None}
        clock = {"t": time.perf_counter()}

        threads = self.threads.blas if self.threads is not None else None

        def fun(theta):
            with blas_count(threads) if threads else nullcontext():
                loss, grad = self.loss_and_grad(theta, X, y)
            self.progress.step += 1
            if not math.isfinite(self.watch.record(loss, grad)):
                raise Diverged(self._diagnose(self.progress.epoch, None))
            last["x"], last["terms"] = net.theta.copy(), net.last_terms
            return loss, grad

        def callback(x):
            net.theta[...] = x
            if last["x"] is not None and np.array_equal(last["x"], net.theta):
                data, penalty = last["terms"]
            else:
                data, penalty = net.objective(net.theta, X, y)
            record = {"epoch": self.progress.epoch + 1, "loss": data + penalty, "data_loss": data,
                      "penalty": penalty, "lr": None}
            now = time.perf_counter()
            stop = self._end_epoch(record, now - clock["t"])
            clock["t"] = time.perf_counter()
            if stop:
                raise StopMinimizing(self.stop_reason or "early stopping")

        remaining = self.optimizer.max_iter - self.progress.epoch
        if remaining <= 0:
            return "completed all iterations"
        self.optimizer.max_iter = remaining
        return self.optimizer.minimize(fun, net.theta, callback)

    def _end_epoch(self, record: dict, seconds: float) -> bool:
        """Validate, log, checkpoint; True when early stopping says stop, or the reporter: its
        epoch() may return why the run ends after this epoch (a sweep's pruner), kept in stop_reason."""
        if self.p.val is not None:
            val = evaluate(self.net, self.p.val, self.p.task)
            record.update({f"val_{k}": v for k, v in val.items() if k in ("loss", "accuracy", "mse")})
        record["seconds"] = round(seconds, 4)
        self.run.append_metrics(record)
        pr = self.progress
        pr.history.append(record)
        pr.epoch = record["epoch"]
        pr.wall_seconds = self.wall_seconds()
        stop = self._early_stopping(record)
        asked = self.reporter.epoch(record)
        self.stop_reason = asked if isinstance(asked, str) and asked else None
        self.snapshot()
        if pr.epoch % self.spec.training.checkpoint_every == 0:
            self.write_checkpoint()
            self.write_weights()   # so eval, predict and plot work on a run in progress or killed
        return stop or self.stop_reason is not None

    def _early_stopping(self, record: dict) -> bool:
        es = self.spec.training.early_stopping
        if es is None:
            return False
        if es.monitor not in record:
            raise NetcliError(f"training.early_stopping.monitor: {es.monitor!r} is not a metric of this run "
                              f"(have: {', '.join(k for k in record if k not in ('epoch', 'lr', 'seconds'))})")
        value = record[es.monitor]
        pr = self.progress
        if improves(value, pr.best, es.monitor, es.min_delta):
            pr.best, pr.best_epoch, pr.bad_epochs = value, record["epoch"], 0
            if es.restore_best:
                pr.best_theta = self.net.theta.copy()
            return False
        pr.bad_epochs += 1
        return pr.bad_epochs >= es.patience

    def _diagnose(self, epoch: int, lr: float | None, what: str | None = None) -> str:
        return self.watch.diagnose(epoch, self.progress.step, lr, what)

    def length_key(self) -> str:
        """The config key that says how long this run trains."""
        return RESUMABLE_KEYS[1] if self.optimizer.full_batch else RESUMABLE_KEYS[0]

    def extends(self, previous: dict, asked: bool) -> bool:
        """Whether a finished run has more to do: more epochs (iterations) in its config than it
        did, and, for a run that stopped early, a --set that asked for them."""
        total = self.optimizer.max_iter if self.optimizer.full_batch else self.spec.training.epochs
        stopped_early = previous.get("message", "").startswith("early stopping")
        return total > self.progress.epoch and (asked or not stopped_early)

    def extend(self, total_before: int) -> str | None:
        """Note a --resume that changed the epochs to train (from total_before) while the schedule
        uses the total: from this epoch on the learning rates follow the new total, so the run is
        no longer the one a config of that length gives (train --check refuses it). -> what to
        say, or None when the run stays what a longer config would have made."""
        total = self.spec.training.epochs
        if self.optimizer.full_batch or not self.schedule.uses_total or total == total_before \
                or self.progress.epoch == 0:
            return None
        self.extended.append({"from_epoch": self.progress.epoch, "epochs": total,
                              "schedule": self.spec.training.schedule.type})
        return (f"warning: the {self.spec.training.schedule.type} schedule follows the total epochs, so from epoch "
                f"{self.progress.epoch} on its learning rates follow the new total ({total}, was {total_before}) "
                f"and the run differs from a fresh {total}-epoch one (recorded in summary.json: extended)")

    def write_weights(self) -> None:
        save_weights(self.run.path / WEIGHTS, self.net, self.p.prep, self.p.task, self.p.columns)

    def _keep_last_good(self, status: str, message: str = "") -> None:
        """Write the last complete epoch's state and the status (fit holds further Ctrl-C, SIGTERM
        and SIGHUP off meanwhile, so the files and the status are always whole). metrics.jsonl is
        rewritten to the epochs kept: a stop just after an epoch's line was appended, before the
        epoch was taken in, leaves it a line ahead of the checkpoint otherwise."""
        self.net.theta[...] = self.saved.theta
        self.progress = replace(self.saved.progress, history=list(self.saved.progress.history))
        self.progress.wall_seconds = self.saved.progress.wall_seconds = self.wall_seconds()  # time spent counts
        self.run.rewrite_metrics(self.progress.history)
        self.write_checkpoint()
        self.write_weights()
        # the checkpoint's wall time: a resumed run adds its own to it
        self.run.write_json("summary.json", self._summary(status, self.progress.wall_seconds, message))
        write_receipt(self.run, self.spec, self.net.theta, status)   # after the wall time is taken

    def _finish(self, status: str, message: str) -> dict:
        # the checkpoint and summary.json hold one wall time, so a resumed run adds to what was said
        self.progress.wall_seconds = self.saved.progress.wall_seconds = self.wall_seconds()
        self.write_checkpoint()
        self.write_weights()
        summary = self._summary(status, self.progress.wall_seconds, message)
        if self.p.test is not None:
            summary["test"] = evaluate(self.net, self.p.test, self.p.task)
        write_receipt(self.run, self.spec, self.net.theta, status)   # before summary.json says finished
        self.run.write_json("summary.json", summary)
        return summary

    def _summary(self, status: str, seconds: float, message: str) -> dict:
        pr = self.progress
        final = pr.history[-1] if pr.history else {}
        out = {"status": status, "message": message, "epochs": pr.epoch, "steps": pr.step,
               "wall_seconds": round(seconds, 3), "final": final, "config": self.source,
               "netcli_version": __version__}
        if self.threads is not None:
            out["threads"] = self.threads.as_dict()
        if pr.best is not None and self.spec.training.early_stopping is not None:
            out["best"] = {"epoch": pr.best_epoch, self.spec.training.early_stopping.monitor: pr.best}
        if self.extended:
            out["extended"] = self.extended
        return out


# -- entry points ------------------------------------------------------------------

@dataclass
class TrainResult:
    run_dir: Path
    summary: dict


def train(config: Config | str | Path | dict, run_dir=None, runs_base="runs", overrides=(),
          quiet: bool = True, overwrite: bool = False, reporter: Reporter | None = None, *,
          train_table=None) -> TrainResult:
    """Train a config (a Config, a YAML path, or a dict of the YAML's keys) into a new run
    directory. train_table: training rows already in memory instead of data.train (prepare)."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs, train_table=train_table)
    run = RunDir.create(config.name, runs_base, run_dir, overwrite)
    reporter = reporter or Reporter(quiet=quiet)
    try:
        run.write_text("config.yaml", dump_config(prepared.config))   # sizes from the data filled in
        reporter.info(f"training {config.name} into {run.path}")
        reporter.info(f"read {prepared.describe()}")
        trainer = Trainer(prepared, run, reporter, rngs)
        trainer.write_checkpoint()  # resumable from the very start, even if killed in epoch 1
        return TrainResult(run.path, _fit(trainer, reporter))
    finally:
        run.unlock()


RESUMABLE_KEYS = ("training.epochs", "optimizer.max_iter")   # what --resume --set may change: how long
THREADS_KEY = "training.threads"                               # and, without changing the run, its threads


def resume(run_path: str | Path, quiet: bool = True, reporter: Reporter | None = None,
           overrides=()) -> TrainResult:
    """Carry on from a run's checkpoint.npz with the run's own config. overrides may extend the
    run (training.epochs, or optimizer.max_iter for cg and lbfgs), as Keras' initial_epoch does;
    a run that has done all its epochs (or stopped early) is left as it is."""
    path = resolve_run(run_path)
    keys = [item.partition("=")[0].strip() for item in overrides]
    for item, key in zip(overrides, keys):
        if key not in (*RESUMABLE_KEYS, THREADS_KEY):
            raise NetcliError(f"--set {item}: --resume carries on with the run's own config; only "
                              f"{' and '.join(RESUMABLE_KEYS)} can change (to extend the run)")
    longer = any(key in RESUMABLE_KEYS for key in keys)
    config = load_config(path / "config.yaml", overrides)
    total_before = load_config(path / "config.yaml").spec.training.epochs if longer else None
    if not (path / CHECKPOINT).exists():
        raise NetcliError(f"{path}: no {CHECKPOINT} to resume from; train it again instead")
    checkpoint = load_checkpoint(path / CHECKPOINT)
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs)
    reporter = reporter or Reporter(quiet=quiet)
    run = RunDir(path)
    run.lock()
    try:
        trainer = Trainer(prepared, run, reporter, rngs)
        trainer.restore(checkpoint)
        previous = RunDir(path).read_summary()
        trainer.source = previous.get("config", trainer.source)
        extended = previous.get("extended")
        trainer.extended = [e for e in extended if isinstance(e, dict)] if isinstance(extended, list) else []
        if previous.get("status") == "finished" and not trainer.extends(previous, longer):
            reporter.info(f"{path}: already {previous.get('message') or 'finished'} "
                          f"({trainer.progress.epoch} epochs); nothing to do. To train longer: "
                          f"netcli train --resume {path} --set {trainer.length_key()}=N")
            return TrainResult(path, previous)
        warning = trainer.extend(total_before) if longer else None
        if longer:
            run.write_text("config.yaml", dump_config(config))
        trainer.progress.bad_epochs = 0 if previous.get("status") == "finished" else trainer.progress.bad_epochs
        reporter.info(f"resuming {path} from epoch {trainer.progress.epoch}")
        if warning and not reporter.quiet:
            reporter.console.print(warning, markup=False, soft_wrap=True)   # one line, in a pipe too
        return TrainResult(path, _fit(trainer, reporter, previous.get("threads")))
    finally:
        run.unlock()


def _fit(trainer: Trainer, reporter: Reporter, previous_threads: dict | None = None) -> dict:
    try:
        return trainer.fit_on_threads(previous_threads)
    except KeyboardInterrupt:
        path = trainer.run.path
        raise Interrupted(f"interrupted; epoch {trainer.saved.progress.epoch} (the last complete one) is saved in "
                          f"{path}/checkpoint.npz; carry on with: netcli train --resume {path}") from None
    finally:
        reporter.stop()
