"""Multi-term node-level RDP accountant (P12) against closed forms and opacus's subsampled-Gaussian RDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants.analysis.rdp import compute_rdp

from nnsens.measures.privacy import per_sample_gradients
from nnsens.measures.privacy_accounting import (
    gaussian_rdp,
    multiterm_epsilon,
    multiterm_noise_multiplier,
    multiterm_rdp,
    subsampled_noise_multiplier,
)
from nnsens.methods.dp_gnn import _mlp_per_node_gradients, clipped_per_node_gradients, inverse_degree_aggregate
from nnsens.models import MLP

ORDERS = np.arange(2, 33, dtype=float)


def test_full_batch_is_the_unamplified_gaussian_as_in_opacus():
    for k in (1, 4):
        ours = multiterm_rdp(1.3, num_samples=50, batch_size=50, max_terms_per_node=k, orders=ORDERS)
        assert np.allclose(ours, gaussian_rdp(1.3, ORDERS))
    assert np.allclose(gaussian_rdp(1.3, ORDERS), compute_rdp(q=1.0, noise_multiplier=1.3, steps=1, orders=ORDERS))


@pytest.mark.parametrize("q", [0.01, 0.1, 0.5])
def test_one_term_per_node_is_the_convexity_bound_and_dominates_opacus(q):
    """K' = 1: log((1 − q) + q·exp((α − 1)α/2σ²)) / (α − 1), an upper bound on opacus's exact subsampled RDP."""
    n = 1000
    ours = multiterm_rdp(1.0, num_samples=n, batch_size=int(q * n), max_terms_per_node=1, orders=ORDERS)
    closed = np.log((1 - q) + q * np.exp((ORDERS - 1) * ORDERS / 2.0)) / (ORDERS - 1)
    assert np.allclose(ours, closed)
    assert np.all(ours >= compute_rdp(q=q, noise_multiplier=1.0, steps=1, orders=ORDERS) - 1e-12)


@pytest.mark.parametrize("k", [1, 4, 8, 16])
def test_q2_lower_bound_and_no_worse_than_unamplified(k):
    kw = dict(num_samples=2000, batch_size=200, orders=ORDERS)
    amp = multiterm_rdp(2.0, max_terms_per_node=k, **kw)
    assert np.all(amp >= 0.1**2 * gaussian_rdp(2.0, ORDERS) - 1e-6)
    assert np.all(amp <= gaussian_rdp(2.0, ORDERS) + 1e-12)  # amplification never hurts


def test_calibration_inverts_epsilon():
    kw = dict(steps=100, delta=1e-5, num_samples=1500, batch_size=300, max_terms_per_node=4)
    s = multiterm_noise_multiplier(4.0, **kw)
    assert multiterm_epsilon(s, **kw) <= 4.0 < multiterm_epsilon(0.99 * s, **kw)
    s1 = subsampled_noise_multiplier(4.0, steps=100, delta=1e-5, sample_rate=0.2)
    assert 0 < s1 < s  # a node in one term needs less noise (relative to its sensitivity)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="The 'batch_size' parameter of multiterm_rdp must be at most"):
        multiterm_rdp(1.0, num_samples=10, batch_size=11, max_terms_per_node=1)
    with pytest.raises(ValueError, match="The 'noise_multiplier' parameter of multiterm_rdp"):
        multiterm_rdp(0.0, num_samples=10, batch_size=5, max_terms_per_node=1)
    with pytest.raises(ValueError, match="The 'orders' parameter of multiterm_rdp"):
        multiterm_rdp(1.0, num_samples=10, batch_size=5, max_terms_per_node=1, orders=[0.5])


def test_hand_backprop_equals_torch_func_and_clipping():
    torch.manual_seed(0)
    net = MLP((6, 5, 5, 3)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    ref = torch.cat([g.flatten(1) for g in per_sample_gradients(net, x, target=y).values()], dim=1)
    assert torch.allclose(_mlp_per_node_gradients(net, x, y), ref, atol=1e-12)
    clipped = clipped_per_node_gradients(net, x, y, 0.01)
    assert torch.all(clipped.norm(dim=1) <= 0.01 + 1e-12)
    assert all(p.grad is None for p in net.parameters())


def test_inverse_degree_aggregation_is_the_mean_over_self_and_sources():
    x = torch.arange(8.0).reshape(4, 2)
    msg = np.array([[1, 2, 3], [0, 0, 1]])  # 1→0, 2→0, 3→1
    out = inverse_degree_aggregate(x, msg, 4)
    assert torch.allclose(out[0], x[[0, 1, 2]].mean(0)) and torch.allclose(out[1], x[[1, 3]].mean(0))
    assert torch.allclose(out[2:], x[2:])
