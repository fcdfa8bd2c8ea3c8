"""mnist1d: procedurally generated 1-D digit signals (40 samples long), made locally from a seed."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch


def cache_dir() -> Path:
    """Where generated data sets are cached: ``NNSENS_CACHE``, else ``results/cache`` under the project root."""
    from nnsens.registry import project_root

    return Path(os.environ.get("NNSENS_CACHE") or project_root() / "results" / "cache")


@lru_cache(maxsize=4)
def _mnist1d_arrays(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """Generate (or load from the disk cache) the raw arrays; mnist1d builds samples in a Python loop (~0.8 ms
    each), so a 24k-sample draw costs ~19 s: worth caching across processes and sweep points."""
    version = metadata.version("mnist1d")
    path = cache_dir() / f"mnist1d-{version}-{n_train}-{n_test}-{seed}.npz"
    if path.exists():
        with np.load(path) as f:
            return tuple(f[k] for k in ("x", "y", "x_test", "y_test"))
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_train + n_test
    args.train_split = n_train / (n_train + n_test)
    args.seed = seed
    state = np.random.get_state()  # mnist1d seeds numpy's global generator: leave it as we found it
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    arrays = (np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64),
              np.asarray(data["x_test"], dtype=np.float32), np.asarray(data["y_test"], dtype=np.int64))
    try:  # atomic write: concurrent processes may generate the same set
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
        os.replace(tmp, path)
    except OSError:  # a read-only location only costs the regeneration next time
        pass
    return arrays


def mnist1d_split(
    n_train: int = 4000, n_test: int = 1000, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate mnist1d with ``n_train + n_test`` samples: ``(x_train, y_train, x_test, y_test)``.

    x is (N, 40) float32 standardized with the training statistics; y is int64 in [0, 10). Generated sets are
    cached in memory and on disk (see :func:`cache_dir`); the values do not depend on the cache.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"mnist1d_split needs n_train >= 1 and n_test >= 1. Got {n_train} and {n_test} instead.")
    xtr, ytr, xte, yte = _mnist1d_arrays(int(n_train), int(n_test), int(seed))
    mu, sd = xtr.mean(), xtr.std()
    return (
        torch.from_numpy((xtr - mu) / sd),
        torch.from_numpy(ytr.copy()),
        torch.from_numpy((xte - mu) / sd),
        torch.from_numpy(yte.copy()),
    )
