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
    hessian_trace,
    layer_hessian_traces,
    make_hvp,
)
from nnsens.measures.spectrum import hessian_top_eigenvalue, layer_top_eigenvalues
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
    est = hessian_trace(Quadratic((4,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=5, generator=0,
                        method="hutchinson")
    assert est.mean == pytest.approx(10.0) and est.std == pytest.approx(0.0) and est.n_samples == 5


def test_trace_and_eigenvalue_of_quadratic():
    lam = [5.0, 2.0, 1.0, 0.5, 0.1, 0.05]
    A = spd(6, lam)
    m = Quadratic((6,))
    est = hessian_trace(m, X1, target=Y1, loss_fn=half_quadratic(A), n_samples=2000, generator=1,
                        method="hutchinson")
    assert abs(est.mean - sum(lam)) < 4 * est.std
    top = hessian_top_eigenvalue(m, X1, target=Y1, loss_fn=half_quadratic(A), max_iter=1000, tol=1e-12, generator=0)
    assert top == pytest.approx(5.0, rel=1e-6)


def test_standard_error_matches_rademacher_variance():
    # Var(vᵀAv) = 2(‖A‖_F² − Σ A_ii²) for Rademacher v: the reported SE must be that over sqrt(n).
    A = spd(8, seed=3)
    n = 2000
    est = hessian_trace(Quadratic((8,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=n, generator=2,
                        method="hutchinson")
    expected = math.sqrt(2 * (A.pow(2).sum() - A.diagonal().pow(2).sum()).item() / n)
    assert est.std == pytest.approx(expected, rel=0.15)


def test_block_traces_and_block_eigenvalues_of_quadratic():
    A = spd(7, seed=4)
    m = Quadratic((3, 4))
    f = half_quadratic(A)
    names = ["blocks.0", "blocks.1"]
    blocks = {"blocks.0": A[:3, :3], "blocks.1": A[3:, 3:]}
    joint = hessian_trace(m, X1, target=Y1, loss_fn=f, n_samples=800, by_layer=True, generator=0,
                          method="hutchinson")
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
        est = hessian_trace(model, x, target=y, n_samples=150, generator=seed, method="hutchinson")
        assert abs(est.mean - H.trace().item()) < 4 * est.std
        joint = hessian_trace(model, x, target=y, n_samples=150, by_layer=True, generator=seed, method="hutchinson")
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


# ============================================================ Hutch++, rtol, channels, Lanczos top-k, SLQ density
from nnsens.measures.hessian import channel_hessian_traces  # noqa: E402
from nnsens.measures.spectrum import hessian_spectral_density, hessian_top_eigenvalues  # noqa: E402

# Few dominant eigenvalues and a flat tail, like a trained network's Hessian: Tr = 180 + 57 × 0.1 = 185.7.
DOMINANT = [100.0, 50.0, 30.0] + [0.1] * 57


def test_hutchpp_is_unbiased_and_its_standard_error_is_honest():
    # Over independent seeds the Hutch++ estimates scatter around Tr(A) with the spread the reported SE claims.
    A = spd(60, DOMINANT, seed=5)
    m, f = Quadratic((60,)), half_quadratic(A)
    est = [hessian_trace(m, X1, target=Y1, loss_fn=f, n_samples=30, generator=s) for s in range(150)]
    means = np.array([e.mean for e in est])
    assert all(e.n_samples == 30 for e in est)
    assert abs(means.mean() - sum(DOMINANT)) < 4 * means.std(ddof=1) / math.sqrt(len(means))
    reported = math.sqrt(np.mean([e.std**2 for e in est]))  # squared SE is unbiased for the variance
    assert reported == pytest.approx(means.std(ddof=1), rel=0.25)


def test_hutchpp_has_lower_variance_than_hutchinson_at_equal_hvps():
    A = spd(60, DOMINANT, seed=6)
    m, f = Quadratic((60,)), half_quadratic(A)
    spread = {}
    for method in ("hutch++", "hutchinson"):
        vals = [hessian_trace(m, X1, target=Y1, loss_fn=f, n_samples=30, method=method, generator=s).mean
                for s in range(60)]
        spread[method] = np.var(vals, ddof=1)
    assert spread["hutch++"] < spread["hutchinson"] / 10


def test_hutchpp_is_exact_when_the_sketch_spans_the_range():
    # rank-3 A: a sketch of 3 probes captures its whole range, the deflated operator is 0.
    A = spd(20, [4.0, 2.0, 1.0] + [0.0] * 17, seed=7)
    est = hessian_trace(Quadratic((20,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=9, sketch_size=3,
                        generator=0)
    assert est.mean == pytest.approx(7.0, rel=1e-10) and est.std < 1e-10 and est.n_samples == 9
    # sketch_size=0 is Hutchinson
    a = hessian_trace(Quadratic((20,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=9, sketch_size=0,
                      generator=1)
    b = hessian_trace(Quadratic((20,)), X1, target=Y1, loss_fn=half_quadratic(A), n_samples=9,
                      method="hutchinson", generator=1)
    assert a == b


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_rtol_stops_on_the_standard_error(method):
    A = spd(40, seed=8)
    m, f = Quadratic((40,)), half_quadratic(A)
    rtol, cap = 0.01, 5000
    est = hessian_trace(m, X1, target=Y1, loss_fn=f, n_samples=cap, rtol=rtol, method=method, generator=3)
    assert est.n_samples < cap and est.std < rtol * abs(est.mean)
    # the same probes without rtol, stopped at the same count, give the same estimate; one probe fewer is not
    # yet below rtol (the stop is the first time the criterion holds)
    kw = dict(loss_fn=f, method=method, generator=3) | ({"sketch_size": 10} if method == "hutch++" else {})
    same = hessian_trace(m, X1, target=Y1, n_samples=est.n_samples, **kw)
    assert same.mean == pytest.approx(est.mean, rel=1e-12) and same.std == pytest.approx(est.std, rel=1e-12)
    fewer = hessian_trace(m, X1, target=Y1, n_samples=est.n_samples - 1, **kw)
    assert fewer.std >= rtol * abs(fewer.mean)


def test_hutchpp_against_torch_func(tiny):
    model, x, y, H, blocks = tiny
    for seed in range(3):
        est = hessian_trace(model, x, target=y, n_samples=90, generator=seed)
        assert abs(est.mean - H.trace().item()) < 4 * est.std
        joint = hessian_trace(model, x, target=y, n_samples=90, by_layer=True, generator=seed)
        assert sum(joint.mean.values()) == pytest.approx(est.mean, rel=1e-9)
        for n, block in blocks.items():
            assert abs(joint.mean[n] - block.trace().item()) <= 4 * joint.std[n] + 1e-12, (seed, n)
        own = layer_hessian_traces(model, x, target=y, n_samples=30, method="hutch++", generator=seed)
        for n, block in blocks.items():
            assert abs(own.mean[n] - block.trace().item()) <= 4 * own.std[n] + 1e-12, (seed, n)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_channel_traces_against_torch_func(tiny, method):
    model, x, y, H, blocks = tiny
    weights = ["0.weight", "2.weight", "4.weight"]
    est = channel_hessian_traces(model, x, target=y, n_samples=300, method=method, generator=0)
    assert list(est.mean) == weights  # default: the Linear weights only
    # channel c of a weight (out, in) is the diagonal of its block over the rows c·in ... (c+1)·in − 1
    z = []
    for n in weights:
        out = est.mean[n].shape[0]
        exact = blocks[n].diagonal().reshape(out, -1).sum(1).numpy()
        z += list(np.abs(est.mean[n] - exact) / np.maximum(est.std[n], 1e-12))
    assert max(z) < 4.5
    # channels add up to the per-tensor traces from the same HVPs
    joint = hessian_trace(model, x, target=y, n_samples=300, method=method, by_layer=True, generator=0,
                          params=weights)
    for n in weights:
        assert est.mean[n].sum() == pytest.approx(joint.mean[n], rel=1e-9, abs=1e-12)


def test_channel_traces_of_a_conv_net():
    # a conv's output channel c is w[c] (in, kh, kw): its trace is the sum of the block diagonal over that slice
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4)).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (32,), generator=g)
    est = channel_hessian_traces(net, x, target=y, n_samples=400, method="hutchinson", generator=1)
    assert list(est.mean) == ["0.weight", "3.weight"] and est.mean["0.weight"].shape == (3,)
    block = exact_hessian(net, x, target=y, param="0.weight")
    exact = block.diagonal().reshape(3, -1).sum(1).numpy()
    assert np.all(np.abs(est.mean["0.weight"] - exact) < 4 * est.std["0.weight"])


@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
def test_top_eigenvalues_by_lanczos(solver):
    A = spd(60, DOMINANT, seed=9)
    m, f = Quadratic((60,)), half_quadratic(A)
    top = hessian_top_eigenvalues(m, X1, target=Y1, loss_fn=f, k=3, tol=1e-10, solver=solver, generator=0)
    np.testing.assert_allclose(top.values, [100.0, 50.0, 30.0], rtol=1e-8)
    assert 0 < top.n_hvp < 200


def test_lanczos_needs_fewer_hvps_than_power_iteration():
    # eigenvalue gap 100 : 50: power iteration's Rayleigh quotient gains a factor 4 per HVP; Lanczos, with the
    # same tolerance as a residual bound, is far quicker
    A = spd(60, DOMINANT, seed=9)
    m, f = Quadratic((60,)), half_quadratic(A)
    top = hessian_top_eigenvalues(m, X1, target=Y1, loss_fn=f, k=1, tol=1e-6, generator=0)
    assert top.values[0] == pytest.approx(100.0, rel=1e-6)
    from nnsens.measures.spectrum import _power_iteration

    hvp = make_hvp(m, X1, target=Y1, loss_fn=f)
    assert _power_iteration(hvp, 10_000, 1e-12, torch.Generator().manual_seed(0)) == pytest.approx(100.0, rel=1e-6)
    assert top.n_hvp < hvp.n_hvp / 2


@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
def test_top_eigenvalues_match_torch_func(tiny, solver):
    model, x, y, H, _ = tiny
    ev = torch.linalg.eigvalsh(H).numpy()[::-1]
    top = hessian_top_eigenvalues(model, x, target=y, k=4, tol=1e-10, solver=solver, generator=0)
    np.testing.assert_allclose(top.values, ev[:4], rtol=1e-6)
    again = hessian_top_eigenvalues(model, x, target=y, k=4, tol=1e-10, solver=solver, generator=0)
    assert again == top  # seeded starting vector: same values, same number of HVPs


def test_spectral_density_quadrature_is_exact_for_low_degree_polynomials():
    # Diagonal A: for a Rademacher probe, v̂ᵀ A^p v̂ = Tr(A^p)/n exactly, and m Lanczos steps give a Gauss
    # quadrature exact for degree ≤ 2m − 1: so one probe reproduces the normalised moments up to p = 7 (m = 4).
    lam = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 9.0])
    A = torch.diag(torch.tensor(lam))
    d = hessian_spectral_density(Quadratic((8,)), X1, target=Y1, loss_fn=half_quadratic(A), n_iter=4, generator=0)
    assert d.nodes.shape == (1, 4) and d.n_hvp == 4
    for p in range(8):
        assert d.expect(lambda t, p=p: t**p) == pytest.approx(np.mean(lam**p), rel=1e-9)
    assert d.expect(lambda t: t**12) != pytest.approx(np.mean(lam**12), rel=1e-3)  # degree 12 > 7: not exact
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, rel=1e-3)


def test_spectral_density_of_a_dense_quadratic():
    # n steps on an n×n matrix recover its spectrum (nodes = eigenvalues); over probes the moments are unbiased.
    A = spd(12, seed=10)
    ev = torch.linalg.eigvalsh(A).numpy()
    m, f = Quadratic((12,)), half_quadratic(A)
    full = hessian_spectral_density(m, X1, target=Y1, loss_fn=f, n_iter=50, generator=0)
    live = full.weights[0] > 1e-12
    np.testing.assert_allclose(np.sort(full.nodes[0][live]), ev, rtol=1e-8)
    d = hessian_spectral_density(m, X1, target=Y1, loss_fn=f, n_probes=400, n_iter=3, generator=1)
    for p, tol in ((1, 0.02), (2, 0.04), (3, 0.06)):
        assert d.expect(lambda t, p=p: t**p) == pytest.approx(np.mean(ev**p), rel=tol)


def test_new_estimators_are_seeded_and_side_effect_free(tiny):
    model, x, y, _, _ = tiny
    model.train(True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    a = hessian_trace(model, x, target=y, n_samples=12, generator=4)
    assert a == hessian_trace(model, x, target=y, n_samples=12, generator=torch.Generator().manual_seed(4))
    assert a != hessian_trace(model, x, target=y, n_samples=12, generator=5)
    c1 = channel_hessian_traces(model, x, target=y, n_samples=12, generator=4)
    c2 = channel_hessian_traces(model, x, target=y, n_samples=12, generator=4)
    assert all(np.array_equal(c1.mean[n], c2.mean[n]) for n in c1.mean)
    d1 = hessian_spectral_density(model, x, target=y, n_iter=5, generator=2)
    d2 = hessian_spectral_density(model, x, target=y, n_iter=5, generator=2)
    assert np.array_equal(d1.nodes, d2.nodes) and np.array_equal(d1.density, d2.density)
    hessian_top_eigenvalues(model, x, target=y, k=1, generator=0)
    assert model.training is True
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_zero_hessian_new_estimators():
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.zeros(4)
    f = lambda out, target: out.sum()
    assert hessian_trace(model, x, target=y, loss_fn=f, n_samples=6, generator=0) == TraceEstimate(0.0, 0.0, 6)
    ch = channel_hessian_traces(model, x, target=y, loss_fn=f, n_samples=6, generator=0)
    assert np.all(ch.mean["weight"] == 0)
    for solver in ("lanczos", "arpack"):
        assert hessian_top_eigenvalues(model, x, target=y, loss_fn=f, k=1, solver=solver, generator=0).values == (0.0,)


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda m, x, y: hessian_trace(m, x, target=y, method="hutch"), ValueError,
         "The 'method' parameter of hessian_trace must be one of 'hutch++', 'hutchinson'. Got 'hutch' instead."),
        (lambda m, x, y: hessian_trace(m, x, target=y, rtol=0.0), ValueError,
         "The 'rtol' parameter of hessian_trace must be a float in (0.0, inf). Got 0.0 instead."),
        (lambda m, x, y: hessian_trace(m, x, target=y, n_samples=10, sketch_size=5), ValueError,
         "The 'sketch_size' parameter of hessian_trace must be an int in [0, 4]. Got 5 instead."),
        (lambda m, x, y: hessian_trace(m, x, target=y, method="hutchinson", sketch_size=2), ValueError,
         "'sketch_size' parameter of hessian_trace only applies to method='hutch++'"),
        (lambda m, x, y: layer_hessian_traces(m, x, target=y, method=None), ValueError,
         "The 'method' parameter of layer_hessian_traces"),
        (lambda m, x, y: channel_hessian_traces(m, x, target=y, n_samples=0), ValueError,
         "The 'n_samples' parameter of channel_hessian_traces must be an int in [1, inf). Got 0 instead."),
        (lambda m, x, y: hessian_top_eigenvalues(m, x, target=y, k=0), ValueError,
         "The 'k' parameter of hessian_top_eigenvalues must be an int in [1, 139]. Got 0 instead."),
        (lambda m, x, y: hessian_top_eigenvalues(m, x, target=y, k=2, ncv=2, solver="arpack"), ValueError,
         "The 'ncv' parameter of hessian_top_eigenvalues must be an int in [3, 140]. Got 2 instead."),
        (lambda m, x, y: hessian_top_eigenvalues(m, x, target=y, ncv=8), ValueError,
         "The 'ncv' parameter of hessian_top_eigenvalues only applies to solver='arpack'"),
        (lambda m, x, y: hessian_top_eigenvalues(m, x, target=y, solver="power"), ValueError,
         "The 'solver' parameter of hessian_top_eigenvalues must be one of 'lanczos', 'arpack'. Got 'power'"),
        (lambda m, x, y: hessian_top_eigenvalues(m, x, target=y, tol=-1.0), ValueError, "'tol' parameter"),
        (lambda m, x, y: hessian_spectral_density(m, x, target=y, n_iter=0), ValueError,
         "The 'n_iter' parameter of hessian_spectral_density must be an int in [1, inf). Got 0 instead."),
        (lambda m, x, y: hessian_spectral_density(m, x, target=y, sigma=0.0), ValueError, "'sigma' parameter"),
        (lambda m, x, y: hessian_spectral_density(m, x, target=y, generator=1.5), TypeError, "'generator' parameter"),
    ],
)
def test_bad_arguments_new(tiny, call, exc, msg):
    model, x, y, _, _ = tiny
    with pytest.raises(exc) as err:
        call(model, x, y)
    assert msg in str(err.value)
