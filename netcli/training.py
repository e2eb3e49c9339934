"""The training loop and its events: validation, early stopping, checkpoints,
divergence and interruption. Progress goes to stderr; nothing here prints to stdout."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netcli import __version__
from netcli.config import Config, load_config
from netcli.data import (Preprocessing, Split, check_table_finite, class_labels, make_split, read_table,
                         split_indices, task_of, batches)
from netcli.errors import Interrupted, JobFailed, NetcliError
from netcli.log import Reporter
from netcli.metrics import evaluate
from netcli.model import build_network
from netcli.nn import Network
from netcli.optim import OPTIMIZERS, SCHEDULES
from netcli.optim.first_order import squared_norms
from netcli.optim.full_batch import StopMinimizing
from netcli.runs import RunDir, load_npz, save_npz


@dataclass
class Prepared:
    """A network and its data, ready to train or evaluate."""

    config: Config
    net: Network
    train: Split
    val: Split | None
    prep: Preprocessing
    task: str


def rng_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for each use of randomness, all from the one seed."""
    names = ("init", "split", "shuffle", "layers")
    return {n: np.random.default_rng(s) for n, s in zip(names, np.random.SeedSequence(seed).spawn(4))}


def prepare(config: Config, rngs: dict | None = None) -> Prepared:
    """Build the network and read, split and preprocess the training data."""
    rngs = rngs or rng_streams(config.spec.seed)
    net = build_network(config, rng=rngs["init"])
    net.set_rng(rngs["layers"])
    d = config.spec.data
    if not d.train:
        raise config.error("data.train", "is required to train: a CSV, NPZ or NPY file, or - for stdin")
    task = task_of(config.spec.loss, d.target)
    table = read_table(d.train, d.target, d.features, need_target=task != "autoencoder", drop=d.drop)
    if table.target is None and task != "autoencoder":
        raise config.error("data.target", f"{table.source} has no target")
    lazy = isinstance(table.X, np.memmap)
    if not lazy or d.normalize != "none":  # lazy data without statistics is checked batch by batch
        check_table_finite(table)
    classes = None
    if task == "classification":
        classes = class_labels(table.target)
        units = net.output_shape[-1]
        if units != len(classes):
            last = len(config.spec.model.layers) - 1
            raise config.error(f"model.layers[{last}].units",
                               f"the output layer has {units} units but {table.source} has "
                               f"{len(classes)} classes ({_preview(classes)}); set units: {len(classes)}")
    labels = table.target if task == "classification" else None
    if d.val:
        train_rows, val_table = None, read_table(d.val, d.target, d.features,
                                                 need_target=task != "autoencoder", drop=d.drop)
        if not isinstance(val_table.X, np.memmap):
            check_table_finite(val_table)
    else:
        val_table = None
        train_rows, val_rows = split_indices(len(table.X), d.validation_split, rngs["split"], labels)
        if d.validation_split > 0 and (len(val_rows) == 0 or len(train_rows) == 0):
            raise config.error("data.validation_split",
                               f"{d.validation_split:g} of {table.source}'s {len(table.X)} rows leaves "
                               f"{len(train_rows)} for training and {len(val_rows)} for validation; "
                               f"both need at least one")
        if len(val_rows) == 0:
            train_rows = None
    fit_rows = table.X if train_rows is None else table.X[train_rows]
    prep = Preprocessing.fit(fit_rows if d.normalize != "none" else table.X[:1], d.normalize,
                             classes, net.input_shape)
    dtype = net.dtype
    train = make_split(table, prep, task, dtype, rows=train_rows)
    if val_table is not None:
        val = make_split(val_table, prep, task, dtype)
    elif train_rows is not None:
        val = make_split(table, prep, task, dtype, rows=val_rows)
    else:
        val = None
    for split in (train, val):
        if split is not None and split.y is not None and split.y.shape[1:] != net.output_shape:
            raise NetcliError(f"{split.source}: targets have shape {list(split.y.shape[1:])} per example "
                              f"but the network outputs {list(net.output_shape)}")
    if config.spec.model.init_from:
        load_weights_into(net, config.spec.model.init_from, config)
    return Prepared(config, net, train, val, prep, task)


