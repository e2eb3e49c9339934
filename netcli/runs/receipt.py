"""receipt.json: what a run was made from and what it made, so that it can be checked later.

    data.<role>         {path, sha256, bytes} of each data file the config names (train, val,
                        test; model.init_from; an NPY target file): SHA-256 of the file's bytes.
                        Standard input (-) is hashed as it is read when the command watched it
                        (`hashing_stdin`); otherwise sha256 is null and the note says "stdin"
    config_sha256       SHA-256 of config.yaml as it was when the receipt was written
    seed                the config's seed
    theta               {sha256, dtype, size}: SHA-256 of the final flat parameter vector's bytes
                        (C order, the run's dtype): the parameters weights.npz holds
    status              finished, interrupted or diverged (theta is the state that status kept)
    software            netcli, Python, NumPy, SciPy versions; the platform
    blas                NumPy's BLAS as built (np.show_config) and each thread pool threadpoolctl
                        sees at the end of training: library, version, architecture, num_threads

Written by the training loop at the end of a run, and when an interrupt or a divergence keeps
the last good epoch. `netcli train --check RUN` retrains from config.yaml and compares theta;
`netcli diff` compares the data hashes of two runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from netcli import __version__
from netcli.errors import NetcliError
from netcli.files import read_json

RECEIPT = "receipt.json"
DATA_ROLES = ("train", "val", "test")
STDIN = "-"


# -- hashes -----------------------------------------------------------------------------

def sha256_file(path: str | Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a file's contents, read in chunks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def theta_sha256(theta: np.ndarray) -> str:
    """SHA-256 of a parameter vector's bytes in C order (dtype as it is: float32 and float64
    vectors of equal values hash differently)."""
    return hashlib.sha256(np.ascontiguousarray(theta).tobytes()).hexdigest()


# -- standard input ---------------------------------------------------------------------

class _HashingReader(io.RawIOBase):
    """A binary stream that hashes every byte read through it."""

    def __init__(self, raw):
        super().__init__()
        self.raw = raw
        self.hash = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.bytes += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _WatchedStdin:
    """sys.stdin with its .buffer hashed; everything else is the real stdin's."""

    def __init__(self, stdin):
        self._stdin = stdin
        self.buffer = _HashingReader(stdin.buffer)

    def __getattr__(self, name):
        return getattr(self._stdin, name)


_watched: _WatchedStdin | None = None


@contextmanager
def hashing_stdin():
    """Within the block, the bytes read from sys.stdin.buffer are hashed, so a run that reads
    its data from standard input (`data.train: -`) records what it read."""
    global _watched
    saved, saved_watched = sys.stdin, _watched
    if saved is None or not hasattr(saved, "buffer"):
        yield
        return
    _watched = sys.stdin = _WatchedStdin(saved)
    try:
        yield
    finally:
        sys.stdin, _watched = saved, saved_watched


def _stdin_entry() -> dict:
    if _watched is not None and _watched.buffer.bytes:
        return {"path": STDIN, "sha256": _watched.buffer.hash.hexdigest(), "bytes": _watched.buffer.bytes,
                "note": "stdin: the hash of the bytes read"}
    return {"path": STDIN, "sha256": None, "bytes": None, "note": "stdin"}


# -- the receipt ------------------------------------------------------------------------

def data_files(spec) -> dict[str, str]:
    """role -> path of each file a config's data and model.init_from name (an NPY target file too)."""
    d = spec.data
    files = {role: getattr(d, role) for role in DATA_ROLES if getattr(d, role)}
    if isinstance(d.target, str) and d.target.lower().endswith(".npy") and os.path.isfile(d.target):
        files["target"] = d.target
    init_from = spec.model.init_from
    if init_from:
        p = Path(init_from)
        files["init_from"] = str(p / "weights.npz" if p.is_dir() else p)
    return files


def data_entry(path: str) -> dict:
    if path == STDIN:
        return _stdin_entry()
    try:
        digest, size = sha256_file(path)
    except OSError as e:
        return {"path": path, "sha256": None, "bytes": None, "note": f"cannot read it ({e.strerror or e})"}
    return {"path": path, "sha256": digest, "bytes": size}


def environment() -> dict:
    """Versions, platform, BLAS and its threads, as this process sees them now."""
    import scipy
    from threadpoolctl import threadpool_info

    pools = [{k: info.get(k) for k in ("user_api", "internal_api", "prefix", "version", "architecture",
                                      "threading_layer", "num_threads")} for info in threadpool_info()]
    try:
        built = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_blas = {k: built.get(k) for k in ("name", "version", "openblas configuration") if k in built}
    except Exception:   # another NumPy's show_config
        numpy_blas = None
    return {"software": {"netcli": __version__, "python": platform.python_version(), "numpy": np.__version__,
                         "scipy": scipy.__version__},
            "platform": {"system": platform.system(), "machine": platform.machine(),
                         "processor": platform.processor() or None, "cpu_count": os.cpu_count()},
            "blas": {"numpy_build": numpy_blas, "threadpools": pools}}


def make_receipt(run_path: Path, spec, theta: np.ndarray, status: str) -> dict:
    config = Path(run_path) / "config.yaml"
    return {"netcli_receipt": 1,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": status,
            "seed": spec.seed,
            "data": {role: data_entry(path) for role, path in data_files(spec).items()},
            "config_sha256": sha256_file(config)[0] if config.exists() else None,
            "theta": {"sha256": theta_sha256(theta), "dtype": str(theta.dtype), "size": int(theta.size)},
            **environment()}


def write_receipt(run, spec, theta: np.ndarray, status: str) -> None:
    """receipt.json into a RunDir, for theta as training leaves it."""
    run.write_json(RECEIPT, make_receipt(run.path, spec, theta, status))


def read_receipt(run_path: str | Path) -> dict:
    """A run's receipt.json; a run without one (trained before receipts, or still training) is a
    NetcliError that says so."""
    path = Path(run_path) / RECEIPT
    if not path.exists():
        raise NetcliError(f"{run_path}: has no {RECEIPT}: the run was made before netcli wrote receipts, "
                          f"or has not ended yet; train it again to get one")
    receipt = read_json(path)
    if not isinstance(receipt, dict) or not isinstance(receipt.get("theta"), dict) \
            or not isinstance(receipt.get("data"), dict):
        raise NetcliError(f"{path}: cannot read it as a receipt; the file is damaged or not netcli's")
    return receipt
