"""netcli.sklearn: NetClassifier and NetRegressor as scikit-learn estimators, and dict configs
for netcli.train. Every fit here trains in memory unless the test asks for a run_dir."""

from __future__ import annotations

import copy
import importlib
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import netcli
from netcli.errors import ConfigError, DataError
from netcli.sklearn import EXPECTED_FAILED_CHECKS, InputError, NetClassifier, NetRegressor, ParameterError

from helpers import DIGITS_TEST, DIGITS_TRAIN, REGRESSION_TRAIN, ROOT, digits_config, invoke

HIDDEN = [{"type": "dense", "units": 32, "activation": "relu"}]
# small and quick: scikit-learn's checks fit these a hundred times on data of 20-300 rows
CHECKED = dict(layers=[{"type": "dense", "units": 16, "activation": "relu"}], lr=0.02, epochs=30,
               batch_size=32, normalize="standard")


@pytest.fixture(scope="module")
def digits():
    """(X_train, y_train, X_test, y_test): DataFrames of the 64 pixel columns, label Series."""
    train, test = pd.read_csv(DIGITS_TRAIN), pd.read_csv(DIGITS_TEST)
    return train.drop(columns="label"), train["label"], test.drop(columns="label"), test["label"]


def small(**kwargs) -> dict:
    return {"layers": HIDDEN, "lr": 0.01, "epochs": 10, "normalize": "standard", **kwargs}


# -- scikit-learn's own checks -----------------------------------------------------

@parametrize_with_checks([NetClassifier(**CHECKED), NetRegressor(**CHECKED)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- training and predicting -------------------------------------------------------

def test_digits_classifier_is_accurate_and_sets_sklearn_attributes(digits):
    X, y, Xt, yt = digits
    clf = NetClassifier(**small()).fit(X, y)
    assert clf.score(Xt, yt) > 0.9
    assert list(clf.classes_) == list(range(10))
    assert clf.n_features_in_ == 64
    assert list(clf.feature_names_in_) == [f"p{i}" for i in range(64)]
    assert clf.n_iter_ == 10 and len(clf.history_) == 10
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.run_dir_ is None
    # the network is 64-32-10: the hidden layer given, the output layer from the data's classes
    assert [block.args["units"] for block in clf.run_.config.spec.model.layers] == [32, 10]


def test_fit_writes_no_files(tmp_path, monkeypatch, digits):
    X, y, _, _ = digits
    monkeypatch.chdir(tmp_path)
    NetClassifier(**small(epochs=2)).fit(X, y)
    assert list(tmp_path.iterdir()) == []


def test_same_predictions_as_the_cli_on_the_same_file(tmp_path, digits):
    X, y, Xt, _ = digits
    config = ROOT / "configs" / "digits_mlp.yaml"
    result = invoke("train", config, "--set", "training.epochs=3", "--run-dir", tmp_path / "cli", "-q")
    assert result.exit_code == 0, result.stderr
    cli_run = netcli.load_run(tmp_path / "cli")
    clf = NetClassifier(config, epochs=3).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(Xt), cli_run.outputs(Xt), rtol=0, atol=1e-6)
    assert (clf.predict(Xt) == cli_run.predict(Xt)).all()
    # the config's own blocks are kept: 256 hidden units, l2 1e-3, the cosine schedule
    spec = clf.run_.config.spec
    assert spec.model.layers[0].args["units"] == 256 and spec.regularization.l2 == 1e-3
    assert spec.training.schedule.type == "cosine" and spec.training.epochs == 3
    # arrays (columns by position) give the same numbers as the DataFrame (columns by name)
    by_position = NetClassifier(config, epochs=3).fit(X.to_numpy(), y.to_numpy())
    np.testing.assert_allclose(by_position.predict_proba(Xt.to_numpy()), clf.predict_proba(Xt), atol=1e-6)


def test_run_dir_keeps_a_run_the_cli_can_use(tmp_path, digits):
    X, y, Xt, _ = digits
    run_dir = tmp_path / "kept"
    clf = NetClassifier(**small(epochs=3), run_dir=run_dir).fit(X, y)
    assert clf.run_dir_ == run_dir
    assert {"config.yaml", "weights.npz", "checkpoint.npz", "metrics.jsonl", "summary.json"} <= \
        {p.name for p in run_dir.iterdir()}
    in_memory = NetClassifier(**small(epochs=3)).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(Xt), in_memory.predict_proba(Xt))
    predicted = invoke("predict", run_dir, "--data", DIGITS_TEST)   # features by name, label ignored
    assert predicted.exit_code == 0, predicted.stderr
    assert [int(v) for v in predicted.stdout.split()] == list(clf.predict(Xt))
    first = clf.predict_proba(Xt)
    clf.fit(X.iloc[:500], y.iloc[:500])             # refitting replaces the run
    np.testing.assert_array_equal(netcli.load_run(run_dir).outputs(Xt), clf.predict_proba(Xt))
    assert np.abs(clf.predict_proba(Xt) - first).max() > 1e-3


