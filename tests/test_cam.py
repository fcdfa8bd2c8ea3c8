"""Grad-CAM++ and Smooth Grad-CAM++ (nnsens.measures.cam): closed forms, Captum, finite differences, invariances."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from nnsens.measures.cam import (
    cam_from_derivatives,
    finite_difference_alphas,
    gradcam_pp,
    layer_gradients,
    score_with_activations,
    smooth_gradcam_pp,
)
from nnsens.models import CamCNN

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from captum.attr import LayerGradCam


class LinearHead(nn.Module):
    """conv -> ReLU (the CAM layer) -> global average pooling -> linear: S_c = sum_k W_ck mean_ij A_kij + b_c, so
    g = dS_c/dA_kij = W_ck / (h w) everywhere (the setting where Grad-CAM is CAM, Zhou et al. 2016)."""

    def __init__(self, k: int = 5, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, k, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(k, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * self.relu(self.conv(x)).sum(dim=(1, 2, 3))[:, None] + torch.ones(x.shape[0], 3)


def _seeded(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw).eval()


@pytest.fixture(scope="module")
def linear():
    return _seeded(LinearHead), torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = CamCNN(channels=(4, 8, 8, 8), hidden=16, image_size=16, head="max").eval()
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    return model, x, torch.tensor([0, 1, 2, 3, 0])


def test_captum_gradcam_is_cam_on_a_linear_head_and_our_gradients_reproduce_it(linear):
    model, x = linear
    target = torch.tensor([0, 1, 2, 0])
    acts, g = layer_gradients(model, x, target=target, layer=model.relu)
    hw = acts.shape[-1] * acts.shape[-2]
    w = model.fc.weight[target].detach()  # (N, K)
    torch.testing.assert_close(g, (w / hw)[:, :, None, None].expand_as(g))
    cam = torch.relu((w[:, :, None, None] * acts).sum(1, keepdim=True)) / hw  # CAM / hw
    captum = LayerGradCam(model, model.relu).attribute(x, target=target.tolist(), relu_attributions=True)
    torch.testing.assert_close(captum.detach(), cam, rtol=1e-5, atol=1e-7)
    ours = torch.relu((g.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))  # Grad-CAM from our g
    torch.testing.assert_close(ours, captum.detach(), rtol=1e-5, atol=1e-7)


def test_gradcam_pp_closed_form_on_a_linear_head(linear):
    # g constant per channel: alpha_k = 1 / (2 + (sum_ab A_k) g_k) where g_k != 0, w_k = alpha_k relu(W_k)
    model, x = linear
    acts, g = layer_gradients(model, x, target=1, layer=model.relu)
    gk = g[:, :, 0, 0]
    alpha = torch.where(gk != 0, 1 / (2 + acts.sum(dim=(2, 3)) * gk), torch.zeros_like(gk))
    w = alpha * torch.relu(model.fc.weight[1].detach())[None]
    expected = torch.relu((w[:, :, None, None] * acts).sum(1, keepdim=True))
    torch.testing.assert_close(gradcam_pp(model, x, target=1, layer=model.relu, upsample="none"), expected)


def test_gradcam_pp_equals_gradcam_on_one_positive_channel(linear):
    # one channel with a positive weight: both maps are proportional to relu(A); normalised, they coincide
    _, x = linear
    model = _seeded(LinearHead, k=1, n_classes=1)
    with torch.no_grad():
        model.fc.weight.fill_(0.7)
    pp = gradcam_pp(model, x, target=0, layer=model.relu)
    gc = LayerGradCam(model, model.relu).attribute(x, target=0, relu_attributions=True).detach()
    gc = torch.nn.functional.interpolate(gc, size=x.shape[-2:], mode="bilinear")
    norm = lambda m: m / m.flatten(1).amax(1)[:, None, None, None]  # noqa: E731
    torch.testing.assert_close(norm(pp), norm(gc))


def test_smooth_at_zero_noise_and_one_copy_is_gradcam_pp(cnn):
    model, x, t = cnn
    ref = gradcam_pp(model, x, target=t, layer=model.relus[3])
    for stdev in (0.0, 1e-7):
        sm = smooth_gradcam_pp(model, x, target=t, layer=model.relus[3], n_samples=1, stdev=stdev, generator=0)
        assert (sm - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_smoothing_averages_the_derivative_terms_not_the_maps(cnn):
    model, x, t = cnn
    layer = model.relus[3]
    gen = torch.Generator().manual_seed(5)
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1))[:, None, None, None]
    acts, _ = layer_gradients(model, x, target=t, layer=layer)
    gs = [layer_gradients(model, x + 0.3 * span * torch.randn(x.shape, generator=gen), target=t, layer=layer)[1]
          for _ in range(3)]
    d = [sum(g**p for g in gs) / 3 for p in (1, 2, 3)]
    expected = cam_from_derivatives(acts, *d)
    got = smooth_gradcam_pp(model, x, target=t, layer=layer, n_samples=3, stdev=0.3, generator=5, upsample="none")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_alphas_match_float64_central_differences():
    # a tiny net with O(1) gradients at the layer, so that fixed-step differences are well conditioned
    torch.manual_seed(3)
    model = CamCNN(channels=(3, 4, 4, 4), hidden=8, image_size=8, head="max").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    check = finite_difference_alphas(model, x, target=[0, 1, 2], layer=model.relus[3], n_entries=20, generator=0)
    assert check.rel_error.max() <= 1e-4 and len(check.closed) == 20
    rel = finite_difference_alphas(model, x, target=[0, 1, 2], layer=model.relus[3], n_entries=20,
                                   method="autodiff", generator=0)
    assert rel.rel_error.max() <= 1e-4


def test_score_with_activations_reads_the_model(cnn):
    model, x, t = cnn
    acts, _ = layer_gradients(model, x, target=t, layer=model.relus[2])
    s = score_with_activations(model, x, acts, target=t, layer=model.relus[2])
    torch.testing.assert_close(s, model(x).gather(1, t[:, None])[:, 0].detach())


def test_batched_equals_unbatched(cnn):
    model, x, t = cnn
    layer = model.relus[3]
    full = gradcam_pp(model, x, target=t, layer=layer)
    one = torch.cat([gradcam_pp(model, x[i : i + 1], target=t[i : i + 1], layer=layer) for i in range(len(x))])
    torch.testing.assert_close(full, one, rtol=1e-5, atol=1e-7)
    a = smooth_gradcam_pp(model, x, target=t, layer=layer, n_samples=6, generator=1)
    b = smooth_gradcam_pp(model, x, target=t, layer=layer, n_samples=6, generator=1, internal_batch_size=2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_constant_model_gives_zero():
    model = _seeded(Constant)
    x = torch.rand(3, 1, 8, 8)
    assert gradcam_pp(model, x, target=0, layer=model.relu).abs().max() == 0
    assert smooth_gradcam_pp(model, x, target=0, layer=model.relu, n_samples=3, generator=0).abs().max() == 0


def test_same_generator_same_map_and_no_side_effects(cnn):
    model, x, t = cnn
    model.train()
    a = smooth_gradcam_pp(model, x, target=t, layer=model.relus[3], n_samples=4, generator=7)
    b = smooth_gradcam_pp(model, x, target=t, layer=model.relus[3], n_samples=4,
                          generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.training and all(p.grad is None for p in model.parameters())
    c = smooth_gradcam_pp(model, x, target=t, layer=model.relus[3], n_samples=4, generator=8)
    assert not torch.equal(a, c)
    model.eval()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "'n_samples' parameter of smooth_gradcam_pp"),
        ({"stdev": -0.1}, "'stdev' parameter of smooth_gradcam_pp"),
        ({"upsample": "area"}, "'upsample' parameter of smooth_gradcam_pp"),
        ({"internal_batch_size": 0}, "'internal_batch_size' parameter"),
        ({"layer": nn.ReLU()}, "'layer' parameter of smooth_gradcam_pp must be a submodule"),
    ],
)
def test_validation(cnn, kwargs, match):
    model, x, t = cnn
    args = {"target": t, "layer": model.relus[3], **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        smooth_gradcam_pp(model, x, **args)


def test_a_layer_called_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(self.relu(x))).mean(dim=(2, 3))

    model = Twice()
    with pytest.raises(ValueError, match="called once per forward"):
        gradcam_pp(model, torch.rand(1, 1, 4, 4), target=0, layer=model.relu)