def _preview(values, n=6) -> str:
    shown = ", ".join(map(str, values[:n]))
    return shown + (", ..." if len(values) > n else "")


def load_weights_into(net: Network, source: str | Path, config: Config | None = None) -> None:
    """Copy layers.<i>.<name> arrays from a weights.npz (or a run directory) into net, cast to its dtype."""
    path = Path(source)
    if path.is_dir():
        path = path / "weights.npz"
    arrays = load_npz(path)
    for slot in net.slots:
        if slot.name not in arrays:
            raise NetcliError(f"{path}: has no {slot.name}; it was saved from another architecture "
                              f"(it holds {', '.join(k for k in arrays if k.startswith('layers.'))})")
        if arrays[slot.name].shape != slot.spec.shape:
            raise NetcliError(f"{path}: {slot.name} has shape {list(arrays[slot.name].shape)}, "
                              f"this model needs {list(slot.spec.shape)}; it was saved from another architecture")
        net.params[slot.name][...] = arrays[slot.name]


def weight_arrays(net: Network, prep: Preprocessing, task: str) -> dict[str, np.ndarray]:
    arrays = {name: np.array(p) for name, p in net.params.items()}
    arrays.update(prep.to_arrays())
    arrays["meta.task"] = np.array(task)
    arrays["meta.netcli_version"] = np.array(__version__)
    return arrays


# -- the loop --------------------------------------------------------------------

MAXIMIZE = ("accuracy", "r2")


