"""Sobol indices (Saltelli first order, Jansen total) and the Sobol attribution method (arXiv 2111.04138)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from SALib.analyze import sobol as salib_analyze
from SALib.sample import sobol as salib_sample
from torch import nn

from nnsens.measures.sobol import saltelli_design, sobol_attribution, sobol_indices, upsample_cells


def ishigami(x: torch.Tensor, a: float = 7.0, b: float = 0.1) -> torch.Tensor:
    z = (2 * x - 1) * math.pi  # U[0,1] -> U[-pi, pi]
    return torch.sin(z[:, 0]) + a * torch.sin(z[:, 1]) ** 2 + b * z[:, 2] ** 4 * torch.sin(z[:, 0])


def test_ishigami_analytic_first_and_total():
    """Ishigami, a = 7, b = 0.1, X_i ~ U[-pi, pi]:
    V1 = (1 + b pi^4 / 5)^2 / 2, V2 = a^2 / 8, V3 = 0, V13 = 8 b^2 pi^8 / 225, V = V1 + V2 + V13;
    S1 = V1 / V, S2 = V2 / V, S3 = 0; ST1 = (V1 + V13) / V, ST2 = V2 / V, ST3 = V13 / V
    (= 0.314, 0.442, 0 and 0.558, 0.442, 0.244)."""
    a, b = 7.0, 0.1
    v1, v2, v13 = 0.5 * (1 + b * math.pi**4 / 5) ** 2, a**2 / 8, 8 * b**2 * math.pi**8 / 225
    v = v1 + v2 + v13
    first, total = np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v
    np.testing.assert_allclose(total, [0.558, 0.442, 0.244], atol=5e-4)
    est = sobol_indices(ishigami, 3, n_samples=2**12, generator=0)
    np.testing.assert_allclose(est.first.numpy(), first, atol=0.02)
    np.testing.assert_allclose(est.total.numpy(), total, atol=0.02)
    assert est.n_samples == 2**12 and est.total.dtype == torch.float64


def test_g_function_closed_form():
    """Sobol g-function g(x) = prod_i (|4 x_i - 2| + a_i) / (1 + a_i):
    V_i = 1 / (3 (1 + a_i)^2), V = prod_i (1 + V_i) - 1, S_i = V_i / V, ST_i = V_i prod_{j != i} (1 + V_j) / V."""
    a = torch.tensor([0.0, 0.5, 3.0, 9.0], dtype=torch.float64)
    g = lambda x: ((4 * x - 2).abs() + a).div(1 + a).prod(dim=1)  # noqa: E731
    vi = 1 / (3 * (1 + a) ** 2)
    v = torch.prod(1 + vi) - 1
    first = vi / v
    total = torch.stack([vi[i] * torch.prod(torch.cat([1 + vi[:i], 1 + vi[i + 1 :]])) for i in range(4)]) / v
    est = sobol_indices(g, 4, n_samples=2**13, generator=1)
    torch.testing.assert_close(est.first, first, atol=0.02, rtol=0)
    torch.testing.assert_close(est.total, total, atol=0.02, rtol=0)


def test_matches_salib_on_the_same_design():
    """An int generator seeds scipy's scrambled Sobol draw exactly as SALib.sample.sobol does."""
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[0.0, 1.0]] * 3}
    x = salib_sample.sample(problem, 512, calc_second_order=False, seed=7)
    y = ishigami(torch.from_numpy(x)).numpy()
    ref = salib_analyze.analyze(problem, y, calc_second_order=False, seed=7)
    est = sobol_indices(ishigami, 3, n_samples=512, generator=7)
    np.testing.assert_allclose(est.first.numpy(), ref["S1"], atol=1e-10)
    np.testing.assert_allclose(est.total.numpy(), ref["ST"], atol=1e-10)


def test_design_structure():
    d, n = 3, 8
    x = saltelli_design(d, n, seed=0)
    a, b = x[:n], x[n : 2 * n]
    assert x.shape == (n * (d + 2), d)
    for i in range(d):
        ab_i = x[(2 + i) * n : (3 + i) * n]
        np.testing.assert_array_equal(ab_i[:, i], b[:, i])
        np.testing.assert_array_equal(np.delete(ab_i, i, axis=1), np.delete(a, i, axis=1))


