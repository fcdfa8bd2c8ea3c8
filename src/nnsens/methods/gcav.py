"""GCAV-lite: fuse per-layer concept activation vectors into one global CAV (He et al., 2025, arXiv 2508.21197).

Our compact version of the method, in three stages (the official code is TensorFlow + PyTorch on ImageNet models):

1. per-layer linear autoencoders map each layer's CAVs (sizes D_l) into one embedding space of dimension d, trained
   on noise-augmented CAVs with a reconstruction loss (1 − cosine), InfoNCE across layers (the same item, i.e. the
   same concept and random repeat, at two layers is the positive pair; temperature 0.5) and a consistency loss (mean
   squared distance between the embeddings of one item at two layers);
2. a single-head attention over the item's layer tokens (embedding + learned layer position) fuses them into one
   global vector g, the GCAV; the frozen per-layer decoders map g back to each layer (the TGCAV directions);
3. the fusion is trained with ``var`` × the across-layer variance of the *soft* TCAV score (a sigmoid of the
   normalised directional derivatives with a temperature annealed geometrically, instead of the step function) +
   ``sim`` × (1 − cosine between each decoded GCAV and the decoded original CAV).

Because the decoders are linear and frozen in stage 3, the decoded direction is v = W_l g + b_l, and its directional
derivatives G_l v, its norm and its cosine with the decoded original CAV are forms in g whose matrices (G_l W_l,
W_lᵀW_l, ...) are computed once: a fusion step costs O(N · n · d), independent of the layer sizes D_l.

:func:`concept_attack` is the input attack of Brown & Kvinge (2023): projected gradient ascent in an L∞ ball on the
directional derivative along a direction at one layer. For a ReLU network that derivative is piecewise constant in
the input (its input gradient is zero almost everywhere), so the ascent runs on a smooth surrogate in which every
``nn.ReLU`` module is replaced by a β-softplus (Dombrowski et al., 2019); the scores are recomputed on the real net.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnsens.measures.concepts import layer_gradients


@dataclass(frozen=True)
class GCAVLosses:
    """Loss weights and schedule. Defaults: the official code's weights (nce 1, con 3, var 3, sim 1)."""

    nce: float = 1.0
    con: float = 3.0
    var: float = 3.0
    sim: float = 1.0
    nce_temperature: float = 0.5
    tau_start: float = 1.0  # soft-TCAV temperature at the first fusion step ...
    tau_end: float = 0.05  # ... and at the last (geometric annealing)
    cav_noise: float = 0.5  # std of the isotropic noise added to unit CAVs in stage 1, relative to 1/sqrt(D)


class _Fusion(nn.Module):
    """Single-head attention pooling over layer tokens: (n, L, d) → (n, d) and the weights (n, L)."""

    def __init__(self, n_layers: int, d: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(n_layers, d))
        self.query = nn.Parameter(torch.zeros(d))
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        with torch.no_grad():  # start as the plain mean of the layer embeddings
            self.value.weight.copy_(torch.eye(d))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = z + self.pos  # (n, L, d)
        att = torch.softmax(self.key(t) @ self.query / math.sqrt(z.shape[-1]), dim=1)  # (n, L)
        return (att.unsqueeze(-1) * self.value(t)).sum(1), att


