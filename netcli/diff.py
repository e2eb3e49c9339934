"""How runs differ: their configs (dotted keys), their data files (by the SHA-256 in their
receipts) and where their metrics part; the labels `netcli plot` gives several runs; and
`netcli train --check RUN`, which retrains a run and compares the result with its receipt."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from netcli.config import load_mapping, read_config_text
from netcli.errors import ConfigError, JobFailed, NetcliError
from netcli.runs import RunDir, resolve_run
from netcli.runs.receipt import read_receipt, theta_sha256

ABSENT = "(absent)"
RTOL = 1e-6          # metrics closer than this, relatively, are the same
NOT_METRICS = ("epoch", "seconds")   # logged per epoch, but not outcomes (wall time varies)


# -- configs as dotted keys -------------------------------------------------------------

def flatten(value, prefix: str = "") -> dict[str, Any]:
    """A config mapping -> {dotted key: leaf value}; lists of mappings by index
    (model.layers.0.units), lists of plain values kept whole (model.input: [1, 8, 8])."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: value}


_MISSING = object()


def differing_keys(configs: list[dict]) -> list[str]:
    """The dotted keys whose values are not the same in every config (a key one config lacks
    counts as differing), in the order they first appear."""
    flats = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    return [k for k in keys if len({_key_of(f.get(k, _MISSING)) for f in flats}) > 1]


def _key_of(value) -> str:
    return "\0absent" if value is _MISSING else yaml.safe_dump(value, default_flow_style=True)


def run_labels(configs: list[dict], names: list[str]) -> list[str]:
    """One label per run from what differs between their configs, e.g. 'optimizer.lr=0.01'.

    A component whose type differs is named by its type (`optimizer=sgd`); of its other keys,
    those that some of the types lack (lr for cg) are shown only where a run has them and only
    when they take different values among those runs (lr of sgd and adam, not adam's beta1 or
    the max_iter cg and lbfgs share). Paths are shown by their file name. Runs whose configs are
    the same are labelled by name."""
    flats = [flatten(c) for c in configs]
    keys = differing_keys(configs)
    retyped = {k[: -len(".type")] for k in keys if k.endswith(".type")}
    shown, partial = [], set()
    for k in keys:
        parent = k.rsplit(".", 1)[0] if "." in k else ""
        if parent in retyped and not k.endswith(".type") and any(k not in f for f in flats):
            present = {_key_of(f[k]) for f in flats if k in f}
            if len(present) < 2:
                continue
            partial.add(k)
        shown.append(k)
    labels = []
    for flat, name in zip(flats, names):
        parts = []
        for k in shown:
            if k in partial and k not in flat:
                continue
            key = k[: -len(".type")] if k.endswith(".type") else k
            parts.append(f"{key}={_short(flat.get(k, _MISSING))}")
        labels.append(", ".join(parts) or name)
    if len(set(labels)) < len(labels):   # keys left out made two alike: add the names
        labels = [f"{label} ({name})" if label != name else label for label, name in zip(labels, names)]
    return labels


def _short(value) -> str:
    if value is _MISSING:
        return ABSENT
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name
    if isinstance(value, (list, dict)) or value is None or isinstance(value, bool):
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return str(value)


# -- two runs -----------------------------------------------------------------------------

def read_config(run_path: Path) -> dict:
    """A run's config.yaml as its mapping, read as any config is; a missing, empty or damaged
    file is a ConfigError that names it."""
    path = Path(run_path) / "config.yaml"
    text = read_config_text(path)
    if not text.strip():
        raise ConfigError(f"{path}: is empty; the run's config is damaged")
    return load_mapping(text, str(path))[0]


def config_differences(a: dict, b: dict) -> list[dict]:
    """[{key, a, b}] for each dotted key whose values differ (ABSENT where a config lacks it)."""
    fa, fb = flatten(a), flatten(b)
    return [{"key": k, "a": fa.get(k, ABSENT), "b": fb.get(k, ABSENT)} for k in differing_keys([a, b])]


def data_differences(ra: dict | None, rb: dict | None) -> dict:
    """Data files by SHA-256 from two receipts: {differ: [{role, a, b}], same: [roles],
    unknown: [roles with no hash on one side (stdin not watched, a run without a receipt)]}."""
    out = {"differ": [], "same": [], "unknown": []}
    da = (ra or {}).get("data", {})
    db = (rb or {}).get("data", {})
    for role in dict.fromkeys([*da, *db]):
        ea, eb = da.get(role), db.get(role)
        ha, hb = (ea or {}).get("sha256"), (eb or {}).get("sha256")
        entry = {"role": role, "a": _data_side(ea), "b": _data_side(eb)}
        if ea is None or eb is None:
            out["differ"].append(entry)      # one run has the file, the other none
        elif ha is None or hb is None:
            out["unknown"].append(entry)
        elif ha != hb:
            out["differ"].append(entry)
        else:
            out["same"].append(role)
    if ra is None or rb is None:
        out["unknown"] = [{"role": "all", "a": "receipt" if ra else "no receipt",
                           "b": "receipt" if rb else "no receipt"}]
        out["differ"], out["same"] = [], []
    return out