def test_constant_function_has_zero_indices():
    est = sobol_indices(lambda x: torch.full((x.shape[0],), 3.0), 4, n_samples=64, generator=0)
    assert torch.equal(est.first, torch.zeros(4)) and torch.equal(est.total, torch.zeros(4))


def test_seeding():
    f = lambda x: x[:, 0] * x[:, 1] + x[:, 2]  # noqa: E731
    a = sobol_indices(f, 3, n_samples=64, generator=3)
    b = sobol_indices(f, 3, n_samples=64, generator=3)
    c = sobol_indices(f, 3, n_samples=64, generator=4)
    assert torch.equal(a.total, b.total) and not torch.equal(a.total, c.total)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(sobol_indices(f, 3, n_samples=64, generator=g1).total,
                       sobol_indices(f, 3, n_samples=64, generator=g2).total)


@pytest.mark.parametrize(
    ("kwargs", "err", "msg"),
    [
        ({"n_samples": 0}, ValueError, "The 'n_samples' parameter of sobol_indices must be an int in [2, inf). Got 0"),
        ({"n_samples": 48}, ValueError, "'n_samples' parameter of sobol_indices must be a power of two"),
        ({"n_samples": 2.0}, TypeError, "'n_samples' parameter of sobol_indices must be an int"),
        ({"n_samples": 8, "generator": "x"}, TypeError, "'generator' parameter"),
    ],
)
def test_sobol_indices_bad_arguments(kwargs, err, msg):
    with pytest.raises(err) as e:
        sobol_indices(lambda x: x.sum(1), 2, **kwargs)
    assert msg in str(e.value)


def test_sobol_indices_bad_func():
    with pytest.raises(TypeError, match="'func' parameter of sobol_indices must be callable"):
        sobol_indices(3, 2, n_samples=8)
    with pytest.raises(ValueError, match="'n_dims' parameter of sobol_indices must be an int in \\[1, inf\\)"):
        sobol_indices(lambda x: x.sum(1), 0, n_samples=8)
    with pytest.raises(ValueError, match="must map \\(m, 2\\) points to \\(m,\\) outputs"):
        sobol_indices(lambda x: x, 2, n_samples=8)


# --- Sobol attribution --------------------------------------------------------------------------------------------

