"""Extremal perturbations: the smooth-max bump, the area constraint, the pyramid, batching, seeding, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnsens.measures.extremal import (
    SmoothMaskGenerator,
    apply_pyramid,
    area_rank_loss,
    bump,
    channel_extremal_perturbation,
    extremal_perturbation,
    gaussian_blur,
    meaningful_perturbation,
    perturbation_pyramid,
)


class Constant(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 3, dtype=x.dtype) + x.sum() * 0


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_one_hot_parameter_gives_the_bump():
    """One parameter at 1: pixel u gets w e^{cw} / (e^{cw} + K - 1), w = bump(|u - p| / sigma), inside the window."""
    gen = SmoothMaskGenerator((12, 12), step=1, sigma=2.0, coldness=20.0, dtype=torch.float64)
    p = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    p[0, 0, 5, 6] = 1.0
    _, pad = gen(p)
    m, r, k = gen.margin, gen.radius, (2 * gen.radius + 1) ** 2
    uy, ux = torch.meshgrid(torch.arange(12 + 2 * m), torch.arange(12 + 2 * m), indexing="ij")
    dy, dx = (uy - (m + 5)).double(), (ux - (m + 6)).double()
    w = bump(torch.sqrt(dy**2 + dx**2) / 2.0)
    expected = w * torch.exp(20 * w) / (torch.exp(20 * w) + k - 1)
    inside = (dy.abs() <= r) & (dx.abs() <= r)
    expected = torch.where(inside, expected, torch.zeros_like(expected))
    torch.testing.assert_close(pad[0, 0], expected.clamp(0, 1))
    assert pad[0, 0, m + 5, m + 6] == pytest.approx(1.0, abs=1e-6)  # flat top: the bump peaks at 1


def test_step_two_generator_matches_its_definition_and_gradcheck():
    gen = SmoothMaskGenerator((8, 8), step=2, sigma=2.0, dtype=torch.float64)
    assert gen.shape_in == (4, 4)
    p = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    crop, pad = gen(p)
    assert crop.shape == (2, 1, 8, 8) and pad.shape == (2, 1, 8 + 2 * gen.margin, 8 + 2 * gen.margin)
    assert torch.autograd.gradcheck(lambda q: SmoothMaskGenerator((6, 6), sigma=1.5, dtype=torch.float64)(q)[1],
                                    (torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True),))


def test_area_rank_loss_zero_at_reference():
    a = torch.tensor([0.25, 0.5])
    m = torch.zeros(2, 1, 4, 4)
    m[0].view(-1)[:4] = 1
    m[1].view(-1)[8:] = 1
    torch.testing.assert_close(area_rank_loss(m, a), torch.zeros(2))
    assert area_rank_loss(torch.full((1, 16), 0.5), torch.tensor([0.25]))[0] == pytest.approx(0.25)


def test_pyramid_ends_and_interpolation():
    x = torch.rand(2, 1, 10, 10)
    pyr = perturbation_pyramid(x, n_levels=4, max_blur=2.0)
    torch.testing.assert_close(pyr[:, -1], x)
    torch.testing.assert_close(pyr[:, 0], gaussian_blur(x, 2.0))
    torch.testing.assert_close(gaussian_blur(torch.ones(1, 1, 9, 9), 1.5), torch.ones(1, 1, 9, 9))
    idx = torch.tensor([0, 1])
    torch.testing.assert_close(apply_pyramid(pyr, torch.ones(2, 1, 10, 10), idx), x)
    torch.testing.assert_close(apply_pyramid(pyr, torch.zeros(2, 1, 10, 10), idx), pyr[:, 0])
    half = apply_pyramid(pyr, torch.full((2, 1, 10, 10), 0.5), idx)  # 1.5 levels: halfway between levels 1 and 2
    torch.testing.assert_close(half, 0.5 * (pyr[:, 1] + pyr[:, 2]))
    fade = perturbation_pyramid(x, n_levels=3, kind="fade")
    torch.testing.assert_close(fade[:, 1], 0.5 * x)


def test_masks_meet_their_area_on_a_real_and_a_constant_model():
    x = torch.rand(2, 1, 16, 16)
    for model in (_cnn(), Constant()):
        masks, pad = extremal_perturbation(model, x, target=1, areas=(0.1, 0.3), n_iter=150, return_padded=True)
        assert masks.shape == (2, 2, 16, 16) and torch.isfinite(pad).all()
        achieved = pad.mean(dim=(2, 3))
        # at 16 px the smooth edge is a large share of the mask: the rank loss settles ~0.02 above the target
        # (at the study's 32 px the same loss lands within 0.02)
        assert (achieved - torch.tensor([0.1, 0.3])).abs().max() < 0.03


def test_batched_equals_unbatched_and_no_side_effects():
    model = _cnn().train()
    x = torch.rand(3, 1, 12, 12)
    a = extremal_perturbation(model, x, target=[0, 1, 2], areas=(0.2,), n_iter=20)
    b = extremal_perturbation(model, x, target=[0, 1, 2], areas=(0.2,), n_iter=20, internal_batch_size=1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    one = extremal_perturbation(model, x[1:2], target=1, areas=(0.2,), n_iter=20)
    torch.testing.assert_close(a[1:2], one, atol=1e-5, rtol=1e-4)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_same_generator_same_mask():
    model, x = _cnn(), torch.rand(2, 1, 12, 12)
    run = lambda g: extremal_perturbation(model, x, target=0, areas=(0.2,), n_iter=5, init="random",  # noqa: E731
                                          generator=g)
    torch.testing.assert_close(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_delete_variant_and_fade_run():
    model, x = _cnn(), torch.rand(1, 1, 12, 12)
    m = extremal_perturbation(model, x, target=0, areas=(0.2,), variant="delete", perturbation="fade", n_iter=10)
    assert m.shape == (1, 1, 12, 12) and ((m >= 0) & (m <= 1)).all()


def test_meaningful_perturbation_area_shrinks_with_lambda():
    model, x = _cnn(1), torch.rand(2, 1, 16, 16)
    small = meaningful_perturbation(model, x, target=0, l1_weight=0.0, n_iter=40).mean()
    large = meaningful_perturbation(model, x, target=0, l1_weight=50.0, n_iter=40).mean()
    assert large < small


def test_channel_ep_finds_the_contributing_channels():
    """With a GAP + linear head the logit is linear in the channel mask: EP keeps the largest contributions."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 10, 3, padding=1)
    head = nn.Linear(10, 2)
    with torch.no_grad():  # logit contributions of a few units, as in a trained net (lr 0.01 is set for those)
        head.weight.mul_(30)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x = torch.rand(2, 1, 8, 8)
    m = channel_extremal_perturbation(model, x, target=0, layer=model[1], area=0.2, n_iter=200)
    with torch.no_grad():
        contrib = model[:4](x) * head.weight[0]  # (N, C)
    k = 10 - math.floor(10 * 0.8)
    top_ep = m.argsort(1, descending=True)[:, :k].sort(1).values
    top_true = contrib.argsort(1, descending=True)[:, :k].sort(1).values
    assert torch.equal(top_ep, top_true)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"areas": (0.0,)}, "'areas' parameter of extremal_perturbation"),
        ({"variant": "keep"}, "'variant' parameter"),
        ({"perturbation": "noise"}, "'perturbation' parameter"),
        ({"n_iter": -1}, "'n_iter' parameter"),
        ({"internal_batch_size": 0}, "'internal_batch_size' parameter"),
        ({"lr": 0.0}, "'lr' parameter"),
    ],
)
def test_validation_messages(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        extremal_perturbation(_cnn(), torch.rand(1, 1, 8, 8), target=0, **kwargs)