def test_same_seed_same_predictions_other_seed_others(digits):
    X, y, Xt, _ = digits
    a = NetClassifier(**small(epochs=3), random_state=1).fit(X, y).predict_proba(Xt)
    b = NetClassifier(**small(epochs=3), random_state=1).fit(X, y).predict_proba(Xt)
    c = NetClassifier(**small(epochs=3), seed=1).fit(X, y).predict_proba(Xt)
    d = NetClassifier(**small(epochs=3), random_state=2).fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)               # seed is netcli's name for random_state
    assert np.abs(a - d).max() > 1e-3
    with pytest.raises(ParameterError, match="random_state=1 and seed=2: both set the config's seed"):
        NetClassifier(**small(), random_state=1, seed=2).fit(X, y)


def test_regressor_one_and_several_targets():
    data = pd.read_csv(REGRESSION_TRAIN)
    X, y = data.drop(columns="y"), data["y"]
    reg = NetRegressor(**small(epochs=30)).fit(X, y)
    assert reg.predict(X).shape == (len(X),) and reg.score(X, y) > 0.8
    Y = np.column_stack([y, -2 * y])
    two = NetRegressor(**small(epochs=30)).fit(X, Y)
    assert two.predict(X).shape == (len(X), 2) and two.n_outputs_ == 2
    assert two.score(X, Y) > 0.8
    assert two.run_.config.spec.model.layers[-1].args == {"units": 2, "activation": "linear"}


def test_binary_cross_entropy_with_text_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = NetClassifier(**small(epochs=20), loss="binary_cross_entropy").fit(X, y)
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.run_.config.spec.model.layers[-1].args == {"units": 1, "activation": "sigmoid"}
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2)
    assert set(clf.predict(X)) == {"no", "yes"} and clf.score(X, y) > 0.9
    assert (clf.predict(X) == clf.classes_[proba.argmax(axis=1)]).all()


def test_a_dict_config_early_stopping_and_verbose(digits, capsys):
    X, y, _, _ = digits
    config = {"model": {"layers": [*HIDDEN, {"type": "dense", "units": "auto", "activation": "softmax"}]},
              "optimizer": {"type": "adam", "lr": 0.01}, "data": {"normalize": "standard"}}
    clf = NetClassifier(config, epochs=200, validation_split=0.2, early_stopping={"patience": 2}).fit(X, y)
    assert clf.n_iter_ < 200 and "val_loss" in clf.history_[0]
    assert [b.args["units"] for b in clf.run_.config.spec.model.layers] == [32, 10]   # no second output layer
    assert capsys.readouterr().err == ""
    NetClassifier(config, epochs=2, verbose=True).fit(X, y)
    err = capsys.readouterr().err
    assert "1437 rows for training" in err and "epoch 2" in err
    with pytest.raises(ParameterError, match=r"^<dict>: training.epochs: must be > 0, got -1"):
        NetClassifier({**config, "training": {"epochs": -1}}).fit(X, y)


# -- scikit-learn's tools -----------------------------------------------------------

def test_pipeline_with_a_standard_scaler_is_normalize_standard(digits):
    X, y, Xt, yt = digits
    X, Xt = X.to_numpy(), Xt.to_numpy()
    # in float64, so that the only difference could be the order of the arithmetic
    piped = make_pipeline(StandardScaler(), NetClassifier(**small(normalize=None), dtype="float64")).fit(X, y)
    inside = NetClassifier(**small(), dtype="float64").fit(X, y)
    assert piped.score(Xt, yt) > 0.9
    np.testing.assert_allclose(piped.predict_proba(Xt), inside.predict_proba(Xt), atol=1e-9)


