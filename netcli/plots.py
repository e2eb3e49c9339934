"""Pictures of a run: learning curves, learned weights as images, reconstructions, confusion.

matplotlib with the Agg backend, so no display is needed. The grid-building functions are
plain NumPy and tested on their own.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from netcli.errors import NetcliError


DPI = 100  # every figure is saved at this resolution: pixels = inches * DPI

CURVES_SIZE = (6.4, 4.2)                 # inches: the loss panel alone
CURVES_WITH_ACCURACY_SIZE = (11.0, 4.2)  # loss and validation accuracy side by side
GRID_SIZE = (6.0, 6.6)                   # the weight grid, its title above and a caption below


def reconstructions_size(n: int) -> tuple[float, float]:
    """Inches for n inputs over their n reconstructions (about 1.2 inch per column)."""
    return (max(4.0, 1.2 * n + 0.8), 3.2)


def confusion_size(k: int) -> tuple[float, float]:
    """Inches for a k x k confusion matrix (about half an inch per class)."""
    return (max(4.5, 1.2 + 0.5 * k), max(4.0, 1.2 + 0.45 * k))


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) or (H, W) for a network input: [C, H, W] as given, a flat square as (s, s)."""
    if len(input_shape) == 3:
        return input_shape
    if len(input_shape) == 2:
        return input_shape
    side = math.isqrt(input_shape[0])
    if side * side != input_shape[0]:
        raise NetcliError(f"cannot show a flat input of {input_shape[0]} values as an image; "
                          f"set model.input to [C, H, W]")
    return (side, side)


def normalize_tile(tile: np.ndarray) -> np.ndarray:
    """Scale one tile to [0, 1] on its own (a constant tile becomes 0.5)."""
    lo, hi = float(tile.min()), float(tile.max())
    return np.full_like(tile, 0.5, dtype=np.float64) if hi == lo else (tile - lo) / (hi - lo)


def tile_grid(tiles: np.ndarray, pad: int = 1, columns: int | None = None) -> np.ndarray:
    """(n, h, w) tiles, each normalized on its own -> one (rows*(h+pad)+pad, cols*(w+pad)+pad)
    image, tile k at row k // cols, column k % cols; padding is 0 (black)."""
    n, h, w = tiles.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad))
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = normalize_tile(tiles[k])
    return grid


