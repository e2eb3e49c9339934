"""Pictures of a run (`netcli plot`) and the table of runs (`netcli runs`).

Each PNG is checked for what a reader of the README relies on: it is written where the
command says, it is a PNG, and it has the size plots.py sets (inches * DPI). The weight grid
is checked where it matters most: a known pattern in unit k's weights lands in tile k, scaled
on its own, and no other tile changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from netcli import plots
from netcli.errors import NetcliError
from netcli.log import Reporter
from netcli.runs import RunDir
from netcli.training import train

from helpers import (DIGITS_TEST, DIGITS_TRAIN, assert_user_error, digits_config, invoke,
                     regression_config, train_config, write_config)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature; the whole
    image is then decoded to make sure the file is not cut short."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, "the first chunk of a PNG is IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    return width, height


def pixels(inches: tuple[float, float]) -> tuple[int, int]:
    return round(inches[0] * plots.DPI), round(inches[1] * plots.DPI)


def autoencoder_config(**sections) -> dict:
    """64-9-64 sigmoid with the KL sparsity penalty, a few L-BFGS iterations."""
    base = {
        "seed": 0, "dtype": "float64",
        "data": {"train": str(DIGITS_TRAIN), "test": str(DIGITS_TEST), "target": "input",
                 "drop": ["label"], "normalize": "minmax_global"},
        "model": {"input": 64, "layers": [{"type": "dense", "units": 9, "activation": "sigmoid"},
                                          {"type": "dense", "units": 64, "activation": "sigmoid"}]},
        "loss": "mse",
        "regularization": {"l2": 1.0e-4, "sparsity": {"layer": 0, "rho": 0.1, "beta": 3}},
        "optimizer": {"type": "lbfgs", "max_iter": 5},
    }
    base.update(sections)
    return base


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three small runs shared by the read-only plot tests: a digits classifier with a
    validation split, a sparse autoencoder trained with L-BFGS, and a regression net."""
    tmp = tmp_path_factory.mktemp("plots")
    return {
        "classifier": train_config(tmp, digits_config(), "classifier").run_dir,
        "autoencoder": train_config(tmp, autoencoder_config(), "autoencoder").run_dir,
        "regression": train_config(tmp, regression_config(training={"epochs": 1}),
                                   "regression").run_dir,
    }


