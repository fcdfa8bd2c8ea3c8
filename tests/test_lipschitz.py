"""1-Lipschitz MLP, projections, the temperature loss and the analytic gradient-norm bound (arXiv 2305.16202)."""

from __future__ import annotations

import math

import pytest
import torch

from nnsens.measures.privacy import per_sample_gradient_norms
from nnsens.methods.lipschitz import (
    ClipLessStep,
    GroupSort2,
    LipschitzMLP,
    gradient_norm_bounds,
    loss_lipschitz,
    project_,
    project_inputs,
    spectral_norm,
    tau_cross_entropy,
)
from nnsens.training import fit


def test_groupsort_sorts_pairs_and_preserves_norms():
    x = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
    torch.testing.assert_close(GroupSort2()(x), torch.tensor([[-1.0, 3.0, 0.5, 2.0]]))
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(GroupSort2()(z).norm(dim=1), z.norm(dim=1))


def test_spectral_norm_and_projections():
    g = torch.Generator().manual_seed(1)
    w = 3 * torch.randn(12, 7, generator=g)
    assert math.isclose(float(spectral_norm(w)), float(torch.linalg.matrix_norm(w, 2)), rel_tol=1e-5)
    model = LipschitzMLP([7, 12, 12, 3], generator=g)
    for m in model.linears().values():
        assert abs(float(spectral_norm(m.weight)) - 1) < 1e-5  # orthogonal initialisation
        with torch.no_grad():
            m.weight.mul_(4.0)
    project_(model, "spectral")
    assert all(float(spectral_norm(m.weight)) <= 1 + 1e-6 for m in model.linears().values())
    with torch.no_grad():
        model[0].weight.mul_(0.5)  # inside the ball: the spectral projection leaves it alone
    before = model[0].weight.clone()
    project_(model, "spectral")
    torch.testing.assert_close(model[0].weight, before)
    project_(model, "bjorck")
    for m in model.linears().values():
        s = torch.linalg.svdvals(m.weight.detach())
        assert float(s.max()) <= 1 + 1e-6 and float(s.min()) > 0.99  # all singular values pushed to 1


def test_lipschitz_mlp_is_one_lipschitz_and_rejects_odd_widths():
    g = torch.Generator().manual_seed(2)
    model = LipschitzMLP([10, 16, 16, 4], generator=g)
    a, b = torch.randn(200, 10, generator=g), torch.randn(200, 10, generator=g)
    with torch.no_grad():
        assert torch.all((model(a) - model(b)).norm(dim=1) <= (a - b).norm(dim=1) * (1 + 1e-5))
    with pytest.raises(ValueError, match="even hidden widths"):
        LipschitzMLP([10, 15, 4])


def test_tau_loss_gradient_bound():
    g = torch.Generator().manual_seed(3)
    tau = 0.2
    z = (10 * torch.randn(500, 5, generator=g)).requires_grad_()
    y = torch.randint(0, 5, (500,), generator=g)
    (gz,) = torch.autograd.grad(tau_cross_entropy(z, y, tau=tau, reduction="sum"), z)
    assert float(gz.norm(dim=1).max()) <= loss_lipschitz(tau) * (1 + 1e-6)
    assert float(gz.norm(dim=1).max()) > 0.9 * loss_lipschitz(tau)  # confident mistakes come close to √2/τ


@pytest.mark.parametrize("tau, x0", [(0.125, 1.0), (1.0, 3.0), (0.05, 0.5)])
def test_measured_per_sample_norms_never_exceed_the_bound(tau, x0):
    g = torch.Generator().manual_seed(4)
    model = LipschitzMLP([20, 32, 32, 6], generator=g)
    x = project_inputs(5 * torch.randn(300, 20, generator=g), x0)
    y = torch.randint(0, 6, (300,), generator=g)
    bounds = gradient_norm_bounds(model, input_bound=x0, tau=tau)
    step = ClipLessStep(bounds, noise_multiplier=1.0, batch_size=32, tau=tau,
                        generator=torch.Generator().manual_seed(0))
    one = lambda z, t: tau_cross_entropy(z, t, tau=tau)  # noqa: E731
    for _ in range(3):  # after every epoch of noisy training, including the initial state
        norms = per_sample_gradient_norms(model, x, target=y, loss=one)
        for name, v in norms.items():
            assert float(v.max()) <= bounds[name] * (1 + 1e-6)
        fit(model, x, y, epochs=1, batch_size=32, lr=0.05 / bounds["0.weight"], optimizer="sgd", momentum=0.0,
            loss_fn=step.loss, generator=1, before_step=step.before_step, after_step=step.after_step)


def test_bound_is_tight_for_a_confident_mistake():
    """One orthogonal layer, ‖x‖ = X0, tiny τ, a wrong confident prediction: the norm approaches Δ = √2 X0 / τ."""
    model = LipschitzMLP([4, 4])
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
    x = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    tau = 0.01
    one = lambda z, t: tau_cross_entropy(z, t, tau=tau)  # noqa: E731
    norm = per_sample_gradient_norms(model, x, target=torch.tensor([1]), loss=one)["0.weight"]
    bound = gradient_norm_bounds(model, input_bound=2.0, tau=tau)["0.weight"]
    assert 0.999 < float(norm[0]) / bound <= 1.0


def test_clipless_noise_scale_and_seeding():
    model = LipschitzMLP([30, 40, 5], generator=torch.Generator().manual_seed(0))
    bounds = gradient_norm_bounds(model, input_bound=1.0, tau=0.5)
    draws = []
    for _ in range(2):
        step = ClipLessStep(bounds, noise_multiplier=2.0, batch_size=16, tau=0.5,
                            generator=torch.Generator().manual_seed(7))
        for p in model.parameters():
            p.grad = None
        step.before_step(model, 0)
        draws.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*draws, strict=True):
        torch.testing.assert_close(a, b)
    expected = 2.0 * math.sqrt(2) * bounds["0.weight"] / 16  # σ √D Δ / B with D = 2 layers
    got = float(torch.cat([d.flatten() for d in draws[0]]).std())
    assert abs(got / expected - 1) < 0.05


def test_bound_arguments_are_checked():
    model = LipschitzMLP([4, 4])
    with pytest.raises(ValueError, match="'input_bound' parameter of gradient_norm_bounds"):
        gradient_norm_bounds(model, input_bound=0.0, tau=1.0)
    with pytest.raises(ValueError, match="'tau' parameter of loss_lipschitz"):
        gradient_norm_bounds(model, input_bound=1.0, tau=-1.0)
    with pytest.raises(TypeError, match="must be a LipschitzMLP"):
        gradient_norm_bounds(torch.nn.Linear(2, 2), input_bound=1.0, tau=1.0)
    with pytest.raises(ValueError, match="'method' parameter of project_"):
        project_(model, "qr")
