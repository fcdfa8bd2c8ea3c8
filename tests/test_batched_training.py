"""Batched training of many runs at once (P21): BatchedMLP and fit with one data order per member."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.models import MLP, BatchedMLP
from nnsens.training import fit, predict

SIZES = (6, 16, 12, 3)


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, SIZES[0], generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def _mlp(seed: int) -> MLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(SIZES)


def _params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


SGD = dict(epochs=3, batch_size=20, lr=0.2, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="linear")


def test_members_initialised_like_nn_linear_default():
    b = BatchedMLP(SIZES, [3, 7, 3])
    for r, seed in enumerate([3, 7, 3]):
        ref, got = _mlp(seed), b.member(r)
        for p, q in zip(ref.parameters(), got.parameters(), strict=True):
            assert torch.equal(p, q)
    assert b.n_members == 3 and b.sizes == SIZES


def test_construction_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    b = BatchedMLP(SIZES, [1, 2])
    b.member(0)
    assert torch.equal(torch.rand(3), expected)


def test_forward_equals_members_and_broadcasts_2d_input():
    b = BatchedMLP(SIZES, [0, 1, 2, 3])
    x = torch.randn(4, 5, SIZES[0])
    out = b(x)
    assert out.shape == (4, 5, SIZES[-1])
    for r in range(4):
        torch.testing.assert_close(out[r], b.member(r)(x[r]), rtol=1e-5, atol=1e-6)
    x2 = torch.randn(5, SIZES[0])
    torch.testing.assert_close(b(x2), torch.stack([b.member(r)(x2) for r in range(4)]), rtol=1e-5, atol=1e-6)


def test_from_mlps_roundtrip():
    mlps = [_mlp(s) for s in (4, 5)]
    b = BatchedMLP.from_mlps(mlps)
    for r, m in enumerate(mlps):
        for p, q in zip(m.parameters(), b.member(r).parameters(), strict=True):
            assert torch.equal(p, q)


@pytest.mark.parametrize("opt", [SGD, dict(SGD, optimizer="adam", lr=1e-2, schedule="constant")])
def test_batched_member_trains_like_the_same_mlp_alone(opt):
    x, y = _data()
    init, order = [11, 12, 11], [21, 21, 22]  # members 0/1 share the order, 0/2 the init
    b = BatchedMLP(SIZES, init)
    hist_b = fit(b, x, y, generator=order, **opt)
    hists = []
    for r in range(3):
        alone = _mlp(init[r])
        hists.append(fit(alone, x, y, generator=order[r], **opt))
        for p, q in zip(alone.parameters(), b.member(r).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    # the batched history is the mean over members of their per-epoch losses
    torch.testing.assert_close(torch.tensor(hist_b), torch.tensor(hists).mean(0), rtol=1e-4, atol=1e-5)


def test_batched_member_generators_accept_torch_generators():
    x, y = _data()
    b1, b2 = BatchedMLP(SIZES, [1, 2]), BatchedMLP(SIZES, [1, 2])
    fit(b1, x, y, generator=[5, 6], **SGD)
    fit(b2, x, y, generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)], **SGD)
    for p, q in zip(b1.parameters(), b2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_identical_seeds_give_identical_runs():
    """CPU determinism: same seeds -> bit-identical runs, across calls and across members of one batch."""
    x, y = _data()
    runs = []
    for _ in range(2):
        b = BatchedMLP(SIZES, [9, 9, 9])
        fit(b, x, y, generator=[4, 4, 4], **SGD)
        runs.append(_params(b))
    for p, q in zip(*runs, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(p[0], p[1]) and torch.equal(p[0], p[2])
    a1, a2 = _mlp(9), _mlp(9)
    fit(a1, x, y, generator=4, **SGD)
    fit(a2, x, y, generator=4, **SGD)
    for p, q in zip(a1.parameters(), a2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_poke_via_on_step_changes_only_the_poked_member():
    x, y = _data()

    def poke(m: BatchedMLP, step: int) -> None:
        if step == 0:
            with torch.no_grad():
                m.weights[0][1, 2, 3] *= 1.001

    b = BatchedMLP(SIZES, [9, 9, 9])
    fit(b, x, y, generator=[4, 4, 4], on_step=poke, **SGD)
    w = b.weights[-1]
    assert torch.equal(w[0], w[2]) and not torch.equal(w[0], w[1])


def _fit_before_batching(model, x, y, *, epochs, batch_size, lr, momentum, weight_decay, generator):
    """The loop of training.fit as it was before batched training was added (SGD, linear schedule)."""
    gen = torch.Generator().manual_seed(generator)
    opt = torch.optim.SGD(list(model.parameters()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = x.shape[0]
    total = max(1, epochs * ((n + batch_size - 1) // batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        tot = 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * idx.numel()
        history.append(tot / n)
    model.eval()
    return history


def test_fit_unbatched_behaviour_unchanged():
    x, y = _data()
    a, ref = _mlp(3), _mlp(3)
    hist = fit(a, x, y, generator=8, **SGD)
    hist_ref = _fit_before_batching(ref, x, y, epochs=3, batch_size=20, lr=0.2, momentum=0.9, weight_decay=5e-4,
                                    generator=8)
    assert hist == hist_ref
    for p, q in zip(a.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_predict_batched_dim():
    b = BatchedMLP(SIZES, [0, 1])
    x = torch.randn(10, SIZES[0])
    out = predict(b, x, batch_size=3, dim=1)
    assert out.shape == (2, 10, SIZES[-1])
    torch.testing.assert_close(out, b(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="'seeds' parameter of BatchedMLP"):
        BatchedMLP(SIZES, [])
    with pytest.raises(ValueError, match="'sizes' parameter of MLP"):
        BatchedMLP((4,), [0])
    with pytest.raises(ValueError, match=r"BatchedMLP expects inputs of shape \(B, d\) or \(2, B, d\)"):
        BatchedMLP(SIZES, [0, 1])(torch.randn(3, 5, SIZES[0]))
    with pytest.raises(ValueError, match="'generator' parameter of fit"):
        fit(BatchedMLP(SIZES, [0]), *_data(), generator=[])
    with pytest.raises(ValueError, match="'mlps' parameter of BatchedMLP.from_mlps"):
        BatchedMLP.from_mlps([])