def plot(*args) -> Path:
    """`netcli plot ...` succeeds and prints nothing but the PNG's path -> that path."""
    result = invoke("plot", *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and result.stdout == lines[0] + "\n", result.stdout
    path = Path(lines[0])
    assert path.is_file()
    return path


# -- each figure ----------------------------------------------------------------------

def test_curves_of_a_classifier_show_loss_and_accuracy(runs):
    run = runs["classifier"]
    path = plot(run)
    assert path == run.resolve() / "curves.png"
    assert png_size(path) == pixels(plots.CURVES_WITH_ACCURACY_SIZE)


def test_curves_of_a_full_batch_run_have_one_panel(runs):
    path = plot(runs["autoencoder"])
    assert png_size(path) == pixels(plots.CURVES_SIZE)


def test_weights_of_the_first_layer_by_default(runs):
    path = plot(runs["autoencoder"], "--weights")
    assert path == runs["autoencoder"].resolve() / "weights.png"
    assert png_size(path) == pixels(plots.GRID_SIZE)


def test_weights_of_a_chosen_layer(runs, tmp_path):
    # layer 1 of the classifier: W (10, 16), each unit's 16 inputs shown as 4x4
    out = tmp_path / "layer1.png"
    assert plot(runs["classifier"], "--weights", "--layer", "1", "--out", out) == out
    assert png_size(out) == pixels(plots.GRID_SIZE)


def test_reconstructions_of_an_autoencoder(runs):
    path = plot(runs["autoencoder"], "--reconstructions")
    assert path == runs["autoencoder"].resolve() / "reconstructions.png"
    assert png_size(path) == pixels(plots.reconstructions_size(10))


def test_confusion_of_a_classifier(runs):
    path = plot(runs["classifier"], "--confusion")
    assert path == runs["classifier"].resolve() / "confusion.png"
    assert png_size(path) == pixels(plots.confusion_size(10))


def test_out_writes_the_named_file_and_nothing_in_the_run(runs, tmp_path):
    out = tmp_path / "figures" / "my curves.png"
    out.parent.mkdir()
    before = set(os.listdir(runs["regression"]))
    assert plot(runs["regression"], "--out", out) == out
    assert png_size(out) == pixels(plots.CURVES_SIZE)
    assert set(os.listdir(runs["regression"])) == before


def test_conv_filters_are_tiled(tmp_path):
    config = digits_config(
        model={"input": [1, 8, 8], "layers": [
            {"type": "conv2d", "channels": 4, "kernel": 3, "padding": 1, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"}]},
        training={"epochs": 1, "batch_size": 256})
    run = train_config(tmp_path, config, "conv").run_dir
    assert png_size(plot(run, "--weights")) == pixels(plots.GRID_SIZE)


# -- the wrong figure for the run: exit 2, a clear message ----------------------------

def test_reconstructions_need_an_autoencoder(runs):
    assert_user_error(invoke("plot", runs["classifier"], "--reconstructions"), 2,
                      "--reconstructions needs an autoencoder run")


def test_confusion_needs_a_classifier(runs):
    assert_user_error(invoke("plot", runs["regression"], "--confusion"), 2,
                      "--confusion needs a classification run")


def test_weights_of_a_flat_input_that_is_not_square(runs):
    # regression: 8 input features are no image
    assert_user_error(invoke("plot", runs["regression"], "--weights"), 2,
                      "cannot show a flat input of 8 values as an image", "model.input")


def test_weights_of_a_layer_without_weights(runs):
    assert_user_error(invoke("plot", runs["classifier"], "--weights", "--layer", "7"), 2,
                      "layer 7 has no weights")


def test_out_into_a_missing_folder(runs, tmp_path):
    assert_user_error(invoke("plot", runs["classifier"], "--out", tmp_path / "no" / "c.png"), 2,
                      "no such folder")


def test_curves_with_gaps_in_the_metrics(tmp_path):
    # a record without val_loss / val_accuracy, a diverged last loss: the figure is still drawn
    metrics = [{"epoch": 1, "loss": 2.0, "data_loss": 1.5, "penalty": 0.5,
                "val_loss": 1.6, "val_accuracy": 0.5},
               {"epoch": 2, "loss": 1.0, "data_loss": 0.8, "penalty": 0.2},
               {"epoch": 3, "loss": float("nan"), "data_loss": float("nan"), "penalty": 0.2,
                "val_loss": None, "val_accuracy": None}]
    path = plots.plot_curves(metrics, "gaps", tmp_path / "gaps.png")
    assert png_size(path) == pixels(plots.CURVES_WITH_ACCURACY_SIZE)
    with pytest.raises(NetcliError, match="no metrics yet"):
        plots.plot_curves([], "empty", tmp_path / "empty.png")


def test_no_png_is_left_behind_by_a_failed_plot(runs, tmp_path):
    out = tmp_path / "never.png"
    assert_user_error(invoke("plot", runs["regression"], "--confusion", "--out", out), 2)
    assert not out.exists()


# -- the grid of weights, NumPy only ------------------------------------------------------

def tile_at(grid: np.ndarray, k: int, h: int, w: int, cols: int, pad: int = 1) -> np.ndarray:
    """Tile k of a tile_grid image, found by its documented layout (row k // cols, column k % cols)."""
    r, c = divmod(k, cols)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    return grid[top:top + h, left:left + w]


def test_a_bright_pixel_lands_in_its_unit_tile():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(7, 36))                 # 7 units on a flat 36 = 6x6 input
    W[4] = -0.25
    W[4, 2 * 6 + 5] = 3.0                        # unit 4: one bright pixel at row 2, column 5
    grid = plots.tile_grid(plots.weight_tiles(W, (36,)))
    cols = math.ceil(math.sqrt(7))               # 3 columns, 3 rows
    assert grid.shape == (3 * 7 + 1, 3 * 7 + 1)
    expected = np.zeros((6, 6))
    expected[2, 5] = 1.0                         # normalized on its own: max -> 1, the rest -> 0
    np.testing.assert_array_equal(tile_at(grid, 4, 6, 6, cols), expected)
    for k in set(range(7)) - {4}:                # every other unit: its own row, scaled on its own
        own = W[k].reshape(6, 6)
        np.testing.assert_allclose(tile_at(grid, k, 6, 6, cols),
                                   (own - own.min()) / (own.max() - own.min()))


def test_changing_one_unit_changes_only_its_tile():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(10, 16))
    V = W.copy()
    V[6] = np.arange(16) * 3.0 + 7.0             # a gradient, scaled: 0 .. 1 in reading order
    a = plots.tile_grid(plots.weight_tiles(W, (16,)))
    b = plots.tile_grid(plots.weight_tiles(V, (16,)))
    cols = 4
    np.testing.assert_allclose(tile_at(b, 6, 4, 4, cols), np.arange(16).reshape(4, 4) / 15)
    changed = np.argwhere(a != b)
    r, c = divmod(6, cols)
    assert changed[:, 0].min() >= 1 + r * 5 and changed[:, 0].max() < 1 + r * 5 + 4
    assert changed[:, 1].min() >= 1 + c * 5 and changed[:, 1].max() < 1 + c * 5 + 4


def test_padding_is_black_and_empty_cells_stay_black():
    grid = plots.tile_grid(np.ones((5, 2, 2)) * np.arange(4).reshape(1, 2, 2))
    # 5 tiles of 2x2 in ceil(sqrt(5)) = 3 columns, 2 rows: the sixth cell stays empty
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1)
    assert (grid[0] == 0).all() and (grid[:, 0] == 0).all() and (grid[3] == 0).all()
    assert (tile_at(grid, 5, 2, 2, 3) == 0).all()


def test_a_constant_tile_is_mid_gray():
    grid = plots.tile_grid(np.stack([np.full((3, 3), 2.5), np.eye(3)]))
    np.testing.assert_array_equal(tile_at(grid, 0, 3, 3, 2), np.full((3, 3), 0.5))
    np.testing.assert_array_equal(tile_at(grid, 1, 3, 3, 2), np.eye(3))


def test_image_shaped_input_keeps_its_height_and_width():
    W = np.zeros((2, 15))
    W[1, 1 * 5 + 3] = 1.0                         # unit 1: row 1, column 3 of a 3x5 image
    tiles = plots.weight_tiles(W, (1, 3, 5))
    assert tiles.shape == (2, 3, 5)
    assert tiles[1, 1, 3] == 1.0 and tiles[1].sum() == 1.0


def test_conv_filters_become_tiles_averaged_over_input_channels():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(5, 2, 3, 3))            # (out, in, kh, kw)
    pattern = np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
    W[3, 0] = pattern
    W[3, 1] = 3 * pattern                        # mean over channels: 2 * pattern, same shape
    tiles = plots.weight_tiles(W, (2, 8, 8))
    assert tiles.shape == (5, 3, 3)
    grid = plots.tile_grid(tiles)
    np.testing.assert_allclose(tile_at(grid, 3, 3, 3, 3), pattern / 2)
    np.testing.assert_allclose(tile_at(grid, 0, 3, 3, 3), plots.normalize_tile(W[0].mean(axis=0)))


