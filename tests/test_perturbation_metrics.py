"""RISE, cell occlusion (Captum), deletion / insertion AUC and top-k hits of planted cells."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from torch import nn

from nnsens.measures.metrics import cell_scores, deletion_auc, deletion_curve, insertion_auc, top_k_hits
from nnsens.measures.perturbation import SoftmaxProbability, occlusion_cells, rise, rise_masks, rise_upsample


class MeanProb(nn.Module):
    """Two classes with softmax(.)[0] = z exactly, z = mean of w * x clipped to (0, 1): logits (log z, log(1 - z))."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = 1.0 if self.weight is None else self.weight
        z = (w * x).mean(dim=(1, 2, 3)).double().clamp(1e-12, 1 - 1e-12)
        return torch.stack([z.log(), (1 - z).log()], dim=1)


def _cnn() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net.eval()


# --- RISE -------------------------------------------------------------------------------------------------------------

def test_rise_masks_follow_the_recipe():
    grids, shifts = rise_masks(200, (16, 16), grid_size=4, p=0.3, generator=0)
    assert grids.shape == (200, 1, 4, 4) and set(grids.unique().tolist()) <= {0.0, 1.0}
    assert abs(grids.mean().item() - 0.3) < 0.05
    assert shifts.min() >= 0 and shifts.max() < 4  # shift within one cell (16 / 4)
    m = rise_upsample(grids, shifts, (16, 16))
    assert m.shape == (200, 1, 16, 16) and m.min() >= 0 and m.max() <= 1
    # with zero shift, the crop is the top-left of the bilinear upsampling to (grid + 1) cells
    big = torch.nn.functional.interpolate(grids[:1], size=(20, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(rise_upsample(grids[:1], torch.zeros(1, 2, dtype=torch.long), (16, 16)),
                               big[:, :, :16, :16])


def test_rise_closed_form_on_a_linear_probability():
    """If p(x) = mean(w * x), RISE = sum_j mean(w * x * M_j) M_j / (n p): compute it from the same masks."""
    w = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    sal = rise(MeanProb(w), x.double(), target=0, n_masks=50, grid_size=4, p=0.5, generator=1)
    grids, shifts = rise_masks(50, (8, 8), grid_size=4, p=0.5, generator=1)
    m = rise_upsample(grids, shifts, (8, 8))[:, 0]  # (n, 8, 8)
    scores = (w[0, 0] * x[:, 0, None] * m[None]).mean(dim=(2, 3))  # (2, n)
    expected = torch.einsum("in,nhw->ihw", scores.double(), m) / (50 * 0.5)
    torch.testing.assert_close(sal, expected.double())


def test_rise_batched_seeded_and_constant():
    model, x = _cnn(), torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = rise(model, x, target=[0, 1, 2], n_masks=40, grid_size=4, internal_batch_size=7, generator=2)
    b = rise(model, x, target=[0, 1, 2], n_masks=40, grid_size=4, internal_batch_size=1000, generator=2)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not torch.equal(a, rise(model, x, target=[0, 1, 2], n_masks=40, grid_size=4, generator=3))
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.copy_(torch.tensor([0.0, 0.0]))  # p = 1/2 whatever the mask
    sal = rise(const, x, target=0, n_masks=40, grid_size=4, generator=2)
    grids, shifts = rise_masks(40, (8, 8), grid_size=4, generator=2)
    expected = 0.5 * rise_upsample(grids, shifts, (8, 8))[:, 0].sum(0) / (40 * 0.5)  # a constant score
    torch.testing.assert_close(sal, expected.float().expand(3, 8, 8))  # = mask coverage: no pixel preferred


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"n_masks": 0}, "The 'n_masks' parameter of rise must be an int in [1, inf). Got 0 instead."),
     ({"p": 1.0}, "The 'p' parameter of rise must be a float in (0, 1). Got 1.0 instead."),
     ({"grid_size": -1}, "The 'grid_size' parameter of rise must be an int in [1, inf)"),
     ({"target": [0, 1, 2]}, "The 'target' parameter of rise must hold 1 or 2 class indices. Got 3")],
)
def test_rise_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError) as e:
        rise(_cnn(), torch.rand(2, 1, 8, 8), **{"target": 0, **kwargs})
    assert msg in str(e.value)


# --- occlusion --------------------------------------------------------------------------------------------------------

