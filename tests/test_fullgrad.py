"""FullGrad (arXiv 1905.00780): completeness closed form, Captum cross-check, batching, degenerate and bad inputs."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient
from torch import nn

from nnsens.measures.fullgrad import check_relu_network, fullgrad, fullgrad_parts
from nnsens.models import VGGNet


def _vgg(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A small VGGNet with random weights and non-trivial BatchNorm statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = VGGNet(channels=(4, 6, 8), image_size=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return net.to(dtype).eval()


def _x(n: int = 5, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_completeness_on_a_bn_network_and_train_flag_restored():
    net = _vgg().train()  # fullgrad_parts evaluates in eval mode and restores the flag
    parts = fullgrad_parts(net, _x(), target=[0, 1, 2, 3, 4])
    assert net.training
    torch.testing.assert_close(parts.total(), parts.output, rtol=1e-10, atol=0)
    assert parts.relative_error().max() < 1e-10
    # every affine layer (conv, BN, linear) has a part; the BN shifts are needed: dropping them breaks completeness
    assert set(parts.biases) == {"features.0", "features.1", "features.4", "features.5", "features.8",
                                 "features.9", "head.1"}
    bn = sum(parts.biases[k].sum(dim=(1, 2, 3)) for k in ("features.1", "features.5", "features.9"))
    assert ((parts.total() - bn - parts.output).abs() > 1e-3).all()


def test_closed_form_affine_model():
    """f(x) = w·x + b (a Linear layer on the flattened image): input part = w ⊙ x, bias part = b."""
    lin = nn.Linear(64, 3).double()
    net = nn.Sequential(nn.Flatten(), lin).eval()
    x = _x(2)
    parts = fullgrad_parts(net, x, target=2)
    torch.testing.assert_close(parts.input, (lin.weight[2].reshape(1, 1, 8, 8) * x))
    torch.testing.assert_close(parts.biases["1"], lin.bias.detach()[None].expand(2, 3) * torch.tensor([0, 0, 1.0]))
    torch.testing.assert_close(parts.output, (x.flatten(1) @ lin.weight[2] + lin.bias[2]).detach())


def test_bn_shift_closed_form():
    """A lone eval-mode BatchNorm y = a x + c: its bias part is c at every position, c = beta - gamma mean / sd."""
    bn = nn.BatchNorm2d(1).double()
    with torch.no_grad():
        bn.running_mean.fill_(0.3)
        bn.running_var.fill_(4.0)
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    net = nn.Sequential(bn, nn.Flatten(), nn.Linear(64, 1, bias=False).double()).eval()
    with torch.no_grad():
        net[2].weight.fill_(1.0)
    parts = fullgrad_parts(net, _x(1), target=0)
    c = 0.5 - 2.0 * 0.3 / (4.0 + bn.eps) ** 0.5
    torch.testing.assert_close(parts.biases["0"], torch.full((1, 1, 8, 8), c, dtype=torch.float64))
    torch.testing.assert_close(parts.total(), parts.output)


def test_input_part_equals_captum_input_x_gradient():
    net, x = _vgg(dtype=torch.float32), _x(dtype=torch.float32)
    t = net(x).argmax(1)
    ref = InputXGradient(net).attribute(x.clone().requires_grad_(True), target=t)
    parts = fullgrad_parts(net, x)  # default target: the predicted class
    torch.testing.assert_close(parts.input, ref)
    torch.testing.assert_close(parts.output, net(x).gather(1, t[:, None])[:, 0].detach())


def test_batched_equals_unbatched():
    net, x = _vgg(), _x(7)
    whole = fullgrad_parts(net, x, target=3)
    small = fullgrad_parts(net, x, target=3, internal_batch_size=2)
    torch.testing.assert_close(small.input, whole.input)
    for k in whole.biases:
        torch.testing.assert_close(small.biases[k], whole.biases[k])
    torch.testing.assert_close(fullgrad(net, x, internal_batch_size=3), fullgrad(net, x))
    one = torch.cat([fullgrad(net, x[i : i + 1]) for i in range(7)])
    torch.testing.assert_close(one, fullgrad(net, x))


def test_map_shape_range_and_constant_model():
    net, x = _vgg(), _x(3)
    sal = fullgrad(net, x)
    assert sal.shape == x.shape and sal.dtype == x.dtype and (sal >= 0).all()
    # the map from its parts: per-image min-max of |part|, summed over channels, bias parts resized bilinearly
    parts = fullgrad_parts(net, x)

    def norm(t):
        a = t.abs()
        lo, hi = a.amin(dim=(1, 2, 3), keepdim=True), a.amax(dim=(1, 2, 3), keepdim=True)
        return ((a - lo) / (hi - lo)).sum(1, keepdim=True)

    expected = norm(parts.input) + sum(
        nn.functional.interpolate(norm(b), size=(8, 8), mode="bilinear", align_corners=True)
        for k, b in parts.biases.items() if k != "head.1")
    torch.testing.assert_close(sal, expected)
    const = _vgg()
    with torch.no_grad():
        const.head[1].weight.zero_()  # output = head bias: no pixel and no conv unit matters
    assert torch.equal(fullgrad(const, x), torch.zeros_like(x))
    parts = fullgrad_parts(const, x, target=1)
    torch.testing.assert_close(parts.total(), parts.output)


def test_multichannel_map_is_repeated_over_channels():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = VGGNet(in_channels=3, channels=(4, 4), image_size=8).eval()
    sal = fullgrad(net, torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert sal.shape == (2, 3, 8, 8) and torch.equal(sal[:, 0], sal[:, 2])


def test_rejects_non_relu_networks_and_bad_arguments():
    with pytest.raises(ValueError, match="Module '1' is a Sigmoid"):
        fullgrad(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(72, 2)), _x(1).float())
    with pytest.raises(ValueError, match="Module '0' is a LayerNorm"):
        check_relu_network(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        check_relu_network(nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False)))
    with pytest.raises(TypeError, match="'model' parameter of fullgrad must be a torch.nn.Module"):
        fullgrad(lambda x: x, _x(1))
    net = _vgg()
    with pytest.raises(ValueError, match="'target' parameter of fullgrad_parts must be None, a class index or 5"):
        fullgrad_parts(net, _x(5), target=[0, 1])
    with pytest.raises(ValueError, match="must be None, a class index or 2 class indices in \\[0, 9\\]"):
        fullgrad_parts(net, _x(2), target=10)
    with pytest.raises(ValueError, match="'internal_batch_size' parameter of fullgrad_parts must be an int"):
        fullgrad_parts(net, _x(2), internal_batch_size=0)
    with pytest.raises(ValueError, match="'inputs' parameter of fullgrad must be a floating tensor \\(N, C, H, W\\)"):
        fullgrad(net, torch.rand(2, 64))