def test_a_flat_input_that_is_not_square_is_a_clear_error():
    with pytest.raises(NetcliError, match=r"flat input of 10 values.*model.input to \[C, H, W\]"):
        plots.weight_tiles(np.zeros((3, 10)), (10,))
    with pytest.raises(NetcliError, match="cannot show weights of shape"):
        plots.weight_tiles(np.zeros(4), (4,))


# -- the table of runs ----------------------------------------------------------------------

class Snapshot(Reporter):
    """A quiet reporter that copies summary.json and metrics.jsonl as they are while epoch `at`
    is logged: the run directory as `netcli runs` would find it in the middle of training."""

    def __init__(self, run_dir: Path, at: int):
        super().__init__(quiet=True)
        self.run_dir, self.at, self.files = Path(run_dir), at, {}

    def epoch(self, record):
        if record["epoch"] == self.at:
            self.files = {name: (self.run_dir / name).read_text()
                          for name in ("summary.json", "metrics.jsonl")}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """runs/old (1 epoch, finished), runs/mid (2, finished), runs/new (caught in epoch 2 of 3:
    the summary.json that training writes before epoch 1 says 'running') and runs/legacy (no
    summary.json at all, as a run of an older netcli), with their config.yaml times set apart
    so that 'newest' is not left to the clock."""
    tmp = tmp_path_factory.mktemp("table")
    folder = tmp / "runs"
    folder.mkdir()
    now = time.time()
    for age, (name, epochs) in zip((400, 300, 200, 100), (("legacy", 2), ("old", 1), ("mid", 2), ("new", 3))):
        path = write_config(tmp, digits_config(training={"epochs": epochs}), name)
        snapshot = Snapshot(folder / name, at=2)
        train(path, run_dir=folder / name, reporter=snapshot)
        if name == "new":   # as it was mid-training, its lock held by a live process (this one)
            for file, text in snapshot.files.items():
                (folder / name / file).write_text(text)
            holder = RunDir(folder / name)
            holder.lock()
        os.utime(folder / name / "config.yaml", (now - age, now - age))
    (folder / "legacy" / "summary.json").unlink()
    yield folder
    holder.unlock()