def test_occlusion_cells_is_the_drop_of_one_zeroed_cell():
    model, x = _cnn(), torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    occ = occlusion_cells(model, x, target=[1, 2], grid_size=4)
    p = lambda z: torch.softmax(model(z), 1)[torch.arange(2), torch.tensor([1, 2])]  # noqa: E731
    for r, c in [(0, 0), (1, 3), (3, 2)]:
        z = x.clone()
        z[:, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = 0
        torch.testing.assert_close(occ[:, 2 * r, 2 * c], p(x) - p(z), atol=1e-6, rtol=1e-5)
    ref = Occlusion(SoftmaxProbability(model)).attribute(x, sliding_window_shapes=(1, 2, 2), strides=(1, 2, 2),
                                                          baselines=0.0, target=torch.tensor([1, 2]))
    torch.testing.assert_close(occ, ref.sum(1))
    small = occlusion_cells(model, x, target=[1, 2], grid_size=4, internal_batch_size=1)
    torch.testing.assert_close(small, occ)


def test_occlusion_constant_model_and_bad_grid():
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        const[1].weight.zero_()
    assert torch.equal(occlusion_cells(const, torch.rand(1, 1, 8, 8), target=0, grid_size=4), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="'grid_size' parameter of occlusion_cells must divide the image size"):
        occlusion_cells(const, torch.rand(1, 1, 8, 8), target=0, grid_size=3)


# --- deletion / insertion -----------------------------------------------------------------------------------------

def test_deletion_auc_closed_form_linear_probability():
    """p = mean(x) on an all-ones image: after removing a fraction f of the pixels p = 1 - f, so AUC = 1/2;
    inserting into a zero image gives p = f and AUC = 1/2 too."""
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    sal = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert deletion_auc(MeanProb(), x, sal, target=0, n_steps=32).item() == pytest.approx(0.5, abs=1e-12)
    assert insertion_auc(MeanProb(), x, sal, target=0, n_steps=32).item() == pytest.approx(0.5, abs=1e-12)


def test_deletion_auc_closed_form_sorted_pixels():
    """p = mean(x): deleting pixels in order o, after k steps p_k = (sum x - top(k) removed) / HW; the AUC is the
    trapezoid rule over the n_steps + 1 points."""
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sal = x[:, 0].clone()  # the brightest pixels first: the fastest possible drop
    n_steps = 16
    got = deletion_auc(MeanProb(), x, sal, target=0, n_steps=n_steps)
    for i in range(2):
        v = np.sort(x[i].flatten().numpy())[::-1]
        kept = [v[round(k * 64 / n_steps) :].sum() / 64 for k in range(n_steps + 1)]
        auc = (sum(kept) - 0.5 * (kept[0] + kept[-1])) / n_steps
        assert got[i].item() == pytest.approx(auc, abs=1e-12)
    worst = deletion_auc(MeanProb(), x, -sal, target=0, n_steps=n_steps)
    assert (worst > got).all()


def test_deletion_batched_equals_unbatched_and_curve_ends():
    model, x = _cnn(), torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sal = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))
    a = deletion_curve(model, x, sal, target=[0, 1, 2], n_steps=8, internal_batch_size=5)
    b = deletion_curve(model, x, sal, target=[0, 1, 2], n_steps=8, internal_batch_size=1000)
    torch.testing.assert_close(a, b)
    p = torch.softmax(model(x), 1)[torch.arange(3), torch.tensor([0, 1, 2])].double()
    p0 = torch.softmax(model(torch.zeros_like(x)), 1)[torch.arange(3), torch.tensor([0, 1, 2])].double()
    torch.testing.assert_close(a[:, 0], p, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a[:, -1], p0, atol=1e-6, rtol=1e-5)
    ins = deletion_curve(model, x, sal, target=[0, 1, 2], n_steps=8, mode="insertion")
    torch.testing.assert_close(ins[:, 0], p0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ins[:, -1], p, atol=1e-6, rtol=1e-5)


def test_deletion_bad_arguments():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="The 'saliency' parameter of deletion_auc must be a tensor of shape"):
        deletion_auc(_cnn(), x, torch.rand(2, 4, 4), target=0)
    with pytest.raises(ValueError, match="The 'n_steps' parameter of deletion_auc must be an int in \\[1, inf\\)"):
        deletion_auc(_cnn(), x, torch.rand(2, 8, 8), target=0, n_steps=0)
    with pytest.raises(ValueError, match="'mode' parameter of deletion_curve"):
        deletion_curve(_cnn(), x, torch.rand(2, 8, 8), target=0, mode="blur")


# --- top-k hits and cell scores -----------------------------------------------------------------------------------

def test_cell_scores_average_each_cell():
    sal = torch.arange(16.0).reshape(1, 4, 4)
    torch.testing.assert_close(cell_scores(sal, 2), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]], dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible by grid_size=3"):
        cell_scores(sal, 3)


def test_top_k_hits_exact_and_tied():
    truth = torch.zeros(2, 4, dtype=torch.bool)
    truth[:, :2] = True
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [3.0, 0.0, 1.0, 2.0]])
    assert top_k_hits(scores, truth, generator=0).tolist() == [True, False]
    assert top_k_hits(scores, truth, k=4, generator=0).tolist() == [True, True]
    # three cells tie for the top: both true cells land in the top 2 with probability 1/3
    n = 3000
    tied = torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(n, 4)
    hits = top_k_hits(tied, truth[:1].expand(n, 4), generator=1)
    assert abs(hits.float().mean().item() - 1 / 3) < 0.04
    assert torch.equal(hits, top_k_hits(tied, truth[:1].expand(n, 4), generator=1))
    assert not torch.equal(hits, top_k_hits(tied, truth[:1].expand(n, 4), generator=2))


def test_top_k_hits_all_equal_scores_is_chance():
    n, cells = 4000, 8
    truth = torch.zeros(n, cells, dtype=torch.bool)
    truth[:, [2, 5]] = True
    hits = top_k_hits(torch.zeros(n, cells), truth, generator=0)
    assert abs(hits.float().mean().item() - 1 / math.comb(cells, 2)) < 0.015


def test_top_k_hits_bad_arguments():
    with pytest.raises(ValueError, match="'truth' parameter of top_k_hits must have the shape of scores"):
        top_k_hits(torch.zeros(2, 4), torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="The 'k' parameter of top_k_hits must be an int in \\[1, 4\\]. Got 5"):
        top_k_hits(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.bool), k=5)
