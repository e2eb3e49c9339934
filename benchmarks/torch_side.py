"""The same networks in PyTorch CPU, started from netcli's initial parameters.

Same data (the workload's NPZ), same batch order (a generator in the same state as
netcli's shuffle stream draws the same permutation per epoch), same loss averaged the
same way, the same optimizer. Written the way a PyTorch user would write it: modules,
`X[idx]` batches, `loss.backward()`, `opt.step()`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


class LastStep(nn.Module):
    """LSTM over (N, T, D), the last step's h: (N, H)."""

    def __init__(self, d, h):
        super().__init__()
        self.lstm = nn.LSTM(d, h, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        return out[:, -1]


def build_model(workload) -> tuple[nn.Module, dict]:
    """-> (model, {netcli parameter name: (torch tensor, transform)})."""
    shape = workload.per_example_shape
    modules, names = [], {}
    act_of = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    fused = workload.loss == "cross_entropy"
    last = len(workload.layers) - 1
    for i, block in enumerate(workload.layers):
        kind = block["type"]
        if kind == "dense":
            m = nn.Linear(shape[-1], block["units"])
            names[f"layers.{i}.W"], names[f"layers.{i}.b"] = m.weight, m.bias
            shape = (block["units"],)
        elif kind == "conv2d":
            c, h, w = shape
            k, p = block["kernel"], block.get("padding", 0)
            m = nn.Conv2d(c, block["channels"], k, padding=p)
            names[f"layers.{i}.W"], names[f"layers.{i}.b"] = m.weight, m.bias
            shape = (block["channels"], h + 2 * p - k + 1, w + 2 * p - k + 1)
        elif kind == "maxpool2d":
            m = nn.MaxPool2d(block["size"])
            shape = (shape[0], shape[1] // block["size"], shape[2] // block["size"])
        elif kind == "flatten":
            m = nn.Flatten()
            shape = (int(np.prod(shape)),)
        elif kind == "lstm":
            m = LastStep(shape[-1], block["units"])
            names[f"layers.{i}.W_ih"], names[f"layers.{i}.W_hh"] = m.lstm.weight_ih_l0, m.lstm.weight_hh_l0
            names[f"layers.{i}.b"] = m.lstm.bias_ih_l0   # netcli's b = PyTorch's b_ih + b_hh
            with torch.no_grad():
                m.lstm.bias_hh_l0.zero_()
            shape = (block["units"],)
        else:
            raise ValueError(kind)
        modules.append(m)
        act = block.get("activation", "linear")
        if act in act_of and not (fused and i == last):
            modules.append(act_of[act]())
    return nn.Sequential(*modules), names


def load_params(names: dict, params: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, tensor in names.items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))


class TorchRun:
    """One workload in PyTorch: epoch(perm) trains one epoch over the batches of perm."""

    def __init__(self, workload, arrays: dict[str, np.ndarray], params: dict[str, np.ndarray]):
        self.w = workload
        self.model, self.names = build_model(workload)
        load_params(self.names, params)
        X = arrays["X"].reshape(len(arrays["X"]), *workload.per_example_shape)
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if workload.task == "autoencoder":
            self.y = self.X
            self.loss_fn = lambda out, y: 0.5 * ((out - y) ** 2).sum() / len(y)   # netcli's mse
        else:
            self.y = torch.from_numpy(arrays["y"].astype(np.int64))
            self.loss_fn = nn.CrossEntropyLoss()   # mean over the batch, as netcli's
        if not workload.full_batch:
            o = workload.optimizer
            self.opt = torch.optim.SGD(self.model.parameters(), lr=o["lr"], momentum=o["momentum"])

    def __len__(self):
        return len(self.X)

    def loss_on(self, idx: np.ndarray) -> float:
        with torch.no_grad():
            i = torch.from_numpy(idx)
            return float(self.loss_fn(self.model(self.X[i]), self.y[i]))

    def epoch(self, perm: np.ndarray, batch_size: int) -> float:
        """-> mean minibatch loss; the caller times it."""
        model, opt, loss_fn = self.model, self.opt, self.loss_fn
        order = torch.from_numpy(perm)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = self.X[idx], self.y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / len(order)

    # -- full batch: the same scipy L-BFGS-B driver netcli uses ---------------

    def minimize(self, slots, theta0: np.ndarray, options: dict, tol: float,
                 around_gradient=contextlib.nullcontext) -> tuple[int, int]:
        """L-BFGS-B from theta0 (netcli's flat layout: slots give offset and shape per tensor);
        -> (function evaluations, iterations). around_gradient(): a context each gradient is
        computed in (the benchmark's thread count, with scipy itself on one BLAS thread)."""
        from scipy.optimize import minimize
        tensors = [(s.offset, s.size, self.names[s.name]) for s in slots]
        n = theta0.size
        X, y, model, loss_fn = self.X, self.y, self.model, self.loss_fn
        flat_grad = torch.empty(n, dtype=torch.float32)

        def fun(x):
            with around_gradient():
                return gradient(x)

        def gradient(x):
            x32 = torch.from_numpy(x.astype(np.float32))
            with torch.no_grad():
                for off, size, p in tensors:
                    p.copy_(x32[off:off + size].view_as(p))
            for _, _, p in tensors:
                p.grad = None
            loss = loss_fn(model(X), y)
            loss.backward()
            for off, size, p in tensors:
                flat_grad[off:off + size] = p.grad.reshape(-1)
            return loss.item(), flat_grad.numpy().astype(np.float64)

        result = minimize(fun, theta0.astype(np.float64), jac=True, method="L-BFGS-B", tol=tol,
                          callback=lambda *a: None, options=options)
        return int(result.nfev), int(result.nit)
