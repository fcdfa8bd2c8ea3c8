"""Neural conditional transport maps: sliced W2 against POT, identity at init, training, the index read-out."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from nnsens.methods.transport_maps import (
    ConcatTransport,
    HyperTransport,
    fit_transport,
    make_conditions,
    positional_encoding,
    sliced_w2,
    transport_indices,
)


def test_sliced_w2_matches_pot():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 50, 2, generator=g, dtype=torch.float64), torch.randn(3, 50, 2, generator=g,
                                                                                 dtype=torch.float64) + 1
    proj = torch.randn(2, 16, generator=g, dtype=torch.float64)
    proj = proj / proj.norm(dim=0, keepdim=True)
    ours = sliced_w2(a, b, proj)
    for j in range(3):
        ref = ot.sliced_wasserstein_distance(a[j], b[j], projections=proj, p=2) ** 2
        assert float(ours[j]) == pytest.approx(float(ref), rel=1e-8)


@pytest.mark.parametrize("cls", [HyperTransport, ConcatTransport])
def test_maps_start_as_identity_and_index_is_zero(cls):
    torch.manual_seed(0)
    net = cls(3, 2)
    y = torch.randn(4, 10, 2)
    out = net(y, torch.tensor([0, 1, 2, 0]), torch.zeros(4))
    assert out.shape == y.shape and torch.equal(out, y)
    x = np.random.default_rng(0).normal(size=(200, 3))
    conds = make_conditions(x, 4)
    assert np.allclose(transport_indices(net, torch.randn(200, 2), conds), 0.0)


def test_conditions_cover_every_row_once_per_input():
    x = np.random.default_rng(0).normal(size=(103, 2))
    c = make_conditions(x, 5)
    assert c.idx.tolist() == [0] * 5 + [1] * 5 and int(c.sizes.sum()) == 2 * 103
    for i in range(2):
        rows = torch.cat([c.members[k, : c.sizes[k]] for k in range(5 * i, 5 * i + 5)])
        assert sorted(rows.tolist()) == list(range(103))
    assert torch.all(c.x[1:5] > c.x[:4])  # bin means increase


def test_training_moves_mass_toward_the_bins_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 2))
    y = torch.tensor(np.stack([x[:, 0], 0.3 * rng.normal(size=800)], axis=1), dtype=torch.float32)
    conds = make_conditions(x, 4)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        net = HyperTransport(2, 2, hidden=4, width=16)
        hist = fit_transport(net, y, conds, steps=40, m=64, lr=1e-2, generator=3)
        runs.append(transport_indices(net, y, conds, n_eval=256))
    assert hist[-1] < hist[0]
    assert np.array_equal(runs[0], runs[1])
    assert runs[0][0] > 3 * runs[0][1]  # X1 drives Y, X2 does not


def test_positional_encoding_shape():
    pe = positional_encoding(torch.linspace(-1, 1, 5), 3)
    assert pe.shape == (5, 7) and torch.equal(pe[:, 0], torch.linspace(-1, 1, 5))