def _data_side(entry: dict | None) -> dict | None:
    return None if entry is None else {"path": entry.get("path"), "sha256": entry.get("sha256")}


def close(a, b, rtol: float = RTOL) -> bool:
    """Two logged values are the same: equal, both NaN, or within rtol of the larger."""
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool) \
            or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def metrics_parting(ma: list[dict], mb: list[dict], rtol: float = RTOL) -> dict:
    """Where two runs' metrics.jsonl part: {parted: {epoch, metrics: [{metric, a, b}]} or None
    (the first epoch at which a metric both logged differs by more than rtol), epochs: [a, b],
    final: {metric: [a, b]} (the last record of each)}. When every common epoch agrees but one
    run logged more, parted names the first epoch only one of them has."""
    by_a = {r.get("epoch"): r for r in ma}
    by_b = {r.get("epoch"): r for r in mb}
    parted = None
    for epoch in sorted(set(by_a) & set(by_b), key=lambda e: (e is None, e)):
        ra, rb = by_a[epoch], by_b[epoch]
        keys = [k for k in dict.fromkeys([*ra, *rb]) if k not in NOT_METRICS and k in ra and k in rb]
        differ = [{"metric": k, "a": ra[k], "b": rb[k]} for k in keys if not close(ra[k], rb[k], rtol)]
        if differ:
            parted = {"epoch": epoch, "metrics": differ}
            break
    if parted is None and set(by_a) != set(by_b):
        only = sorted(set(by_a) ^ set(by_b), key=lambda e: (e is None, e))[0]
        parted = {"epoch": only, "metrics": [], "only_in": "a" if only in by_a else "b"}
    fa, fb = (ma[-1] if ma else {}), (mb[-1] if mb else {})
    final = {k: [fa.get(k), fb.get(k)] for k in dict.fromkeys([*fa, *fb]) if k not in NOT_METRICS}
    return {"parted": parted, "epochs": [len(ma), len(mb)], "final": final, "rtol": rtol}


def _receipt_or_none(path: Path) -> dict | None:
    try:
        return read_receipt(path)
    except NetcliError:
        return None


def diff_runs(run_a: str | Path, run_b: str | Path, rtol: float = RTOL) -> dict:
    """Config keys, data files and metrics of two run directories, side by side."""
    a, b = resolve_run(run_a), resolve_run(run_b)
    ra, rb = _receipt_or_none(a), _receipt_or_none(b)
    return {"a": str(a), "b": str(b),
            "config": config_differences(read_config(a), read_config(b)),
            "data": data_differences(ra, rb),
            "receipts": [ra is not None, rb is not None],
            "metrics": metrics_parting(RunDir(a).read_metrics(), RunDir(b).read_metrics(), rtol)}


# -- train --check -------------------------------------------------------------------------

