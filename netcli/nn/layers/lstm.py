"""Long short-term memory (Hochreiter & Schmidhuber 1997), gates laid out as PyTorch's."""

from __future__ import annotations

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import ParamSpec
from netcli.nn.layers.recurrent import Recurrent


@LAYERS.register("lstm")
class LSTM(Recurrent):
    """Per step t, from h_prev = h_{t-1} and c_prev = c_{t-1} (h_0 = c_0 = 0):

        [i, f, g, o] = x_t @ W_ih.T + h_prev @ W_hh.T + b       (N, 4H), then
        i = sigmoid(.)   f = sigmoid(.)   g = tanh(.)   o = sigmoid(.)
        c_t = f * c_prev + i * g
        h_t = o * tanh(c_t)

    x: (N, T, D) -> y: (N, T, H) with return_sequences, else h_T: (N, H)
    W_ih: (4H, D), W_hh: (4H, H), b: (4H,), gate blocks stacked i, f, g, o
    (PyTorch's layout; its b_ih + b_hh is our b). The forget-gate block b[H:2H]
    starts at 1 (`bias_init`), so the cell keeps its memory early in training.
    Truncated BPTT (`bptt`): see netcli/nn/layers/recurrent.py.
    """

    def param_specs(self):
        H, D = self.units, self.d_in
        return {
            "W_ih": ParamSpec((4 * H, D), decay=True, fan_in=D, fan_out=H),
            "W_hh": ParamSpec((4 * H, H), decay=True, fan_in=H, fan_out=H),
            "b": ParamSpec((4 * H,), decay=False, fill=tuple(self.bias_init().tolist())),
        }

    def bias_init(self) -> np.ndarray:
        """The initial b: (4H,), zero except the forget-gate block b[H:2H] = 1."""
        H = self.units
        b = np.zeros(4 * H)
        b[H:2 * H] = 1.0
        return b

    def forward(self, x, train):
        N, T, _ = x.shape
        H = self.units
        dtype = self.W_hh.dtype
        # sigmoid(z) = 0.5 tanh(0.5 z) + 0.5 (activations.logistic), so i, f, o and g = tanh(.)
        # take one tanh over the row. The 0.5 is folded into the i, f, o rows of the weights and
        # bias (exact: a power of two), so the GEMM delivers the tanh arguments directly, and
        # 0.5 t + 0.5 rounds as logistic's (t + 1) 0.5 does. Each step is one GEMM,
        # [x_t, 1, h_prev] @ [W_ih, b, W_hh].T, with the weights transposed into a contiguous
        # copy once per sequence (read ~1.3x faster than the transposed view); on one thread
        # that beats projecting all inputs in one GEMM before the loop by ~4% (RESULTS.md).
        scale = np.full(4 * H, 0.5, dtype=dtype)
        scale[2 * H:3 * H] = 1.0
        shift = np.full(4 * H, 0.5, dtype=dtype)
        shift[2 * H:3 * H] = 0.0
        D = self.d_in
        hs = self._joint_inputs(x, dtype)                    # xh[t] = [x_t, 1, h_prev of step t]
        WJ = self._buffer("WJ", (D + 1 + H, 4 * H), dtype)   # [W_ih, b, W_hh].T * scale, contiguous
        np.multiply(self.W_ih.T, scale, out=WJ[:D])
        np.multiply(self.b, scale, out=WJ[D])
        np.multiply(self.W_hh.T, scale, out=WJ[D + 1:])
        gates = self._buffer("gates", (T, N, 4 * H), dtype)
        cs = self._states("c", N, T, dtype)                  # cs[t] = c_prev of step t
        tanh_c = self._buffer("tanh_c", (T, N, H), dtype)
        ig = self._buffer("ig", (N, H), dtype)
        for t in range(T):
            c_prev, c_t, a = cs[t], cs[t + 1], gates[t]
            np.matmul(self.xh[t], WJ, out=a)                  # input, bias and recurrence: one GEMM
            np.tanh(a, out=a)
            a *= scale
            a += shift                                        # a = [i, f, g, o]
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            np.multiply(f, c_prev, out=c_t)                   # c_t = f * c_prev + i * g
            np.multiply(i, g, out=ig)
            c_t += ig
            np.tanh(c_t, out=tanh_c[t])
            np.multiply(o, tanh_c[t], out=hs[t + 1])          # h_t = o * tanh(c_t)
        self.gates, self.hs, self.cs, self.tanh_c = gates, hs, cs, tanh_c  # activated gates
        return self._output(hs)

    def backward(self, dy, need_dx=True):
        N, T, _ = self.x.shape
        H = self.units
        dtype = self.gates.dtype
        first = self._first_step(T)
        # What the steps need from the forward, computed before the step loop:
        #   d pre_i = dc_t * g i (1 - i)          d pre_f = dc_t * c_prev f (1 - f)
        #   d pre_g = dc_t * i (1 - g^2)          d pre_o = dh_t * tanh(c_t) o (1 - o)
        #   dc_t = dc_next + dh_t * o (1 - tanh(c_t)^2)
        # a few steps at a time, so the eleven passes over each block run in cache (over all
        # steps at once, each pass would stream the whole (T, N, 4H) arrays from memory)
        a, tc, c_prev = self.gates[first:], self.tanh_c[first:], self.cs[first:T]
        i, f, g, o = a[..., :H], a[..., H:2 * H], a[..., 2 * H:3 * H], a[..., 3 * H:]
        dgates = self._buffer("dgates", (T, N, 4 * H), dtype)   # d / d pre-activations
        o_dtanh = self._buffer("o_dtanh", (T, N, H), dtype)[first:]
        steps = max(1, (1 << 15) // (N * H))                    # ~0.5 MiB of dgates per block
        for s in range(0, T - first, steps):
            e = s + steps
            a_, i_, g_, o_, tc_ = a[s:e], i[s:e], g[s:e], o[s:e], tc[s:e]
            p = dgates[first + s:first + e]                     # the factors, then the gradients
            np.subtract(1.0, a_, out=p)
            p *= a_                                             # a (1 - a), sigmoid' (i, f, o)
            p[..., :H] *= g_
            p[..., H:2 * H] *= c_prev[s:e]
            pg = p[..., 2 * H:3 * H]
            np.multiply(g_, g_, out=pg)
            np.subtract(1.0, pg, out=pg)                        # 1 - g^2, tanh'
            pg *= i_
            p[..., 3 * H:] *= tc_
            od = o_dtanh[s:e]
            np.multiply(tc_, tc_, out=od)
            np.subtract(1.0, od, out=od)
            od *= o_
        dh_next = np.zeros((N, H), dtype=dtype)
        dc_next = np.zeros((N, H), dtype=dtype)
        dc_t = np.empty((N, H), dtype=dtype)
        upstream = self._upstream(dy, T)
        for t in range(T - 1, first - 1, -1):
            k = t - first
            dy_t = upstream(t)
            dh = dh_next if dy_t is None else dh_next + dy_t
            np.multiply(dh, o_dtanh[k], out=dc_t)
            dc_t += dc_next
            da = dgates[t]
            blocks = da.reshape(N, 4, H)
            blocks[:, :3] *= dc_t[:, None, :]                  # di, df, dg
            blocks[:, 3] *= dh                                   # do
            if self._cut_before(t, T):
                dh_next[...] = 0.0
                dc_next[...] = 0.0
            else:
                np.matmul(da, self.W_hh, out=dh_next)
                np.multiply(dc_t, f[k], out=dc_next)
        return self._finish_joint(dgates, self.W_ih, first, need_dx)