@dataclass
class Progress:
    """Everything a resumed run needs besides the parameters and the optimizer's state."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    best_theta: np.ndarray | None = None
    history: list = field(default_factory=list)


CHECKPOINT_KEYS = ("theta", "epoch", "step", "rng.shuffle", "rng.layers", "es.best", "es.best_epoch",
                   "es.bad_epochs", "metrics")


class Diverged(Exception):
    pass


class Trainer:
    def __init__(self, prepared: Prepared, run: RunDir, reporter: Reporter, rngs: dict):
        self.p = prepared
        self.config = prepared.config
        self.spec = prepared.config.spec
        self.net = prepared.net
        self.run = run
        self.reporter = reporter
        self.rngs = rngs
        options = dict(prepared.config.resolved["optimizer"])
        self.optimizer = OPTIMIZERS.get(options.pop("type"))(**options)
        schedule = dict(prepared.config.resolved["training"]["schedule"])
        self.schedule = SCHEDULES.get(schedule.pop("type"))(**schedule)
        self.progress = Progress()
        self.watch = GradientWatch(self.net)
        if not self.optimizer.full_batch:
            self.optimizer.setup(self.net.theta)
        self.snapshot()

    # state -----------------------------------------------------------------

    def snapshot(self) -> None:
        """Remember the state at an epoch boundary: what an interrupt or divergence keeps."""
        self.saved = {"theta": self.net.theta.copy(), "epoch": self.progress.epoch,
                      "step": self.progress.step,
                      "rng.shuffle": json.dumps(self.rngs["shuffle"].bit_generator.state),
                      "rng.layers": json.dumps(self.net.rng_state())}
        if not self.optimizer.full_batch:
            for k, v in self.optimizer.state_dict().items():
                self.saved[f"opt.{k}"] = np.array(v, copy=True)
        pr = self.progress
        self.saved.update({"es.best": np.nan if pr.best is None else pr.best,
                           "es.best_epoch": pr.best_epoch, "es.bad_epochs": pr.bad_epochs})
        if pr.best_theta is not None:
            self.saved["es.best_theta"] = pr.best_theta
        self.saved["metrics"] = json.dumps(pr.history)

    def write_checkpoint(self) -> None:
        save_npz(self.run.path / "checkpoint.npz", {k: np.asarray(v) for k, v in self.saved.items()})

    def restore(self, checkpoint: dict) -> None:
        """Carry on from a checkpoint.npz written by write_checkpoint."""
        expected = [f"opt.{k}" for k in self.optimizer.state_dict()] if not self.optimizer.full_batch else []
        missing = [k for k in (*CHECKPOINT_KEYS, *expected) if k not in checkpoint]
        if missing or checkpoint["theta"].shape != self.net.theta.shape:
            raise NetcliError(f"{self.run.path}/checkpoint.npz: does not fit this run's config "
                              f"({'missing ' + ', '.join(missing) if missing else 'parameter count differs'})")
        self.net.theta[...] = checkpoint["theta"]
        if not self.optimizer.full_batch:
            self.optimizer.load_state_dict({k[4:]: v for k, v in checkpoint.items() if k.startswith("opt.")})
        self.rngs["shuffle"].bit_generator.state = json.loads(str(checkpoint["rng.shuffle"]))
        self.net.set_rng_state(json.loads(str(checkpoint["rng.layers"])))
        pr = self.progress
        pr.epoch, pr.step = int(checkpoint["epoch"]), int(checkpoint["step"])
        best = float(checkpoint["es.best"])
        pr.best = None if math.isnan(best) else best
        pr.best_epoch, pr.bad_epochs = int(checkpoint["es.best_epoch"]), int(checkpoint["es.bad_epochs"])
        pr.best_theta = checkpoint.get("es.best_theta")
        pr.history = json.loads(str(checkpoint["metrics"]))
        self.run.rewrite_metrics(pr.history)  # drop epochs logged after the checkpoint
        self.snapshot()

    # epochs ----------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the end; returns summary.json's contents. Raises KeyboardInterrupt, JobFailed."""
        start = time.perf_counter()
        status, message = "finished", ""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is checked
                if self.optimizer.full_batch:
                    message = self._fit_full_batch()
                else:
                    message = self._fit_minibatches()
        except KeyboardInterrupt:
            self._keep_last_good("interrupted", time.perf_counter() - start)
            raise
        except Diverged as e:
            self._keep_last_good("diverged", time.perf_counter() - start, str(e))
            raise JobFailed(f"training diverged: {e}. The last good state (epoch {self.saved['epoch']}) "
                            f"is kept in {self.run.path}/checkpoint.npz") from None
        es = self.spec.training.early_stopping
        if es is not None and es.restore_best and self.progress.best_theta is not None:
            self.net.theta[...] = self.progress.best_theta
        return self._finish(status, time.perf_counter() - start, message)

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
                loss, grad = net.loss_and_grad(net.theta, Xb, yb)
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
                return f"early stopping: no improvement in {self.spec.training.early_stopping.monitor} " \
                       f"for {self.spec.training.early_stopping.patience} epochs"
        return "completed all epochs"

    def _fit_full_batch(self) -> str:
        net, train = self.net, self.p.train
        X, y = (train.X, train.y) if train.prep is None else train.take(np.arange(len(train)))
        self.reporter.start(self.optimizer.max_iter, 1, self.progress.epoch)
        last = {"x": None, "terms": None}
        clock = {"t": time.perf_counter()}

        def fun(theta):
            loss, grad = net.loss_and_grad(theta, X, y)
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
                raise StopMinimizing("early stopping")

        remaining = self.optimizer.max_iter - self.progress.epoch
        if remaining <= 0:
            return "completed all iterations"
        self.optimizer.max_iter = remaining
        return self.optimizer.minimize(fun, net.theta, callback)

    def _end_epoch(self, record: dict, seconds: float) -> bool:
        """Validate, log, checkpoint; True when early stopping says stop."""
        if self.p.val is not None:
            val = evaluate(self.net, self.p.val, self.p.task)
            record.update({f"val_{k}": v for k, v in val.items() if k in ("loss", "accuracy", "mse")})
        record["seconds"] = round(seconds, 4)
        self.run.append_metrics(record)
        pr = self.progress
        pr.history.append(record)
        pr.epoch = record["epoch"]
        stop = self._early_stopping(record)
        self.reporter.epoch(record)
        self.snapshot()
        if pr.epoch % self.spec.training.checkpoint_every == 0:
            self.write_checkpoint()
        return stop

    def _early_stopping(self, record: dict) -> bool:
        es = self.spec.training.early_stopping
        if es is None:
            return False
        if es.monitor not in record:
            raise NetcliError(f"training.early_stopping.monitor: {es.monitor!r} is not a metric of this run "
                              f"(have: {', '.join(k for k in record if k not in ('epoch', 'lr', 'seconds'))})")
        value = record[es.monitor]
        sign = -1.0 if es.monitor.endswith(MAXIMIZE) else 1.0
        pr = self.progress
        if pr.best is None or sign * value < sign * pr.best - es.min_delta:
            pr.best, pr.best_epoch, pr.bad_epochs = value, record["epoch"], 0
            if es.restore_best:
                pr.best_theta = self.net.theta.copy()
            return False
        pr.bad_epochs += 1
        return pr.bad_epochs >= es.patience

    def _diagnose(self, epoch: int, lr: float | None, what: str | None = None) -> str:
        """Name the step, the learning rate, where it first went non-finite, and a likely cause."""
        net = self.net
        where = what or self.watch.first_non_finite(net)
        rate = f", lr {lr:g}" if lr is not None else ""
        recent = self.watch.recent_norms()
        hint = ("likely causes: a learning rate too high (try optimizer.lr 10x lower, or "
                "training.clip_grad_norm) or unnormalized inputs (try data.normalize: standard)")
        return (f"{where} at epoch {epoch + 1}, step {self.progress.step}{rate}; "
                f"recent gradient norms per tensor: {recent}; {hint}")

    def _keep_last_good(self, status: str, seconds: float, message: str = "") -> None:
        self.net.theta[...] = self.saved["theta"]
        self.write_checkpoint()
        save_npz(self.run.path / "weights.npz", weight_arrays(self.net, self.p.prep, self.p.task))
        self.run.write_json("summary.json", self._summary(status, seconds, message))

    def _finish(self, status: str, seconds: float, message: str) -> dict:
        self.write_checkpoint()
        save_npz(self.run.path / "weights.npz", weight_arrays(self.net, self.p.prep, self.p.task))
        summary = self._summary(status, seconds, message)
        test_path = self.spec.data.test
        if test_path:
            test = load_eval_split(self.config, self.p.prep, self.p.task, test_path, self.net.dtype)
            summary["test"] = evaluate(self.net, test, self.p.task)
        self.run.write_json("summary.json", summary)
        return summary

    def _summary(self, status: str, seconds: float, message: str) -> dict:
        pr = self.progress
        final = pr.history[-1] if pr.history else {}
        out = {"status": status, "message": message, "epochs": pr.epoch, "steps": pr.step,
               "wall_seconds": round(seconds, 3), "final": final, "config": self.config.source,
               "netcli_version": __version__}
        if pr.best is not None:
            out["best"] = {"epoch": pr.best_epoch, self.spec.training.early_stopping.monitor: pr.best}
        return out


