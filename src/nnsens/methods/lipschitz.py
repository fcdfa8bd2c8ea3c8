"""arXiv 2305.16202 — clipless DP-SGD with 1-Lipschitz networks (Béthune, Massena, Boissin, Bellet, Mamalet,
Prudent, Serrurier, Vigouroux 2024; official code github.com/Algue-Rythme/lip-dp).

The pieces, written from the paper's argument (not its code):

- :class:`LipschitzMLP`: bias-free Linear layers whose weights *are* the effective weights ``W_d`` (no
  reparametrisation), GroupSort-2 between them. GroupSort permutes each pair of coordinates, so it is 1-Lipschitz
  and norm-preserving; with every ``‖W_d‖₂ ≤ 1`` (kept by :func:`project_`) the network is 1-Lipschitz in its input.
- :func:`tau_cross_entropy`: ``CE(z / τ, y)``, whose gradient in the logits ``(softmax(z/τ) − e_y)/τ`` has norm at
  most ``L_loss = √2 / τ``.
- :func:`gradient_norm_bounds`: the per-sample gradient of layer ``d`` is ``δ_d h_{d−1}ᵀ`` (a rank-one matrix), so
  ``‖∂ℓ/∂W_d‖_F = ‖δ_d‖ ‖h_{d−1}‖ ≤ L_loss · X0 = Δ_d``: the layers above ``d`` are 1-Lipschitz (bounding the
  back-propagated ``δ_d`` by ``L_loss``) and those below are norm non-increasing (bounding ``‖h_{d−1}‖`` by the
  input bound ``X0``). The bound holds for the effective weights only, which is why the step acts on them.
- :class:`ClipLessStep`: the hooks for :func:`nnsens.training.fit`: ``before_step`` adds ``N(0, (σ_d Δ_d)²)`` to
  each layer's batch-summed gradient (no clipping, no per-sample gradients), ``after_step`` projects every weight
  back onto the spectral-norm ball (post-processing, free in privacy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ClipLessStep",
    "GroupSort2",
    "LipschitzMLP",
    "bjorck_",
    "gradient_norm_bounds",
    "loss_lipschitz",
    "project_",
    "project_inputs",
    "spectral_norm",
    "tau_cross_entropy",
]


class GroupSort2(nn.Module):
    """Sort each consecutive pair of features: ``(a, b) → (min(a, b), max(a, b))`` (needs an even width)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (-1, 2)).sort(dim=-1).values.flatten(-2)  # (..., w) → (..., w/2, 2) → (..., w)


class LipschitzMLP(nn.Sequential):
    """Bias-free ``sizes[0] → ... → sizes[-1]`` network of Linear layers and :class:`GroupSort2`, orthogonally
    initialised (every singular value 1). Hidden widths must be even. Parameter names: ``"0.weight"``,
    ``"2.weight"``, ... (the Linear layers are at even positions)."""

    def __init__(self, sizes: Sequence[int], *, generator: torch.Generator | None = None) -> None:
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"The 'sizes' parameter of LipschitzMLP must be at least 2 positive ints. Got {sizes!r} "
                             "instead.")
        if any(s % 2 for s in sizes[1:-1]):
            raise ValueError(f"The 'sizes' parameter of LipschitzMLP must have even hidden widths (GroupSort-2). "
                             f"Got {sizes!r} instead.")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = nn.Linear(a, b, bias=False)
            nn.init.orthogonal_(lin.weight, generator=generator)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(GroupSort2())
        super().__init__(*layers)

    def linears(self) -> dict[str, nn.Linear]:
        """Parameter name → Linear layer, input side first."""
        return {f"{i}.weight": m for i, m in enumerate(self) if isinstance(m, nn.Linear)}


def spectral_norm(w: torch.Tensor) -> torch.Tensor:
    """Exact largest singular value of a matrix, from the eigenvalues of its smaller Gram matrix in float64."""
    w64 = w.detach().double()
    gram = w64 @ w64.T if w64.shape[0] <= w64.shape[1] else w64.T @ w64
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt().to(w.dtype)


def bjorck_(w: torch.Tensor, n_iter: int = 15) -> torch.Tensor:
    """Push every singular value of ``w`` towards 1 in place (Björck–Bowie iterations ``W ← W(3I − WᵀW)/2``,
    started from ``W/‖W‖₂``); the result is then rescaled so its exact spectral norm is at most 1."""
    with torch.no_grad():
        w.div_(spectral_norm(w).clamp_min(1e-12))
        for _ in range(n_iter):
            w.copy_(1.5 * w - 0.5 * w @ (w.T @ w))
        w.div_(spectral_norm(w).clamp_min(1.0))
    return w


def project_(model: nn.Module, method: str = "spectral", *, n_iter: int = 15) -> nn.Module:
    """Project every Linear weight of ``model`` onto ``{‖W‖₂ ≤ 1}`` in place.

    ``"spectral"``: ``W / max(1, ‖W‖₂)`` (the Euclidean projection's cheapest certified form);
    ``"bjorck"``: :func:`bjorck_` (towards an orthogonal matrix, then certified). Both use the exact norm.
    """
    if method not in ("spectral", "bjorck"):
        raise ValueError(f"The 'method' parameter of project_ must be one of 'spectral', 'bjorck'. Got {method!r} "
                         "instead.")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                if method == "bjorck":
                    bjorck_(m.weight, n_iter)
                else:
                    m.weight.div_(spectral_norm(m.weight).clamp_min(1.0))
    return model


