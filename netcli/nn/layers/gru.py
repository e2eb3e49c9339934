"""Gated recurrent unit (Cho et al. 2014), formulated and laid out as PyTorch's nn.GRU."""

from __future__ import annotations

import numpy as np

from netcli.nn.layers import LAYERS
from netcli.nn.layers.base import ParamSpec
from netcli.nn.activations import logistic
from netcli.nn.layers.recurrent import Recurrent


@LAYERS.register("gru")
class GRU(Recurrent):
    """Per step t, from h_prev = h_{t-1} (h_0 = 0), with [.]_r, [.]_z, [.]_n the gate blocks:

        gi = x_t @ W_ih.T + b_ih        gh = h_prev @ W_hh.T + b_hh          (N, 3H)
        r   = sigmoid(gi_r + gh_r)
        z   = sigmoid(gi_z + gh_z)
        n   = tanh(gi_n + r * gh_n)           (gh_n = W_hn h_prev + b_hn, inside the reset gate)
        h_t = (1 - z) * n + z * h_prev

    x: (N, T, D) -> y: (N, T, H) with return_sequences, else h_T: (N, H)
    W_ih: (3H, D), W_hh: (3H, H), b_ih: (3H,), b_hh: (3H,), blocks stacked r, z, n.
    The n gate needs both biases (b_hn sits inside r * (.)); for r and z only their sum matters.
    Truncated BPTT (`bptt`): see netcli/nn/layers/recurrent.py.
    """

    def param_specs(self):
        H, D = self.units, self.d_in
        return {
            "W_ih": ParamSpec((3 * H, D), decay=True, fan_in=D, fan_out=H),
            "W_hh": ParamSpec((3 * H, H), decay=True, fan_in=H, fan_out=H),
            "b_ih": ParamSpec((3 * H,), decay=False, fill=0.0),
            "b_hh": ParamSpec((3 * H,), decay=False, fill=0.0),
        }

    def forward(self, x, train):
        N, T, _ = x.shape
        H = self.units
        gates = self._start(x, self.W_ih, self.b_ih, 3 * H)   # gates[t] = gi, activated in place
        dtype = gates.dtype
        hs = self._states("h", N, T, dtype)                      # hs[t] = h_prev of step t
        gh_n = self._buffer("gh_n", (T, N, H), dtype)             # W_hn h_prev + b_hn, for backward
        gh = self._buffer("gh", (N, 3 * H), dtype)
        W_hhT = self.W_hh.T
        for t in range(T):
            h_prev, h_t, a = hs[t], hs[t + 1], gates[t]
            np.matmul(h_prev, W_hhT, out=gh)                     # the three gates in one GEMM
            gh += self.b_hh
            rz = a[:, :2 * H]
            rz += gh[:, :2 * H]
            logistic(rz, out=rz)
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            gh_n[t] = gh[:, 2 * H:]
            n += r * gh_n[t]
            np.tanh(n, out=n)
            np.subtract(h_prev, n, out=h_t)                      # h_t = n + z * (h_prev - n)
            h_t *= z
            h_t += n
        self.gates, self.hs, self.gh_n = gates, hs, gh_n
        return self._output(hs)

    def backward(self, dy, need_dx=True):
        N, T, _ = self.x.shape
        H = self.units
        dtype = self.gates.dtype
        first = self._first_step(T)
        dgi = self._buffer("dgi", (T, N, 3 * H), dtype)       # d / d gi
        dgh = self._buffer("dgh", (T, N, 3 * H), dtype)       # d / d gh
        # What the steps need from the forward, for all steps at once (no per-step work):
        #   dn = dh_t * (1 - z)(1 - n^2)     (d / d pre-tanh of n, = d gi_n)
        #   dz = dh_t * (h_prev - n) z (1 - z)
        #   dr = dn * gh_n r (1 - r)         d gh_n = dn * r
        #   dh_prev = dh_t * z + dgh @ W_hh
        a, h_prev, gh_n = self.gates[first:], self.hs[first:T], self.gh_n[first:]
        r, z, n = a[..., :H], a[..., H:2 * H], a[..., 2 * H:]
        p = dgi[first:]                                        # the factors, then the gradients
        pr, pz, pn = p[..., :H], p[..., H:2 * H], p[..., 2 * H:]
        np.subtract(1.0, r, out=pr)
        pr *= r
        pr *= gh_n
        np.subtract(1.0, z, out=pn)                            # 1 - z, for pz and pn
        np.subtract(h_prev, n, out=pz)
        pz *= z
        pz *= pn
        scratch = dgh[first:, :, 2 * H:]                       # overwritten step by step below
        np.multiply(n, n, out=scratch)
        np.subtract(1.0, scratch, out=scratch)
        pn *= scratch
        dh_next = np.zeros((N, H), dtype=dtype)
        dh_direct = np.empty((N, H), dtype=dtype)
        upstream = self._upstream(dy, T)
        for t in range(T - 1, first - 1, -1):
            k = t - first
            dy_t = upstream(t)
            dh = dh_next if dy_t is None else dh_next + dy_t
            di, dg = dgi[t], dgh[t]
            di.reshape(N, 3, H)[:, 1:] *= dh[:, None, :]       # dz, dn
            dn = di[:, 2 * H:]
            di[:, :H] *= dn                                    # dr
            dg[:, :2 * H] = di[:, :2 * H]                      # r and z see gi + gh alike
            np.multiply(dn, r[k], out=dg[:, 2 * H:])           # d gh_n
            if self._cut_before(t, T):
                dh_next[...] = 0.0
            else:
                np.multiply(dh, z[k], out=dh_direct)           # before dh_next (maybe dh) is overwritten
                np.matmul(dg, self.W_hh, out=dh_next)
                dh_next += dh_direct
        d2 = dgh[first:].reshape(-1, 3 * H)
        np.matmul(d2.T, self.hs[first:T].reshape(-1, H), out=self.dW_hh)
        self.db_hh[...] = d2.sum(axis=0)
        db_ih, dx = self._finish(dgi, self.W_ih, first, need_dx)
        self.db_ih[...] = db_ih
        return dx