def test_grid_search_over_the_optimizer_and_epochs(digits):
    X, y, _, _ = digits
    grid = {"optimizer": [{"type": "sgd", "lr": 1e-4}, {"type": "adam", "lr": 0.01}], "epochs": [1, 4]}
    search = GridSearchCV(NetClassifier(layers=HIDDEN, normalize="standard"), grid, cv=3).fit(X[:600], y[:600])
    assert search.best_params_ == {"optimizer": {"type": "adam", "lr": 0.01}, "epochs": 4}
    scores = dict(zip(map(str, search.cv_results_["params"]), search.cv_results_["mean_test_score"]))
    assert scores[str({"epochs": 4, "optimizer": {"type": "adam", "lr": 0.01}})] > 0.85
    assert scores[str({"epochs": 1, "optimizer": {"type": "sgd", "lr": 1e-4}})] < 0.5
    assert search.best_estimator_.n_iter_ == 4


def test_grid_search_over_lr():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    search = GridSearchCV(NetClassifier(layers=[], optimizer="sgd", epochs=3), {"lr": [1e-5, 0.5]}, cv=3).fit(X, y)
    assert search.best_params_ == {"lr": 0.5}
    assert search.best_estimator_.run_.config.spec.optimizer.model_dump() == {"type": "sgd", "lr": 0.5}


def test_cross_val_score_is_reproducible(digits):
    X, y, _, _ = digits
    clf = NetClassifier(**small(epochs=4))
    first = cross_val_score(clf, X, y, cv=3)
    assert first.shape == (3,) and (first > 0.85).all()
    np.testing.assert_array_equal(first, cross_val_score(clf, X, y, cv=3))


def test_clone_keeps_the_params_and_none_of_the_fit(digits):
    X, y, _, _ = digits
    clf = NetClassifier(layers=[{"type": "dense", "units": 8, "activation": "tanh"}],
                        optimizer={"type": "momentum", "lr": 0.05}, epochs=2, l2=1e-3, random_state=4)
    clf.fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "run_") and not hasattr(twin, "classes_")
    twin.layers[0]["units"] = 99                      # a deep copy: the original keeps its layers
    assert clf.layers[0]["units"] == 8
    twin.set_params(epochs=5, layers=clf.layers)
    assert twin.epochs == 5 and clf.epochs == 2
    np.testing.assert_array_equal(clone(clf).fit(X, y).predict_proba(X), clf.predict_proba(X))


# -- DataFrames ----------------------------------------------------------------------

def _colours(n=240, seed=0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], size=n)
    x = rng.normal(size=n)
    label = np.where(colour == "red", "warm", np.where(x > 0, "warm", "cold"))
    frame = pd.DataFrame({"x": x, "colour": colour, "noise": rng.normal(size=n)})
    return frame, pd.Series(label, name="label")


def test_dataframe_with_a_text_column_taken_by_name():
    X, y = _colours()
    clf = NetClassifier(**small(epochs=40)).fit(X, y)
    assert clf.run_.prep.categories == {"colour": ["blue", "green", "red"]}
    assert clf.n_features_in_ == 3 and list(clf.feature_names_in_) == ["x", "colour", "noise"]
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    shuffled = X[["noise", "colour", "x"]].assign(extra=1.0)       # reordered, one column more
    np.testing.assert_array_equal(clf.predict_proba(shuffled), proba)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(shuffled), proba)
    unseen = X.assign(colour=["purple"] + list(X["colour"][1:]))
    with pytest.raises(InputError, match=r"row 0 .*'colour'.*category 'purple'.*blue, green, red"):
        clf.predict(unseen)
    with pytest.raises(ValueError, match="'noise'"):                  # InputError is a ValueError
        clf.predict(X.drop(columns="noise"))
    with pytest.raises(InputError, match="one-hot encodes colour: pass a pandas DataFrame"), \
            pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(X.assign(colour=0.0).to_numpy())


