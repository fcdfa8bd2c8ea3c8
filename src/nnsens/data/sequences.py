"""mnist1d: procedurally generated 1-D digit signals (40 samples long), made locally from a seed."""

from __future__ import annotations

import numpy as np
import torch


def mnist1d_split(
    n_train: int = 4000, n_test: int = 1000, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate mnist1d with ``n_train + n_test`` samples: ``(x_train, y_train, x_test, y_test)``.

    x is (N, 40) float32 standardized with the training statistics; y is int64 in [0, 10).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_train + n_test
    args.train_split = n_train / (n_train + n_test)
    args.seed = seed
    data = make_dataset(args)
    xtr = np.asarray(data["x"], dtype=np.float32)
    xte = np.asarray(data["x_test"], dtype=np.float32)
    mu, sd = xtr.mean(), xtr.std()
    return (
        torch.from_numpy((xtr - mu) / sd),
        torch.from_numpy(np.asarray(data["y"], dtype=np.int64)),
        torch.from_numpy((xte - mu) / sd),
        torch.from_numpy(np.asarray(data["y_test"], dtype=np.int64)),
    )