def weight_tiles(W: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """A layer's incoming weights as (n, h, w) images.
    dense W (units, D_in): each unit's row reshaped to the input image (channels averaged);
    conv W (out, in, kh, kw): each filter, averaged over input channels."""
    if W.ndim == 4:
        return W.mean(axis=1)
    if W.ndim == 2:
        shape = image_shape(input_shape)
        images = W.reshape(W.shape[0], *shape)
        return images.mean(axis=1) if len(shape) == 3 else images
    raise NetcliError(f"cannot show weights of shape {list(W.shape)} as images")


def _save(fig, path: Path) -> Path:
    """Write fig as a PNG of exactly figsize * DPI pixels (no tight bounding box)."""
    path = Path(path)
    if not path.parent.is_dir():
        _pyplot().close(fig)
        raise NetcliError(f"{path.parent}: no such folder for the PNG")
    fig.savefig(path, dpi=DPI, format="png")
    _pyplot().close(fig)
    return path


def _wrap(title: str, width_inches: float, fontsize: float = 12) -> str:
    """Break a title into lines that fit the figure's width (run names can be long)."""
    chars = max(20, int(width_inches * 72 / (0.6 * fontsize)))  # about 0.6 em per character
    return "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))


def _series(metrics: list[dict], key: str) -> list[float]:
    """One metric per record, NaN (a gap in the line) where a record lacks it."""
    return [np.nan if r.get(key) is None else float(r[key]) for r in metrics]


def logged_full_batch(metrics: list[dict]) -> bool:
    """Whether metrics.jsonl's records are a full-batch optimizer's iterations (cg and lbfgs
    log lr null; a first-order optimizer logs each epoch's lr)."""
    return bool(metrics) and all(r.get("lr") is None for r in metrics)


def plot_curves(metrics: list[dict], title: str, path: Path, full_batch: bool = False) -> Path:
    """Training objective (and its data term when a penalty is on), validation loss, and
    validation accuracy for classification, per epoch (per iteration for cg / lbfgs)."""
    if not metrics:
        raise NetcliError("the run has no metrics yet (metrics.jsonl is empty)")
    plt = _pyplot()
    x = [r["epoch"] for r in metrics]
    marker = "." if len(x) <= 30 else None  # a run of a few epochs still shows its points
    has_acc = any(r.get("val_accuracy") is not None for r in metrics)
    has_val = any(r.get("val_loss") is not None for r in metrics)
    has_penalty = any((r.get("penalty") or 0) > 0 for r in metrics)
    xlabel = "iteration (full batch)" if full_batch else "epoch"
    size = CURVES_WITH_ACCURACY_SIZE if has_acc else CURVES_SIZE
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=size, squeeze=False)
    ax = axes[0, 0]
    lines = [("loss", "training objective J" if has_penalty else "training loss", "-", "tab:blue")]
    if has_penalty:
        lines.append(("data_loss", "training data term (J without penalty)", "--", "tab:blue"))
    if has_val:
        lines.append(("val_loss", "validation data term", "-", "tab:orange"))
    shown = []
    for key, label, style, color in lines:
        values = _series(metrics, key)
        ax.plot(x, values, marker=marker, linestyle=style, color=color, label=label)
        shown += [v for v in values if np.isfinite(v)]
    log = bool(shown) and min(shown) > 0
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss per example" + (" (log scale)" if log else ""))
    ax.set_yscale("log" if log else "linear")
    ax.set_title(_wrap(f"{title}: loss", size[0] / (2 if has_acc else 1)))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if has_acc:
        ax2 = axes[0, 1]
        accuracy = [100 * v for v in _series(metrics, "val_accuracy")]
        ax2.plot(x, accuracy, marker=marker, color="tab:green")
        ax2.set_xlabel(xlabel)
        ax2.set_ylabel("validation accuracy (%)")
        ax2.set_title(_wrap(f"{title}: validation accuracy", size[0] / 2))
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_grid(grid: np.ndarray, title: str, path: Path) -> Path:
    """A tile_grid image in gray: in each tile black is that unit's smallest weight, white its
    largest. The margins are laid out by hand (in inches) so that a title of any number of
    lines and the caption below never overlap the grid."""
    plt = _pyplot()
    width, height = GRID_SIZE
    title = _wrap(title, width)
    top = 0.2 + 0.25 * (title.count("\n") + 1)
    bottom = 0.4
    fig = plt.figure(figsize=GRID_SIZE)
    ax = fig.add_axes((0.02, bottom / height, 0.96, (height - top - bottom) / height))
    ax.imshow(grid, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ax.axis("off")
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
    fig.text(0.5, 0.12 / height,
             "one tile per unit; black: its most negative weight, white: its most positive",
             ha="center", va="bottom", fontsize=9, color="0.3")
    return _save(fig, path)


def plot_reconstructions(inputs: np.ndarray, outputs: np.ndarray, shape, title: str, path: Path) -> Path:
    """Top row: inputs; bottom row: their reconstructions (n <= 10), all on one gray scale
    so that a faint reconstruction looks faint."""
    plt = _pyplot()
    n = len(inputs)
    if n == 0:
        raise NetcliError("no examples to reconstruct (the data set is empty)")
    lo = float(min(inputs.min(), outputs.min()))
    hi = float(max(inputs.max(), outputs.max()))
    size = reconstructions_size(n)
    fig, axes = plt.subplots(2, n, figsize=size, squeeze=False)
    for k in range(n):
        for row, images in enumerate((inputs, outputs)):
            img = images[k].reshape(shape)
            img = img.mean(axis=0) if img.ndim == 3 else img
            ax = axes[row, k]
            ax.imshow(img, cmap="gray", interpolation="nearest", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    axes[0, 0].set_ylabel("input", fontsize=10)
    axes[1, 0].set_ylabel("reconstruction", fontsize=10)
    fig.suptitle(_wrap(title, size[0]))
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, classes, title: str, path: Path) -> Path:
    plt = _pyplot()
    k = len(classes)
    size = confusion_size(k)
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [str(c) for c in classes])
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax.set_title(_wrap(title, size[0]))
    fig.tight_layout()
    return _save(fig, path)


# -- several runs in one figure ---------------------------------------------------------

OVERLAY_SIZE = (8.0, 4.8)                  # the loss panel alone, room for a legend
OVERLAY_WITH_ACCURACY_SIZE = (13.0, 4.8)
COMPARISON_SIZE = (13.0, 4.8)              # objective against evaluations | against time