# -- mistakes -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": {"type": "adam", "lrr": 0.1}},
     "NetClassifier(optimizer=...): optimizer.lrr: unknown key; did you mean 'lr'?"),
    ({"layers": [{"type": "dense", "units": -3, "activation": "relu"}]},
     "NetClassifier(layers=...): model.layers[0].units: must be > 0, got -3"),
    ({"epochs": 0}, "NetClassifier(epochs=...): training.epochs: must be > 0, got 0"),
    ({"normalize": "zscore"}, "NetClassifier(normalize=...): data.normalize: "),
    ({"loss": "mse"}, "NetClassifier(loss=...): loss: 'mse' is not a classification loss"),
    ({"early_stopping": True}, "NetClassifier(early_stopping=...): training.early_stopping: needs validation data"),
    ({"overrides": ["training.clip_grad_norm=-1"]},
     "NetClassifier(overrides=...): training.clip_grad_norm: must be > 0.0, got -1"),
])
def test_a_bad_argument_names_the_argument_and_the_key(kwargs, message, digits):
    X, y, _, _ = digits
    clf = NetClassifier(**kwargs)                      # scikit-learn: __init__ only stores
    with pytest.raises(ParameterError) as caught:
        clf.fit(X, y)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConfigError)


def test_a_mistake_in_the_config_file_names_its_line(tmp_path, digits):
    X, y, _, _ = digits
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 0\nmodel:\n  layers:\n    - {type: dense, units: 8, activaton: relu}\n")
    with pytest.raises(ParameterError, match=r"bad.yaml:4: model.layers\[0\].activaton: unknown key"):
        NetClassifier(path).fit(X, y)
    NetClassifier(path, layers=HIDDEN, epochs=1).fit(X, y)          # the argument replaces those layers


def test_regressor_refuses_a_classification_loss():
    with pytest.raises(ParameterError, match=r"NetRegressor\(loss=...\): loss: 'cross_entropy' is not a regression"):
        NetRegressor(loss="cross_entropy").fit(np.ones((4, 2)), np.arange(4.0))


def test_bad_data_is_a_value_error():
    with pytest.raises(ValueError, match="1 class"):
        NetClassifier().fit(np.ones((5, 2)), np.zeros(5))
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match=r"row 1 \(counting from 0\), column 1 \('a'\): value is nan") as caught:
        NetRegressor().fit(frame, [1.0, 2.0, 3.0])
    assert isinstance(caught.value, DataError)
    reg = NetRegressor(impute="mean", epochs=1).fit(frame, [1.0, 2.0, 3.0])   # data.impute fills it
    assert np.isfinite(reg.predict(frame)).all()


def test_without_scikit_learn_the_import_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "netcli.sklearn")
    with pytest.raises(ImportError, match=r"pip install 'netcli\[sklearn\]'"):
        importlib.import_module("netcli.sklearn")


# -- dict configs for netcli.train ------------------------------------------------------

def test_netcli_train_takes_a_dict_config(tmp_path):
    config = digits_config()
    config["training"]["epochs"] = 1
    config["model"]["layers"] = tuple(config["model"]["layers"])   # a tuple is a YAML list
    config["model"]["layers"][0]["units"] = np.int64(8)           # a NumPy scalar, a number
    before = copy.deepcopy(config)
    result = netcli.train(config, runs_base=tmp_path)
    assert config == before                                    # the dict is not changed
    assert result.summary["status"] == "finished" and result.summary["config"] == "<dict>"
    assert result.run_dir.parent == tmp_path and result.run_dir.name.startswith("config-")
    kept = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert kept["model"]["layers"][0]["units"] == 8 and kept["data"]["train"] == str(DIGITS_TRAIN)
    assert netcli.load_run(result.run_dir).predict(pd.read_csv(DIGITS_TEST)).shape == (360,)


def test_a_bad_dict_config_names_the_key(tmp_path):
    config = digits_config(optimizer={"type": "adam", "lr": -1.0})
    config["model"]["layers"][0]["units"] = -3
    with pytest.raises(ConfigError) as caught:
        netcli.train(config, runs_base=tmp_path)
    assert str(caught.value).splitlines() == ["<dict>: model.layers[0].units: must be > 0, got -3",
                                              "<dict>: optimizer.lr: must be > 0.0, got -1.0"]
    assert list(tmp_path.iterdir()) == []
