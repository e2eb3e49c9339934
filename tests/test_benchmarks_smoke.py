"""The benchmark workloads are ordinary netcli configs, and the hot paths stay float32.

No timing is asserted here: `python -m benchmarks` measures, the test suite never does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from netcli.log import Reporter
from netcli.nn import ACTIVATIONS, LOSSES
from netcli.optim import OPTIMIZERS
from netcli.runs import RunDir
from netcli.prepare import prepare, rng_streams
from netcli.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package beside netcli/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.workloads import WORKLOADS  # noqa: E402


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_trains_through_netcli_and_stays_float32(tmp_path, name):
    w = WORKLOADS[name]
    path = tmp_path / f"{name}.npz"
    batch = 8 if w.batch_size == "full" else w.batch_size
    np.savez(path, **w.make_data(batch + 3))            # two minibatches, the second one short
    data = w.config_dict(path, epochs=1)
    if w.full_batch:
        data["optimizer"]["max_iter"] = 2
    from netcli.config import validate
    config = validate(data, source=f"{name}.yaml")
    rngs = rng_streams(0)
    prepared = prepare(config, rngs)
    trainer = Trainer(prepared, RunDir.create(name, tmp_path, tmp_path / "run"), Reporter(quiet=True), rngs)
    summary = trainer.fit()
    assert summary["status"] == "finished" and summary["steps"] >= 2
    net = prepared.net
    assert w.forward_flops() > 0
    arrays = [net.theta, net.grad, *net.activations, *net.zs]
    if not w.full_batch:
        arrays += list(trainer.optimizer.state_dict().values())[:-1]   # the last is the step count
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}


# -- no silent float64 upcasts ---------------------------------------------------------

class Float32Only(np.ndarray):
    """An array that fails any NumPy operation that takes or makes float64 (a NumPy float64
    scalar, a float64 array), so an upcast inside a computation cannot hide behind a float32
    result written back in place. Python floats are fine: NumPy treats them as weak."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for x in inputs:
            if isinstance(x, (np.ndarray, np.generic)) and x.dtype == np.float64:
                raise AssertionError(f"float64 operand in {ufunc.__name__}: {type(x).__name__}")
        plain = [x.view(np.ndarray) if isinstance(x, Float32Only) else x for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Float32Only) else o for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        for r in results:
            if isinstance(r, (np.ndarray, np.generic)) and r.dtype == np.float64:
                raise AssertionError(f"{ufunc.__name__} made float64")
        if out is not None:
            return out[0] if len(out) == 1 else out
        wrapped = tuple(r.view(Float32Only) if isinstance(r, np.ndarray) else r for r in results)
        return wrapped if isinstance(result, tuple) else wrapped[0]


def f32(rng, *shape):
    return rng.normal(size=shape).astype(np.float32).view(Float32Only)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activations_stay_float32(name):
    act = ACTIVATIONS.get(name)()
    rng = np.random.default_rng(0)
    for shape in [(4, 5), (300, 600)]:               # small arrays, and ones processed in blocks
        z, da = f32(rng, *shape), f32(rng, *shape)
        a = act.forward(z)
        assert a.dtype == np.float32 and act.backward(z, a, da).dtype == np.float32
        z2 = z.copy()
        a2 = act.forward_(z2)
        assert a2.dtype == np.float32 and act.backward_(z2, a2, da.copy()).dtype == np.float32


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_stay_float32(name):
    loss = LOSSES.get(name)()
    rng = np.random.default_rng(0)
    out = f32(rng, 6, 3)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)].view(Float32Only)
    loss.forward(out, y)
    assert loss.backward().dtype == np.float32


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS.names() if not OPTIMIZERS.get(n).full_batch])
def test_optimizer_steps_stay_float32_and_in_place(name):
    opt = OPTIMIZERS.get(name)()
    rng = np.random.default_rng(0)
    theta = f32(rng, 20_000)                          # long enough for several BLAS pieces
    opt.setup(theta)
    for k in opt.state_names:
        setattr(opt, k, getattr(opt, k).view(Float32Only))
    before = theta.copy()
    for _ in range(3):
        opt.step(theta, f32(rng, 20_000), 0.01)
    assert theta.dtype == np.float32 and not np.array_equal(theta, before)
    for k in opt.state_names:
        assert getattr(opt, k).dtype == np.float32
