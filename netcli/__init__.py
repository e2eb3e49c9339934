"""netcli: neural networks written directly in NumPy, trained from YAML configs.

Notebook use:
    result = netcli.train("configs/digits_mlp.yaml")     # TrainResult(run_dir, summary)
    netcli.load_run(result.run_dir).predict(X)
    netcli.train({"data": {...}, "model": {...}})        # a dict config, checked as a YAML file is

scikit-learn estimators on the same configs: netcli.sklearn.NetClassifier, NetRegressor
(pip install 'netcli[sklearn]').
"""

__version__ = "0.1.0"


def train(config, **kwargs):
    """Train a config (a YAML path, a dict of the YAML's keys, or a Config) into a new run
    directory -> TrainResult(run_dir, summary). A dict is validated as a file is; its mistakes
    name `<dict>` and the key path. Keyword arguments as netcli.training.train (run_dir,
    runs_base, overrides, ...)."""
    from netcli.training import train as _train
    return _train(config, **kwargs)


def load_run(path):
    """A trained run, ready to predict: netcli.load_run("runs/latest").predict(X)."""
    from netcli.api import load_run as _load_run
    return _load_run(path)


__all__ = ["__version__", "train", "load_run"]
