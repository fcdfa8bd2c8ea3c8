"""Per-sample gradients (torch.func) against opacus's GradSampleModule, norms, and the opacus accountant helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnsens.measures.privacy import (
    epsilon_spent,
    noise_multiplier_for_epsilon,
    per_sample_gradient_norms,
    per_sample_gradients,
)
from nnsens.models import MLP


def _model_and_data(seed: int = 0, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP((6, 8, 8, 3))
    return model, torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_equals_opacus_grad_sample():
    from opacus import GradSampleModule

    model, x, y = _model_and_data()
    ours = per_sample_gradients(model, x, target=y)
    gsm = GradSampleModule(MLP((6, 8, 8, 3)), loss_reduction="sum")
    gsm._module.load_state_dict(model.state_dict())
    nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()  # sum: grad_sample is each example's own
    for name, p in gsm._module.named_parameters():
        torch.testing.assert_close(ours[name], p.grad_sample, rtol=1e-5, atol=1e-6)
    gsm._close()


def test_closed_form_linear_layer():
    """For logits z = W x, ∂CE/∂W = (softmax(z) − e_y) xᵀ for each example."""
    model, x, y = _model_and_data()
    lin = nn.Linear(6, 3, bias=False)
    g = per_sample_gradients(lin, x, target=y)["weight"]
    expected = (torch.softmax(lin(x), 1) - nn.functional.one_hot(y, 3)).unsqueeze(2) * x.unsqueeze(1)
    torch.testing.assert_close(g, expected.detach())


def test_sum_of_per_sample_equals_batch_gradient_and_no_side_effects():
    model, x, y = _model_and_data()
    model.train()
    ours = per_sample_gradients(model, x, target=y)
    batch = torch.autograd.grad(nn.functional.cross_entropy(model(x), y, reduction="sum"), list(model.parameters()))
    for (name, _), b in zip(model.named_parameters(), batch, strict=True):
        torch.testing.assert_close(ours[name].sum(0), b, rtol=1e-5, atol=1e-6)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_chunked_equals_unchunked_and_norms():
    model, x, y = _model_and_data(n=10)
    full = per_sample_gradients(model, x, target=y)
    chunked = per_sample_gradients(model, x, target=y, internal_batch_size=3)
    for k in full:
        torch.testing.assert_close(full[k], chunked[k])
    norms = per_sample_gradient_norms(model, x, target=y, internal_batch_size=4)
    for k in full:
        torch.testing.assert_close(norms[k], full[k].flatten(1).norm(dim=1))
    total = per_sample_gradient_norms(model, x, target=y, reduce="total")
    expected = torch.cat([v.flatten(1) for v in full.values()], 1).norm(dim=1)
    torch.testing.assert_close(total, expected)


def test_params_subset_and_constant_model():
    model, x, y = _model_and_data()
    only = per_sample_gradients(model, x, target=y, params="0.weight")
    assert set(only) == {"0.weight"} and only["0.weight"].shape == (12, 8, 6)
    const = nn.Linear(6, 3)
    with torch.no_grad():
        const.weight.zero_()
        const.bias.zero_()
    mse = lambda z, t: (z - t).square().sum()  # noqa: E731
    g = per_sample_gradients(const, x, target=torch.zeros(12, 3), loss=mse)
    assert all(torch.count_nonzero(v) == 0 for v in g.values())  # zero output, zero target: zero gradient


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"inputs": torch.zeros(3)}, "The 'inputs' parameter of per_sample_gradients"),
        ({"target": torch.zeros(5, dtype=torch.long)}, "must hold one target per input"),
        ({"internal_batch_size": 0}, "The 'internal_batch_size' parameter of per_sample_gradients"),
        ({"params": ["nope"]}, "The 'params' parameter of per_sample_gradients"),
    ],
)
def test_rejects_bad_arguments(kwargs, msg):
    model, x, y = _model_and_data()
    args = {"inputs": x, "target": y, **kwargs}
    with pytest.raises(ValueError) as err:
        per_sample_gradients(model, args.pop("inputs"), **args)
    assert msg in str(err.value)


def test_accountant_helpers_match_opacus():
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    q, steps, delta = 0.05, 600, 1e-3
    sigma = noise_multiplier_for_epsilon(2.0, delta=delta, sample_rate=q, steps=steps)
    assert sigma == get_noise_multiplier(target_epsilon=2.0, target_delta=delta, sample_rate=q, steps=steps)
    eps = epsilon_spent(sigma, delta=delta, sample_rate=q, steps=steps)
    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    assert math.isclose(eps, acc.get_epsilon(delta), rel_tol=1e-12)
    assert 2.0 - 0.01 <= eps <= 2.0  # opacus's binary search lands just under the target
    assert epsilon_spent(2 * sigma, delta=delta, sample_rate=q, steps=steps) < eps  # more noise, less ε


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: noise_multiplier_for_epsilon(0.0, delta=1e-3, sample_rate=0.1, steps=10), "'epsilon' parameter"),
        (lambda: noise_multiplier_for_epsilon(1.0, delta=1e-3, sample_rate=1.5, steps=10), "'sample_rate' parameter"),
        (lambda: epsilon_spent(1.0, delta=1.0, sample_rate=0.1, steps=10), "'delta' parameter"),
        (lambda: epsilon_spent(1.0, delta=1e-3, sample_rate=0.1, steps=0), "'steps' parameter"),
        (lambda: epsilon_spent(-1.0, delta=1e-3, sample_rate=0.1, steps=3), "'noise_multiplier' parameter"),
    ],
)
def test_accountant_rejects_bad_values(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