class GCAV(nn.Module):
    """Trained GCAV-lite: per-layer encoders/decoders and the fusion. Build with :func:`fit_gcav`."""

    def __init__(self, dims: Sequence[int], d: int) -> None:
        super().__init__()
        self.enc = nn.ModuleList(nn.Linear(n, d) for n in dims)
        self.dec = nn.ModuleList(nn.Linear(d, n) for n in dims)
        self.fusion = _Fusion(len(dims), d)

    def embed(self, cavs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-layer embeddings of the items' CAVs: list of (n, D_l) → (n, L, d)."""
        return torch.stack([e(c) for e, c in zip(self.enc, cavs, strict=True)], 1)

    def forward(self, cavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The global vectors g (n, d) and attention weights (n, L)."""
        return self.fusion(self.embed(cavs))

    @torch.no_grad()
    def transform(self, cavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Unit TGCAV directions per layer: decode each item's fused GCAV into every layer, list of (n, D_l)."""
        g, _ = self(cavs)
        return [nn.functional.normalize(dec(g), dim=1) for dec in self.dec]

    @torch.no_grad()
    def reconstruct(self, cavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Unit decoded original CAVs dec_l(enc_l(v_l)), list of (n, D_l)."""
        return [nn.functional.normalize(d(e(c)), dim=1) for e, d, c in zip(self.enc, self.dec, cavs, strict=True)]


def _info_nce(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``za`` and row i of ``zb`` are the positive pair, the other rows negatives."""
    logits = nn.functional.normalize(za, dim=1) @ nn.functional.normalize(zb, dim=1).T / temperature
    labels = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels))


def soft_tcav(dd: torch.Tensor, groups: torch.Tensor, n_groups: int, tau: float) -> torch.Tensor:
    """Soft TCAV per group (class) and item: mean of sigmoid(dd / tau) over each group's inputs.

    dd : (N, n) normalised directional derivatives; groups : (N,) class of each input → (n_groups, n).
    """
    s = torch.sigmoid(dd / tau)
    onehot = nn.functional.one_hot(groups, n_groups).to(s.dtype)  # (N, K)
    return (onehot.T @ s) / onehot.sum(0).clamp_min(1).unsqueeze(1)


def fit_gcav(
    cavs: Sequence[torch.Tensor],
    gradients: Sequence[torch.Tensor],
    groups: torch.Tensor,
    *,
    embed_dim: int = 64,
    ae_steps: int = 500,
    fusion_steps: int = 2000,
    lr: float = 3e-3,
    losses: GCAVLosses | None = None,
    generator: torch.Generator | int = 0,
) -> tuple[GCAV, dict[str, list[float]]]:
    """Train GCAV-lite on the items' CAVs and the class gradients; return the model and the loss histories.

    Parameters
    ----------
    cavs : list of (n_items, D_l) unit CAVs, one tensor per layer, rows aligned across layers (one item = one
        concept and random repeat).
    gradients : list of (N, D_l) tensors ∇_{h_l} logit_{class(x)}(x) of the inputs the soft TCAV is computed on.
    groups : (N,) class of each input (its gradient is of that class's logit).
    """
    losses = losses or GCAVLosses()
    if len(cavs) != len(gradients) or len(cavs) < 1:
        raise ValueError(f"fit_gcav needs one CAV tensor and one gradient tensor per layer. "
                         f"Got {len(cavs)} and {len(gradients)}.")
    if len(cavs) < 2 and (losses.nce or losses.con):
        raise ValueError("fit_gcav needs at least 2 layers for the cross-layer losses.")
    gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(int(generator))
    dims = [c.shape[1] for c in cavs]
    n_layers, dev = len(dims), cavs[0].device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
        model = GCAV(dims, embed_dim).to(dev)
    cavs = [nn.functional.normalize(c.detach(), dim=1) for c in cavs]
    hist: dict[str, list[float]] = {"ae": [], "fusion": [], "var": [], "sim": []}

    # stage 1: autoencoders, InfoNCE alignment and consistency on noise-augmented CAVs
    opt = torch.optim.Adam([*model.enc.parameters(), *model.dec.parameters()], lr=lr)
    pairs = [(a, b) for a in range(n_layers) for b in range(a + 1, n_layers)]
    for _ in range(ae_steps):
        noisy = [c + losses.cav_noise / math.sqrt(c.shape[1]) * torch.randn(c.shape, generator=gen).to(dev)
                 for c in cavs]
        z = [e(c) for e, c in zip(model.enc, noisy)]
        rec = sum((1 - nn.functional.cosine_similarity(d(zl), c, dim=1)).mean()
                  for d, zl, c in zip(model.dec, z, cavs)) / n_layers
        nce = sum(_info_nce(z[a], z[b], losses.nce_temperature) for a, b in pairs) / max(1, len(pairs))
        con = sum((z[a] - z[b]).square().sum(1).mean() for a, b in pairs) / max(1, len(pairs))
        loss = rec + losses.nce * nce + losses.con * con
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist["ae"].append(loss.item())

    # stage 3: the fusion, decoders frozen; G_l W_l and G_l b_l once
    for p in [*model.enc.parameters(), *model.dec.parameters()]:
        p.requires_grad_(False)
    with torch.no_grad():
        z0 = model.embed(cavs)  # (n, L, d)
        ref = [nn.functional.normalize(d(z0[:, i]), dim=1) for i, d in enumerate(model.dec)]  # decoded originals
        # v = W g + b with W (D_l, d): every quantity below is a d-dimensional form, precomputed once
        gw = [g @ d.weight for g, d in zip(gradients, model.dec)]  # G W (N, d)
        gb = [g @ d.bias for g, d in zip(gradients, model.dec)]  # G b (N,)
        wtw = [d.weight.T @ d.weight for d in model.dec]  # (d, d)
        wtb = [d.weight.T @ d.bias for d in model.dec]  # (d,)
        btb = [d.bias @ d.bias for d in model.dec]
        rw = [r @ d.weight for r, d in zip(ref, model.dec)]  # (n, d)
        rb = [r @ d.bias for r, d in zip(ref, model.dec)]  # (n,)
        scale = [(g @ c.T).std().clamp_min(1e-12) for g, c in zip(gradients, cavs)]  # spread of the original dd
    n_groups = int(groups.max()) + 1
    opt = torch.optim.Adam(model.fusion.parameters(), lr=lr)
    for step in range(fusion_steps):
        tau = losses.tau_start * (losses.tau_end / losses.tau_start) ** (step / max(1, fusion_steps - 1))
        g, _ = model.fusion(z0)  # (n, d)
        soft, sim = [], 0.0
        for i in range(n_layers):
            norm = ((g @ wtw[i] * g).sum(1) + 2 * g @ wtb[i] + btb[i]).clamp_min(1e-24).sqrt()  # ‖W g + b‖
            dd = (gw[i] @ g.T + gb[i].unsqueeze(1)) / norm / scale[i]  # (N, n) = G v̂ / spread
            soft.append(soft_tcav(dd, groups, n_groups, tau))
            sim = sim + (1 - ((rw[i] * g).sum(1) + rb[i]) / norm).mean()  # 1 − cos(v, decoded original)
        var = torch.stack(soft).var(0, unbiased=False).mean()
        sim = sim / n_layers
        loss = losses.var * var + losses.sim * sim
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist["fusion"].append(loss.item())
        hist["var"].append(var.item())
        hist["sim"].append(sim.item())
    model.eval()
    return model, hist


@contextlib.contextmanager
def smooth_relu(model: nn.Module, beta: float = 10.0) -> Iterator[nn.Module]:
    """Temporarily make every ``nn.ReLU`` submodule of ``model`` compute softplus(beta) (then restore).

    The modules stay in place (their ``forward`` is shadowed), so hooks registered on them keep firing.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for m in relus:
        m.forward = lambda x: nn.functional.softplus(x, beta=beta)  # instance attribute shadows the method
    try:
        yield model
    finally:
        for m in relus:
            del m.forward


def concept_attack(model: nn.Module, inputs: torch.Tensor, *, target: int, layer: nn.Module,
                   direction: torch.Tensor, eps: float = 8 / 255, steps: int = 20, step_size: float | None = None,
                   beta: float = 10.0, clamp: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """PGD (L∞, sign steps) on the inputs maximising ∇_{h} logit_target · direction at ``layer`` per input.

    Runs on the β-softplus surrogate of ``model`` (see the module docstring); returns the perturbed inputs,
    within ``eps`` of ``inputs`` and inside ``clamp``. ``step_size`` defaults to 2.5 · eps / steps.
    """
    if not eps >= 0 or steps < 1:
        raise ValueError(f"concept_attack needs eps >= 0 and steps >= 1. Got eps={eps!r}, steps={steps!r}.")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    v = direction.detach().flatten().to(inputs)
    x = inputs.detach().clone()
    with smooth_relu(model, beta):
        for _ in range(steps):
            x.requires_grad_(True)
            (g,) = layer_gradients(model, x, target=target, layers=[layer], create_graph=True)
            obj = (g @ v).sum()  # each input's own derivative: the sum's gradient is per input
            (grad,) = torch.autograd.grad(obj, x)
            with torch.no_grad():
                x = inputs + (x + alpha * grad.sign() - inputs).clamp(-eps, eps)
                x = x.clamp(*clamp)
    return x.detach()
