"""Pictures of a run: learning curves, learned weights as images, reconstructions, confusion.

matplotlib with the Agg backend, so no display is needed. The grid-building functions are
plain NumPy and tested on their own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from netcli.errors import NetcliError


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
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_curves(metrics: list[dict], title: str, path: Path, full_batch: bool = False) -> Path:
    if not metrics:
        raise NetcliError("the run has no metrics yet (metrics.jsonl is empty)")
    plt = _pyplot()
    x = [r["epoch"] for r in metrics]
    has_acc = any("val_accuracy" in r for r in metrics)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(x, [r["loss"] for r in metrics], label="training objective J")
    if any("val_loss" in r for r in metrics):
        ax.plot(x, [r.get("val_loss") for r in metrics], label="validation loss (data term)")
    ax.set_xlabel("iteration" if full_batch else "epoch")
    ax.set_ylabel("loss (per example)")
    ax.set_yscale("log" if min(r["loss"] for r in metrics) > 0 else "linear")
    ax.set_title(f"{title}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if has_acc:
        ax2 = axes[0, 1]
        ax2.plot(x, [100 * r.get("val_accuracy", np.nan) for r in metrics], color="tab:green")
        ax2.set_xlabel("iteration" if full_batch else "epoch")
        ax2.set_ylabel("validation accuracy (%)")
        ax2.set_title(f"{title}: validation accuracy")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_grid(grid: np.ndarray, title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstructions(inputs: np.ndarray, outputs: np.ndarray, shape, title: str, path: Path) -> Path:
    """Top row: inputs; bottom row: their reconstructions (n <= 10)."""
    plt = _pyplot()
    n = len(inputs)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    for k in range(n):
        for row, images in enumerate((inputs, outputs)):
            img = images[k].reshape(shape)
            img = img.mean(axis=0) if img.ndim == 3 else img
            axes[row, k].imshow(img, cmap="gray", interpolation="nearest")
            axes[row, k].axis("off")
    axes[0, 0].set_title("input", fontsize=9, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=9, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, classes, title: str, path: Path) -> Path:
    plt = _pyplot()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * k, 1 + 0.45 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [str(c) for c in classes])
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
