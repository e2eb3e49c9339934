"""Metrics of network outputs against targets, for validation, eval and predict."""

from __future__ import annotations

import numpy as np


def evaluate(net, split, task: str, batch_size: int = 1024) -> dict:
    """Data loss plus accuracy (classification) or mse/mae/r2 (regression) over a split."""
    outputs, targets, loss_sum = [], [], 0.0
    for start in range(0, len(split), batch_size):
        X, y = split.take(np.arange(start, min(start + batch_size, len(split))))
        out, loss = net.outputs_and_loss(X, y)
        outputs.append(out)
        targets.append(y)
        loss_sum += loss * len(X)
    out, y = np.concatenate(outputs), np.concatenate(targets)
    metrics = {"loss": loss_sum / len(split)}
    metrics.update(score(out, y, task))
    return metrics


def score(out: np.ndarray, y: np.ndarray, task: str) -> dict:
    if task == "classification":
        return {"accuracy": float(np.mean(out.argmax(-1) == y.argmax(-1)))}
    if task == "binary":
        return {"accuracy": float(np.mean((out > 0.5) == (y > 0.5)))}
    diff = (out - y).astype(np.float64)
    ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
    return {"mse": float(np.mean(diff ** 2)), "mae": float(np.mean(np.abs(diff))),
            "r2": 1.0 - float((diff ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")}


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
