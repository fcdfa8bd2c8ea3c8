"""Fisher measures: closed forms on softmax regression, the Linear fast path against per-sample gradients
(torch.func), K-FAC where it is exact, the true Fisher against Monte Carlo, batching, no side effects, messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.measures import (
    KFACFactors,
    exact_fisher,
    fisher_diagonal,
    kfac_factors,
    kfac_fisher,
    linear_layer_terms,
)
from nnsens.models import MLP, SmallCNN

D, C, N = 4, 3, 25


def softmax_regression(seed: int = 0, bias: bool = False) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D, C, bias=bias).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(C, D, generator=g, dtype=torch.float64))
        if bias:
            lin.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    return lin


def data(n: int = N, d: int = D, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, C, (n,), generator=g)


def closed_form(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Softmax regression, logits W x: ∇_W ℓ = (p − e_y) xᵀ, so with vec_row(W)
    true F = E[(diag(p) − ppᵀ) ⊗ xxᵀ] and empirical F = E[(e_y − p)(e_y − p)ᵀ ⊗ xxᵀ]."""
    p = torch.softmax(x @ lin.weight.T, dim=1)
    out = torch.zeros(C * D, C * D, dtype=torch.float64)
    for pn, xn, yn in zip(p, x, y):
        if kind == "true":
            m = torch.diag(pn) - torch.outer(pn, pn)
        else:
            r = nn.functional.one_hot(yn, C).double() - pn
            m = torch.outer(r, r)
        out += torch.kron(m, torch.outer(xn, xn))
    return out / x.shape[0]


def interleave(out: int, inn: int) -> torch.Tensor:
    """Index map from [vec_row(W), b] (exact_fisher's order) to vec_row([W | b]) (K-FAC's order)."""
    w = torch.arange(out * inn).view(out, inn)
    b = (out * inn + torch.arange(out)).view(out, 1)
    return torch.cat([w, b], dim=1).flatten()


# ------------------------------------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_softmax_regression_closed_form(kind):
    lin, (x, y) = softmax_regression(), data()
    expected = closed_form(lin, x, y, kind)
    torch.testing.assert_close(exact_fisher(lin, x, target=y, kind=kind), expected)
    diag = fisher_diagonal(lin, x, target=y, kind=kind)
    torch.testing.assert_close(diag["weight"], torch.diagonal(expected).view(C, D))
    torch.testing.assert_close(fisher_diagonal(lin, x, target=y, kind=kind, method="per_sample")["weight"],
                               diag["weight"])


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_diagonal_is_diag_of_exact_fisher_on_mlp(kind):
    torch.manual_seed(0)
    mlp, (x, y) = MLP((D, 6, 5, C)).double(), data()
    diag = fisher_diagonal(mlp, x, target=y, kind=kind)
    for name, p in mlp.named_parameters():
        full = exact_fisher(mlp, x, target=y, kind=kind, params=[name])
        torch.testing.assert_close(diag[name], torch.diagonal(full).view_as(p))


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_linear_fast_path_equals_per_sample_gradients(kind):
    torch.manual_seed(1)
    mlp, (x, y) = MLP((D, 16, 16, C)).double(), data(40)
    fast = fisher_diagonal(mlp, x, target=y, kind=kind)
    ref = fisher_diagonal(mlp, x, target=y, kind=kind, method="per_sample")
    assert set(fast) == {n for n, _ in mlp.named_parameters()}
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name])


def test_non_linear_layers_fall_back_to_per_sample_gradients():
    torch.manual_seed(2)
    cnn = SmallCNN(pool="avg").double()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g)
    fast = fisher_diagonal(cnn, x, target=y)
    for name, p in cnn.named_parameters():
        torch.testing.assert_close(fast[name], torch.diagonal(exact_fisher(cnn, x, target=y, params=[name]))
                                   .view_as(p))