def check_run(run_path: str | Path, reporter=None) -> dict:
    """Retrain a finished run from its config.yaml into a temporary directory (BLAS on the
    threads its receipt recorded) and compare the final theta's SHA-256 with the receipt's; also
    check that weights.npz still holds the theta the receipt names.

    -> {run, match, receipt, weights, retrained, data, metrics}; raises NetcliError for a run
    without a receipt, one that did not finish, and one extended while its schedule uses the
    total epochs (summary.json's "extended": no config retrains it)."""
    import tempfile

    from threadpoolctl import threadpool_limits

    from netcli.api import load_run
    from netcli.config import load_config
    from netcli.training import train

    path = resolve_run(run_path)
    receipt = read_receipt(path)
    status = receipt.get("status")
    if status != "finished":
        raise NetcliError(f"{run_path}: the run's receipt is of a run that ended {status!r}, not finished; "
                          f"--check retrains to the end, so finish it first (netcli train --resume {run_path})")
    summary = RunDir(path).read_summary()
    extended = summary.get("extended")
    if isinstance(extended, list) and extended:
        first = extended[0] if isinstance(extended[0], dict) else {}
        raise NetcliError(f"{run_path}: was extended by --resume --set training.epochs (at epoch "
                          f"{first.get('from_epoch')}, to {first.get('epochs')} epochs) and its "
                          f"{first.get('schedule', 'learning-rate')} schedule follows the total, so its "
                          f"learning rates differ from a fresh run of its config.yaml; --check cannot "
                          f"reproduce it (summary.json: extended)")
    recorded = receipt["theta"].get("sha256")
    weights = theta_sha256(load_run(path).net.theta)
    recorded_threads = summary.get("threads") or {}
    used, way = recorded_threads.get("used"), recorded_threads.get("way")
    threads = [p.get("num_threads") for p in receipt.get("blas", {}).get("threadpools", [])
               if p.get("user_api") == "blas" and isinstance(p.get("num_threads"), int)]
    # the count training chose (summary.json; a full-batch run's receipt sees scipy's one thread)
    count = used if isinstance(used, int) and used >= 1 else min(threads) if threads else None
    config = load_config(path / "config.yaml")
    training = config.as_dict()["training"]
    pins = []                                            # what auto chose then: the count, the way
    if count and training.get("threads") == "auto":
        pins.append(f"training.threads={count}")
    if way in ("blas", "batch") and training.get("parallel", "auto") == "auto":
        pins.append(f"training.parallel={way}")
    if pins:
        config = load_config(path / "config.yaml", pins)
    if reporter is not None:
        reporter.info(f"retraining {run_path} from its config.yaml in a temporary directory"
                      + (f", on {count} thread{'s' if count > 1 else ''} as the run records" if count else ""))
    with tempfile.TemporaryDirectory(prefix="netcli-check-") as tmp:
        with threadpool_limits(limits=count, user_api="blas"):
            result = train(config, run_dir=Path(tmp) / path.name, reporter=reporter)
        again = read_receipt(result.run_dir)
        metrics = metrics_parting(RunDir(path).read_metrics(), RunDir(result.run_dir).read_metrics())
    retrained = again["theta"].get("sha256")
    software = {k: [v, again.get("software", {}).get(k)] for k, v in receipt.get("software", {}).items()
                if again.get("software", {}).get(k) != v}
    return {"run": str(path), "match": recorded == retrained == weights, "receipt": recorded,
            "weights": weights, "retrained": retrained, "data": data_differences(receipt, again),
            "metrics": metrics, "software": software}


def mismatch_message(result: dict) -> str:
    """Why a --check failed, naming both hashes and what else differs."""
    run = result["run"]
    parts = []
    if result["weights"] != result["receipt"]:
        parts.append(f"{run}/weights.npz holds theta sha256 {result['weights']}, but its receipt records "
                     f"{result['receipt']}: the weights were changed after training")
    if result["retrained"] != result["receipt"]:
        parts.append(f"retraining gave theta sha256 {result['retrained']}, the receipt records "
                     f"{result['receipt']}")
    for d in result["data"]["differ"]:
        parts.append(f"data.{d['role']} differs from when the run was made "
                     f"({(d['a'] or {}).get('sha256')} then, {(d['b'] or {}).get('sha256')} now)")
    for name, (then, now) in result["software"].items():
        parts.append(f"{name} {then} then, {now} now")
    parted = result["metrics"]["parted"]
    if parted and parted["metrics"]:
        m = parted["metrics"][0]
        parts.append(f"the metrics part at epoch {parted['epoch']} ({m['metric']} {m['a']!r} vs {m['b']!r})")
    return f"{run}: does not reproduce: " + "; ".join(parts)


def check_or_fail(run_path: str | Path, reporter=None) -> dict:
    result = check_run(run_path, reporter)
    if not result["match"]:
        raise JobFailed(mismatch_message(result))
    return result


# -- several runs for one figure ------------------------------------------------------------

def expand_runs(paths) -> tuple[list[Path], bool]:
    """Run directories from the command line: a run directory as it is; a folder that holds run
    directories (a sweep, a comparison, a runs/ folder) as its runs, by name. -> (runs, whether
    a folder was expanded)."""
    runs, expanded = [], False
    for arg in paths:
        p = Path(arg)
        if (p / "config.yaml").is_file():
            runs.append(resolve_run(p))
            continue
        if not p.is_dir():
            raise NetcliError(f"{arg}: no such run directory")
        inside = sorted(c for c in p.iterdir() if c.is_dir() and not c.is_symlink() and (c / "config.yaml").is_file())
        if not inside:
            raise NetcliError(f"{arg}: not a run directory (no config.yaml) and holds no run directories")
        runs += [c.resolve() for c in inside]
        expanded = True
    return list(dict.fromkeys(runs)), expanded


def overlay_series(runs: list[Path]) -> list[tuple[str, list[dict], bool]]:
    """[(label, metrics records, full_batch)] per run, labelled by what differs in their configs."""
    from netcli.config import load_config

    configs = [read_config(r) for r in runs]
    labels = run_labels(configs, [r.name for r in runs])
    return [(label, RunDir(r).read_metrics(), load_config(r / "config.yaml").spec.optimizer.build().full_batch)
            for label, r in zip(labels, runs)]