class GradientWatch:
    """Per-tensor gradient norms of the last few steps, kept for a divergence diagnosis."""

    def __init__(self, net: Network, keep: int = 3):
        self.slots = net.slots
        self.parts = [(s.offset, s.offset + s.size) for s in self.slots]   # grad's span per tensor
        # step_and_measure updates theta part by part, so the parts must cover it exactly
        ends = [0] + [hi for _, hi in sorted(self.parts)]
        assert [lo for lo, _ in sorted(self.parts)] == ends[:-1] and ends[-1] == net.theta.size
        self.history: list[tuple[float, np.ndarray]] = []
        self.keep = keep

    def record(self, loss: float, grad: np.ndarray) -> float:
        """-> the global gradient norm (inf or nan when the loss or the gradient is not finite)."""
        return self.record_squares(loss, squared_norms(grad, self.parts))

    def record_squares(self, loss: float, squares: np.ndarray) -> float:
        """The same from the tensors' squared norms, measured elsewhere (Stepper.step_and_measure)."""
        self.history = (self.history + [(loss, np.sqrt(squares))])[-self.keep:]
        return math.sqrt(float(squares.sum())) if math.isfinite(loss) else math.nan

    def recent_norms(self) -> str:
        if not self.history:
            return "none"
        parts = []
        for slot_index, slot in enumerate(self.slots):
            values = ", ".join(f"{norms[slot_index]:.3g}" for _, norms in self.history)
            parts.append(f"{slot.name} [{values}]")
        return "; ".join(parts)

    def first_non_finite(self, net: Network) -> str:
        """The first layer whose forward activations, or else the first tensor whose gradient, is non-finite."""
        for i, a in enumerate(net.activations):
            if not np.all(np.isfinite(a)):
                return f"the forward activations of layer {i} ({net.layers[i].describe()}) became non-finite"
        loss = self.history[-1][0] if self.history else math.nan
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        for slot in reversed(self.slots):  # backward order: the first gradient computed first
            g = net.grads[slot.name]
            if not np.all(np.isfinite(g)):
                return f"the gradient of {slot.name} became non-finite"
        return "the gradient became non-finite"