def _colors(n: int) -> list:
    """n distinct colors: matplotlib's tab10, then tab20 beyond ten lines."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _log_if_positive(ax, values: list[float]) -> bool:
    shown = [v for v in values if v is not None and np.isfinite(v)]
    log = bool(shown) and min(shown) > 0
    ax.set_yscale("log" if log else "linear")
    return log


def plot_overlay(runs: list[tuple[str, list[dict], bool]], title: str, path: Path) -> Path:
    """Learning curves of several runs on one set of axes: runs is [(label, metrics records,
    full_batch)]. Per run one color: the training objective (solid) and, with validation data,
    the validation data term (dashed); a second panel with the validation accuracy when any run
    has one. x: the epoch (the iteration for cg / lbfgs)."""
    runs = [(label, metrics, fb) for label, metrics, fb in runs if metrics]
    if not runs:
        raise NetcliError("none of the runs has metrics yet (metrics.jsonl is empty)")
    plt = _pyplot()
    has_acc = any(r.get("val_accuracy") is not None for _, metrics, _ in runs for r in metrics)
    has_val = any(r.get("val_loss") is not None for _, metrics, _ in runs for r in metrics)
    kinds = {fb for _, _, fb in runs}
    xlabel = {frozenset([False]): "epoch", frozenset([True]): "iteration (full batch)"}.get(
        frozenset(kinds), "epoch (iteration for full-batch optimizers)")
    size = OVERLAY_WITH_ACCURACY_SIZE if has_acc else OVERLAY_SIZE
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=size, squeeze=False)
    ax = axes[0, 0]
    shown = []
    for (label, metrics, _), color in zip(runs, _colors(len(runs))):
        x = [r["epoch"] for r in metrics]
        marker = "." if len(x) <= 30 else None
        loss = _series(metrics, "loss")
        ax.plot(x, loss, marker=marker, color=color, label=label)
        shown += loss
        if has_val:
            val = _series(metrics, "val_loss")
            ax.plot(x, val, linestyle="--", color=color)
            shown += val
    log = _log_if_positive(ax, shown)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss per example" + (" (log scale)" if log else ""))
    what = "training objective" + (" (solid), validation data term (dashed)" if has_val else "")
    ax.set_title(_wrap(f"{title}\n{what}", size[0] / (2 if has_acc else 1), 11), fontsize=11)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if has_acc:
        ax2 = axes[0, 1]
        for (label, metrics, _), color in zip(runs, _colors(len(runs))):
            x = [r["epoch"] for r in metrics]
            ax2.plot(x, [100 * v for v in _series(metrics, "val_accuracy")],
                     marker="." if len(x) <= 30 else None, color=color, label=label)
        ax2.set_xlabel(xlabel)
        ax2.set_ylabel("validation accuracy (%)")
        ax2.set_title(_wrap(f"{title}\nvalidation accuracy", size[0] / 2, 11), fontsize=11)
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_comparison(rows: list[dict], title: str, path: Path, evals_label: str) -> Path:
    """An optimizer comparison (netcli.compare's rows, each with a curve of epoch, evals,
    seconds, objective): J against gradient evaluations (left) and against time (right), one
    line per optimizer, log scale."""
    rows = [r for r in rows if r.get("curve") and r["curve"]["objective"]]
    if not rows:
        raise NetcliError("no run of the comparison logged an epoch")
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=COMPARISON_SIZE)
    values = []
    for row, color in zip(rows, _colors(len(rows))):
        c = row["curve"]
        label = f"{row['optimizer']}" + ("" if row.get("status") == "finished" else f" ({row['status']})")
        marker = "." if len(c["evals"]) <= 30 else None
        left.plot(c["evals"], c["objective"], marker=marker, color=color, label=label)
        right.plot(c["seconds"], c["objective"], marker=marker, color=color, label=label)
        values += c["objective"]
    for ax in (left, right):
        log = _log_if_positive(ax, values)
        ax.set_ylabel("objective J on the training rows" + (" (log scale)" if log else ""))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=9)
    left.set_xlabel(_wrap(evals_label, COMPARISON_SIZE[0] / 2, 10), fontsize=10)
    right.set_xlabel(_wrap("time (s) in training steps (validation and checkpoints left out)",
                           COMPARISON_SIZE[0] / 2, 10), fontsize=10)
    left.set_title("J against gradient evaluations", fontsize=11)
    right.set_title("J against time", fontsize=11)
    fig.suptitle(_wrap(title, COMPARISON_SIZE[0]), fontsize=12)
    fig.tight_layout()
    return _save(fig, path)
