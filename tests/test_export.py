"""netcli export: ONNX (onnxruntime), a PyTorch state_dict, safetensors. Every architecture is
trained for an epoch on a small table in tmp_path, exported, and run elsewhere; the outputs must
be netcli's own (float32 to ~1e-5, float64 to ~1e-12), from raw feature rows."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

import netcli
from netcli.errors import NetcliError
from netcli.export import FORMATS, export
from netcli.export.common import raw_input
from netcli.nn import ACTIVATIONS
from netcli.nn.layers import LAYERS
from netcli.prepare import build_network
from netcli.runs.weights import load_weights_into

from helpers import assert_user_error, invoke, merge, train_config, write_csv

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
st_numpy = pytest.importorskip("safetensors.numpy")

ROWS = 48
F32 = 1e-5     # onnxruntime and float32 torch against netcli's float32 forward
F64 = 1e-12    # float64 torch against netcli's float64 forward


# -- data and architectures -------------------------------------------------------------

def raw_features(rng, n: int, d: int) -> np.ndarray:
    """Rows far from zero mean and unit scale, so a missing normalization shows."""
    return rng.normal(loc=rng.uniform(-5, 20, d), scale=rng.uniform(0.5, 4, d), size=(n, d)).round(3)


def table(tmp_path, name: str, d: int, target: str, seed: int = 0):
    """A CSV of ROWS rows: features f0..f{d-1} and a target column 'y' of the given kind:
    'animal' (3 text classes), 'digit' (3 integer classes), 'yesno' (2 text labels), 'bit' (0/1),
    'real'."""
    rng = np.random.default_rng(seed)
    X = raw_features(rng, ROWS, d)
    score = (X - X.mean(0)) / X.std(0) @ rng.normal(size=(d, 3))
    y = {"animal": np.array(["cat", "dog", "eel"])[score.argmax(1)],
         "digit": score.argmax(1),
         "yesno": np.where(score[:, 0] > 0, "yes", "no"),
         "bit": (score[:, 0] > 0).astype(int),
         "real": score[:, 0].round(4)}[target]
    path = write_csv(tmp_path / f"{name}.csv", [f"f{j}" for j in range(d)] + ["y"],
                     [[*map(repr, map(float, row)), t] for row, t in zip(X, y)])
    return path, X


def sequences(tmp_path, name: str, classes: bool = False, T: int = 5, D: int = 3, seed: int = 1):
    """An NPZ of ROWS sequences X: (ROWS, T, D) and y: (ROWS, 1), real, or two integer classes."""
    rng = np.random.default_rng(seed)
    X = raw_features(rng, ROWS * T, D).reshape(ROWS, T, D)
    y = X[:, :, :1].sum(1) / T
    if classes:
        y = (y[:, 0] > np.median(y)).astype(int)
    path = tmp_path / f"{name}.npz"
    np.savez(path, X=X, y=y)
    return path, X


def dense(units, act="linear", **kw):
    return {"type": "dense", "units": units, "activation": act, **kw}


def conv2d(channels, kernel, **kw):
    return {"type": "conv2d", "channels": channels, "kernel": kernel, **kw}


def config(path, input_shape, layers, **sections):
    """One epoch on the data at path, normalize standard and loss mse unless sections say otherwise."""
    base = {"seed": 3, "data": {"train": str(path), "target": "y", "normalize": "standard"},
            "model": {"input": input_shape, "layers": layers}, "loss": "mse",
            "optimizer": {"type": "adam", "lr": 0.02}, "training": {"epochs": 1, "batch_size": 16}}
    return merge(base, sections)


CLASSIFIER = {"loss": "cross_entropy"}


def recurrent(kind, sequences_out):
    layers = [{"type": kind, "units": 4, "return_sequences": sequences_out}]
    if sequences_out:   # a dense layer over (N, T, H): leading axes carried through
        layers += [dense(3, "tanh"), {"type": "flatten"}]
    return lambda tmp: (sequences(tmp, kind), [5, 3], layers + [dense(1)], {})


ARCHITECTURES = {
    # name: tmp_path -> ((data path, raw X), model.input, layers, config sections merged in)
    "mlp_classifier": lambda tmp: (table(tmp, "mlp", 6, "animal"), 6, [
        dense(8, "relu"), {"type": "dropout", "rate": 0.2}, dense(8, {"type": "leaky_relu", "alpha": 0.2}),
        dense(3, "softmax")], CLASSIFIER),
    "regression_minmax": lambda tmp: (table(tmp, "reg", 5, "real"), 5, [
        dense(8, "tanh"), dense(6, "softplus"), dense(4, "sigmoid"), dense(1)], {"data": {"normalize": "minmax"}}),
    "tied_autoencoder": lambda tmp: (table(tmp, "ae", 6, "real"), 6, [
        {"type": "corrupt", "rate": 0.2}, dense(3, "sigmoid"), {"type": "dense_tied", "tied_to": 1}],
        {"data": {"target": "input", "drop": ["y"]}}),
    "maxout_binary": lambda tmp: (table(tmp, "maxout", 6, "yesno"), 6, [
        {"type": "maxout", "units": 4, "pieces": 3}, dense(1, "sigmoid")], {"loss": "binary_cross_entropy"}),
    "binary_01_unnormalized": lambda tmp: (table(tmp, "bits", 3, "bit"), 3, [dense(1, "sigmoid")],
                                           {"loss": "binary_cross_entropy", "data": {"normalize": "none"}}),
    "maxout_classifier": lambda tmp: (table(tmp, "maxout3", 4, "digit"), 4, [
        {"type": "maxout", "units": 5, "pieces": 2}, dense(3, "softmax")], CLASSIFIER),
    "conv2d_pad_maxpool": lambda tmp: (table(tmp, "conv_a", 36, "digit"), [1, 6, 6], [
        conv2d(3, 3, padding=1, activation="relu"), {"type": "maxpool2d", "size": 2},
        {"type": "flatten"}, dense(3, "softmax")], {**CLASSIFIER, "data": {"normalize": "minmax_global"}}),
    "conv2d_stride_overlap": lambda tmp: (table(tmp, "conv_b", 72, "digit"), [2, 6, 6], [
        conv2d(3, [3, 2], stride=2, padding=[1, 0], activation="tanh"),
        {"type": "maxpool2d", "size": 2, "stride": 1}, {"type": "flatten"}, dense(3, "softmax")], CLASSIFIER),
    "conv2d_dilation_reshape_avgpool": lambda tmp: (table(tmp, "conv_c", 72, "real"), 72, [
        {"type": "reshape", "shape": [2, 6, -1]}, conv2d(2, 2, dilation=2, padding=2, stride=[1, 2]),
        {"type": "avgpool2d", "size": [2, 1]}, {"type": "flatten"}, dense(1)], {}),
    "conv1d_avgpool": lambda tmp: (table(tmp, "conv1", 24, "real"), [2, 12], [
        {"type": "conv1d", "channels": 4, "kernel": 3, "padding": 1, "dilation": 2, "activation": "relu"},
        {"type": "avgpool1d", "size": 2}, {"type": "flatten"}, dense(1)], {}),
    "conv1d_stride_maxpool_unnormalized": lambda tmp: (table(tmp, "conv1b", 24, "real"), [2, 12], [
        {"type": "conv1d", "channels": 3, "kernel": 2, "stride": 2, "activation": "softplus"},
        {"type": "maxpool1d", "size": 3, "stride": 2}, {"type": "flatten"}, dense(1)],
        {"data": {"normalize": "none"}}),
    **{f"{kind}_{'sequences' if seq else 'last'}": recurrent(kind, seq)
       for kind in ("rnn", "lstm", "gru") for seq in (True, False)},
    "stacked_lstm_float64_classifier": lambda tmp: (sequences(tmp, "lstm64", classes=True), [5, 3], [
        {"type": "lstm", "units": 3, "return_sequences": True}, {"type": "lstm", "units": 2}, dense(2, "softmax")],
        {**CLASSIFIER, "dtype": "float64"}),
}


def train_architecture(tmp, name):
    (path, X), input_shape, layers, sections = ARCHITECTURES[name](tmp)
    return train_config(tmp, config(path, input_shape, layers, **sections)).run_dir, X


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (run directory, raw X), each architecture trained once, on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = train_architecture(tmp_path_factory.mktemp(name), name)
        return cache[name]

    return get


def flat32(X):
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1)


def onnx_outputs(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"features": flat32(X)})))


def torch_outputs(model, X):
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(X), dtype=dtype)).numpy()


def float64_run(run):
    """The same run with its network rebuilt in float64 (the float32 weights, widened)."""
    net = build_network(run.config, dtype=np.float64)
    load_weights_into(net, run.path)
    return dataclasses.replace(run, net=net)


# -- every architecture, every format --------------------------------------------------------

@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnx_matches_netcli(trained, name):
    run_dir, X = trained(name)
    run = netcli.load_run(run_dir)
    path = export(run_dir, "onnx")
    assert path == run_dir / "model.onnx"
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    got = onnx_outputs(path, X)
    want = run.outputs(X)
    assert got["output"].dtype == np.float32 and got["output"].shape == want.shape
    np.testing.assert_allclose(got["output"], want, rtol=F32, atol=F32)
    assert np.abs(want).max() > 1e-3   # not a trivially zero output
    if run.task.classifies:
        assert np.array_equal(got["label"], run.predict(X)), (got["label"][:5], run.predict(X)[:5])
    else:
        assert set(got) == {"output"}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["task"] == run.task.name and json.loads(props["input_shape"]) == list(run.net.input_shape)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torch_state_dict_loads_strictly_and_matches(trained, name):
    from netcli.export.torch_model import build_sequential

    run_dir, X = trained(name)
    run = netcli.load_run(run_dir)
    path = export(run_dir, "torch")
    assert path == run_dir / "model.pt"
    state = torch.load(path)
    fresh = build_sequential(run, weights=False)      # PyTorch's own initial values
    before = torch_outputs(fresh, X)
    fresh.load_state_dict(state, strict=True)
    got = torch_outputs(fresh, X)
    want = run.outputs(X)
    np.testing.assert_allclose(got, want, rtol=F32, atol=F32)
    assert not np.allclose(before, want, atol=1e-3), "the fresh model already matched: the test proves nothing"
    # in float64 against netcli's float64 forward of the same weights
    run64 = float64_run(run)
    model64 = build_sequential(run, weights=False, dtype=torch.float64)
    model64.load_state_dict(state, strict=True)     # float32 tensors, copied into float64 ones
    np.testing.assert_allclose(torch_outputs(model64, X), run64.outputs(X), rtol=F64, atol=F64)


@pytest.mark.parametrize("name", ["mlp_classifier", "lstm_last", "tied_autoencoder"])
def test_safetensors_round_trip(trained, name):
    from safetensors import safe_open

    run_dir, _ = trained(name)
    run = netcli.load_run(run_dir)
    path = export(run_dir, "safetensors", out=run_dir.parent / "weights.safetensors")
    tensors = st_numpy.load_file(path)
    with np.load(run_dir / "weights.npz", allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    numeric = {k for k, v in stored.items() if v.dtype.kind in "fiub"}
    assert set(tensors) == numeric and set(run.net.params) <= numeric and "meta.offset" in numeric
    for k in numeric:
        assert tensors[k].dtype == stored[k].dtype and np.array_equal(tensors[k], stored[k]), k
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["task"] == run.task.name and meta["normalize"] == "standard"
    assert meta["netcli_version"] == netcli.__version__ and meta["dtype"] == "float32"
    assert json.loads(meta["input_shape"]) == list(run.net.input_shape)
    layers = json.loads(meta["model"])["layers"]
    assert [layer["type"] for layer in layers] == [b.type for b in run.config.spec.model.layers]
    if run.classes is not None:
        assert json.loads(meta["classes"]) == [str(c) for c in run.classes]
    else:
        assert "classes" not in meta


# -- the command line --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_cli_prints_the_path_on_stdout(trained, tmp_path, fmt):
    run_dir, _ = trained("mlp_classifier")
    result = invoke("export", run_dir, "--format", fmt, "--out", tmp_path / f"m.{fmt}")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / f'm.{fmt}'}\n"
    assert (tmp_path / f"m.{fmt}").stat().st_size > 100
    assert f"as {fmt}" in result.stderr                      # the talk goes to stderr
    default = invoke("export", run_dir, "--format", fmt)
    assert default.exit_code == 0 and default.stdout == f"{run_dir / FORMATS[fmt].filename}\n"


@pytest.mark.parametrize("fmt, module, extra", [("onnx", "onnx", "export"), ("torch", "torch", "torch"),
                                                ("safetensors", "safetensors.numpy", "export")])
def test_a_missing_library_is_one_error_line(trained, tmp_path, monkeypatch, fmt, module, extra):
    run_dir, _ = trained("mlp_classifier")
    monkeypatch.setitem(sys.modules, module, None)           # `import module` now raises ImportError
    result = invoke("export", run_dir, "--format", fmt, "--out", tmp_path / "m")
    err = assert_user_error(result, 2, f"pip install 'netcli[{extra}]'")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_bad_out_folder_and_unknown_format(trained, tmp_path):
    run_dir, _ = trained("mlp_classifier")
    assert_user_error(invoke("export", run_dir, "--format", "onnx", "--out", tmp_path / "no" / "m.onnx"),
                      2, "does not exist")
    result = invoke("export", run_dir, "--format", "tflite")
    assert result.exit_code == 2 and "tflite" in result.stderr


# -- preprocessing the graph does itself: category columns refused, imputation in the graph ------

def with_gaps(tmp_path, name: str, X: np.ndarray, extra: dict | None = None, y=None):
    """A CSV of X with empty cells where X is NaN (and extra columns of text), target y."""
    extra = extra or {}
    y = np.arange(len(X)) % 2 if y is None else y
    rows = [["" if np.isnan(v) else repr(float(v)) for v in row] + [c[i] for c in extra.values()] + [y[i]]
            for i, row in enumerate(X)]
    return write_csv(tmp_path / f"{name}.csv", [f"f{j}" for j in range(X.shape[1])] + list(extra) + ["y"], rows)


def test_imputed_cells_are_filled_in_the_graph(tmp_path):
    """A run trained with data.impute: NaN in the exported model's input is filled with the run's
    training means, as netcli predict fills an empty cell."""
    from netcli.export.torch_model import build_sequential

    X = raw_features(np.random.default_rng(5), ROWS, 4)
    holes = X.copy()
    holes[::3, 1] = np.nan
    holes[1::4, 3] = np.nan
    path = with_gaps(tmp_path, "gaps", holes)
    run_dir = train_config(tmp_path, config(path, 4, [dense(5, "tanh"), dense(1)],
                                            data={"impute": "mean"})).run_dir
    run = netcli.load_run(run_dir)
    assert run.prep.fill is not None and np.isfinite(run.prep.fill).all()
    want = run.outputs(holes)
    assert np.isfinite(want).all()
    got = onnx_outputs(export(run_dir, "onnx"), holes)["output"]
    np.testing.assert_allclose(got, want, rtol=F32, atol=F32)
    assert not np.allclose(want, run.outputs(np.nan_to_num(holes)), atol=1e-3)   # the fill mattered
    np.testing.assert_allclose(torch_outputs(build_sequential(run), holes), want, rtol=F32, atol=F32)
    tensors = st_numpy.load_file(export(run_dir, "safetensors"))
    assert np.array_equal(tensors["meta.fill"], run.prep.fill)


def test_category_columns_are_refused(tmp_path):
    X = raw_features(np.random.default_rng(6), ROWS, 2)
    colour = np.array(["red", "blue", "green"])[np.arange(ROWS) % 3]
    path = with_gaps(tmp_path, "colours", X, {"colour": colour})
    run_dir = train_config(tmp_path, config(path, "auto", [dense(3, "relu"), dense(1)])).run_dir
    assert netcli.load_run(run_dir).prep.categories == {"colour": ["blue", "green", "red"]}
    for fmt in FORMATS:
        result = invoke("export", run_dir, "--format", fmt, "--out", tmp_path / "m")
        assert_user_error(result, 2, "does not one-hot string columns yet", "colour")
        assert not (tmp_path / "m").exists()


def test_raw_input_without_the_new_fields():
    """A preprocessing record from before categories and fill existed still exports."""
    from types import SimpleNamespace
    old = SimpleNamespace(offset=np.zeros(4), scale=np.ones(4))
    raw = raw_input(old, (2, 2), "run")
    assert raw.fill is None and raw.n_features == 4 and raw.input_shape == (2, 2)
    with pytest.raises(NetcliError, match="3 values but the model takes 4"):
        raw_input(SimpleNamespace(offset=np.zeros(3), scale=np.ones(3)), (4,), "run")


# -- what cannot be exported is an error, not a wrong model -------------------------------------

def test_every_registered_layer_and_activation_has_an_export_form():
    """Registering a layer or activation without an ONNX and a PyTorch form fails here."""
    from netcli.export import onnx_graph, torch_model
    assert onnx_graph.supported_layers() == LAYERS.names() == torch_model.supported_layers()
    names = lambda table: sorted(c.registered_name for c in table)   # noqa: E731
    assert names(onnx_graph.ACTIVATION_OPS) == ACTIVATIONS.names() == names(torch_model.ACTIVATIONS)


def test_an_activation_without_an_export_form_is_refused(tmp_path, broken_activation):
    path, _ = table(tmp_path, "broken", 3, "real")
    run_dir = train_config(tmp_path, config(path, 3, [dense(4, broken_activation), dense(1)])).run_dir
    for fmt in ("onnx", "torch"):
        result = invoke("export", run_dir, "--format", fmt)
        assert_user_error(result, 2, f"activation '{broken_activation}' has no")
        assert not (run_dir / FORMATS[fmt].filename).exists()


def test_a_layer_without_an_export_form_is_refused(trained, monkeypatch):
    from netcli.export import onnx_graph, torch_model
    from netcli.nn.layers.maxout import Maxout

    run_dir, _ = trained("maxout_binary")
    monkeypatch.delitem(onnx_graph.CONVERTERS, Maxout)
    monkeypatch.delitem(torch_model.MODULES, Maxout)
    for fmt in ("onnx", "torch"):
        assert_user_error(invoke("export", run_dir, "--format", fmt), 2, "model.layers[0]", "maxout(4, pieces=3)",
                          "has no")
