"""Pointing game (argmax inside a ground-truth mask, random tie-breaking) and µFidelity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.measures.metrics import mu_fidelity, pointing_game


class MeanProb(nn.Module):
    """Two classes with softmax(.)[0] = z exactly, z = mean of w * x clipped to (0, 1): logits (log z, log(1 - z))."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.weight * x).mean(dim=(1, 2, 3)).double().clamp(1e-12, 1 - 1e-12)
        return torch.stack([z.log(), (1 - z).log()], dim=1)


# --- pointing game ----------------------------------------------------------------------------------------------------
def test_pointing_hit_and_miss():
    sal = torch.zeros(2, 4, 4)
    sal[0, 1, 2] = 1.0  # inside the mask
    sal[1, 3, 3] = 1.0  # outside
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :] = True
    assert pointing_game(sal, mask, generator=0).tolist() == [True, False]
    assert pointing_game(sal[:, None], mask[:, None], generator=0).tolist() == [True, False]


def test_pointing_ties_are_broken_at_random():
    """A constant map picks a uniform pixel: the hit rate is the mask's area share; the generator fixes it."""
    sal = torch.ones(4000, 4, 4)
    mask = torch.zeros(4000, 4, 4, dtype=torch.bool)
    mask[:, 0, :] = True  # 4 of 16 pixels
    hits = pointing_game(sal, mask, generator=1)
    assert abs(hits.float().mean().item() - 0.25) < 0.03
    assert torch.equal(pointing_game(sal, mask, generator=1), hits)
    # ties only among the maxima: two tied maxima both inside -> always a hit
    sal2 = torch.zeros(50, 4, 4)
    sal2[:, 0, 0] = sal2[:, 0, 3] = 2.0
    assert pointing_game(sal2, mask[:50], generator=2).all()


def test_pointing_checks_shapes():
    with pytest.raises(ValueError, match="'masks' parameter of pointing_game must have the shape of saliency"):
        pointing_game(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="'saliency' parameter of pointing_game must be a tensor"):
        pointing_game(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool))


# --- µFidelity --------------------------------------------------------------------------------------------------------
def test_mu_fidelity_is_one_for_the_exact_attribution_of_a_linear_probability():
    """p = mean(w x): removing S lowers p by sum_{i in S} w_i x_i / P, so attribution w x / P correlates perfectly."""
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(1, 1, 8, 8, generator=gen)
    x = torch.rand(3, 1, 8, 8, generator=gen).double()
    model = MeanProb(w.double())
    exact = (w * x)[:, 0] / 64
    mf = mu_fidelity(model, x, exact, target=0, grid_size=4, n_samples=64, generator=1)
    torch.testing.assert_close(mf, torch.ones(3, dtype=torch.float64))
    # a map that contradicts the model correlates negatively
    anti = mu_fidelity(model, x, -exact, target=0, grid_size=4, n_samples=64, generator=1)
    torch.testing.assert_close(anti, -torch.ones(3, dtype=torch.float64))


def test_mu_fidelity_batched_equals_unbatched():
    gen = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 64, 4)).eval()
    x, sal = torch.rand(3, 1, 8, 8, generator=gen), torch.rand(3, 8, 8, generator=gen)
    a = mu_fidelity(net, x, sal, target=[0, 1, 2], n_samples=16, generator=4)
    b = mu_fidelity(net, x, sal, target=[0, 1, 2], n_samples=16, generator=4, internal_batch_size=3)
    c = mu_fidelity(net, x[1:2], sal[1:2], target=1, n_samples=16, generator=4)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1:2], c)


def test_mu_fidelity_constant_model_is_nan():
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        const[1].weight.zero_()
    out = mu_fidelity(const, torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), target=0, n_samples=8, generator=0)
    assert torch.isnan(out).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid_size": 3}, "'grid_size' parameter of mu_fidelity must divide the image size"),
        ({"subset_size": 0}, "'subset_size' parameter of mu_fidelity must be an int in \\[1, 16\\]"),
        ({"subset_size": 17}, "'subset_size' parameter of mu_fidelity must be an int in \\[1, 16\\]"),
        ({"n_samples": 1}, "'n_samples' parameter of mu_fidelity must be an int in \\[2, inf\\)"),
    ],
)
def test_mu_fidelity_bad_arguments(kwargs, message):
    model = MeanProb(torch.ones(1, 1, 8, 8))
    kw = {"target": 0, "grid_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        mu_fidelity(model, torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), **kw)
