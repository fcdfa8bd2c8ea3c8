"""Faithfulness and localisation metrics for saliency maps: deletion / insertion AUC, top-k hits of planted cells.

Deletion and insertion follow RISE (arXiv 1806.07421): pixels are taken in decreasing saliency order (ties kept in
raster order, a stable sort), ``n_steps`` equal steps, and the curve of the target's softmax probability is
integrated with the trapezoid rule over the removed (or revealed) fraction in [0, 1]. Deleting sets pixels (all
channels) to 0; inserting starts from the all-zero image and reveals pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnsens.measures.perturbation import (
    TargetType,
    check_images,
    check_int,
    default_batch,
    targets_of,
    torch_generator,
)


def _check_saliency(saliency: object, inputs: torch.Tensor, fn: str) -> torch.Tensor:
    n, _, h, w = inputs.shape
    if not isinstance(saliency, torch.Tensor) or saliency.shape not in ((n, h, w), (n, 1, h, w)):
        got = tuple(saliency.shape) if isinstance(saliency, torch.Tensor) else type(saliency).__name__
        raise ValueError(f"The 'saliency' parameter of {fn} must be a tensor of shape ({n}, {h}, {w}). "
                         f"Got {got} instead.")
    return saliency.reshape(n, h * w)


@torch.no_grad()
def deletion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: torch.Tensor,
    *,
    target: TargetType,
    n_steps: int = 32,
    mode: str = "deletion",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """The deletion (or insertion) curve: target probability after each of ``n_steps`` steps, (N, n_steps + 1).

    Step k removes (``mode="deletion"``) or reveals (``mode="insertion"``) the ``round(k * H * W / n_steps)`` most
    salient pixels.
    """
    fn = f"{mode}_auc"
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"The 'mode' parameter of deletion_curve must be 'deletion' or 'insertion'. Got {mode!r}.")
    inputs = check_images(inputs, fn)
    check_int(n_steps, "n_steps", fn)
    sal = _check_saliency(saliency, inputs, fn)
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    n, _, h, w = inputs.shape
    targets = targets_of(target, n, fn, inputs.device)
    # rank[i, p] = position of pixel p in image i's saliency order (0 = most salient)
    order = torch.argsort(sal, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=inputs.device).expand(n, -1))
    counts = torch.round(torch.arange(n_steps + 1, dtype=torch.float64) * (h * w) / n_steps).long()
    total = n * (n_steps + 1)
    out = torch.empty(total, dtype=torch.float64, device=inputs.device)
    for start in range(0, total, batch):
        flat = torch.arange(start, min(total, start + batch), device=inputs.device)
        img, k = flat // (n_steps + 1), flat % (n_steps + 1)
        hit = rank[img] < counts.to(inputs.device)[k, None]  # (b, H*W): pixels taken so far
        keep = ~hit if mode == "deletion" else hit
        x = inputs[img] * keep.reshape(-1, 1, h, w).to(inputs.dtype)
        prob = torch.softmax(model(x).double(), dim=1)
        out[start : start + flat.numel()] = prob.gather(1, targets[img, None])[:, 0]
    return out.reshape(n, n_steps + 1)


def _auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule over [0, 1] with equal steps: (sum - (first + last) / 2) / n_steps."""
    return (curve.sum(1) - 0.5 * (curve[:, 0] + curve[:, -1])) / (curve.shape[1] - 1)


def deletion_auc(
    model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, *, target: TargetType, n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Deletion AUC per image, (N,) float64: lower = the map finds what the score depends on faster."""
    curve = deletion_curve(model, inputs, saliency, target=target, n_steps=n_steps, mode="deletion",
                           internal_batch_size=internal_batch_size)
    return _auc(curve)


def insertion_auc(
    model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, *, target: TargetType, n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Insertion AUC per image, (N,) float64, revealing pixels of a zero image: higher = better."""
    curve = deletion_curve(model, inputs, saliency, target=target, n_steps=n_steps, mode="insertion",
                           internal_batch_size=internal_batch_size)
    return _auc(curve)


def cell_scores(saliency: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Mean saliency per grid cell: (N, H, W) → (N, grid, grid) (H and W divisible by grid_size)."""
    if saliency.ndim != 3 or saliency.shape[1] % grid_size or saliency.shape[2] % grid_size:
        raise ValueError(f"The 'saliency' parameter of cell_scores must be (N, H, W) with H and W divisible by "
                         f"grid_size={grid_size}. Got {tuple(saliency.shape)} instead.")
    s = (saliency.shape[1] // grid_size, saliency.shape[2] // grid_size)
    return F.avg_pool2d(saliency[:, None].double(), s)[:, 0]


def top_k_hits(
    scores: torch.Tensor,
    truth: torch.Tensor,
    *,
    k: int | None = None,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Whether all true cells rank in the top ``k`` (pointing game for several planted cells), (N,) bool.

    Parameters
    ----------
    scores : Tensor, (N, ...) cell scores (e.g. from :func:`cell_scores`); larger = more important.
    truth : Tensor, (N, ...) bool, the planted cells.
    k : int, optional
        Defaults to the number of true cells of each image (so "both planted cells in the top 2").
    generator : torch.Generator or int, optional
        Breaks ties at random: cells with equal scores are ordered by a random permutation.
    """
    fn = "top_k_hits"
    if scores.shape != truth.shape:
        raise ValueError(f"The 'truth' parameter of {fn} must have the shape of scores {tuple(scores.shape)}. "
                         f"Got {tuple(truth.shape)} instead.")
    s = scores.reshape(scores.shape[0], -1).double()
    t = truth.reshape(truth.shape[0], -1).bool()
    if k is not None:
        check_int(k, "k", fn, high=s.shape[1])
    gen = torch_generator(generator)
    # Random tie-breaking: shuffle, then sort stably by score, so equal scores keep the random order.
    perm = torch.rand(s.shape, generator=gen).argsort(dim=1).to(s.device)
    order = perm.gather(1, torch.argsort(s.gather(1, perm), dim=1, descending=True, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    kk = t.sum(1) if k is None else torch.full((s.shape[0],), k, device=s.device)
    return ((rank < kk[:, None]) | ~t).all(dim=1)