class TwiceLinear(nn.Module):
    """A Linear applied twice per sample: its per-sample gradient is a sum of two outer products."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D, D)
        self.head = nn.Linear(D, C)

    def forward(self, x):
        return self.head(torch.tanh(self.lin(torch.tanh(self.lin(x)))))


def test_linear_used_twice_is_not_taken_for_an_outer_product():
    torch.manual_seed(3)
    m, (x, y) = TwiceLinear().double(), data()
    fast, ref = fisher_diagonal(m, x, target=y), fisher_diagonal(m, x, target=y, method="per_sample")
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name])
    with pytest.raises(ValueError, match="not applied exactly once"):
        linear_layer_terms(m, x, target=y)


# --------------------------------------------------------------------------------------------------------- K-FAC
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_kfac_is_exact_for_one_sample(kind):
    torch.manual_seed(4)
    mlp, (x, y) = MLP((D, 5, C)).double(), data(1)
    f = kfac_factors(mlp, x, target=y, kind=kind)
    assert set(f) == {"0", "2"} and isinstance(f["0"], KFACFactors) and f["0"].A.shape == (D + 1, D + 1)
    # one sample: the empirical F is (g gᵀ) ⊗ (ā āᵀ); the true F sums C classes, but ā is the same for all of
    # them, so it is (Σ_c p_c g_c g_cᵀ) ⊗ (ā āᵀ): a Kronecker product either way
    full = exact_fisher(mlp, x, target=y, kind=kind, params=["2.weight", "2.bias"])
    idx = interleave(C, 5)
    torch.testing.assert_close(kfac_fisher(f["2"]), full[idx][:, idx])


def test_kfac_is_exact_when_output_gradients_do_not_depend_on_inputs():
    """Zero weights and bias: p is uniform for every x, so the true Fisher is (diag(p) − ppᵀ) ⊗ E[x̄x̄ᵀ] = G ⊗ A."""
    lin = nn.Linear(D, C).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    x, _ = data()
    f = kfac_factors(lin, x, kind="true")[""]
    p = torch.full((C,), 1.0 / C, dtype=torch.float64)
    torch.testing.assert_close(f.G, torch.diag(p) - torch.outer(p, p))
    xb = torch.cat([x, torch.ones(N, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(f.A, xb.T @ xb / N)
    full = exact_fisher(lin, x, kind="true", params=["weight", "bias"])
    idx = interleave(C, D)
    torch.testing.assert_close(kfac_fisher(f), full[idx][:, idx])


def test_kfac_without_bias_augmentation_and_batched():
    torch.manual_seed(5)
    mlp, (x, y) = MLP((D, 5, C)).double(), data()
    f = kfac_factors(mlp, x, target=y, augment_bias=False)
    fb = kfac_factors(mlp, x, target=y, augment_bias=False, internal_batch_size=7)
    assert f["0"].A.shape == (D, D) and not f["0"].bias
    torch.testing.assert_close(f["0"].A, x.T @ x / N)
    for m in f:
        torch.testing.assert_close(f[m].A, fb[m].A)
        torch.testing.assert_close(f[m].G, fb[m].G)
    # the diagonal of G ⊗ A is not the Fisher diagonal in general, but its trace over the layer is E[|g|²|a|²]
    # only when independent; the exact per-layer terms reproduce the diagonal:
    a, g = linear_layer_terms(mlp, x, target=y)["0"]
    torch.testing.assert_close(g.square().sum(0).T @ a.square() / N, fisher_diagonal(mlp, x, target=y)["0.weight"])


# ---------------------------------------------------------------------------------------------- true vs sampled
def test_true_fisher_matches_monte_carlo():
    torch.manual_seed(6)
    mlp, (x, _) = MLP((D, 6, C)).double(), data(8)
    true = fisher_diagonal(mlp, x, kind="true")
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        p = torch.softmax(mlp(x), dim=1)
    n_draws = 4000
    ys = torch.multinomial(p, n_draws, replacement=True, generator=gen)  # (8, n_draws) sampled labels
    xs = x.repeat_interleave(n_draws, 0)
    mc = fisher_diagonal(mlp, xs, target=ys.flatten())
    for name in true:
        rel = (mc[name] - true[name]).norm() / true[name].norm()
        assert rel < 0.05, (name, float(rel))


# ------------------------------------------------------------------------------------- invariances, side effects
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_batched_equals_unbatched(kind):
    torch.manual_seed(8)
    cnn = SmallCNN(pool="avg").double()
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(7, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (7,), generator=g)
    whole = fisher_diagonal(cnn, x, target=y, kind=kind)
    parts = fisher_diagonal(cnn, x, target=y, kind=kind, internal_batch_size=3)
    for name in whole:
        torch.testing.assert_close(whole[name], parts[name])
    F1 = exact_fisher(cnn, x, target=y, kind=kind, params=["fc.weight"])
    F2 = exact_fisher(cnn, x, target=y, kind=kind, params=["fc.weight"], internal_batch_size=2)
    torch.testing.assert_close(F1, F2)


def test_float32_close_to_float64_and_params_subset():
    torch.manual_seed(10)
    mlp = MLP((D, 8, C))
    x, y = data()
    f32 = fisher_diagonal(mlp, x.float(), target=y, params=["2.weight"])
    f64 = fisher_diagonal(mlp.double(), x, target=y, params=["2.weight"])
    assert set(f32) == {"2.weight"} and f32["2.weight"].dtype == torch.float32
    torch.testing.assert_close(f32["2.weight"].double(), f64["2.weight"], rtol=1e-4, atol=1e-7)


def test_constant_model_has_zero_fisher():
    """A model whose logits do not depend on its parameters (frozen-in zero weights): all gradients vanish."""
    lin = nn.Linear(D, C).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    zero_in = torch.zeros(5, D, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)
    f = fisher_diagonal(lin, zero_in, target=y, params=["weight"])
    assert torch.count_nonzero(f["weight"]) == 0


def test_no_side_effects():
    torch.manual_seed(11)
    mlp = nn.Sequential(nn.Linear(D, 8), nn.Dropout(0.5), nn.ReLU(inplace=True), nn.Linear(8, C)).double()
    mlp.train()
    x, y = data()
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    a = fisher_diagonal(mlp, x, target=y)
    b = fisher_diagonal(mlp, x, target=y, method="per_sample")  # eval mode: dropout off, deterministic
    kfac_factors(mlp, x, target=y)
    exact_fisher(mlp, x, target=y, params=["3.weight"])
    assert mlp.training
    assert all(p.grad is None for p in mlp.parameters())
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert not mlp[0]._forward_hooks
    for name in a:  # in-place ReLU after the captured Linear output does not corrupt the fast path
        torch.testing.assert_close(a[name], b[name])


# --------------------------------------------------------------------------------------------------- messages
@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        ({"kind": "fisher"}, ValueError,
         "The 'kind' parameter of fisher_diagonal must be one of 'empirical', 'true'. Got 'fisher' instead."),
        ({"target": None}, TypeError, "The 'target' parameter of fisher_diagonal must be a tensor"),
        ({"target": torch.zeros(3, dtype=torch.long)}, ValueError, "one class index per input (25)"),
        ({"target": torch.zeros(N)}, TypeError, "must hold integer class indices"),
        ({"internal_batch_size": 0}, ValueError,
         "The 'internal_batch_size' parameter of fisher_diagonal must be an int in [1, inf) or None. Got 0 instead."),
        ({"params": ["nope"]}, ValueError, "The 'params' parameter of fisher_diagonal must name parameters"),
        ({"method": "fast"}, ValueError, "The 'method' parameter of fisher_diagonal must be one of"),
    ],
)
def test_bad_arguments(kwargs, err, msg):
    lin, (x, y) = softmax_regression(), data()
    call = {"target": y, **kwargs}
    with pytest.raises(err) as info:
        fisher_diagonal(lin, x, **call)
    assert msg in str(info.value)


def test_bad_arguments_of_the_other_functions():
    lin, (x, y) = softmax_regression(), data()
    with pytest.raises(TypeError, match="The 'model' parameter of kfac_factors must be a torch.nn.Module"):
        kfac_factors(lambda t: t, x, target=y)
    with pytest.raises(ValueError, match="selects 12 parameters, more than max_size=10"):
        exact_fisher(lin, x, target=y, max_size=10)
    with pytest.raises(ValueError, match="The 'layers' parameter of linear_layer_terms must name nn.Linear"):
        linear_layer_terms(lin, x, target=y, layers=["fc"])
    with pytest.raises(TypeError, match="The 'factors' parameter of kfac_fisher"):
        kfac_fisher(torch.eye(2))
