"""Hessian measures: closed forms on a quadratic loss, cross-checks against torch.func.hessian, honesty of the
standard error, seeding, no side effects, argument validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from nnsens.measures.hessian import (
    TraceEstimate,
    exact_hessian,
    exact_layer_traces,
    hessian_top_eigenvalue,
    hessian_trace,
    layer_hessian_traces,
    layer_top_eigenvalues,
    make_hvp,
)
from nnsens.models import MLP


class Quadratic(nn.Module):
    """Parameters θ = (a, b) whose "output" is θ itself; with ``half_quadratic(A)`` the loss is ½ θᵀAθ, H = A."""

    def __init__(self, sizes=(5,), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.blocks = nn.ParameterList([nn.Parameter(torch.randn(n, generator=g, dtype=torch.float64)) for n in sizes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.blocks))


def half_quadratic(A: torch.Tensor):
    return lambda theta, target: 0.5 * theta @ A @ theta


def spd(n: int, eigenvalues=None, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix Q diag(λ) Qᵀ with the given (or random positive) eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    if eigenvalues is None:
        lam = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    else:
        lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return q @ torch.diag(lam) @ q.T


X1, Y1 = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1)


# ------------------------------------------------------------------------------------------------ closed forms
def test_hvp_of_quadratic_is_A_v():
    A = spd(5)
    m = Quadratic((5,))
    hvp = make_hvp(m, X1, target=Y1, loss_fn=half_quadratic(A))
    v = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(hvp([v])[0], A @ v)


def test_trace_of_diagonal_quadratic_is_exact_with_zero_error():
    # For diagonal A, vᵀAv = Σ A_ii v_i² = Tr(A) for every Rademacher v: the estimate is exact and its SE is 0.
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    est = hessian_trace(Quadratic((4,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=5, generator=0)
    assert est.mean == pytest.approx(10.0) and est.std == pytest.approx(0.0) and est.n_samples == 5


def test_trace_and_eigenvalue_of_quadratic():
    lam = [5.0, 2.0, 1.0, 0.5, 0.1, 0.05]
    A = spd(6, lam)
    m = Quadratic((6,))
    est = hessian_trace(m, X1, target=Y1, loss_fn=half_quadratic(A), n_samples=2000, generator=1)
    assert abs(est.mean - sum(lam)) < 4 * est.std
    top = hessian_top_eigenvalue(m, X1, target=Y1, loss_fn=half_quadratic(A), max_iter=1000, tol=1e-12, generator=0)
    assert top == pytest.approx(5.0, rel=1e-6)


def test_standard_error_matches_rademacher_variance():
    # Var(vᵀAv) = 2(‖A‖_F² − Σ A_ii²) for Rademacher v: the reported SE must be that over sqrt(n).
    A = spd(8, seed=3)
    n = 2000
    est = hessian_trace(Quadratic((8,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=n, generator=2)
    expected = math.sqrt(2 * (A.pow(2).sum() - A.diagonal().pow(2).sum()).item() / n)
    assert est.std == pytest.approx(expected, rel=0.15)


def test_block_traces_and_block_eigenvalues_of_quadratic():
    A = spd(7, seed=4)
    m = Quadratic((3, 4))
    f = half_quadratic(A)
    names = ["blocks.0", "blocks.1"]
    blocks = {"blocks.0": A[:3, :3], "blocks.1": A[3:, 3:]}
    joint = hessian_trace(m, X1, target=Y1, loss_fn=f, n_samples=800, by_layer=True, generator=0)
    own = layer_hessian_traces(m, X1, target=Y1, loss_fn=f, n_samples=800, generator=0)
    eig = layer_top_eigenvalues(m, X1, target=Y1, loss_fn=f, max_iter=2000, tol=1e-12, generator=0)
    exact = exact_layer_traces(m, X1, target=Y1, loss_fn=f, params=names)
    for n in names:
        tr = blocks[n].trace().item()
        assert exact[n] == pytest.approx(tr, rel=1e-10)
        assert abs(joint.mean[n] - tr) < 4 * joint.std[n] and abs(own.mean[n] - tr) < 4 * own.std[n]
        assert own.std[n] < joint.std[n]  # restricting probes to the block removes the cross-block variance
        assert eig[n] == pytest.approx(torch.linalg.eigvalsh(blocks[n]).max().item(), rel=1e-6)
        torch.testing.assert_close(exact_hessian(m, X1, target=Y1, loss_fn=f, param=n), blocks[n])


# --------------------------------------------------------------------------------- cross-check with torch.func
@pytest.fixture(scope="module")
def tiny():
    """A 3-8-8-4 MLP in float64, a batch, and its exact Hessian from torch.func.hessian (all parameters)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP((3, 8, 8, 4)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=g)
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n in names:
            k = params[n].numel()
            parts[n] = flat[i : i + k].view_as(params[n])
            i += k
        return nn.functional.cross_entropy(functional_call(model, parts, (x,)), y)

    flat = torch.cat([params[n].flatten() for n in names])
    H = torch.func.hessian(loss)(flat)
    offsets = np.cumsum([0] + [params[n].numel() for n in names])
    blocks = {n: H[offsets[i] : offsets[i + 1], offsets[i] : offsets[i + 1]] for i, n in enumerate(names)}
    return model, x, y, H, blocks


