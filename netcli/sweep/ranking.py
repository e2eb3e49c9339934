"""Which trial is best: each finished trial's score and the summary table's rows. The rules for
which validation epoch is best, which way a metric is better and which test metric heads a
result are netcli.metrics', the same ones `netcli runs` and early stopping use."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from netcli.metrics import headline, higher_is_better

if TYPE_CHECKING:
    from netcli.sweep.cluster import SweepResult


def score(record: dict) -> tuple[str, float, bool] | None:
    """(metric, value, higher is better) a finished trial is ranked by: its best validation metric,
    else its final training loss, else its test metric; None for a trial that did not finish."""
    if record.get("status") != "finished":
        return None
    best = record.get("best")
    if best:
        return best["metric"], best["value"], higher_is_better(best["metric"])
    final = record.get("final") or {}
    if isinstance(final.get("loss"), (int, float)) and math.isfinite(final["loss"]):
        return "loss", final["loss"], False
    test = headline(record.get("test"))
    if test:
        return f"test_{test['metric']}", test["value"], higher_is_better(test["metric"])
    return None


def best_trial(records: list[dict]) -> dict | None:
    """The finished trial with the best score (first of equals); scores of different metrics are
    not compared: the most common metric among the finished trials decides."""
    scored = [(r, score(r)) for r in records]
    scored = [(r, s) for r, s in scored if s is not None and math.isfinite(s[1])]
    if not scored:
        return None
    metrics = [s[0] for _, s in scored]
    metric = max(dict.fromkeys(metrics), key=metrics.count)
    same = [(r, s) for r, s in scored if s[0] == metric]
    return max(same, key=lambda rs: rs[1][1] if rs[1][2] else -rs[1][1])[0]


def so_far(record: dict) -> tuple[str, float, bool] | None:
    """A pruned trial's best validation metric over the epochs it trained (shown, never ranked:
    the pruner stopped it because the others were doing better by then)."""
    best = record.get("best")
    if record.get("status") != "pruned" or not best:
        return None
    return best["metric"], best["value"], higher_is_better(best["metric"])


def table_rows(result: SweepResult) -> list[dict]:
    """The summary table as plain rows (what --json prints); a pruned trial's score is its best so
    far, and its epochs the ones it trained."""
    rows = []
    for r in result.records:
        s = score(r) or so_far(r)
        rows.append({"trial": r["name"], "run_dir": str(result.path / r["name"]),
                     "overrides": r.get("overrides", {}), "seed": r.get("seed"), "status": r["status"],
                     "epochs": r.get("epochs"), "score": {"metric": s[0], "value": s[1]} if s else None,
                     "final_loss": (r.get("final") or {}).get("loss"),
                     "test": headline(r.get("test")),
                     "wall_seconds": r.get("wall_seconds"), "message": r.get("message", ""),
                     "best": result.best is not None and r["name"] == result.best["name"]})
    return rows
