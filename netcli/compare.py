"""`netcli compare`: one config trained by several optimizers, from the same initial theta and
the same data, each into an ordinary run directory of one comparison folder.

    runs/compare/<config-name>-<timestamp>/
      comparison.json   the config, the budget, each run's overrides, curve and table row
      comparison.png    the objective against gradient evaluations and against time
      sgd/ momentum/ adam/ cg/ lbfgs/
                        ordinary run directories (config.yaml, metrics.jsonl, receipt.json, ...)

A run is the config plus overrides, as a sweep trial is: `optimizer={...}` (the whole block) and
`training.epochs=<budget>`, recorded in comparison.json, so `netcli train CONFIG --set ...`
makes the same run again. Nothing else differs, so the seed draws the same initial theta for
every run; compare checks that it did (the SHA-256 of theta at the first gradient evaluation).

Gradient evaluations are counted where every optimizer gets its gradient, at the training
loop's loss_and_grad (Reporter.watch_gradient; a batch cut in parts is one call): a call on a
batch of b rows counts b/m of a full evaluation (m: the training rows), so an epoch of
minibatches counts 1 and each call scipy's cg or lbfgs makes (line searches included) counts 1.
At the end of every epoch (iteration) the objective J is evaluated on all m training rows,
without dropout, outside the timed part of the epoch; the time axis is the sum of
metrics.jsonl's per-epoch seconds (steps only: validation, checkpoints and this evaluation
left out).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netcli import __version__
from netcli.config import Config, load_config, parse_path, parse_value
from netcli.errors import ConfigError, JobFailed, NetcliError
from netcli.files import timestamped_path, write_json
from netcli.log import Reporter
from netcli.metrics import headline
from netcli.optim import OPTIMIZERS
from netcli.runs import RunDir
from netcli.runs.receipt import theta_sha256

COMPARISON_FILE = "comparison.json"
FIGURE_FILE = "comparison.png"
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adam", "cg", "lbfgs")

# Settings of an optimizer the config does not use (the config's own optimizer keeps its block).
# Chosen on the bundled digits data (configs/digits_mlp.yaml, batch 32): each a rate that
# converges there without diverging; --set NAME.KEY=VALUE changes them.
FIRST_ORDER_DEFAULTS = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.05},
    "rmsprop": {"lr": 0.001},
    "adam": {"lr": 0.001},
}


@dataclass
class Entrant:
    """One optimizer's run: its name, the overrides that make its config, the validated config."""

    name: str
    overrides: list[str]
    config: Config
    block: dict


@dataclass
class Plan:
    source: str
    budget: int
    base_overrides: list[str]
    entrants: list[Entrant]
    path: Path
    threads: int | None = 1        # BLAS threads of every run (None: as BLAS has them)


def _optimizer_class(name: str):
    """The registered optimizer (an unknown name is the registry's error, listing the known)."""
    return OPTIMIZERS.get(name)


def plan(config_path: str | Path, optimizers=DEFAULT_OPTIMIZERS, overrides=(), budget: int | None = None,
         out: str | Path | None = None, base_dir: str | Path = "runs/compare", threads: int | None = 1) -> Plan:
    """Every run of a comparison, validated; nothing is written.

    overrides: `KEY=VALUE` for the base config, or `NAME.KEY=VALUE` for one optimizer's
    settings (e.g. `sgd.lr=0.05`, `cg.max_iter=300`). budget: epochs of each first-order run and
    optimizer.max_iter of each full-batch run (default: the config's training.epochs, or its
    optimizer.max_iter when the config's optimizer is full-batch). threads: BLAS threads of every
    run (None: BLAS's default), written into each config as training.threads where the config
    has that key, unless --set gives it."""
    names = [n.strip() for n in optimizers if n.strip()]
    if not names:
        raise NetcliError("--optimizers: give at least one optimizer, e.g. sgd,adam,lbfgs")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise NetcliError(f"--optimizers: {', '.join(twice)} given twice")
    classes = {n: _optimizer_class(n) for n in names}     # an unknown name: the registry's message
    base_sets, own = [], {n: {} for n in names}
    for item in overrides:
        key, sep, text = item.partition("=")
        path = parse_path(key.strip())
        head = path[0] if path else None
        if head == "optimizer":
            raise NetcliError(f"--set {item}: give one optimizer's settings by its name, e.g. "
                              f"--set {names[0]}.lr=0.05; --optimizers chooses the optimizers")
        if isinstance(head, str) and head in OPTIMIZERS:
            if head not in own:
                raise NetcliError(f"--set {item}: {head} is not among --optimizers ({', '.join(names)})")
            if len(path) != 2 or not isinstance(path[1], str) or not sep:
                raise NetcliError(f"--set {item}: expected {head}.KEY=VALUE, e.g. {head}.lr=0.05")
            own[head][path[1]] = _value(text, f"--set {key.strip()}")
        else:
            base_sets.append(item)
    base = load_config(config_path, base_sets)
    for key in ("train", "val", "test"):
        if getattr(base.spec.data, key) == "-":
            raise NetcliError(f"data.{key}: compare trains several runs from one config and cannot read "
                              f"standard input (-) more than once; give a file")
    base_block = {"type": base.spec.optimizer.type, **base.spec.optimizer.args}
    base_full = base.spec.optimizer.build().full_batch
    if budget is None:
        budget = int(base_block["max_iter"]) if base_full else int(base.spec.training.epochs)
    if budget < 1:
        raise NetcliError(f"--budget: must be a positive number of gradient evaluations, got {budget}")
    if out is None:
        path = timestamped_path(base_dir, base.name)
    else:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise NetcliError(f"--out {path}: exists and is not an empty folder; choose another")
    user_threads = any(parse_path(item.partition("=")[0].strip()) == ("training", "threads") for item in base_sets)
    thread_sets = [f"training.threads={threads or 'auto'}"] if "threads" in base.as_dict()["training"] \
        and not user_threads else []
    entrants = []
    for name in names:
        if name == base_block["type"]:
            block = dict(base_block)
        elif classes[name].full_batch:
            block = {"type": name}
        else:
            block = {"type": name, **FIRST_ORDER_DEFAULTS.get(name, {})}
        if classes[name].full_batch:
            block["max_iter"] = budget
        block.update(own[name])
        sets = [*base_sets, f"optimizer={json.dumps(block)}", f"training.epochs={budget}", *thread_sets]
        try:
            config = load_config(config_path, sets)
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}") from None
        entrants.append(Entrant(name, sets, config, block))
    return Plan(str(config_path), budget, list(base_sets), entrants, path, None if user_threads else threads)


