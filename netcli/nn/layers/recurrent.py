"""What the recurrent layers (rnn, lstm, gru) share: shapes, outputs, truncated BPTT, buffers.

    x: (N, T, D) -> y: (N, T, H) with return_sequences, else the last step's h_T: (N, H)

Every sequence starts from h_0 = 0 (and c_0 = 0 for the LSTM). Each layer is
trained with backpropagation through time: its backward walks the steps from
T - 1 down to 0, carrying dh_next (and dc_next) from step t to step t - 1.

Truncated BPTT, `bptt: K` (None: full BPTT)
-------------------------------------------
The T steps are cut into chunks of K steps aligned to the END of the sequence:

    [.., T-2K-1] [T-2K, T-K-1] [T-K, T-1]      (the first chunk may be shorter)

and the state entering each chunk (h, and c for the LSTM) is treated as a
constant in backward (PyTorch's `h.detach()` every K steps; Williams & Peng's
BPTT(K, K)). So the gradient of an output at step t flows back through the
recurrence to the start of its chunk and no further: at most K steps, exactly K
for the last step of a chunk. The weights of the step at a chunk's start still
get their gradient (W_hh times the constant h_prev is a term of the objective),
only d h_prev is dropped. Precisely, backward returns the exact gradient of

    J_K(theta, x) = sum_t r_t . h_t,  with h_{s-1} (and c_{s-1}) replaced by their
                    current values, held fixed, at every chunk start s > 0

where r_t is the upstream gradient dy. Many-to-one (return_sequences false):
only the last chunk carries gradient, so the last K steps receive gradient and
dx is zero for steps 0..T-K-1 (backward does no work for them). bptt >= T is
full BPTT. The cost of backward never exceeds full BPTT's.

Layout: internal buffers are time-major, (T, N, .), so each step reads and
writes contiguous (N, .) blocks; they are allocated once per input shape and
reused by later calls of the same shape. Input projections of all steps are one
GEMM before the loop (rnn, gru) or part of each step's GEMM (lstm); weight gradients
are one GEMM after it (rnn, lstm: one for all three, `_finish_joint`).
"""

from __future__ import annotations

import numpy as np

from netcli.nn.layers.base import BuildError, Layer
from netcli.constraints import PositiveInt


