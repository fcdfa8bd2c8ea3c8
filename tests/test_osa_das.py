"""OSA-DAS: the subspace distance against scipy.linalg.subspace_angles, a closed form with K = 1, batched =
unbatched, a constant model, seeding and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from nnsens.measures.osa_das import augmentations, grid_masks, osa_das, subspace_basis, subspace_distance


def _cnn() -> tuple[nn.Module, nn.Module]:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 12), nn.ReLU(),
                        nn.Linear(12, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return net.eval(), net[3]


def _images(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_subspace_distance_matches_scipy(rank):
    gen = torch.Generator().manual_seed(rank)
    a = torch.randn(6, 10, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(6, 10, 5, generator=gen, dtype=torch.float64)
    ua, ub = subspace_basis(a, rank), subspace_basis(b, rank)
    d = subspace_distance(ua, ub)
    for i in range(6):
        theta = scipy.linalg.subspace_angles(ua[i].numpy(), ub[i].numpy())
        assert d[i].item() == pytest.approx(1 - np.mean(np.cos(theta) ** 2), abs=1e-12)
    # same span -> 0; orthogonal spans -> 1
    q = torch.linalg.qr(torch.randn(10, 4, generator=gen, dtype=torch.float64))[0]
    assert subspace_distance(q[None, :, :2], q[None, :, :2]).item() == pytest.approx(0, abs=1e-12)
    assert subspace_distance(q[None, :, :2], q[None, :, 2:]).item() == pytest.approx(1, abs=1e-12)


def test_k1_is_one_minus_squared_cosine_of_feature_vectors():
    """With K = 1 and the identity as features, d of a window = 1 - cos^2(x, x occluded)."""
    x = _images(2).double()
    sal = osa_das(nn.Flatten(), x, window=4, n_augment=1, rank=1, generator=0)
    occ = grid_masks((8, 8), 4)
    for j in range(4):
        xo = (x * (1 - occ[j])).flatten(1)
        cos2 = (x.flatten(1) * xo).sum(1) ** 2 / (x.flatten(1).square().sum(1) * xo.square().sum(1))
        r, c = divmod(j, 2)
        torch.testing.assert_close(sal[:, 4 * r, 4 * c], 1 - cos2)
        assert torch.all(sal[:, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4] == sal[:, 4 * r, 4 * c, None, None])


def test_grid_masks_tile_the_image():
    m = grid_masks((8, 12), 4)
    assert m.shape == (6, 8, 12)
    assert torch.equal(m.sum(0), torch.ones(8, 12))
    ragged = grid_masks((7, 7), 4)  # truncated last row / column
    assert ragged.shape == (4, 7, 7) and torch.equal(ragged.sum(0), torch.ones(7, 7))


def test_augmentations_start_with_the_identity_and_stay_in_range():
    shifts, gains = augmentations(50, shift=2, brightness=0.1, generator=3)
    assert shifts[0].tolist() == [0, 0] and gains[0] == 1.0
    assert shifts.abs().max() <= 2 and (gains - 1).abs().max() <= 0.1


@pytest.mark.parametrize("masks", ["grid", "rise"])
def test_batched_equals_unbatched_and_seeding(masks):
    model, layer = _cnn()
    x = _images(3)
    kw = {"layer": layer, "window": 4, "n_augment": 4, "rank": 2, "masks": masks, "n_masks": 20}
    full = osa_das(model, x, generator=5, **kw)
    assert full.shape == (3, 8, 8) and full.dtype == x.dtype
    assert torch.isfinite(full).all() and full.min() >= -1e-6 and full.max() <= 1 + 1e-6
    small = osa_das(model, x, generator=5, internal_batch_size=5, **kw)
    torch.testing.assert_close(small, full, atol=1e-5, rtol=1e-5)
    one = osa_das(model, x[1:2], generator=5, **kw)
    torch.testing.assert_close(one, full[1:2], atol=1e-5, rtol=1e-5)
    assert torch.equal(osa_das(model, x, generator=torch.Generator().manual_seed(5), **kw), full)
    assert not torch.equal(osa_das(model, x, generator=6, **kw), full)


def test_constant_model_gives_zero_and_training_flag_is_restored():
    model, layer = _cnn()
    with torch.no_grad():
        layer.weight.zero_()  # features = relu-free bias, the same for every input
    model.train()
    sal = osa_das(model, _images(2), layer=layer, window=4, n_augment=4, rank=2, generator=0)
    assert model.training
    torch.testing.assert_close(sal, torch.zeros(2, 8, 8), atol=1e-10, rtol=0)


def test_target_is_ignored():
    model, layer = _cnn()
    x = _images(2)
    a = osa_das(model, x, layer=layer, n_augment=2, rank=1, generator=0)
    b = osa_das(model, x, target=[0, 2], layer=layer, n_augment=2, rank=1, generator=0)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "'window' parameter of osa_das must be an int in \\[1, 8\\]"),
        ({"window": 9}, "'window' parameter of osa_das must be an int in \\[1, 8\\]"),
        ({"n_augment": 0}, "'n_augment' parameter of osa_das must be an int in \\[1, inf\\)"),
        ({"rank": 0}, "'rank' parameter of osa_das must be an int"),
        ({"masks": "circles"}, "'masks' parameter of osa_das must be None, 'grid', 'rise'"),
        ({"masks": torch.zeros(3, 4, 4)}, "'masks' parameter of osa_das must be None"),
        ({"noise": 1.5}, "'noise' parameter of osa_das must be a float in \\[0, 1\\)"),
        ({"internal_batch_size": 0}, "'internal_batch_size' parameter of osa_das"),
    ],
)
def test_bad_arguments(kwargs, message):
    model, layer = _cnn()
    with pytest.raises(ValueError, match=message):
        osa_das(model, _images(1), layer=layer, **kwargs)


def test_bad_inputs_and_layer():
    model, _ = _cnn()
    with pytest.raises(ValueError, match="'inputs' parameter of osa_das must be a floating tensor"):
        osa_das(model, torch.zeros(8, 8))
    with pytest.raises(TypeError, match="'layer' parameter of osa_das must be a torch.nn.Module"):
        osa_das(model, _images(1), layer="fc1")