# -- the instrument: gradient evaluations and J at each epoch's end ------------------------

class Curve:
    """What one run did, measured from outside the training loop: gradient evaluations (in
    full-batch units), the SHA-256 of theta at the first one, and J on the full training data
    at theta0 and at the end of every epoch (iteration)."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y, self.m = X, y, len(X)
        self.net = None
        self.evals = 0.0
        self.calls = 0
        self.initial_theta = None
        self.seconds = 0.0
        self.points = {"epoch": [], "evals": [], "seconds": [], "objective": [], "data_term": []}

    def objective(self, theta) -> tuple[float, float]:
        """(J, its data term) at theta on the training rows, without dropout or corruption."""
        data, penalty = self.net.objective(theta, self.X, self.y, train=False)
        return float(data + penalty), float(data)

    def gradient(self, net, theta, X) -> None:
        """Called before each loss_and_grad(theta, X, y) of the training loop."""
        if self.net is None:
            self.net = net
            self.initial_theta = theta_sha256(theta)
            self._add(0, self.objective(theta))
        self.evals += len(X) / self.m
        self.calls += 1

    def epoch(self, record: dict) -> None:
        """Called at the end of each epoch (iteration), theta as the epoch left it."""
        self.seconds += float(record.get("seconds") or 0.0)
        if self.net is not None:
            self._add(record["epoch"], self.objective(self.net.theta))

    def _add(self, epoch: int, terms: tuple[float, float]) -> None:
        p = self.points
        p["epoch"].append(epoch)
        p["evals"].append(round(self.evals, 9))
        p["seconds"].append(round(self.seconds, 6))
        p["objective"].append(terms[0])
        p["data_term"].append(terms[1])


class _CurveReporter(Reporter):
    """The run's reporter, and the curve's instrument: every gradient the training loop asks for
    (the one function every optimizer consumes, a batch cut in parts or not) is reported to the
    curve first; a thread probe's steps, taken before the loop, are not the optimizer's."""

    def __init__(self, curve: Curve, quiet: bool, out=None):
        super().__init__(quiet=quiet, out=out)
        self.curve = curve

    def watch_gradient(self, net, loss_and_grad):
        def counted(theta, X, y, *args, **kwargs):
            self.curve.gradient(net, theta, X)
            return loss_and_grad(theta, X, y, *args, **kwargs)
        return counted

    def epoch(self, record: dict):
        self.curve.epoch(record)
        return super().epoch(record)


# -- running ---------------------------------------------------------------------------

@dataclass
class Comparison:
    path: Path
    doc: dict = field(default_factory=dict)

    @property
    def rows(self) -> list[dict]:
        return self.doc["runs"]


def run(p: Plan, console=None, verbose: bool = False) -> Comparison:
    """Train every entrant in turn into p.path/<optimizer>/, BLAS limited to p.threads; write
    comparison.json after each and the figure at the end. A run that diverges is recorded and
    the others go on."""
    from threadpoolctl import threadpool_limits

    from netcli import plots
    from netcli.prepare import prepare
    from netcli.training import train

    talk = console or Reporter().console
    prepared = prepare(p.entrants[0].config)          # the training split every run sees
    train_split = prepared.train
    X, y = (train_split.X, train_split.y) if train_split.prep is None else \
        train_split.take(np.arange(len(train_split)))
    spec = p.entrants[0].config.spec
    batch = spec.training.batch_size
    doc = {"netcli_comparison": 1, "netcli_version": __version__, "config": p.source,
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "budget": p.budget, "overrides": p.base_overrides,
           "training_rows": len(X), "batch_size": batch, "seed": spec.seed, "blas_threads": p.threads, "runs": [],
           "figure": FIGURE_FILE}
    p.path.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(p.path, doc)
    for i, entrant in enumerate(p.entrants, 1):
        run_dir = p.path / entrant.name
        talk.print(f"[{i}/{len(p.entrants)}] {entrant.name} ({_settings(entrant.block)}) -> {run_dir}",
                   markup=False)
        curve = Curve(X, y)
        status, message, summary = "finished", "", {}
        try:
            with threadpool_limits(limits=p.threads, user_api="blas"):
                result = train(entrant.config, run_dir=run_dir, reporter=_CurveReporter(curve, not verbose, talk))
            summary = result.summary
            status = summary.get("status", status)
        except JobFailed as e:            # diverged: the run keeps its last good epoch
            status, message = "diverged", str(e)
            summary = RunDir(run_dir).read_summary()
        row = _row(entrant, run_dir, curve, summary, status, message)
        doc["runs"].append(row)
        talk.print(f"    {status}: {row['epochs']} {'iterations' if row['full_batch'] else 'epochs'}, "
                   f"{row['grad_evals']:.4g} gradient evaluations, J {_g(row['final_objective'])}, "
                   f"{row['seconds']:.2f} s" + (f"; {message}" if message else ""), markup=False)
        write_json(comparison.path / COMPARISON_FILE, comparison.doc)
    hashes = {r["initial_theta_sha256"] for r in doc["runs"] if r["initial_theta_sha256"]}
    doc["same_initial_theta"] = len(hashes) == 1
    doc["initial_theta_sha256"] = hashes.pop() if len(hashes) == 1 else None
    if not doc["same_initial_theta"]:
        talk.print("warning: the runs did not start from the same theta (the SHA-256 at their first gradient "
                   "evaluation differs); the comparison is not like for like", markup=False)
    plots.plot_comparison(doc["runs"], _title(p, doc), p.path / FIGURE_FILE, _evals_label(batch, len(X)))
    write_json(comparison.path / COMPARISON_FILE, comparison.doc)
    return comparison


def _row(entrant: Entrant, run_dir: Path, curve: Curve, summary: dict, status: str, message: str) -> dict:
    objective = curve.points["objective"]
    finite = [v for v in objective if math.isfinite(v)]
    full = _optimizer_class(entrant.name).full_batch
    return {"optimizer": entrant.name, "run_dir": run_dir.name, "settings": entrant.block,
            "overrides": entrant.overrides, "full_batch": full, "status": status,
            "message": message or summary.get("message", ""),
            "epochs": summary.get("epochs", len(objective) - 1 if objective else 0),
            "steps": summary.get("steps"), "gradient_calls": curve.calls,
            "grad_evals": round(curve.evals, 9),
            "initial_objective": objective[0] if objective else None,
            "final_objective": objective[-1] if objective else None,
            "final_data_term": curve.points["data_term"][-1] if objective else None,
            "best_objective": min(finite) if finite else None,
            "seconds": round(curve.seconds, 6), "wall_seconds": summary.get("wall_seconds"),
            "test": headline(summary.get("test")), "initial_theta_sha256": curve.initial_theta,
            "curve": curve.points}


def _evals_label(batch, m: int) -> str:
    step = "b" if batch == "full" else f"b = {batch}"
    return f"gradient evaluations (full-batch equivalents: a minibatch step of {step} rows counts b/m, m = {m})"


def _title(p: Plan, doc: dict) -> str:
    same = "same initial theta" if doc.get("same_initial_theta") else "initial theta DIFFERS"
    return (f"{Path(p.source).stem}: {len(doc['runs'])} optimizers, {same}, m = {doc['training_rows']} "
            f"training rows, minibatch {doc['batch_size']}, budget {p.budget}")


def _settings(block: dict) -> str:
    return ", ".join(f"{k}={_g(v)}" for k, v in block.items() if k != "type") or "defaults"


def _value(text: str, where: str):
    import yaml
    try:
        return parse_value(text, where)
    except yaml.YAMLError:
        return text


def _g(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def load(path: str | Path) -> dict:
    """A comparison folder's comparison.json."""
    from netcli.files import read_json
    doc = read_json(Path(path) / COMPARISON_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise NetcliError(f"{path}: not a comparison folder (no readable {COMPARISON_FILE})")
    return doc
