"""Metrics of network outputs against targets, and the rules that rank them: which way is
better, and which epoch of a run was its best. `netcli runs`, the sweep's ranking and early
stopping all read these rules from here."""

from __future__ import annotations

import math
import numbers

import numpy as np

HIGHER_IS_BETTER = ("accuracy", "r2")     # metric names ending so are maximized; the rest minimized
VALIDATION_ORDER = ("val_accuracy", "val_mse", "val_loss")   # the metric a run is judged by, first present
TEST_ORDER = ("accuracy", "mse", "loss")


def higher_is_better(metric: str) -> bool:
    return metric.endswith(HIGHER_IS_BETTER)


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def improves(value: float, best: float | None, metric: str, min_delta: float = 0.0) -> bool:
    """value beats best by more than min_delta in metric's direction. A non-finite value never
    improves and any finite one beats no best, as in best_validation: [nan, 0.5] -> 0.5."""
    if not _finite(value):
        return False
    if best is None or not _finite(best):
        return True
    return value > best + min_delta if higher_is_better(metric) else value < best - min_delta


def best_validation(records: list[dict]) -> dict | None:
    """The best epoch of metrics.jsonl records by the first validation metric they have
    (VALIDATION_ORDER), non-finite values left out: {metric, value, epoch}, or None."""
    for key in VALIDATION_ORDER:
        rows = [r for r in records if _finite(r.get(key))]
        if rows:
            pick = max if higher_is_better(key) else min
            best = pick(rows, key=lambda r: r[key])
            return {"metric": key, "value": best[key], "epoch": best.get("epoch")}
    return None


def headline(test: dict | None) -> dict | None:
    """The headline of a test result (summary.json's test): {metric, value}, or None."""
    for key in TEST_ORDER:
        if test and _finite(test.get(key)):
            return {"metric": key, "value": test[key]}
    return None


def evaluate(net, split, task, batch_size: int = 1024) -> dict:
    """Data loss plus the task's scores (accuracy; or mse, mae, r2) over a split."""
    outputs, targets, loss_sum = [], [], 0.0
    for start in range(0, len(split), batch_size):
        X, y = split.take(np.arange(start, min(start + batch_size, len(split))))
        out, loss = net.outputs_and_loss(X, y)
        outputs.append(out)
        targets.append(y)
        loss_sum += loss * len(X)
    out, y = np.concatenate(outputs), np.concatenate(targets)
    metrics = {"loss": loss_sum / len(split)}
    metrics.update(task.score(out, y))
    return metrics


def confusion(pred: np.ndarray, true: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, row = true class, column = predicted class."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (true, pred), 1)
    return m


def per_class(cm: np.ndarray, classes) -> dict:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    out = {}
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    for i, c in enumerate(classes):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / actual[i] if actual[i] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[str(c)] = {"precision": p, "recall": r, "f1": f1, "support": int(actual[i])}
    return out
