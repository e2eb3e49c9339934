"""netcli: neural networks written directly in NumPy, trained from YAML configs.

Notebook use:
    run = netcli.train("configs/digits_mlp.yaml")
    netcli.load_run(run.run_dir).predict(X)
"""

__version__ = "0.1.0"


def train(config, **kwargs):
    """Train a config (path or Config) -> the finished Run (run.path, run.summary, run.predict)."""
    from netcli.api import load_run as _load_run
    from netcli.training import train as _train
    result = _train(config, **kwargs)
    run = _load_run(result.run_dir)
    run.summary = result.summary
    return run


def load_run(path):
    """A finished run, ready to predict: netcli.load_run("runs/latest").predict(X)."""
    from netcli.api import load_run as _load_run
    return _load_run(path)


__all__ = ["__version__", "train", "load_run"]
