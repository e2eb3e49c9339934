"""The simple (Elman) recurrent layer with tanh units."""

from __future__ import annotations

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import ParamSpec
from netcli.nn.layers.recurrent import Recurrent


@LAYERS.register("rnn")
class RNN(Recurrent):
    """Per step t, from h_prev = h_{t-1} (h_0 = 0):

        h_t = tanh(x_t @ W_ih.T + h_prev @ W_hh.T + b)

    x: (N, T, D) -> y: (N, T, H) with return_sequences, else h_T: (N, H)
    W_ih: (H, D), W_hh: (H, H), b: (H,)  (PyTorch's nn.RNN, its b_ih + b_hh as one b)
    Truncated BPTT (`bptt`): see netcli/nn/layers/recurrent.py.
    """

    def param_specs(self):
        H, D = self.units, self.d_in
        return {
            "W_ih": ParamSpec((H, D), decay=True, fan_in=D, fan_out=H),
            "W_hh": ParamSpec((H, H), decay=True, fan_in=H, fan_out=H),
            "b": ParamSpec((H,), decay=False, fill=0.0),
        }

    def forward(self, x, train):
        N, T, _ = x.shape
        proj, hs = self._start_joint(x, self.W_ih, self.b, self.units)   # proj[t] = x_t @ W_ih.T + b
                                                                           # hs[t] = h_prev of step t
        rec = self._buffer("rec", (N, self.units), proj.dtype)
        W_hhT = self.W_hh.T
        for t in range(T):
            h_prev, h_t = hs[t], hs[t + 1]
            np.matmul(h_prev, W_hhT, out=rec)
            np.add(proj[t], rec, out=h_t)
            np.tanh(h_t, out=h_t)
        self.hs = hs
        return self._output(hs)

    def backward(self, dy, need_dx=True):
        N, T, _ = self.x.shape
        H = self.units
        first = self._first_step(T)
        dz = self._buffer("dz", (T, N, H), self.hs.dtype)       # d / d pre-activation
        dtanh = dz[first:]                                      # 1 - h_t^2 for all steps, then dz
        np.multiply(self.hs[first + 1:], self.hs[first + 1:], out=dtanh)
        np.subtract(1.0, dtanh, out=dtanh)
        dh_next = np.zeros((N, H), dtype=self.hs.dtype)
        upstream = self._upstream(dy, T)
        for t in range(T - 1, first - 1, -1):
            dy_t = upstream(t)
            dz[t] *= dh_next if dy_t is None else dh_next + dy_t   # dz_t = dh_t * (1 - h_t^2)
            if self._cut_before(t, T):
                dh_next[...] = 0.0
            else:
                np.matmul(dz[t], self.W_hh, out=dh_next)
        return self._finish_joint(dz, self.W_ih, first, need_dx)
