"""Pixel perturbation and remove-and-retrain (P28): closed forms, batching, tie-breaking, seeding, bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.measures.metrics import pixel_perturbation, remove_and_retrain, remove_top_pixels


class LinearLogit(nn.Module):
    """logits = (sum(w * x) + b, 0): the change of logit 0 is sum over the replaced pixels of w * (mean - x)."""

    def __init__(self, w: torch.Tensor, b: float = 1.0) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.w * x).sum(dim=(1, 2, 3)) + self.b
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def _data(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    sal = torch.rand(n, 4, 4, generator=gen, dtype=torch.float64)
    return x, w, sal


def test_pixel_perturbation_closed_form_linear_logit():
    x, w, sal = _data()
    model = LinearLogit(w)
    got = pixel_perturbation(model, x, sal, target=0, fractions=(0.0, 0.25, 0.5, 1.0))
    base = (w * x).sum(dim=(1, 2, 3)) + 1.0
    mean = x.mean(dim=(2, 3), keepdim=True)
    order = sal.reshape(3, 16).argsort(dim=1)  # least salient first
    for j, k in enumerate((0, 4, 8, 16)):
        hit = torch.zeros(3, 16, dtype=torch.bool)
        hit.scatter_(1, order[:, :k], True)
        delta = (w * (mean - x)).reshape(3, 16).mul(hit).sum(1)
        torch.testing.assert_close(got[:, j], delta.abs() / base.abs())
    assert torch.equal(got[:, 0], torch.zeros(3, dtype=torch.float64))


def test_pixel_perturbation_batched_equals_unbatched_and_constant_model():
    x, w, sal = _data(5)
    model = LinearLogit(w)
    whole = pixel_perturbation(model, x, sal, target=[0, 0, 0, 0, 0], fractions=(0.1, 0.3))
    torch.testing.assert_close(pixel_perturbation(model, x, sal, target=0, fractions=(0.1, 0.3),
                                                  internal_batch_size=3), whole)
    const = LinearLogit(torch.zeros_like(w))
    assert torch.equal(pixel_perturbation(const, x, sal, target=0, fractions=0.5), torch.zeros(5, 1,
                                                                                               dtype=torch.float64))


def test_ties_raster_order_or_random_with_generator():
    """All-equal saliency: without a generator the first pixels in raster order go; with one, a seeded random set."""
    x, w, _ = _data(2)
    w = torch.zeros_like(w)
    w[..., 0, 0] = 1.0  # only the top-left pixel matters
    flat = torch.zeros(2, 4, 4, dtype=torch.float64)
    raster = pixel_perturbation(LinearLogit(w), x, flat, target=0, fractions=(1 / 16,))
    base = x[:, 0, 0, 0] + 1.0
    torch.testing.assert_close(raster[:, 0], (x.mean(dim=(1, 2, 3)) - x[:, 0, 0, 0]).abs() / base)
    a = pixel_perturbation(LinearLogit(w), x, flat, target=0, fractions=(0.5,), generator=3)
    b = pixel_perturbation(LinearLogit(w), x, flat, target=0, fractions=(0.5,), generator=3)
    assert torch.equal(a, b)
    sel = [remove_top_pixels(torch.ones(1, 1, 4, 4), torch.zeros(1, 4, 4), 0.5, generator=s) for s in range(6)]
    assert all(int((m == 0).sum()) == 8 for m in sel) and len({tuple(m.flatten().tolist()) for m in sel}) > 1


def test_remove_top_pixels_counts_and_fill():
    x, _, sal = _data(2)
    out = remove_top_pixels(x, sal, 0.25, fill=-1.0)
    removed = out == -1.0
    assert removed.sum(dim=(1, 2, 3)).tolist() == [4, 4]
    top = sal.reshape(2, 16).argsort(dim=1, descending=True)[:, :4]
    assert removed.reshape(2, 16).gather(1, top).all()
    assert torch.equal(out[~removed], x[~removed])
    assert torch.equal(remove_top_pixels(x, sal, 0.0), x)


def test_remove_and_retrain_seeded_and_removal_hurts():
    """Toy task on a black background: class = which half of a 4x4 image is lit. Removing the top half of the pixels
    (the lit ones) leaves all-zero images, so the retrained model is at chance."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=gen)
    lit = 1.0 + 0.1 * torch.rand(200, 1, 4, 4, generator=gen)
    x = torch.zeros(200, 1, 4, 4)
    x[y == 0, :, :2] = lit[y == 0, :, :2]
    x[y == 1, :, 2:] = lit[y == 1, :, 2:]
    sal = x[:, 0].clone()  # the bright pixels are the salient ones

    def make(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))

    train, test = (x[:150], y[:150], sal[:150]), (x[150:], y[150:], sal[150:])
    kw = {"epochs": 5, "lr": 0.05, "batch_size": 32}
    none = remove_and_retrain(make, train, test, fraction=0.0, seeds=(1, 2), **kw)
    again = remove_and_retrain(make, train, test, fraction=0.0, seeds=(1, 2), **kw)
    assert none.shape == (2,) and torch.equal(none, again) and (none > 0.9).all()
    half = remove_and_retrain(make, train, test, fraction=0.5, fill=0.0, seeds=(1,), **kw)
    assert half[0] < 0.8  # the evidence is exactly the top half of the pixels


@pytest.mark.parametrize(
    ("call", "msg"),
    [(lambda x, s: pixel_perturbation(LinearLogit(torch.ones(1)), x, s, target=0, fractions=(1.5,)),
      "The 'fractions' parameter of pixel_perturbation must be a float in [0, 1]. Got 1.5 instead."),
     (lambda x, s: pixel_perturbation(LinearLogit(torch.ones(1)), x, s[:, :2], target=0),
      "The 'saliency' parameter of pixel_perturbation must be a tensor of shape (3, 4, 4)"),
     (lambda x, s: pixel_perturbation(LinearLogit(torch.ones(1)), x, s, target=None),
      "The 'target' parameter of pixel_perturbation must be an int"),
     (lambda x, s: remove_top_pixels(x, s, -0.1),
      "The 'fraction' parameter of remove_top_pixels must be a float in [0, 1]. Got -0.1 instead."),
     (lambda x, s: remove_and_retrain(lambda k: None, (x, x, s), (x, x, s), fraction=0.5, seeds=()),
      "The 'seeds' parameter of remove_and_retrain must hold at least one seed")],
)
def test_bad_arguments(call, msg):
    x, _, sal = _data()
    with pytest.raises(ValueError) as err:
        call(x, sal)
    assert msg in str(err.value)