class CellProbe(nn.Module):
    """Two-class model whose class-0 probability is sigmoid(w * (mean of cell (0, 0) of an 8x8 grid on 16x16) - 1)."""

    def __init__(self, weight: float = 4.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.weight * x[:, :, :2, :2].mean(dim=(1, 2, 3)) - 1.0
        return torch.stack([z, torch.zeros_like(z)], dim=1)  # softmax(.)[0] = sigmoid(z)


class Counting(nn.Module):
    """Wraps a model and counts the images it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.model(x)


def _small_cnn() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net.eval()


def test_only_the_used_cell_gets_attribution():
    x = torch.ones(2, 1, 16, 16)
    cells = sobol_attribution(CellProbe(), x, target=0, grid_size=8, n_designs=16, upsample="none", generator=0)
    assert cells.shape == (2, 8, 8)
    assert cells[:, 0, 0].min() > 0.5  # the one input that matters carries (almost) all the variance
    others = cells.flatten(1)[:, 1:]
    assert torch.equal(others, torch.zeros_like(others))


def test_cells_are_the_jansen_indices_of_the_mask_function():
    """sobol_attribution's cell indices = sobol_indices(total) of f(m) = p(x * upsample(m)) on the same design."""
    model = _small_cnn()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def f(m: torch.Tensor) -> torch.Tensor:
        masks = torch.nn.functional.interpolate(m.float().reshape(-1, 1, 4, 4), size=(8, 8), mode="nearest")
        return torch.softmax(model(x * masks), 1)[:, 2].double()

    ref = sobol_indices(f, 16, n_samples=8, generator=11).total.reshape(4, 4)
    cells = sobol_attribution(model, x, target=2, grid_size=4, n_designs=8, upsample="none", generator=11)[0]
    torch.testing.assert_close(cells.double(), ref, atol=1e-6, rtol=1e-5)


def test_constant_model_gives_zero_attribution():
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        const[1].weight.zero_()
    out = sobol_attribution(const, torch.rand(2, 1, 8, 8), target=[0, 1], grid_size=4, n_designs=8, generator=0)
    assert out.shape == (2, 8, 8) and torch.equal(out, torch.zeros_like(out))


def test_forward_budget_and_shapes():
    model = Counting(_small_cnn())
    x = torch.rand(3, 1, 16, 16)
    out = sobol_attribution(model, x, target=1, grid_size=4, n_designs=8, upsample="nearest", generator=0)
    assert model.seen == 3 * 8 * (4**2 + 2)  # n_designs (grid^2 + 2) forwards per image
    assert out.shape == (3, 16, 16) and out.dtype == x.dtype
    cells = out[:, ::4, ::4]
    torch.testing.assert_close(upsample_cells(cells, (16, 16), "nearest"), out)
    bic = sobol_attribution(_small_cnn(), x, target=1, grid_size=4, n_designs=8, generator=0)
    torch.testing.assert_close(bic, upsample_cells(cells, (16, 16), "bicubic"))


def test_batched_equals_unbatched_and_seeding():
    model = _small_cnn()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    kw = {"target": [0, 1, 2], "grid_size": 4, "n_designs": 8, "upsample": "none"}
    small = sobol_attribution(model, x, internal_batch_size=7, generator=5, **kw)
    large = sobol_attribution(model, x, internal_batch_size=10_000, generator=5, **kw)
    torch.testing.assert_close(small, large, atol=1e-6, rtol=1e-5)
    again = sobol_attribution(model, x, generator=torch.Generator().manual_seed(9), **kw)
    assert torch.equal(again, sobol_attribution(model, x, generator=torch.Generator().manual_seed(9), **kw))
    assert not torch.equal(small, sobol_attribution(model, x, generator=6, **kw))


def test_leaves_training_flag():
    model = _small_cnn().train()
    sobol_attribution(model, torch.rand(1, 1, 8, 8), target=0, grid_size=2, n_designs=4, generator=0)
    assert model.training


@pytest.mark.parametrize(
    ("kwargs", "err", "msg"),
    [
        ({"n_designs": 6}, ValueError, "'n_designs' parameter of sobol_attribution must be a power of two"),
        ({"n_designs": 1}, ValueError, "'n_designs' parameter of sobol_attribution must be an int in [2, inf)"),
        ({"grid_size": 0}, ValueError, "'grid_size' parameter of sobol_attribution must be an int in [1, inf)"),
        ({"upsample": "cubic"}, ValueError, "'upsample' parameter of sobol_attribution must be one of"),
        ({"internal_batch_size": 0}, ValueError, "'internal_batch_size' parameter of sobol_attribution"),
        ({"target": [0, 1, 2]}, ValueError, "'target' parameter of sobol_attribution must hold 1 or 2"),
        ({"target": None}, ValueError, "'target' parameter of sobol_attribution"),
    ],
)
def test_sobol_attribution_bad_arguments(kwargs, err, msg):
    args = {"target": 0, "grid_size": 2, "n_designs": 4, **kwargs}
    with pytest.raises(err) as e:
        sobol_attribution(_small_cnn(), torch.rand(2, 1, 8, 8), **args)
    assert msg in str(e.value)


def test_sobol_attribution_rejects_non_images():
    with pytest.raises(ValueError, match="'inputs' parameter of sobol_attribution must be a floating tensor"):
        sobol_attribution(_small_cnn(), torch.rand(1, 8, 8), target=0)


def test_linear_gaussian_closed_form():
    """Y = Σ a_i X_i with independent X_i ~ N(0, s_i²): S_i = S_Ti = a_i² s_i² / Σ_j a_j² s_j² (no interactions)."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 2.0, 0.3], dtype=torch.float64)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))

    def f(u: torch.Tensor) -> torch.Tensor:
        x = normal.icdf(u.clamp(1e-12, 1 - 1e-12)) * s  # U[0, 1] -> N(0, s_i²) by the inverse CDF
        return x @ a

    est = sobol_indices(f, 4, n_samples=2**14, generator=3)
    truth = (a**2 * s**2 / (a**2 * s**2).sum()).numpy()
    np.testing.assert_allclose(est.first.numpy(), truth, atol=0.02)
    np.testing.assert_allclose(est.total.numpy(), truth, atol=0.02)
