"""Neural conditional transport maps for OT sensitivity indices (in the spirit of arXiv 2505.15808).

A conditional map T_c pushes the unconditional output law P_Y onto P_{Y | X_i ∈ bin}; the condition c = (i, x) is the
input's index (a learned embedding, categorical) and the bin's mean value of X_i (a positional encoding, continuous).

- :class:`HyperTransport`: a hypernetwork reads c and emits all the weights of a small residual transport MLP,
  T_c(y) = y + W_a y + b_a + W₂ tanh(W₁ y + b₁) (+ b₂), applied with batched matrix products; its last layer starts at
  zero, so every T_c starts as the identity.
- :class:`ConcatTransport`: the ablation, one shared residual MLP that reads the condition concatenated to y.

Both are trained by :func:`fit_transport` through :func:`nnsens.training.fit` with the squared sliced 2-Wasserstein
distance between T_c(Y) and the bin's outputs, plus λ E‖T_c(Y) − Y‖² (the transport cost, which picks the cheapest of
the many maps that match the law). ι̂_i is then the mean over bins of E‖T_c(Y) − Y‖² over 2 tr Cov(Y)
(:func:`transport_indices`). :func:`sliced_w2` is a batched, equal-size version of POT's
``ot.sliced_wasserstein_distance`` (squared), checked against it in the tests.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nnsens.measures.global_sa import quantile_bins
from nnsens.training import fit

__all__ = ["ConcatTransport", "Conditions", "HyperTransport", "fit_transport", "make_conditions",
           "positional_encoding", "sliced_w2", "transport_indices"]


def positional_encoding(x: torch.Tensor, n_freq: int) -> torch.Tensor:
    """(B,) → (B, 1 + 2 n_freq): x, sin(2^k x), cos(2^k x) for k < n_freq."""
    f = 2.0 ** torch.arange(n_freq, dtype=x.dtype, device=x.device)
    ang = x[:, None] * f
    return torch.cat([x[:, None], torch.sin(ang), torch.cos(ang)], dim=1)


def sliced_w2(a: torch.Tensor, b: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Squared sliced 2-Wasserstein distance between equal-size uniform samples, batched over the first axis.

    Parameters
    ----------
    a, b : tensors of shape (B, m, k)
    projections : tensor of shape (k, L), unit columns

    Returns
    -------
    tensor of shape (B,): mean over the L directions of the 1-D W₂² of the projected samples (sorted matching).
    """
    pa, _ = torch.sort(a @ projections, dim=1)
    pb, _ = torch.sort(b @ projections, dim=1)
    return (pa - pb).square().mean(dim=(1, 2))


class _Condition(nn.Module):
    def __init__(self, n_inputs: int, emb_dim: int, n_freq: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_inputs, emb_dim)
        self.n_freq = n_freq
        self.dim = emb_dim + 1 + 2 * n_freq

    def forward(self, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.emb(idx), positional_encoding(x, self.n_freq)], dim=1)


class HyperTransport(nn.Module):
    """Hypernetwork-conditioned residual transport MLP (see the module docstring).

    ``forward(y, idx, x)``: y (B, m, k), idx (B,) input indices, x (B,) conditioning values → T_c(y), (B, m, k).
    """

    def __init__(self, n_inputs: int, dim_y: int, *, hidden: int = 16, width: int = 64, emb_dim: int = 8,
                 n_freq: int = 4) -> None:
        super().__init__()
        self.k, self.h = dim_y, hidden
        self.cond = _Condition(n_inputs, emb_dim, n_freq)
        self.sizes = (dim_y * dim_y, dim_y, dim_y * hidden, hidden, hidden * dim_y, dim_y)
        self.net = nn.Sequential(nn.Linear(self.cond.dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, sum(self.sizes)))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        w = self.net(self.cond(idx, x))
        wa, ba, w1, b1, w2, b2 = torch.split(w, self.sizes, dim=1)
        bsz, k, h = w.shape[0], self.k, self.h
        hid = torch.tanh(y @ w1.view(bsz, k, h) + b1[:, None])
        out = y @ wa.view(bsz, k, k) + ba[:, None] + hid @ w2.view(bsz, h, k) + b2[:, None]
        return y + out


class ConcatTransport(nn.Module):
    """Concatenation conditioning: T_c(y) = y + MLP([y, embedding(i), PE(x)]), one network for every condition."""

    def __init__(self, n_inputs: int, dim_y: int, *, width: int = 64, emb_dim: int = 8, n_freq: int = 4) -> None:
        super().__init__()
        self.cond = _Condition(n_inputs, emb_dim, n_freq)
        self.net = nn.Sequential(nn.Linear(dim_y + self.cond.dim, width), nn.SiLU(), nn.Linear(width, width),
                                 nn.SiLU(), nn.Linear(width, dim_y))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        c = self.cond(idx, x)[:, None].expand(-1, y.shape[1], -1)
        return y + self.net(torch.cat([y, c], dim=2))


