"""The command line. Thin: parse, call one function below, print. Results on stdout, talk on stderr.

Exit codes: 0 ok, 1 the job ran and failed, 2 bad usage, config or data, 130 interrupted.

Each command imports netcli's modules inside its body: `netcli --help`, `netcli runs` and shell
completion then start in a fraction of a second instead of loading SciPy, pydantic, matplotlib
and Dask for every call.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from netcli import __version__
from netcli.errors import JobFailed, NetcliError
from netcli.log import Reporter, console as err_console


class _Stdout(Console):
    def on_broken_pipe(self) -> None:   # rich's own exits 1
        self.quiet = True
        _stdout_closed()


def out_console() -> Console:
    wide = None if sys.stdout.isatty() else 160  # a pipe gets whole rows, not a wrapped 80-column table
    return _Stdout(file=sys.stdout, highlight=False, width=wide)


class NetcliGroup(click.Group):
    """Turns a NetcliError into `Error: <message>` and its exit code, in one place."""

    def make_context(self, *args, **kwargs):
        try:   # --help and --version print here, before invoke
            return super().make_context(*args, **kwargs)
        except OSError as e:
            _closed_or_raise(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NetcliError as e:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)
        except OSError as e:
            _closed_or_raise(e)


# netcli opens each path itself and says in one `Error:` line why it cannot (click's own
# readable check would print a usage block instead)
PATH = click.Path(readable=False)


# -- options several commands share -------------------------------------------------

def set_option(help: str = "Override a config key, e.g. --set optimizer.lr=0.01 --set model.layers.0.units=32."):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def json_option(what: str = "the result"):
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


data_option = click.option("--data", help="CSV, NPZ or NPY file, or - for stdin (default: the config's data.test).")


def _threads_value(ctx, param, value):
    from netcli.threads import parse_threads
    try:
        return None if value is None else parse_threads(value)
    except NetcliError as e:
        raise click.BadParameter(str(e).removeprefix("--threads: ")) from None


threads_option = click.option("--threads", default=None, metavar="N|auto", callback=_threads_value,
                              help="BLAS threads: a number, or auto [default: training.threads for train "
                                   "(auto: measured on the first steps), else auto (threads only for a lot "
                                   "of work)].")


@click.group(cls=NetcliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show a traceback for errors.")
@click.version_option(__version__, prog_name="netcli")
def cli(debug):
    """Train neural networks written in NumPy from YAML configs."""


def _emit_json(obj) -> None:
    from netcli.files import to_plain
    click.echo(json.dumps(obj, indent=2, default=to_plain))


# -- train -------------------------------------------------------------------------

@cli.command()
@click.argument("config", required=False, type=PATH)
@set_option()
@click.option("--run-dir", type=PATH, help="Write the run here instead of runs/<name>-<time>.")
@click.option("--runs", "runs_base", default="runs", show_default=True, type=PATH,
              help="Folder that holds the run directories.")
@click.option("--resume", "resume_run", type=PATH, help="Carry on from RUN's checkpoint.")
@click.option("--overwrite", is_flag=True, help="Allow --run-dir to name a run that exists.")
@click.option("--check", "check_run", type=PATH, metavar="RUN",
              help="Retrain RUN from its config in a temporary directory; exit 0 if the final theta's "
                   "SHA-256 matches RUN's receipt.json (and its weights.npz), 1 if not.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@threads_option
@json_option("the final summary (instead of the run directory)")
def train(config, overrides, run_dir, runs_base, resume_run, overwrite, check_run, quiet, threads, as_json):
    """Train CONFIG; print the run directory on stdout.

    run=$(netcli train configs/digits_mlp.yaml) && netcli eval "$run"
    """
    from netcli import training
    from netcli.runs.receipt import hashing_stdin
    from netcli.signals import interrupt_on_signals

    interrupt_on_signals()
    reporter = Reporter(quiet=quiet)
    if check_run:
        if config or resume_run or overrides or run_dir or overwrite or runs_base != "runs" or threads:
            raise click.UsageError("--check RUN retrains RUN's own config on the threads it used; give no "
                                   "CONFIG, --resume, --set, --threads, --run-dir, --runs or --overwrite")
        with hashing_stdin():
            _check(check_run, quiet, as_json)
        return
    if threads is not None:
        overrides = (*overrides, f"training.threads={threads}")
    if resume_run:
        if config:
            raise click.UsageError("give either CONFIG or --resume RUN, not both")
        ignored = [flag for flag, given in (("--run-dir", run_dir), ("--runs", runs_base != "runs"),
                                            ("--overwrite", overwrite)) if given]
        if ignored:
            raise click.UsageError(f"--resume RUN carries on in RUN itself; {', '.join(ignored)} cannot apply")
        with hashing_stdin():
            result = training.resume(resume_run, reporter=reporter, overrides=overrides)
    else:
        if not config:
            raise click.UsageError("missing CONFIG (or --resume RUN)")
        from netcli.config import load_config
        with hashing_stdin():     # a run reading stdin records the hash of what it read
            result = training.train(load_config(config, overrides), run_dir=run_dir, runs_base=runs_base,
                                    overwrite=overwrite, reporter=reporter)
    summary = result.summary
    if not quiet:
        final = summary.get("test") or summary.get("final", {})
        shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if isinstance(v, float))
        where = "test" if "test" in summary else "last epoch"
        err_console.print(f"{summary['status']} after {summary['epochs']} epochs in "
                          f"{summary['wall_seconds']:.1f}s; {where}: {shown}", markup=False)
    if as_json:
        _emit_json({"run_dir": str(result.run_dir), **summary})
    else:
        click.echo(str(result.run_dir))


def _check(run, quiet: bool, as_json: bool) -> None:
    """train --check RUN: the verdict on stdout; a mismatch names both hashes on stderr, exit 1."""
    from netcli.diff import check_run, mismatch_message

    result = check_run(run, Reporter(quiet=quiet))
    if as_json:
        _emit_json(result)
    elif result["match"]:
        click.echo(f"{result['run']}: reproduced: theta sha256 {result['receipt']}")
    if not result["match"]:
        raise JobFailed(mismatch_message(result))


# -- eval and predict --------------------------------------------------------------

def _data_path(run, data):
    path = data or run.config.spec.data.test
    if not path:
        raise NetcliError("no --data given and the run's config has no data.test; "
                          "pass --data FILE or --data - for stdin")
    return path


@cli.command("eval")
@click.argument("run_dir", type=PATH)
@data_option
@threads_option
@json_option("the metrics")
def eval_cmd(run_dir, data, threads, as_json):
    """Metrics of a trained run on test data."""
    from netcli.api import load_run

    run = load_run(run_dir)
    run.threads = threads or run.threads
    split = run.split(_data_path(run, data))
    result = run.evaluate(split)
    if as_json:
        _emit_json(result)
        return
    out = out_console()
    table = Table(title=f"{run.path.name} on {split.source} ({len(split)} examples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("loss", "accuracy", "mse", "mae", "r2"):
        if key in result:
            table.add_row(key, f"{result[key]:.6g}")
    out.print(table)
    if "per_class" in result:
        pc = Table(title="per class")
        for col in ("class", "precision", "recall", "f1", "support"):
            pc.add_column(col, justify="right")
        for c, s in result["per_class"].items():
            pc.add_row(c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
        out.print(pc)
        cm = Table(title="confusion (rows: true, columns: predicted)")
        cm.add_column("")
        for c in result["classes"]:
            cm.add_column(str(c), justify="right")
        for c, row in zip(result["classes"], result["confusion"]):
            cm.add_row(str(c), *map(str, row))
        out.print(cm)


@cli.command()
@click.argument("run_dir", type=PATH)
@data_option
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "npy"]), default="csv", show_default=True)
@click.option("--proba", is_flag=True, help="Class probabilities (columns in class order) instead of labels.")
@click.option("--layer", type=int, help="Output layer N's activations (e.g. an autoencoder's code).")
@click.option("--keep", multiple=True, metavar="COLUMN",
              help="Carry a column of the input (e.g. an id) into each output row, before the prediction.")
@threads_option
def predict(run_dir, data, fmt, proba, layer, keep, threads):
    """One prediction per input row on stdout. Features are taken from the data by the names the
    training file gave them; other columns are ignored unless --keep names them."""
    from netcli.api import load_run

    if keep and fmt == "npy":
        raise click.UsageError("--keep needs --format csv or jsonl (an NPY array holds numbers only)")
    run = load_run(run_dir)
    run.threads = threads or run.threads
    run.check_layer(layer, "--layer")      # before the data is read
    split = run.split(_data_path(run, data), need_target=False, keep=list(keep))
    _, out = run.split_outputs(split, layer)
    result = out if proba or layer is not None else run.decode(out)
    write_predictions(result, fmt, run.classes if proba and layer is None else None, split.extra)


def write_predictions(result: np.ndarray, fmt: str, columns=None, kept: dict | None = None) -> None:
    """One line per row: CSV values, or {"prediction": ...} JSON (kept columns first, by name)."""
    kept = kept or {}
    if fmt == "npy":
        buf = sys.stdout.buffer
        # through write(), not the tofile np.save uses on a real file, whose failure on a closed
        # pipe is a bare OSError: a write() that fails there raises BrokenPipeError
        np.lib.format.write_array(_Writes(buf), np.asarray(result), allow_pickle=False)
        buf.flush()
        return
    rows = np.asarray(result).reshape(len(result), -1) if np.asarray(result).ndim > 1 else np.asarray(result)
    lines = []
    for i, row in enumerate(rows):
        values = row.tolist() if isinstance(row, np.ndarray) else row.item()
        carried = {name: str(cells[i]) for name, cells in kept.items()}
        if fmt == "jsonl":
            if columns is not None:
                values = dict(zip(map(str, columns.tolist()), values))
            lines.append(json.dumps({**carried, "prediction": values}))
        else:
            cells = [_fmt(v) for v in values] if isinstance(values, list) else [_fmt(values)]
            lines.append(",".join([*(_csv_cell(c) for c in carried.values()), *cells]))
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))


class _Writes:
    """A binary file's write() alone."""

    def __init__(self, file):
        self.write = file.write


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _csv_cell(text: str) -> str:
    """A kept cell as CSV writes it (quoted when it holds a comma, quote or newline)."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


# -- export ------------------------------------------------------------------------

@cli.command("export")
@click.argument("run_dir", type=PATH)
@click.option("--format", "fmt", type=click.Choice(["onnx", "torch", "safetensors"]), required=True,
              help="onnx: the whole model, preprocessing included; torch: a state_dict for "
                   "netcli.export.torch_model.build_sequential; safetensors: the tensors and metadata.")
@click.option("--out", type=PATH, help="File to write (default: RUN/model.onnx, model.pt or "
                                               "model.safetensors).")
def export_cmd(run_dir, fmt, out):
    """Write a trained run's model for other tools; prints the file's path."""
    from netcli.export import export

    click.echo(str(export(run_dir, fmt, out, reporter=Reporter())))


# -- gradcheck ---------------------------------------------------------------------

@cli.command()
@click.argument("target", type=PATH)
@click.option("--eps", default=1e-6, show_default=True, help="Finite-difference step.")
@click.option("--tol", type=float, help="Largest relative error that passes "
              "[default: 1e-6 central, 1e-4 forward (its error is O(eps))].")
@click.option("--method", type=click.Choice(["central", "forward"]), default="central", show_default=True,
              help="central: (E(w+eps) - E(w-eps)) / 2eps; forward: the notes' (E(w+eps) - E(w)) / eps.")
@click.option("--examples", default=4, show_default=True, help="Examples in the checked batch.")
@click.option("--max-coords", type=int, help="Check at most N random coordinates per tensor.")
@click.option("--random", "use_random", is_flag=True, help="Random inputs and targets instead of the data.")
@click.option("--seed", default=0, show_default=True)
@set_option()
@threads_option
@json_option("the report")
def gradcheck(target, eps, tol, method, examples, max_coords, use_random, seed, overrides, threads, as_json):
    """Backpropagation against finite differences, per tensor, in float64.

    TARGET is a config (fresh parameters) or a run directory (its trained weights).
    Checks every parameter tensor and every layer's input gradient (layers.<i>.input).
    Coordinates whose perturbation crosses a kink (ReLU at 0, a maxout or max-pool
    tie) have no derivative there: they are left out and counted under "kinks".
    A tensor passes when its relative error is at most --tol, or when its largest
    absolute error is below the rounding-noise floor 10 * eps_machine * max(|J|, 1) / eps
    (near a minimum the gradient itself is noise). Exit 0 when every tensor passes, else 1.
    """
    from netcli.inspection import check_gradients

    from netcli.threads import AUTO, blas_threads

    if tol is None:
        tol = 1e-6 if method == "central" else 1e-4
    with blas_threads(1 if threads in (None, AUTO) else threads):    # many passes over a few examples
        report, source, m = check_gradients(target, overrides, examples, use_random, seed, eps=eps,
                                            method=method, tol=tol, max_coords=max_coords)
    if as_json:
        _emit_json({**report.as_dict(), "data": source, "examples": m})
    else:
        _print_report(report, source, m)
    if not report.ok:
        w = report.worst
        raise JobFailed(f"gradient check failed: {w.name} has relative error {w.rel_err:.3g} > {tol:g} "
                        f"(worst coordinate {w.worst_index}, abs error {w.max_abs_err:.3g})")


def _print_report(report, source, m):
    out = out_console()
    table = Table(title=f"gradient check ({report.method} differences, eps {report.eps:g}, "
                        f"{m} examples from {source})")
    for col, justify in (("tensor", "left"), ("checked", "right"), ("kinks", "right"),
                         ("max abs err", "right"), ("rel err", "right"), ("", "left")):
        table.add_column(col, justify=justify)
    for t in report.tensors:
        table.add_row(t.name, str(t.checked), str(t.kinks), f"{t.max_abs_err:.2e}", f"{t.rel_err:.2e}",
                      "ok" if t.ok else "FAIL")
    out.print(table)
    ratio = report.finite_diff_seconds / max(report.backprop_seconds, 1e-12)
    out.print(f"backprop gradient {report.backprop_seconds * 1e3:.3f} ms; finite differences "
              f"{report.finite_diff_seconds:.3f} s ({ratio:,.0f}x)")
    out.print(f"{'PASS' if report.ok else 'FAIL'}: worst relative error {report.worst.rel_err:.2e} "
              f"({report.worst.name}), tolerance {report.tol:g}")


# -- config tools ------------------------------------------------------------------

@cli.command()
@click.argument("config", type=PATH)
@set_option()
@click.option("--static", is_flag=True, help="Check the config alone, without reading its data files.")
def validate(config, overrides, static):
    """Check a config without training: its keys, that its network fits together, and (unless
    --static) that its data files, target, classes and input width fit it."""
    from netcli.config import load_config
    from netcli.prepare import build_network, prepare

    cfg = load_config(config, overrides)
    if static:
        if cfg.auto_sizes:
            click.echo(f"{config}: ok as far as it goes without data ({', '.join(cfg.auto_sizes)} "
                       f"come from the data)")
            return
        net = build_network(cfg)
        click.echo(f"{config}: ok ({len(net.layers)} layers, {net.size:,} parameters; data not read)")
        return
    p = prepare(cfg)
    click.echo(f"{config}: ok ({len(p.net.layers)} layers, {p.net.size:,} parameters; {p.describe()})")


@cli.command()
def schema():
    """Print a JSON Schema of the config (for editors that complete and check YAML)."""
    from netcli.config import json_schema
    _emit_json(json_schema())


@cli.command()
@click.argument("target", type=PATH)
@set_option()
def summary(target, overrides):
    """Layers, output shapes, parameter counts and the objective being minimized."""
    from netcli.inspection import layer_rows, load_target, objective_formula
    from netcli.prepare import build_network, sized

    config, _ = load_target(target, overrides)
    net = build_network(sized(config))
    out = out_console()
    table = Table(title=f"{config.name}: input {list(net.input_shape)}")
    for col in ("#", "layer", "output shape", "parameters"):
        table.add_column(col, justify="right" if col in ("#", "parameters") else "left")
    for i, description, shape, count in layer_rows(net):
        table.add_row(str(i), description, str(shape), f"{count:,}")
    table.add_row("", "total", "", f"{net.size:,}")
    out.print(table)
    out.print(objective_formula(net), markup=False)


# -- plots and the table of runs ----------------------------------------------------

@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=PATH, metavar="RUN...")
@click.option("--out", type=PATH, help="PNG file to write (default: inside the run directory, or "
              "inside the one folder of runs given).")
@click.option("--weights", "what", flag_value="weights", help="A layer's incoming weights as images.")
@click.option("--reconstructions", "what", flag_value="reconstructions",
              help="Autoencoders: test inputs beside their reconstructions.")
@click.option("--confusion", "what", flag_value="confusion", help="Confusion matrix on the test data.")
@click.option("--layer", type=int, help="With --weights: the layer (default: the first with weights).")
@data_option
@threads_option
def plot(run_dirs, out, what, layer, data, threads):
    """Loss and accuracy curves (default), weights, reconstructions or confusion; prints the PNG path.

    Several runs (or a sweep or comparison folder, which stands for its runs) give one figure of
    their learning curves, each labelled by what differs between the configs (optimizer.lr=0.01).
    """
    from netcli import plots
    from netcli.api import load_run
    from netcli.runs import METRICS, RunDir, holds

    run_dir = run_dirs[0]
    own_log = len(run_dirs) == 1 and what is None and holds(run_dir, METRICS)   # config.yaml or not
    if len(run_dirs) > 1 or not (own_log or holds(run_dir, "config.yaml")):
        from netcli.diff import expand_runs, overlay_series
        runs, expanded = expand_runs(run_dirs)
        if len(runs) > 1:
            if what is not None:
                raise click.UsageError(f"--{what} draws one run; give one RUN")
            if not out and not (expanded and len(run_dirs) == 1):
                raise click.UsageError("several runs: give --out FILE.png for their figure")
            path = Path(out) if out else Path(run_dir) / "curves.png"
            title = Path(run_dir).name if len(run_dirs) == 1 else f"{len(runs)} runs"
            plots.plot_overlay(overlay_series(runs), title, path)
            click.echo(str(path))
            return
        run_dir = runs[0]
    if what is None:   # the curves need metrics.jsonl only: a run still training, killed, or without its config
        run_path = Path(run_dir).resolve()
        path = Path(out) if out else run_path / "curves.png"
        records = RunDir(run_path).read_metrics()
        plots.plot_curves(records, run_path.name, path, plots.logged_full_batch(records))
        click.echo(str(path))
        return
    run = load_run(run_dir)
    run.threads = threads or run.threads
    name = run.path.name
    path = Path(out) if out else run.path / f"{what}.png"
    if what == "weights":
        index = layer if layer is not None else next(
            (s.layer for s in run.net.slots if s.spec.decay), None)
        W = run.net.params.get(f"layers.{index}.W") if index is not None else None
        if W is None:
            raise NetcliError(f"layer {index} has no weights W to show")
        tiles = plots.weight_tiles(np.asarray(W, dtype=np.float64), run.net.shapes[index])
        plots.plot_grid(plots.tile_grid(tiles), f"{name}: layer {index} weights, "
                        f"{len(tiles)} units\n(each tile scaled on its own)", path)
    else:
        split = run.split(_data_path(run, data))
        if what == "reconstructions":
            if not run.task.reconstructs:
                raise NetcliError("--reconstructions needs an autoencoder run (data.target: input)")
            X, out = run.split_outputs(split, limit=10)
            plots.plot_reconstructions(X, out, plots.image_shape(run.net.input_shape),
                                       f"{name}: reconstructions", path)
        else:
            if not run.task.labelled:
                raise NetcliError("--confusion needs a classification run (loss: cross_entropy)")
            result = run.evaluate(split)
            plots.plot_confusion(np.array(result["confusion"]), result["classes"],
                                 f"{name}: confusion on {Path(split.source).name} "
                                 f"(accuracy {100 * result['accuracy']:.1f}%)", path)
    click.echo(str(path))


@cli.command("runs")
@click.argument("folder", default="runs", type=PATH)
@json_option("the runs (a list of objects)")
def runs_cmd(folder, as_json):
    """A table of the runs under FOLDER (default runs/), newest first."""
    from netcli.runs import list_runs

    rows = list_runs(folder)
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=Text(f"runs in {folder}"))
    for col in ("run", "config", "status", "epochs", "best val", "test", "wall"):
        table.add_column(col, justify="right" if col in ("epochs", "wall") else "left")
    for r in rows:   # names as Text: a '[' in one is not rich markup
        table.add_row(Text(r["run"]), Text(r["config"] or ""), Text(r["status"]), str(r["epochs"] or ""),
                      _metric(r["best_val"]), _metric(r["test"]),
                      f"{r['wall_seconds']:.1f}s" if r["wall_seconds"] is not None else "")
    out_console().print(table)


def _metric(pair) -> str:
    return "" if not pair else f"{pair[0]} {pair[1]:.4g}"


# -- comparing optimizers and runs ----------------------------------------------------

@cli.command()
@click.argument("config", type=PATH)
@click.option("--optimizers", default="sgd,momentum,adam,cg,lbfgs", show_default=True, metavar="A,B,...",
              help="The optimizers to compare, by registered name.")
@set_option("Override a config key for every run (as train --set), or one optimizer's setting: "
            "--set sgd.lr=0.05, --set cg.max_iter=300.")
@click.option("--budget", type=click.IntRange(min=1), metavar="N",
              help="Epochs of each first-order run and optimizer.max_iter of cg and lbfgs "
                   "[default: the config's training.epochs, or its max_iter for a full-batch config].")
@click.option("--out", type=PATH, help="The comparison folder [default: runs/compare/<config>-<time>].")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="BLAS threads for every run (0: BLAS's own default). A fixed number, not auto as "
                   "elsewhere: the runs' timings are compared, so every run gets the same threads, and "
                   "one thread keeps them steady on a shared machine.")
@click.option("--verbose", "-v", is_flag=True, help="Every epoch of every run on stderr.")
@json_option("comparison.json's contents (instead of the table)")
def compare(config, optimizers, overrides, budget, out, threads, verbose, as_json):
    """Train CONFIG with several optimizers from the same initial theta and data; print a table.

    \b
    netcli compare configs/digits_mlp.yaml --optimizers sgd,momentum,adam,cg,lbfgs

    Each optimizer's run is CONFIG with `--set optimizer={...}` and `training.epochs=N`, an
    ordinary run directory in the comparison folder (DIR/sgd/, DIR/cg/, ...); nothing else
    differs, so the seed draws the same initial theta, and compare checks that it did.
    The folder also holds comparison.json and comparison.png: the objective J on the training
    rows against gradient evaluations and against time. A minibatch step of b rows counts b/m
    of a gradient evaluation (m training rows: an epoch counts 1); each gradient scipy's cg or
    lbfgs asks for counts 1, line searches included.

    \b
    Settings, unless --set NAME.KEY=V says otherwise:
      the config's own optimizer   its block as the config has it
      sgd                          lr 0.1
      momentum, nesterov           lr 0.01, momentum 0.9
      adagrad                      lr 0.05
      rmsprop, adam                lr 0.001
      cg, lbfgs                    max_iter N (the budget; scipy's other defaults)
    First-order runs train N epochs (N gradient evaluations) with the config's batch size and
    schedule; cg and lbfgs stop after N iterations, each of which costs one gradient evaluation
    or more (line searches): the table and the figure show what each used.
    """
    from netcli import compare as comparing
    from netcli.signals import interrupt_on_signals

    interrupt_on_signals()
    names = [n.strip() for n in optimizers.split(",")]
    plan = comparing.plan(config, names, overrides, budget, out, threads=threads or None)
    talk = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    result = comparing.run(plan, console=talk, verbose=verbose)
    if as_json:
        _emit_json({"comparison_dir": str(result.path), **result.doc})
    else:
        out_console().print(_comparison_table(result))
    if not any(r["status"] == "finished" for r in result.rows):
        raise JobFailed(f"no run of the comparison finished; see {result.path / comparing.COMPARISON_FILE}")


def _comparison_table(result) -> Table:
    doc = result.doc
    same = "same initial theta" if doc.get("same_initial_theta") else "INITIAL THETA DIFFERS"
    table = Table(title=f"{result.path}: {same}, m = {doc['training_rows']}, batch {doc['batch_size']}, "
                        f"budget {doc['budget']}",
                  caption=f"time: seconds in training steps (validation, checkpoints left out); "
                          f"figure: {result.path / doc['figure']}")
    for col in ("optimizer", "settings", "status", "final J", "data term", "best J", "grad evals", "time", "test"):
        table.add_column(col, justify="left" if col in ("optimizer", "settings", "status", "test") else "right")
    for r in doc["runs"]:
        settings = ", ".join(f"{k} {_short_value(v)}" for k, v in r["settings"].items() if k != "type")
        table.add_row(r["optimizer"], settings, r["status"], _num(r["final_objective"]), _num(r["final_data_term"]),
                      _num(r["best_objective"]),
                      f"{r['grad_evals']:.4g}", f"{r['seconds']:.2f}s", _metric(
                          [r["test"]["metric"], r["test"]["value"]] if r["test"] else None))
    return table


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ""


@cli.command("diff")
@click.argument("run_a", type=PATH)
@click.argument("run_b", type=PATH)
@click.option("--rtol", default=1e-6, show_default=True, help="Metrics closer than this (relatively) are the same.")
@json_option("the differences")
def diff_cmd(run_a, run_b, rtol, as_json):
    """How two runs differ: config keys, data files (SHA-256 from their receipts), and the first
    epoch where a logged metric parts, with the final values."""
    from netcli.diff import diff_runs

    result = diff_runs(run_a, run_b, rtol)
    if as_json:
        _emit_json(result)
        return
    _print_diff(result)


def _print_diff(result: dict) -> None:
    out = out_console()
    out.print(f"a: {result['a']}\nb: {result['b']}", markup=False)
    if result["config"]:
        table = Table(title="config keys that differ")
        for col in ("key", "a", "b"):
            table.add_column(col)
        for d in result["config"]:
            table.add_row(d["key"], _cell(d["a"]), _cell(d["b"]))
        out.print(table)
    else:
        out.print("config: the same", markup=False)
    data = result["data"]
    for d in data["differ"]:
        a, b = d["a"] or {}, d["b"] or {}
        out.print(f"data.{d['role']} differs: a {a.get('path')} sha256 {a.get('sha256')}\n"
                  f"{' ' * (len(d['role']) + 14)}b {b.get('path')} sha256 {b.get('sha256')}", markup=False)
    for d in data["unknown"]:
        out.print(f"data.{d['role']}: not compared (a: {_cell(d['a'])}, b: {_cell(d['b'])})", markup=False)
    if data["same"]:
        out.print(f"data the same (sha256): {', '.join(data['same'])}", markup=False)
    m = result["metrics"]
    parted = m["parted"]
    if parted is None:
        out.print(f"metrics: the same at every epoch (rtol {m['rtol']:g}); {m['epochs'][0]} epochs", markup=False)
    elif not parted["metrics"]:
        out.print(f"metrics: the same while both ran; only {parted['only_in']} has epoch {parted['epoch']} "
                  f"({m['epochs'][0]} vs {m['epochs'][1]} epochs)", markup=False)
    else:
        shown = ", ".join(f"{d['metric']} {_short_value(d['a'])} vs {_short_value(d['b'])}" for d in parted["metrics"])
        out.print(f"metrics part at epoch {parted['epoch']}: {shown}", markup=False)
    if m["final"]:
        table = Table(title=f"final metrics ({m['epochs'][0]} and {m['epochs'][1]} epochs)")
        for col in ("metric", "a", "b"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for key, (a, b) in m["final"].items():
            table.add_row(key, _cell(a), _cell(b))
        out.print(table)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


# -- sweep -------------------------------------------------------------------------

@cli.command()
@click.argument("config", required=False, type=PATH)
@set_option()
@click.option("--grid", multiple=True, metavar="KEY=V1,V2,...",
              help="An axis whose every value is tried (YAML values; a list in [...] is one value).")
@click.option("--random", "n_random", type=int, metavar="N", help="Draw N values of the --range axes (per grid point).")
@click.option("--range", "ranges", multiple=True, metavar="KEY=LO:HI[:log]",
              help="An axis drawn uniformly (log-uniformly with :log) for --random; integers if LO, HI are.")
@click.option("--seeds", type=int, metavar="K", help="Run every point with K derived seeds.")
@click.option("--search", type=click.Choice(["tpe", "random", "grid"]),
              help="Ask an Optuna study for each trial over the --range/--grid axes (needs netcli[search]).")
@click.option("--trials", type=int, metavar="N",
              help="How many trials a --search asks for [grid: all its points]; with --resume, carry a search on to N.")
@click.option("--prune", type=click.Choice(["median", "halving"]),
              help="Stop a search's trials that fall behind at an epoch's end (MedianPruner, SuccessiveHalvingPruner).")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Local Dask worker processes [default: CPU count].")
@click.option("--scheduler", metavar="ADDRESS", help="A running Dask scheduler instead, e.g. tcp://host:8786.")
@click.option("--sweep-dir", type=PATH, help="Where the trials go [default: runs/sweeps/<config>-<time>].")
@click.option("--resume", "resume_dir", type=PATH, metavar="SWEEP_DIR",
              help="Run the trials SWEEP_DIR has not recorded as ended.")
@json_option("the table (instead of the best trial's path)")
def sweep(config, overrides, grid, n_random, ranges, seeds, search, trials, prune, workers, scheduler, sweep_dir,
          resume_dir, as_json):
    """Train CONFIG once per trial on Dask; print the best trial's run directory on stdout.

    \b
    netcli sweep configs/digits_mlp.yaml --set data.validation_split=0.1 \\
        --grid optimizer.lr=0.001,0.01 --grid regularization.l2=0,1e-4
    netcli sweep configs/digits_mlp.yaml --set data.validation_split=0.1 --search tpe --trials 16 \\
        --range optimizer.lr=1e-4:1e-1:log --range regularization.l2=1e-6:1e-2:log --prune median

    Axes may also come from a `sweep:` section of the config (grid, range, random, seeds; search,
    trials, prune). The best trial has the best validation metric (else final loss, else test metric).
    """
    from netcli import sweep as sweeps
    from netcli.signals import interrupt_on_signals

    interrupt_on_signals()
    if resume_dir:
        if config or overrides or grid or ranges or n_random is not None or seeds is not None or sweep_dir \
                or search or prune:
            raise click.UsageError("--resume SWEEP_DIR takes the sweep as it was; give no CONFIG or axes "
                                   "(a search takes --trials N to ask for more)")
        plan = sweeps.load(resume_dir, trials=trials)
    else:
        if not config:
            raise click.UsageError("missing CONFIG (or --resume SWEEP_DIR)")
        plan = sweeps.plan(config, grid, ranges, n_random, seeds, sweep_dir, overrides=overrides,
                           search=search, trials=trials, prune=prune)
    talk = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    result = sweeps.run(plan, workers=workers, scheduler=scheduler, console=talk, new=not resume_dir)
    rows = sweeps.table_rows(result)
    best = str(result.path / result.best["name"]) if result.best else None
    talk.print(_sweep_table(result, rows, plan.axes))
    if as_json:
        _emit_json({"sweep_dir": str(result.path), "best": best, "trials": rows})
    elif best:
        click.echo(best)
    if best is None:
        raise JobFailed(f"no trial finished; the messages are in {result.path / sweeps.TRIALS_FILE}")


def _sweep_table(result, rows, axes) -> Table:
    from netcli.sweep import short_keys
    shorts = short_keys(axes.keys())
    metrics = {r["score"]["metric"] for r in rows if r["score"]}
    counts = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
    trained = f"; {sum(r['epochs'] or 0 for r in rows)} epochs trained" if "pruned" in counts else ""
    table = Table(title=f"{result.path}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + trained)
    metric = metrics.pop() if len(metrics) == 1 else "score"
    loss = metric != "loss"  # a separate final-loss column, unless the score is that loss
    columns = ["", "trial", *shorts.values()] + (["seed"] if axes.seeds > 1 else []) + \
        ["status", "epochs", metric] + (["loss"] if loss else []) + ["test", "wall"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("", "trial", "status", "test") else "right")
    for r in rows:
        values = [_short_value(r["overrides"].get(k)) for k in shorts]
        test = f"{r['test']['metric']} {r['test']['value']:.4g}" if r["test"] else ""
        table.add_row("*" if r["best"] else "", r["trial"], *values,
                      *([str(r["seed"])] if axes.seeds > 1 else []), r["status"], str(r["epochs"] or ""),
                      f"{r['score']['value']:.4g}" if r["score"] else "",
                      *([f"{r['final_loss']:.4g}" if isinstance(r["final_loss"], float) else ""] if loss else []),
                      test,
                      f"{r['wall_seconds']:.1f}s" if r["wall_seconds"] is not None else "")
    return table


def _short_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if value is not None else ""


def _closed_or_raise(error: OSError) -> None:
    """A failed write to a closed stdout (EPIPE) ends quietly; any other OSError goes on."""
    if error.errno != errno.EPIPE:
        raise error
    _stdout_closed()


def _stdout_closed() -> None:
    """The reader of stdout went away (`netcli predict ... | head`): end quietly, exit 0, and keep
    Python from complaining when it flushes stdout at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(0)


def main() -> None:
    args = sys.argv[1:]
    if "--debug" in args[1:] and "--" not in args:   # `netcli train x.yaml --debug` means the group's flag
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        cli(args=args, prog_name="netcli")
    except OSError as e:
        _closed_or_raise(e)
