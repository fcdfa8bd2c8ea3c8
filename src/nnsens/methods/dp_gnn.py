"""Node-level DP training of a 1-layer GCN and of an MLP baseline (arXiv 2111.15521, DP-GCN / DP-MLP).

The GCN's only message-passing step is the inverse-degree mean ``D⁻¹(A + I) X`` over a degree-bounded graph
(:func:`nnsens.data.graphs.degree_bounded_edges`), followed by a ReLU MLP. Because the aggregation comes before the
first linear map (``D⁻¹(A+I) X W = (D⁻¹(A+I) X) W``) and the graph is fixed before training, it is computed once; the
per-node term of node u is then ``loss(MLP(agg_u), y_u)`` and its gradient depends on u's aggregation set only.

A private step (:class:`PrivateStep`, plugged into :func:`nnsens.training.fit` through ``objective`` and
``before_step``): B distinct training nodes drawn uniformly without replacement, per-node gradients by
``torch.func`` (:func:`nnsens.measures.privacy.per_sample_gradients`), each clipped to norm C, summed, Gaussian noise
of std ``noise_multiplier · sensitivity`` added, divided by B. The sensitivity is 2(K+1)·C for the GCN (one deletion
changes ≤ K+1 clipped terms, each by at most 2C) and C for the MLP.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import add_self_loops, scatter

from nnsens.measures.privacy import per_sample_gradients
from nnsens.training import fit

__all__ = ["PrivateStep", "clipped_per_node_gradients", "deletion_change", "gcn_sensitivity",
           "inverse_degree_aggregate", "train_private"]


def gcn_sensitivity(max_degree: int, clip: float) -> float:
    """Sensitivity of the clipped per-node gradient sum of a 1-layer GCN with degree bound K: 2(K+1)·C."""
    return 2.0 * (max_degree + 1) * clip


def inverse_degree_aggregate(x: torch.Tensor, messages: torch.Tensor | np.ndarray, n_nodes: int) -> torch.Tensor:
    """``D⁻¹(A + I) x``: each node's mean over itself and the sources of its incoming ``messages`` (2, M).

    Row 0 of ``messages`` holds sources, row 1 receivers; D counts a receiver's messages plus its self-loop.
    """
    m = torch.as_tensor(messages, dtype=torch.long, device=x.device)
    m, _ = add_self_loops(m, num_nodes=n_nodes)
    return scatter(x[m[0]], m[1], dim=0, dim_size=n_nodes, reduce="mean")


def clipped_per_node_gradients(model: nn.Module, feats: torch.Tensor, y: torch.Tensor,
                               clip: float) -> torch.Tensor:
    """Per-node gradients of the cross-entropy term, flattened and clipped to norm ``clip``: (n, n_params)."""
    if _is_relu_mlp(model):
        flat = _mlp_per_node_gradients(model, feats, y)
    else:
        g = per_sample_gradients(model, feats, target=y)
        flat = torch.cat([v.flatten(1) for v in g.values()], dim=1)  # (n, P)
    scale = (clip / flat.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
    return flat * scale[:, None]


def _is_relu_mlp(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and all(isinstance(m, (nn.Linear, nn.ReLU)) for m in model)


def _mlp_per_node_gradients(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy gradients of a Linear/ReLU stack by explicit backprop (grad W = δ aᵀ), flattened in
    ``model.parameters()`` order: the same numbers as ``torch.func`` (checked in the tests), without vmap's
    per-call overhead, which dominates for these tiny networks."""
    with torch.no_grad():
        acts, h = [], x
        for m in model:
            if isinstance(m, nn.Linear):
                acts.append(h)
            h = m(h)
        delta = torch.softmax(h, dim=1)
        delta[torch.arange(x.shape[0]), y] -= 1.0  # ∂ℓ/∂logits, (n, C)
        grads: list[torch.Tensor] = []
        lin = [m for m in model if isinstance(m, nn.Linear)]
        for i in range(len(lin) - 1, -1, -1):
            a = acts[i]
            grads = [torch.einsum("no,ni->noi", delta, a).flatten(1), delta] + grads
            if i > 0:
                delta = (delta @ lin[i].weight) * (a > 0)  # back through Linear i and the ReLU before it
        return torch.cat(grads, dim=1)


