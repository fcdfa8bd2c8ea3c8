"""Offline data sets: shapes, seeding, caching."""

from __future__ import annotations

import numpy as np
import torch

from nnsens.data import digits, digits_images, mnist1d_split, sequences


def test_digits_shapes_and_split():
    xtr, ytr, xte, yte = digits(seed=0)
    assert xtr.shape[1:] == (1, 8, 8) and xtr.shape[0] + xte.shape[0] == 1797
    assert float(xtr.max()) <= 1.0 and set(ytr.tolist()) == set(range(10))
    assert digits(flat=True)[0].shape[1] == 64
    assert digits_images(32)[0].shape[1:] == (1, 32, 32)


def test_mnist1d_is_seeded_and_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSENS_CACHE", str(tmp_path))
    sequences._mnist1d_arrays.cache_clear()
    state = np.random.get_state()[1].copy()
    a = mnist1d_split(200, 100, seed=3)
    assert np.array_equal(np.random.get_state()[1], state), "the global numpy generator is left alone"
    assert a[0].shape == (200, 40) and a[2].shape == (100, 40) and a[1].dtype == torch.int64
    assert list(tmp_path.glob("mnist1d-*-200-100-3.npz"))
    sequences._mnist1d_arrays.cache_clear()  # now from disk
    b = mnist1d_split(200, 100, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = mnist1d_split(200, 100, seed=4)
    assert not torch.equal(a[0], c[0])
    sequences._mnist1d_arrays.cache_clear()