class Conditions:
    """The (input, bin) conditions of a given-data sample, with padded member lists for batched resampling.

    Attributes: ``idx`` (C,) input index, ``x`` (C,) bin mean of the standardized input, ``members`` (C, max) row
    indices (padded), ``sizes`` (C,), ``n_inputs``, ``bins``.
    """

    def __init__(self, inputs: np.ndarray, bins: int, device: torch.device | str = "cpu") -> None:
        x = np.asarray(inputs, dtype=np.float64)
        xs = (x - x.mean(0)) / x.std(0)
        n, d = x.shape
        idx, xc, groups = [], [], []
        for i in range(d):
            labels = quantile_bins(xs[:, i], bins)
            for b in range(bins):
                rows = np.flatnonzero(labels == b)
                idx.append(i)
                xc.append(xs[rows, i].mean())
                groups.append(rows)
        width = max(len(g) for g in groups)
        members = np.zeros((len(groups), width), dtype=np.int64)
        for c, g in enumerate(groups):
            members[c, : len(g)] = g
        self.n_inputs, self.bins = d, bins
        self.idx = torch.as_tensor(idx, device=device)
        self.x = torch.as_tensor(xc, dtype=torch.float32, device=device)
        self.members = torch.as_tensor(members, device=device)
        self.sizes = torch.as_tensor([len(g) for g in groups], device=device)


def make_conditions(inputs: np.ndarray, bins: int, device: torch.device | str = "cpu") -> Conditions:
    """Equal-count bins of every (standardized) input; see :class:`Conditions`."""
    return Conditions(inputs, bins, device)


def fit_transport(
    model: nn.Module,
    outputs: torch.Tensor,
    conds: Conditions,
    *,
    steps: int = 300,
    batch_conditions: int = 8,
    m: int = 256,
    n_projections: int = 32,
    lam: float = 0.01,
    lr: float = 3e-3,
    generator: int = 0,
) -> list[float]:
    """Train ``model`` for about ``steps`` Adam steps (whole epochs over the conditions) with ``nnsens.training.fit``.

    Each step draws ``batch_conditions`` conditions, ``m`` rows of the standardized outputs as the source and ``m``
    rows of each condition's bin as the target (with replacement), and ``n_projections`` random directions.
    Returns fit's per-epoch loss history.
    """
    y = outputs
    n, k = y.shape
    gen = torch.Generator(device="cpu").manual_seed(int(generator) + 1)
    n_cond = conds.idx.shape[0]
    dev = y.device

    def objective(net: nn.Module, cb: torch.Tensor, _unused: torch.Tensor) -> torch.Tensor:
        bsz = cb.shape[0]
        src = y[torch.randint(n, (bsz, m), generator=gen).to(dev)]
        pick = (torch.rand(bsz, m, generator=gen).to(dev) * conds.sizes[cb, None]).long()
        tgt = y[torch.gather(conds.members[cb], 1, pick)]
        proj = torch.randn(k, n_projections, generator=gen).to(dev, y.dtype)
        proj = proj / proj.norm(dim=0, keepdim=True)
        moved = net(src, conds.idx[cb], conds.x[cb])
        return sliced_w2(moved, tgt, proj).mean() + lam * (moved - src).square().sum(-1).mean()

    ids = torch.arange(n_cond, device=dev)
    epochs = max(1, math.ceil(steps / math.ceil(n_cond / batch_conditions)))
    return fit(model, ids, ids, epochs=epochs, batch_size=batch_conditions, lr=lr, objective=objective,
               generator=generator)


@torch.no_grad()
def transport_indices(model: nn.Module, outputs: torch.Tensor, conds: Conditions, *, n_eval: int = 4096,
                      generator: int = 0) -> np.ndarray:
    """ι̂_i = mean over i's bins of E‖T_c(Y) − Y‖², over 2 tr Cov(Y), on ``n_eval`` rows of ``outputs``."""
    was = model.training
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(int(generator) + 2)
    n = outputs.shape[0]
    rows = torch.randperm(n, generator=gen)[: min(n, n_eval)].to(outputs.device)
    src = outputs[rows]
    denom = 2 * torch.trace(torch.atleast_2d(torch.cov(outputs.T))).item()
    cost = np.zeros(conds.idx.shape[0])
    for c in range(conds.idx.shape[0]):
        moved = model(src[None], conds.idx[c : c + 1], conds.x[c : c + 1])[0]
        cost[c] = float((moved - src).square().sum(-1).mean())
    model.train(was)
    idx = conds.idx.cpu().numpy()
    return np.array([cost[idx == i].mean() for i in range(conds.n_inputs)]) / denom
