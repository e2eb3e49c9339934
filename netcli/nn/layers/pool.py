"""Pooling: maxpool1d, maxpool2d, avgpool1d, avgpool2d. No parameters.

For window size k, stride s, each output position p pools the taps t of its window:

    max:  y[n, c, p] = max_t x[n, c, s*p + t]     dx: dy to the first argmax of each window
    avg:  y[n, c, p] = 1/T sum_t x[n, c, s*p + t]  dx[n, c, s*p + t] += dy[n, c, p] / T

The loops run over the T taps of the window (kh*kw), each step one strided view of
the whole batch, so they read the conv's channels-last output in channel runs.
Non-overlapping windows that tile the input (stride == size, sizes divisible, the
default) take a fast path: every input belongs to exactly one window, so backward
writes each tap's slice once (max) or broadcasts dy / T through a reshaped view of
dx (avg), with no zero fill and no accumulation. Other strides accumulate.
"""

from __future__ import annotations

import itertools

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import BuildError, Layer
from netcli.nn.layers.conv import as_tuple, as_tuple_or_raw, check_rank, fmt
from netcli.constraints import PositiveInt, PositiveInts


class _Pool(Layer):
    """Shared by the four pooling layers: `axes` names the spatial axes."""

    axes: tuple[str, ...] = ()

    def _configure(self, size, stride):
        self.size, self.stride = size, stride

    def build(self, in_shape):
        check_rank(in_shape, self.axes)
        n = len(self.axes)
        self.k = as_tuple("size", self.size, n, 1)
        self.s = as_tuple("stride", self.k if self.stride is None else self.stride, n, 1)
        channels, *size = in_shape
        out = []
        for axis, m, k, s in zip(self.axes, size, self.k, self.s):
            if k > m:
                raise BuildError(f"window {k} is larger than the input along {axis} ({m})")
            out.append((m - k) // s + 1)
        self.out_size = tuple(out)
        self.overlap = any(s < k for k, s in zip(self.k, self.s))
        self.tiles = all(s == k and m % k == 0 for m, k, s in zip(size, self.k, self.s))
        self.taps = list(itertools.product(*(range(k) for k in self.k)))
        return (channels, *self.out_size)

    def _tap(self, tap) -> tuple:
        """x[n, c, s*p + t] for all output positions p: a strided view."""
        return (slice(None), slice(None),
                *(slice(t, t + s * (o - 1) + 1, s) for t, s, o in zip(tap, self.s, self.out_size)))

    def _blocks(self, a: np.ndarray) -> np.ndarray:
        """(N, C, *S) -> (N, C, o1, k1, o2, k2, ...), a view; only when the windows tile S."""
        n, c = a.shape[:2]
        split = [d for o, k in zip(self.out_size, self.k) for d in (o, k)]
        blocks = a.reshape(n, c, *split)
        assert np.may_share_memory(blocks, a), "splitting axes must give a view"
        return blocks

    def _in_y_order(self, dy: np.ndarray) -> np.ndarray:
        """dy in the memory order of y (that of the tap views), so the per-tap products below
        run over matching strides; dy from a flatten is channels-first, y channels-last."""
        if dy.strides == self.y.strides:
            return dy
        out = np.empty_like(self.y, dtype=dy.dtype)
        out[...] = dy
        return out

    def describe(self):
        n = len(self.axes)
        text = fmt(as_tuple_or_raw(self.size, n))
        if self.stride is not None and as_tuple_or_raw(self.stride, n) != as_tuple_or_raw(self.size, n):
            text += f", stride {fmt(as_tuple_or_raw(self.stride, n), short=True)}"
        return f"{self.registered_name}({text})"  # type: ignore[attr-defined]


class _MaxPool(_Pool):
    def forward(self, x, train):
        views = [x[self._tap(t)] for t in self.taps]
        y = views[0].copy() if len(views) == 1 else np.maximum(views[0], views[1])
        for v in views[2:]:
            np.maximum(y, v, out=y)
        self.x, self.y, self.winner = x, y, None
        if train:
            self._winners()
        return y

    def _winners(self) -> np.ndarray:
        """The first tap (row-major in the window) that holds each window's max: (N, C, *S_out)."""
        if self.winner is None:
            n_taps = len(self.taps)
            kind = np.min_scalar_type(2 * n_taps)
            winner = np.empty_like(self.y, dtype=kind)  # in y's memory order, as the views below
            winner.fill(n_taps - 1)  # the last tap holds the max where no earlier one does
            candidate = np.empty_like(winner)
            for t in range(n_taps - 2, -1, -1):
                # candidate = t where tap t equals the max, else n_taps (> every tap); keep the least.
                # (Integer arithmetic: a masked copy here costs several times as much.)
                np.not_equal(self.x[self._tap(self.taps[t])], self.y, out=candidate)
                candidate *= n_taps
                candidate += t
                np.minimum(winner, candidate, out=winner)
            self.winner = winner
        return self.winner

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        winner = self._winners()
        dy = self._in_y_order(dy)
        dx = np.empty_like(self.x) if self.tiles else np.zeros_like(self.x)
        for t, tap in enumerate(self.taps):
            hit = winner == t
            if self.overlap:
                dx[self._tap(tap)] += dy * hit
            else:
                np.multiply(dy, hit, out=dx[self._tap(tap)])
        return dx

    def kink_pattern(self):
        return self._winners()


class _AvgPool(_Pool):
    def forward(self, x, train):
        views = [x[self._tap(t)] for t in self.taps]
        y = views[0].copy() if len(views) == 1 else np.add(views[0], views[1])
        for v in views[2:]:
            y += v
        y *= 1.0 / len(self.taps)
        self.x, self.y = x, y  # kept for their dtype and memory order
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        g = self._in_y_order(dy) * (1.0 / len(self.taps))
        if self.tiles:
            dx = np.empty_like(self.x)
            n, c = dy.shape[:2]
            spread = [d for o in self.out_size for d in (o, 1)]
            self._blocks(dx)[...] = g.reshape(n, c, *spread)  # broadcast over each window
            return dx
        dx = np.zeros_like(self.x)
        for tap in self.taps:
            if self.overlap:
                dx[self._tap(tap)] += g
            else:
                dx[self._tap(tap)] = g
        return dx


@LAYERS.register("maxpool2d")
class MaxPool2D(_MaxPool):
    """y = max over each size x size window      x: (N, C, H, W) -> y: (N, C, H_out, W_out)
    H_out = (H - size) // stride + 1; stride defaults to size. Ties: the first max gets dy.
    size, stride: an int (both axes) or a list [along H, along W].
    """

    axes = ("H", "W")

    def __init__(self, size: PositiveInts, stride: PositiveInts | None = None):
        self._configure(size, stride)


@LAYERS.register("maxpool1d")
class MaxPool1D(_MaxPool):
    """y = max over each window of `size`        x: (N, C, L) -> y: (N, C, L_out)
    L_out = (L - size) // stride + 1; stride defaults to size. Ties: the first max gets dy.
    """

    axes = ("L",)

    def __init__(self, size: PositiveInt, stride: PositiveInt | None = None):
        self._configure(size, stride)


@LAYERS.register("avgpool2d")
class AvgPool2D(_AvgPool):
    """y = mean over each size x size window     x: (N, C, H, W) -> y: (N, C, H_out, W_out)
    H_out = (H - size) // stride + 1; stride defaults to size.
    size, stride: an int (both axes) or a list [along H, along W].
    """

    axes = ("H", "W")

    def __init__(self, size: PositiveInts, stride: PositiveInts | None = None):
        self._configure(size, stride)


@LAYERS.register("avgpool1d")
class AvgPool1D(_AvgPool):
    """y = mean over each window of `size`       x: (N, C, L) -> y: (N, C, L_out)
    L_out = (L - size) // stride + 1; stride defaults to size.
    """

    axes = ("L",)

    def __init__(self, size: PositiveInt, stride: PositiveInt | None = None):
        self._configure(size, stride)