def runs_json(folder: Path) -> dict[str, dict]:
    result = invoke("runs", folder, "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return {r["run"]: r for r in rows}


def test_runs_json_lists_runs_newest_first(run_folder):
    rows = runs_json(run_folder)
    assert list(rows) == ["new", "mid", "old", "legacy"]
    for r in rows.values():
        assert {"run", "config", "status", "epochs", "best_val", "test", "wall_seconds"} <= set(r)
    for name, epochs in (("mid", 2), ("old", 1)):
        row = rows[name]
        summary = json.loads((run_folder / name / "summary.json").read_text())
        assert row["status"] == "finished" and row["epochs"] == epochs
        assert row["config"] == summary["config"]
        assert row["test"] == ["accuracy", summary["test"]["accuracy"]]
        assert row["wall_seconds"] == summary["wall_seconds"] > 0
        assert row["best_val"][0] == "val_accuracy" and 0 < row["best_val"][1] <= 1


def test_a_run_without_summary_nor_a_live_process_shows_as_killed(run_folder):
    row = runs_json(run_folder)["legacy"]
    assert row["status"] == "killed" and row["epochs"] == 2
    assert row["test"] is None and row["wall_seconds"] is None


def test_a_run_in_training_shows_its_epochs_so_far(run_folder):
    logged = len((run_folder / "new" / "metrics.jsonl").read_text().splitlines())
    assert logged >= 1
    row = runs_json(run_folder)["new"]
    assert row["status"] == "running" and row["test"] is None
    assert row["epochs"] == logged
    assert row["wall_seconds"] is None


def test_runs_table_lists_runs_newest_first(run_folder):
    result = invoke("runs", run_folder)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    row = {name: next(i for i, line in enumerate(lines) if f" {name} " in line)
           for name in ("new", "mid", "old", "legacy")}
    assert row["new"] < row["mid"] < row["old"] < row["legacy"]
    assert "running" in lines[row["new"]] and "killed" in lines[row["legacy"]]
    for name, epochs in (("mid", "2"), ("old", "1")):
        cells = [cell.strip() for cell in re.split("[│|]", lines[row[name]])]
        assert "finished" in cells and epochs in cells
        assert any(cell.startswith("accuracy 0.") for cell in cells)


def test_runs_of_an_empty_folder_and_of_no_folder(tmp_path):
    result = invoke("runs", tmp_path, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert_user_error(invoke("runs", tmp_path / "nowhere"), 2, "no such folder")