def load_eval_split(config: Config, prep: Preprocessing, task: str, path: str, dtype,
                    need_target: bool = True, stdin=None) -> Split:
    """A test or prediction file, preprocessed with the run's training statistics."""
    d = config.spec.data
    n_features = int(np.prod(prep.input_shape))
    table = read_table(path, d.target, d.features, need_target=need_target and task != "autoencoder",
                       stdin=stdin, n_features=n_features, drop=d.drop)
    if not isinstance(table.X, np.memmap):
        check_table_finite(table)
    return make_split(table, prep, task, dtype)


# -- entry points ------------------------------------------------------------------

@dataclass
class TrainResult:
    run_dir: Path
    summary: dict


def train(config: Config | str | Path, run_dir=None, runs_base="runs", overrides=(),
          quiet: bool = True, overwrite: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train a config (a Config or a YAML path) into a new run directory."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs)
    run = RunDir.create(config.name, runs_base, run_dir, overwrite)
    from netcli.config import dump_config
    run.write_text("config.yaml", dump_config(config))
    reporter = reporter or Reporter(quiet=quiet)
    reporter.info(f"training {config.name} into {run.path}")
    trainer = Trainer(prepared, run, reporter, rngs)
    trainer.write_checkpoint()  # resumable from the very start, even if killed in epoch 1
    run.write_json("summary.json", trainer._summary("running", 0.0, ""))
    return TrainResult(run.path, _fit(trainer, reporter))


def resume(run_path: str | Path, quiet: bool = True, reporter: Reporter | None = None) -> TrainResult:
    """Carry on from a run's checkpoint.npz with the run's own resolved config."""
    from netcli.runs import resolve_run
    path = resolve_run(run_path)
    config = load_config(path / "config.yaml")
    if not (path / "checkpoint.npz").exists():
        raise NetcliError(f"{path}: no checkpoint.npz to resume from; train it again instead")
    checkpoint = load_npz(path / "checkpoint.npz", CHECKPOINT_KEYS)
    rngs = rng_streams(config.spec.seed)
    prepared = prepare(config, rngs)
    run = RunDir(path)
    reporter = reporter or Reporter(quiet=quiet)
    trainer = Trainer(prepared, run, reporter, rngs)
    trainer.restore(checkpoint)
    reporter.info(f"resuming {path} from epoch {trainer.progress.epoch}")
    return TrainResult(path, _fit(trainer, reporter))


def _fit(trainer: Trainer, reporter: Reporter) -> dict:
    try:
        return trainer.fit()
    except KeyboardInterrupt:
        path = trainer.run.path
        raise Interrupted(f"interrupted; epoch {trainer.saved['epoch']} (the last complete one) is saved in "
                          f"{path}/checkpoint.npz; carry on with: netcli train --resume {path}") from None
    finally:
        reporter.stop()
