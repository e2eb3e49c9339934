"""The ranking rules in netcli.metrics: early stopping and best_validation pick the same best."""

from types import SimpleNamespace

import numpy as np
import pytest

from netcli.metrics import best_validation, improves
from netcli.runs.checkpoint import Progress
from netcli.training import Trainer

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value", [NAN, INF, -INF, np.float32("nan")])
def test_a_non_finite_value_never_improves(value):
    assert not improves(value, None, "val_loss")
    assert not improves(value, 0.5, "val_loss")
    assert not improves(value, 0.5, "val_accuracy")


def test_a_finite_value_beats_no_best_and_a_non_finite_one():
    assert improves(0.5, None, "val_loss")
    assert improves(0.5, NAN, "val_loss")          # a best kept by an older version
    assert improves(np.float32(0.5), 0.6, "val_loss")
    assert improves(0.7, 0.6, "val_accuracy") and not improves(0.7, 0.6, "val_loss")


@pytest.mark.parametrize("metric,history,best", [
    ("val_loss", [NAN, 0.5, 0.4], (0.4, 3)),
    ("val_loss", [NAN, 0.5, INF, 0.6], (0.5, 2)),
    ("val_accuracy", [NAN, 0.5, 0.4], (0.5, 2)),
    ("val_accuracy", [0.3, NAN, 0.6], (0.6, 3)),
])
def test_early_stopping_and_best_validation_agree_on_a_non_finite_epoch(metric, history, best):
    """The best in summary.json (early stopping's) is the best `netcli runs` and the sweep report."""
    trainer = SimpleNamespace(progress=Progress(), spec=SimpleNamespace(training=SimpleNamespace(
        early_stopping=SimpleNamespace(monitor=metric, min_delta=0.0, patience=10, restore_best=False))))
    records = [{"epoch": e, metric: v} for e, v in enumerate(history, start=1)]
    for record in records:
        Trainer._early_stopping(trainer, record)
    assert (trainer.progress.best, trainer.progress.best_epoch) == best
    assert best_validation(records) == {"metric": metric, "value": best[0], "epoch": best[1]}
