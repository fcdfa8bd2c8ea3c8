"""scikit-learn's bundled digits set as tensors (8x8 images, 10 classes, 1,797 samples)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digits(
    *, test_size: float = 0.25, seed: int = 0, flat: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1], split stratified: ``(x_train, y_train, x_test, y_test)``.

    Images are (N, 1, 8, 8) float32, or (N, 64) when ``flat``.
    """
    ds = load_digits()
    x = (ds.images / 16.0).astype(np.float32)
    y = ds.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    shape = (-1, 64) if flat else (-1, 1, 8, 8)
    return (
        torch.from_numpy(xtr).reshape(shape),
        torch.from_numpy(ytr),
        torch.from_numpy(xte).reshape(shape),
        torch.from_numpy(yte),
    )


def digits_images(size: int = 32, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits upsampled bilinearly to (N, 1, size, size): a natural-ish image set without ground truth."""
    xtr, ytr, xte, yte = digits(seed=seed)
    up = lambda x: F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # noqa: E731
    return up(xtr), ytr, up(xte), yte