def test_exact_blocks_match_torch_func(tiny):
    model, x, y, H, blocks = tiny
    for n, block in blocks.items():
        torch.testing.assert_close(exact_hessian(model, x, target=y, param=n, chunk_size=5), block)
    traces = exact_layer_traces(model, x, target=y, params=list(blocks))
    for n, block in blocks.items():
        assert traces[n] == pytest.approx(block.trace().item(), rel=1e-10, abs=1e-12)


def test_hutchinson_within_its_standard_errors_of_exact(tiny):
    model, x, y, H, blocks = tiny
    for seed in range(3):
        est = hessian_trace(model, x, target=y, n_samples=150, generator=seed)
        assert abs(est.mean - H.trace().item()) < 4 * est.std
        joint = hessian_trace(model, x, target=y, n_samples=150, by_layer=True, generator=seed)
        own = layer_hessian_traces(model, x, target=y, n_samples=150, generator=seed)
        for n, block in blocks.items():
            tr = block.trace().item()
            for e in (joint, own):
                assert abs(e.mean[n] - tr) <= 4 * e.std[n] + 1e-12, (seed, n)
        # the per-tensor parts of one probe add up to the whole-model value
        assert sum(joint.mean.values()) == pytest.approx(est.mean, rel=1e-9)


def test_top_eigenvalues_match_eigvalsh(tiny):
    model, x, y, H, blocks = tiny
    ev = torch.linalg.eigvalsh(H)
    dominant = ev[ev.abs().argmax()].item()  # power iteration finds the eigenvalue of largest magnitude
    top = hessian_top_eigenvalue(model, x, target=y, max_iter=5000, tol=1e-12, generator=0)
    assert top == pytest.approx(dominant, rel=1e-4)
    per = layer_top_eigenvalues(model, x, target=y, params=["0.weight", "4.weight"], max_iter=5000, tol=1e-12,
                                generator=0)
    for n, val in per.items():
        e = torch.linalg.eigvalsh(blocks[n])
        assert val == pytest.approx(e[e.abs().argmax()].item(), rel=1e-4)


# --------------------------------------------------------------------------- invariances and side effects
def test_internal_batch_size_and_float32_agree(tiny):
    model, x, y, H, _ = tiny
    a = hessian_trace(model, x, target=y, n_samples=20, generator=3)
    b = hessian_trace(model, x, target=y, n_samples=20, generator=3, internal_batch_size=10)
    assert b.mean == pytest.approx(a.mean, rel=1e-10) and b.std == pytest.approx(a.std, rel=1e-8)
    m32 = MLP((3, 8, 8, 4))
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    c = hessian_trace(m32, x.float(), target=y, n_samples=20, generator=3)
    assert c.mean == pytest.approx(a.mean, rel=1e-4)
    top = hessian_top_eigenvalue(model, x, target=y, generator=0, internal_batch_size=16)
    assert top == pytest.approx(hessian_top_eigenvalue(model, x, target=y, generator=0), rel=1e-8)