class Recurrent(Layer):
    """Base of rnn, lstm and gru; each implements param_specs, forward and backward
    with the helpers below.

    units: H; return_sequences: output every step's h (N, T, H), or the last one (N, H);
    bptt: truncate backpropagation through time to chunks of this many steps (None: full).
    """

    def __init__(self, units: PositiveInt, return_sequences: bool = False, bptt: PositiveInt | None = None):
        self.units = units
        self.return_sequences = return_sequences
        self.bptt = bptt
        self._buffers: dict[str, np.ndarray] = {}

    def build(self, in_shape):
        if len(in_shape) != 2:
            raise BuildError(f"expects a sequence of T steps of D features per example, (T, D), "
                             f"got input shape {list(in_shape)}; set model.input: [T, D]")
        # a config's bptt is checked by the validator (PositiveInt); a layer built in Python is not,
        # and bptt 0 would divide by zero in backward, a negative one truncate silently wrong
        if self.bptt is not None and (isinstance(self.bptt, bool) or not isinstance(self.bptt, int)
                                      or self.bptt < 1):
            raise BuildError(f"bptt must be a positive number of steps or null (full BPTT), got {self.bptt!r}")
        self.steps, self.d_in = int(in_shape[0]), int(in_shape[1])
        return (self.steps, self.units) if self.return_sequences else (self.units,)

    def describe(self):
        extra = ", return_sequences=true" if self.return_sequences else ""
        extra += f", bptt={self.bptt}" if self.bptt is not None else ""
        return f"{self.registered_name}({self.units}{extra})"  # type: ignore[attr-defined]

    # -- helpers for forward ------------------------------------------------------------

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A per-sequence work array, reused while the batch shape and dtype stay the same."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype=dtype)
        return buf

    def _start(self, x: np.ndarray, W_ih: np.ndarray, bias: np.ndarray, width: int):
        """Keep x and its time-major copy; project every step's input in one GEMM.

        x: (N, T, D) -> self.xt: (T, N, D); returns proj: (T, N, width) = xt @ W_ih.T + bias
        """
        self.x = x
        N, T, D = x.shape
        dtype = W_ih.dtype
        xt = self._buffer("xt", (T, N, D), dtype)
        xt[...] = x.transpose(1, 0, 2)
        proj = self._buffer("proj", (T, N, width), dtype)
        np.matmul(xt.reshape(T * N, D), W_ih.T, out=proj.reshape(T * N, width))
        proj += bias
        self.xt = xt
        return proj

    def _joint_inputs(self, x: np.ndarray, dtype) -> np.ndarray:
        """For layers with one bias and h_prev entering only through W_hh (rnn, lstm): x_t, a
        ones column and h_prev share one buffer, self.xh: (T + 1, N, D + 1 + H), row (t, n) =
        [x_t, 1, h_prev of step t], so a GEMM takes the bias with the weights, and backward
        gets [dW_ih, db, dW_hh] from one GEMM (`_finish_joint`).

        x: (N, T, D) -> hs: (T + 1, N, H), the h part of xh (hs[0] = 0; the loop writes
        hs[t + 1] = h_t). x is kept for backward.
        """
        self.x = x
        N, T, D = x.shape
        xh = self.xh = self._buffer("xh", (T + 1, N, D + 1 + self.units), dtype)
        xh[:T, :, :D] = x.transpose(1, 0, 2)
        xh[:, :, D] = 1.0
        hs = xh[:, :, D + 1:]
        hs[0] = 0.0
        return hs

    def _start_joint(self, x: np.ndarray, W_ih: np.ndarray, bias: np.ndarray, width: int):
        """`_joint_inputs`, then every step's input projection in one GEMM, bias included.

        x: (N, T, D) -> (proj: (T, N, width) = x_t @ W_ih.T + bias, hs as `_joint_inputs`)
        """
        N, T, D = x.shape
        hs = self._joint_inputs(x, W_ih.dtype)
        wb = np.empty((width, D + 1), dtype=W_ih.dtype)   # [W_ih, bias]
        wb[:, :D] = W_ih
        wb[:, D] = bias
        proj = self._buffer("proj", (T, N, width), W_ih.dtype)
        np.matmul(self.xh[:T, :, :D + 1].reshape(T * N, D + 1), wb.T, out=proj.reshape(T * N, width))
        return proj, hs

    def _finish_joint(self, dpre: np.ndarray, W_ih: np.ndarray, first: int, need_dx: bool):
        """After the loop of a layer that keeps its inputs in self.xh (`_joint_inputs`): fills
        dW_ih, db and dW_hh from one GEMM over the steps that get gradient,
        dpre[first:].T @ xh[first:T]; returns dx: (N, T, D) or None.

        dpre: (T, N, width), d loss / d pre-activation per step (rows < first unused).
        """
        T, N, width = dpre.shape
        D = self.d_in
        d2 = dpre[first:].reshape(-1, width)
        joint = self._buffer("d_joint", (width, D + 1 + self.units), dpre.dtype)
        np.matmul(d2.T, self.xh[first:T].reshape(-1, D + 1 + self.units), out=joint)
        self.dW_ih[...] = joint[:, :D]
        self.db[...] = joint[:, D]
        self.dW_hh[...] = joint[:, D + 1:]
        return self._input_grad(d2, W_ih, first, T, N) if need_dx else None

    def _input_grad(self, d2: np.ndarray, W_ih: np.ndarray, first: int, T: int, N: int) -> np.ndarray:
        """dx: (N, T, D) from d2: (steps first..T-1 x N, width), d loss / d (x_t W_ih.T)."""
        D = self.d_in
        dx = np.zeros((N, T, D), dtype=d2.dtype) if first else np.empty((N, T, D), dtype=d2.dtype)
        dx[:, first:] = (d2 @ W_ih).reshape(T - first, N, D).transpose(1, 0, 2)
        return dx

    def _states(self, name: str, N: int, T: int, dtype) -> np.ndarray:
        """(T + 1, N, H) with [0] = the zero initial state; [t + 1] is the state after step t."""
        s = self._buffer(name, (T + 1, N, self.units), dtype)
        s[0] = 0.0
        return s

    def _output(self, hs: np.ndarray) -> np.ndarray:
        """hs: (T + 1, N, H) -> y: (N, T, H) or (N, H), a fresh array (buffers get reused)."""
        if self.return_sequences:
            return np.ascontiguousarray(hs[1:].transpose(1, 0, 2))
        return hs[-1].copy()

    # -- helpers for backward -----------------------------------------------------------

    def _first_step(self, T: int) -> int:
        """The earliest step that receives any gradient."""
        if self.return_sequences or self.bptt is None:
            return 0
        return max(T - self.bptt, 0)

    def _cut_before(self, t: int, T: int) -> bool:
        """True when step t starts a chunk, so no gradient flows from step t into step t - 1."""
        return t == 0 or (self.bptt is not None and (T - t) % self.bptt == 0)

    def _upstream(self, dy: np.ndarray, T: int):
        """dy -> a function t -> d loss / d h_t from the output at step t (None where there is none)."""
        if self.return_sequences:
            dyt = dy.transpose(1, 0, 2)  # (T, N, H), a view
            return lambda t: dyt[t]
        return lambda t: dy if t == T - 1 else None

    def _finish(self, dpre_in: np.ndarray, W_ih: np.ndarray, first: int, need_dx: bool):
        """Input-side gradients after the loop, one GEMM each.

        dpre_in: (T, N, width), d loss / d (x_t W_ih.T + bias) per step (rows < first unused).
        Fills dW_ih; returns the summed bias gradient (width,) and dx: (N, T, D) or None.
        """
        T, N, width = dpre_in.shape
        D = self.d_in
        d2 = dpre_in[first:].reshape(-1, width)
        np.matmul(d2.T, self.xt[first:].reshape(-1, D), out=self.dW_ih)
        dbias = d2.sum(axis=0)
        return dbias, (self._input_grad(d2, W_ih, first, T, N) if need_dx else None)
