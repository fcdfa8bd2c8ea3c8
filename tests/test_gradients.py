"""SmoothGrad: closed form on a linear model, Captum's NoiseTunnel, chunking, seeding, no side effects."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from nnsens.measures.gradients import smoothgrad


def _net() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 36, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net.eval()


def test_linear_model_gives_its_weights_like_captum():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    sg = smoothgrad(lin, x, target=[2, 0], n_samples=5, stdev=0.3, generator=0)
    w = lin[1].weight.detach()
    torch.testing.assert_close(sg, torch.stack([w[2], w[0]]).reshape(2, 1, 6, 6))
    ref = NoiseTunnel(Saliency(lin)).attribute(x, nt_type="smoothgrad", nt_samples=5, stdevs=0.3,
                                               target=torch.tensor([2, 0]), abs=False)
    torch.testing.assert_close(sg, ref)


def test_zero_noise_is_the_gradient_and_matches_captum_saliency():
    net, x = _net(), torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    sg = smoothgrad(net, x, target=1, n_samples=3, stdev=0.0, generator=0)
    torch.testing.assert_close(sg, Saliency(net).attribute(x, target=1, abs=False))
    sga = smoothgrad(net, x, target=1, n_samples=3, stdev=0.0, absolute=True, generator=0)
    torch.testing.assert_close(sga, Saliency(net).attribute(x, target=1))


def test_chunking_seeding_and_no_side_effects():
    net, x = _net(), torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    net.train()
    a = smoothgrad(net, x, target=[0, 1, 2], n_samples=8, stdev=0.2, generator=4)
    assert net.training and all(p.grad is None for p in net.parameters())
    b = smoothgrad(net, x, target=[0, 1, 2], n_samples=8, stdev=0.2, generator=4, internal_batch_size=5)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, smoothgrad(net, x, target=[0, 1, 2], n_samples=8, stdev=0.2, generator=5))


def test_expectation_close_to_captum_with_many_samples():
    net, x = _net(), torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    ours = smoothgrad(net, x, target=3, n_samples=4000, stdev=0.2, generator=6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ref = NoiseTunnel(Saliency(net)).attribute(x, nt_type="smoothgrad", nt_samples=4000, stdevs=0.2, target=3,
                                                   abs=False, nt_samples_batch_size=1000)
    scale = ref.abs().max()
    assert (ours - ref).abs().max() / scale < 0.1


def test_constant_model_and_bad_arguments():
    const = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        const[1].weight.zero_()
    assert torch.equal(smoothgrad(const, torch.rand(2, 1, 6, 6), target=0, n_samples=3, generator=0),
                       torch.zeros(2, 1, 6, 6))
    with pytest.raises(ValueError, match="'n_samples' parameter of smoothgrad must be an int in \\[1, inf\\)"):
        smoothgrad(const, torch.rand(1, 1, 6, 6), target=0, n_samples=0)
    with pytest.raises(ValueError, match="'stdev' parameter of smoothgrad must be a float in \\[0, inf\\)"):
        smoothgrad(const, torch.rand(1, 1, 6, 6), target=0, stdev=-1.0)
    with pytest.raises(ValueError, match="'inputs' parameter of smoothgrad must be a floating tensor"):
        smoothgrad(const, torch.zeros(6, dtype=torch.long), target=0)