def test_seeding(tiny):
    model, x, y, _, _ = tiny
    a = layer_hessian_traces(model, x, target=y, n_samples=10, generator=7)
    b = layer_hessian_traces(model, x, target=y, n_samples=10, generator=torch.Generator().manual_seed(7))
    c = layer_hessian_traces(model, x, target=y, n_samples=10, generator=8)
    assert a == b and a != c
    assert hessian_trace(model, x, target=y, n_samples=10, generator=5) == hessian_trace(
        model, x, target=y, n_samples=10, generator=5)
    assert hessian_top_eigenvalue(model, x, target=y, generator=1) == hessian_top_eigenvalue(
        model, x, target=y, generator=1)


@pytest.mark.parametrize("training", [True, False])
def test_no_side_effects(tiny, training):
    model, x, y, _, _ = tiny
    model.train(training)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hessian_trace(model, x, target=y, n_samples=3, by_layer=True, generator=0)
    layer_hessian_traces(model, x, target=y, n_samples=3, generator=0)
    hessian_top_eigenvalue(model, x, target=y, max_iter=3, generator=0)
    layer_top_eigenvalues(model, x, target=y, max_iter=3, generator=0)
    exact_layer_traces(model, x, target=y, params=["4.weight"])
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_zero_hessian_gives_zero():
    # A loss linear in the parameters (sum of a linear model's outputs) has H = 0.
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.zeros(4)
    f = lambda out, target: out.sum()
    est = hessian_trace(model, x, target=y, loss_fn=f, n_samples=4, generator=0)
    assert est == TraceEstimate(0.0, 0.0, 4)
    assert hessian_top_eigenvalue(model, x, target=y, loss_fn=f, generator=0) == 0.0
    assert exact_layer_traces(model, x, target=y, loss_fn=f, params=["weight"]) == {"weight": 0.0}


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda m, x, y: hessian_trace(m, x, target=y, n_samples=0), ValueError,
         "The 'n_samples' parameter of hessian_trace must be an int in [1, inf). Got 0 instead."),
        (lambda m, x, y: hessian_trace(m, x, target=y, n_samples=2.5), ValueError, "'n_samples' parameter"),
        (lambda m, x, y: hessian_trace(m, x, target=y, by_layer="yes"), TypeError, "'by_layer' parameter"),
        (lambda m, x, y: hessian_trace(m, x, target=y, generator="seed"), TypeError, "'generator' parameter"),
        (lambda m, x, y: hessian_trace(m, x, target=y[:3]), ValueError, "'target' parameter of hessian_trace"),
        (lambda m, x, y: hessian_trace(m, x, target=y, internal_batch_size=0), ValueError,
         "'internal_batch_size' parameter of hessian_trace must be an int in [1, inf)"),
        (lambda m, x, y: hessian_top_eigenvalue(m, x, target=y, tol=0.0), ValueError,
         "The 'tol' parameter of hessian_top_eigenvalue must be a float in (0.0, inf). Got 0.0 instead."),
        (lambda m, x, y: hessian_top_eigenvalue(m, x, target=y, max_iter=0), ValueError, "'max_iter' parameter"),
        (lambda m, x, y: layer_top_eigenvalues(m, x, target=y, params=["nope"]), ValueError,
         "The 'params' parameter of layer_top_eigenvalues must name parameters of the model"),
        (lambda m, x, y: exact_hessian(m, x, target=y, param="0.weight", max_params=5), ValueError,
         "more than max_params=5"),
        (lambda m, x, y: hessian_trace("model", x, target=y), TypeError, "'model' parameter of hessian_trace"),
    ],
)
def test_bad_arguments(tiny, call, exc, msg):
    model, x, y, _, _ = tiny
    with pytest.raises(exc) as err:
        call(model, x, y)
    assert msg in str(err.value)
