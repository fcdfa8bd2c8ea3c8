"""LOBSTER (arXiv 2011.09905): the regularised update, the ablation, the plateau/bisection schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.methods.lobster import Lobster, Plateau, bisect_threshold, magnitude_threshold, train_sparse
from nnsens.models import MLP


def test_update_closed_form():
    """w ← w − λ·w·ReLU(1 − |g|): |g| ≥ 1 leaves w alone, g = 0 shrinks it by (1 − λ), g = 0.5 by (1 − λ/2)."""
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -3.0, 4.0]]))
    lin.weight.grad = torch.tensor([[5.0, 0.0, -0.5]])
    reg = Lobster(lin, 0.1)
    reg.step()
    torch.testing.assert_close(lin.weight.detach(), torch.tensor([[2.0, -3.0 * 0.9, 4.0 * 0.95]]))
    assert reg.small_fraction == pytest.approx(2 / 3)
    reg.step({"weight": torch.tensor([[1.0, 0.0, 1.0]])})  # masked entries are zeroed and not counted
    assert lin.weight[0, 1] == 0 and reg.n_updates == 5


def test_shuffled_ablation_moves_the_shrinkage():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    lin.weight.grad = torch.tensor([[10.0, 10.0, 10.0, 0.0]])
    reg = Lobster(lin, 0.5, shuffle=True, generator=3)
    reg.step()
    w = lin.weight.detach()[0]
    assert sorted(w.tolist()) == [0.5, 1.0, 1.0, 1.0]  # one entry shrank, as before, but a random one


def test_insensitive_parameters_shrink_and_sensitive_ones_do_not():
    """Targets depend on input 0 only; inputs 1..3 are noise. With LOBSTER the irrelevant weights decay far more
    than with plain SGD, the relevant one keeps its size."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    w0 = torch.randn(2, 4, generator=torch.Generator().manual_seed(1)).abs()
    out = {}
    for method in ("dense", "lobster"):
        lin = nn.Linear(4, 2)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(2, 4, generator=torch.Generator().manual_seed(1)))
            lin.bias.zero_()
        train_sparse(lin, x, y, x[:64], y[:64], method=method, epochs=30, lr=0.1, lmbda=0.05, pwe=1000,
                     batch_size=32, generator=0)
        out[method] = lin.weight.detach().abs()
    # irrelevant inputs: shrunk to < 10 % of their initial size (plain SGD keeps them at > 50 %)
    assert out["lobster"][:, 1:].mean() < 0.1 * w0[:, 1:].mean()
    assert out["dense"][:, 1:].mean() > 0.5 * w0[:, 1:].mean()
    # the relevant input keeps most of its size and dominates the others by > 10x
    assert out["lobster"][:, 0].mean() > 0.5 * w0[:, 0].mean()
    assert out["lobster"][:, 0].min() > 10 * out["lobster"][:, 1:].max()


def test_plateau_restores_the_best_state():
    lin = nn.Linear(1, 1)
    p = Plateau(2)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    assert not p.step(1.0, lin)
    with torch.no_grad():
        lin.weight.fill_(7.0)
    assert not p.step(1.02, lin)  # no 1 % improvement: bad
    assert p.step(1.5, lin)
    assert float(lin.weight.detach()) == 1.0


def test_bisection_respects_the_tolerance_and_leaves_the_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP((6, 16, 3))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 6, generator=gen), torch.randint(0, 3, (100,), generator=gen)
    loss = lambda m: nn.functional.cross_entropy(m(x), y).item()  # noqa: E731
    names = [n for n, _ in net.named_parameters()]
    before = [p.detach().clone() for p in net.parameters()]
    t = bisect_threshold(net, names, loss, 0.05)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    base = loss(net)
    magnitude_threshold(net, names, t)
    assert t > 0 and loss(net) <= base * 1.05 + 1e-6


def test_matched_sparsity_and_frozen_mask():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=gen), torch.randint(0, 3, (200,), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP((8, 32, 3))
    run = train_sparse(net, x, y, x[:50], y[:50], method="l2_imp", epochs=12, target=0.9, weight_decay=1e-4,
                       imp_rounds=3, generator=0)
    n = sum(p.numel() for p in net.parameters())
    assert run.reached_epoch >= 0 and run.sparsity[-1] == pytest.approx(round(0.9 * n) / n)
    assert run.prune_epochs == [2, 5, 8]


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"method": "obs"}, "The 'method' parameter of train_sparse must be one of"),
        ({"method": "l2_imp"}, "The 'target' parameter of train_sparse is required"),
        ({"target": 1.0}, "The 'target' parameter of train_sparse must be a float in (0, 1)"),
        ({"lmbda": -1.0}, "The 'lmbda' parameter of train_sparse must be a float in [0.0, inf). Got -1.0"),
        ({"epochs": 0}, "The 'epochs' parameter of train_sparse"),
    ],
)
def test_bad_arguments(kwargs, msg):
    net = nn.Linear(2, 2)
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError) as e:
        train_sparse(net, x, y, x, y, **kwargs)
    assert msg in str(e.value)


def test_plateau_and_lobster_reject_bad_values():
    with pytest.raises(ValueError, match="The 'pwe' parameter of Plateau"):
        Plateau(0)
    with pytest.raises(ValueError, match="The 'lmbda' parameter of Lobster"):
        Lobster(nn.Linear(2, 2), float("nan"))


def test_snapshot_continuation_equals_the_target_run():
    """One free run (snapshot at the target) + continuation = the target-mode run, bit for bit."""
    from nnsens.methods.lobster import matched_from_snapshot

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=gen), torch.randint(0, 3, (300,), generator=gen)
    xv, yv = torch.randn(100, 8, generator=gen), torch.randint(0, 3, (100,), generator=gen)

    def net():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return MLP((8, 32, 3))

    kw = dict(lr=0.1, lmbda=0.05, pwe=2, twt=0.5, batch_size=50)
    direct = net()
    d = train_sparse(direct, x, y, xv, yv, method="lobster", epochs=25, target=0.3, generator=0, **kw)
    free_net = net()
    free = train_sparse(free_net, x, y, xv, yv, method="lobster", epochs=25, snapshot_at=0.3, generator=0, **kw)
    assert d.reached_epoch >= 0 and free.snapshot is not None  # the test needs the schedule to reach 30 %
    cont = net()
    m = matched_from_snapshot(cont, free, x, y, xv, yv, target=0.3, epochs=25, **kw)
    assert m.reached_epoch == d.reached_epoch and m.sparsity == pytest.approx(d.sparsity)
    assert all(torch.equal(a, b) for a, b in zip(direct.parameters(), cont.parameters(), strict=True))
