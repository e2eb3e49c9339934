"""A batch's loss and gradient computed in parts at the same time, one thread each.

For a network whose layers treat rows apart (Network.splits_by_rows), with the batch's
rows cut into parts P_1 .. P_k of sizes m_1 .. m_k (m in all), the data term is a mean
over rows, so

    J    = sum_i (m_i / m) E(P_i)            + penalty(W)
    grad = sum_i (m_i / m) dE(P_i)/dtheta    + dpenalty/dtheta

Each part runs forward and backward on its own replica of the network (the same theta,
its own layers' state and grad), in its own thread with BLAS on one thread; NumPy and
BLAS release the GIL for the large arrays, so the parts overlap on separate cores. This
is what a second core buys a network of small or skinny GEMMs (convolutions with few
channels) whose elementwise passes BLAS's own threads leave on one core.

Random layers (dropout, input corruption) see the whole batch's draws: they are drawn once,
in the main thread, from the network's own generators (Network.batch_draws), and each part
gets its rows, so the parts use the same numbers as the whole batch, and the generators move
on as they would.

The result depends on the number of parts (the sums are taken in another order than one
GEMM over the whole batch takes them), never on timing: part i always lands in grad in
the same place of the same sum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from netcli.nn.network import Network


class SplitBatch:
    """loss_and_grad(theta, X, y) like Network's, computed in `parts` row ranges at once.

    X: (m, *input_shape), y: (m, ...). The gradient is written into net.grad, and
    net.last_terms is set, as Network.loss_and_grad does. A batch of fewer rows than
    parts is cut into fewer parts. Use as a context manager (it owns the threads).
    """

    def __init__(self, net: Network, parts: int):
        if parts < 2:
            raise ValueError("SplitBatch needs at least 2 parts")
        if not net.splits_by_rows:
            raise ValueError("this network's gradient does not split by rows")
        self.net = net
        self.replicas = [net] + [net.replica() for _ in range(parts - 1)]
        self.pool = ThreadPoolExecutor(parts - 1, thread_name_prefix="netcli-part")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    @staticmethod
    def bounds(m: int, parts: int) -> list[tuple[int, int]]:
        """Row ranges of m rows in `parts` nearly equal parts (the first ones one larger)."""
        parts = max(1, min(parts, m))
        size, extra = divmod(m, parts)
        edges = [0]
        for i in range(parts):
            edges.append(edges[-1] + size + (i < extra))
        return list(zip(edges[:-1], edges[1:]))

    def loss_and_grad(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray,
                      train: bool = True) -> tuple[float, np.ndarray]:
        net = self.net
        if theta is not net.theta:
            net.theta[...] = theta
        ranges = self.bounds(X.shape[0], len(self.replicas))
        m = X.shape[0]
        errors = np.geterr()   # the caller's floating-point error handling, for the parts' threads too

        draws = net.batch_draws(m) if train else []

        def part(replica: Network, a: int, b: int) -> float:
            for i, values in draws:
                replica.layers[i].drawn = values[a:b]
            try:
                with np.errstate(**errors):
                    data = replica.data_loss_and_grad(X[a:b], y[a:b], train)
                    replica.grad *= replica.dtype.type((b - a) / m)
            finally:    # a part that failed before its random layers must not leave them its rows
                for i, _ in draws:
                    replica.layers[i].drawn = None
            return data * (b - a) / m

        futures = [self.pool.submit(part, r, a, b) for r, (a, b) in zip(self.replicas[1:], ranges[1:])]
        data = part(net, *ranges[0])
        for replica, future in zip(self.replicas[1:], futures):
            data += future.result()
            net.grad += replica.grad
        penalty = net.add_weight_penalties(net.grad)
        net.last_terms = (data, penalty)
        return data + penalty, net.grad