def deletion_change(model: nn.Module, x: torch.Tensor, y: torch.Tensor, messages: np.ndarray, nodes: np.ndarray,
                    node: int, clip: float, *, tol: float = 1e-6) -> tuple[int, float]:
    """Delete ``node`` (and its messages) from the training graph; count the clipped per-node terms that change
    (including its own, which vanishes) and return ``(changed, ‖Σ terms after − Σ terms before‖)``."""
    n = x.shape[0]
    before = clipped_per_node_gradients(model, inverse_degree_aggregate(x, messages, n)[nodes], y[nodes], clip)
    keep_m = (messages[0] != node) & (messages[1] != node)
    rest = nodes[nodes != node]
    after = clipped_per_node_gradients(model, inverse_degree_aggregate(x, messages[:, keep_m], n)[rest], y[rest], clip)
    old = before[nodes != node]
    changed = int(((after - old).norm(dim=1) > tol * max(clip, 1.0)).sum()) + 1  # + the deleted node's own term
    return changed, float((after.sum(0) - before.sum(0)).norm())


class PrivateStep:
    """``objective`` and ``before_step`` hooks of :func:`nnsens.training.fit` for one private training run.

    ``fit`` is given the (T, B) tensor of pre-drawn batches of node indices with ``batch_size=1``, so each step sees
    one row: B distinct nodes drawn uniformly without replacement, independently across steps (as the accountant
    assumes; the order in which ``fit`` visits the rows does not matter since they are i.i.d.).
    """

    def __init__(self, feats: torch.Tensor, y: torch.Tensor, *, clip: float, noise_std: float,
                 generator: torch.Generator) -> None:
        self.feats, self.y, self.clip, self.noise_std, self.gen = feats, y, clip, noise_std, generator
        self._batch: torch.Tensor | None = None

    def objective(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        self._batch = xb.reshape(-1)
        return nn.functional.cross_entropy(model(self.feats[self._batch]), self.y[self._batch])

    def before_step(self, model: nn.Module, step: int) -> None:
        idx = self._batch
        g = clipped_per_node_gradients(model, self.feats[idx], self.y[idx], self.clip).sum(0)  # (P,)
        noise = torch.randn(g.shape, generator=self.gen, dtype=g.dtype).to(g.device) * self.noise_std
        g = (g + noise) / idx.shape[0]
        i = 0
        for p in model.parameters():
            p.grad = g[i : i + p.numel()].view_as(p).clone()
            i += p.numel()


def train_private(model: nn.Module, feats: torch.Tensor, y: torch.Tensor, nodes: torch.Tensor, *, steps: int,
                  batch_size: int, clip: float, noise_std: float, lr: float, seed: int) -> list[float]:
    """Private training of ``model`` on the per-node inputs ``feats[nodes]`` (aggregated for the GCN, raw for the
    MLP) with ``steps`` batches of ``batch_size`` distinct nodes and noise of std ``noise_std`` on the clipped sum."""
    gen = torch.Generator().manual_seed(int(seed))
    batches = torch.rand(steps, nodes.shape[0], generator=gen).argsort(dim=1)[:, :batch_size]  # (T, B) positions
    batches = nodes.cpu()[batches].to(feats.device)
    hook = PrivateStep(feats, y, clip=clip, noise_std=noise_std, generator=gen)
    dummy = torch.zeros(steps, dtype=torch.long, device=feats.device)
    return fit(model, batches, dummy, epochs=1, batch_size=1, lr=lr, generator=int(seed),
               objective=hook.objective, before_step=hook.before_step)