def project_inputs(x: torch.Tensor, input_bound: float) -> torch.Tensor:
    """Each row scaled onto the ball ``‖x‖ ≤ input_bound`` (rows already inside are unchanged); data-independent."""
    norms = x.flatten(1).norm(dim=1).clamp_min(1e-12)
    scale = (input_bound / norms).clamp(max=1.0)
    return x * scale.view(-1, *([1] * (x.dim() - 1)))


def tau_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, tau: float,
                      reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy at temperature ``tau``: ``CE(logits / tau, target)``, ``√2/τ``-Lipschitz in the logits."""
    return nn.functional.cross_entropy(logits / tau, target, reduction=reduction)


def loss_lipschitz(tau: float) -> float:
    """``L_loss = √2 / τ``: the largest norm of the logit gradient of :func:`tau_cross_entropy` for one example."""
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"The 'tau' parameter of loss_lipschitz must be a float in (0, inf). Got {tau!r} instead.")
    return math.sqrt(2.0) / tau


def gradient_norm_bounds(model: LipschitzMLP, *, input_bound: float, tau: float) -> dict[str, float]:
    """Analytic per-example gradient-norm bound of each layer: ``{name: Δ_d = L_loss · X0}``.

    Valid while every weight has spectral norm ≤ 1 (:func:`project_`), inputs satisfy ``‖x‖ ≤ input_bound`` and the
    loss is :func:`tau_cross_entropy`. Bias-free layers and norm-preserving GroupSort make ``sup ‖h_{d−1}‖ = X0`` at
    every depth, so all layers share one bound.
    """
    if not isinstance(model, LipschitzMLP):
        raise TypeError(f"The 'model' parameter of gradient_norm_bounds must be a LipschitzMLP. Got "
                        f"{type(model).__name__} instead.")
    if not (isinstance(input_bound, (int, float)) and math.isfinite(input_bound) and input_bound > 0):
        raise ValueError(f"The 'input_bound' parameter of gradient_norm_bounds must be a float in (0, inf). Got "
                         f"{input_bound!r} instead.")
    delta = loss_lipschitz(tau) * float(input_bound)
    return {name: delta for name in model.linears()}


class ClipLessStep:
    """``before_step`` / ``after_step`` hooks of :func:`nnsens.training.fit` for clipless DP-SGD.

    Train with a loss summed over the batch and divided by the *expected* batch size ``batch_size`` (see
    :meth:`loss`), so each ``p.grad`` is ``Σ_i g_i / B``. ``before_step`` adds ``N(0, (σ_d Δ_d)²) / B`` to each
    layer's gradient, with ``σ_d = σ √D`` for ``D`` noised layers: ``D`` Gaussian mechanisms of multiplier ``σ √D``
    compose, in Rényi DP, to one of multiplier ``σ``, the value the accountant was given (with equal ``Δ_d`` this is
    the same as noise ``σ (Σ_d Δ_d²)^{1/2}`` on every coordinate). ``after_step`` projects the weights
    (:func:`project_`).

    Parameters
    ----------
    bounds : dict
        Parameter name → Δ_d (:func:`gradient_norm_bounds`).
    noise_multiplier : float
        σ of the whole gradient, from the accountant (:func:`nnsens.measures.privacy.noise_multiplier_for_epsilon`).
    batch_size : int
        Expected batch size ``B`` (``q N``).
    tau : float
        Temperature of the loss.
    generator : torch.Generator
        Draws the noise (on the parameters' device).
    projection : {"spectral", "bjorck"}
    """

    def __init__(self, bounds: dict[str, float], *, noise_multiplier: float, batch_size: int, tau: float,
                 generator: torch.Generator, projection: str = "spectral") -> None:
        if noise_multiplier < 0:
            raise ValueError(f"The 'noise_multiplier' parameter of ClipLessStep must be a float in [0, inf). Got "
                             f"{noise_multiplier!r} instead.")
        self.bounds = dict(bounds)
        self.layer_multiplier = float(noise_multiplier) * math.sqrt(len(self.bounds))
        self.batch_size, self.tau, self.generator, self.projection = int(batch_size), float(tau), generator, projection

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed temperature cross-entropy over the batch, divided by the expected batch size."""
        return tau_cross_entropy(logits, target, tau=self.tau, reduction="sum") / self.batch_size

    def before_step(self, model: nn.Module, step: int) -> None:
        """Add calibrated Gaussian noise to each bounded layer's gradient (in ``p.grad``)."""
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, delta in self.bounds.items():
                p = named[name]
                std = self.layer_multiplier * delta / self.batch_size
                noise = torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)
                if p.grad is None:
                    p.grad = noise.mul_(std)
                else:
                    p.grad.add_(noise, alpha=std)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Project the weights back onto the 1-Lipschitz set."""
        project_(model, self.projection)
