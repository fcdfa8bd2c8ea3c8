"""Faithfulness and localisation metrics for saliency maps: deletion / insertion AUC, top-k hits of planted cells.

Deletion and insertion follow RISE (arXiv 1806.07421): pixels are taken in decreasing saliency order (ties kept in
raster order, a stable sort), ``n_steps`` equal steps, and the curve of the target's softmax probability is
integrated with the trapezoid rule over the removed (or revealed) fraction in [0, 1]. Deleting sets pixels (all
channels) to 0; inserting starts from the all-zero image and reveals pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


# --- P28: pixel perturbation and remove-and-retrain (FullGrad, arXiv 1905.00780; ROAR, arXiv 1806.10758) ---


def _pixel_order(saliency: torch.Tensor, inputs: torch.Tensor, fn: str, descending: bool,
                 generator: torch.Generator | int | None) -> torch.Tensor:
    """rank[i, p] = position of pixel p in image i's saliency order, (N, H*W). Ties keep raster order, or a random
    order drawn from ``generator`` when one is given (shuffle, then sort stably)."""
    sal = _check_saliency(saliency, inputs, fn)
    if generator is None:
        order = torch.argsort(sal, dim=1, descending=descending, stable=True)
    else:
        gen = torch_generator(generator)
        perm = torch.rand(sal.shape, generator=gen).argsort(dim=1).to(sal.device)
        order = perm.gather(1, torch.argsort(sal.gather(1, perm), dim=1, descending=descending, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(sal.shape[1], device=sal.device).expand_as(order))
    return rank


def _check_fraction(value: object, name: str, fn: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"The {name!r} parameter of {fn} must be a float in [0, 1]. Got {value!r} instead.")
    return float(value)


@torch.no_grad()
def pixel_perturbation(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: torch.Tensor,
    *,
    target: TargetType,
    fractions: tuple[float, ...] | list[float] = (0.01, 0.03, 0.05, 0.1),
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Fractional output change when the *least* salient pixels are replaced by the image mean, (N, K) float64.

    For each fraction k, the ``round(k * H * W)`` least salient pixels (all channels; ties in raster order) of each
    image get that image's per-channel mean, and the score is ``|f(x')_t - f(x)_t| / |f(x)_t|`` on the target's
    logit: a map that ranks the unimportant pixels last should leave the output nearly unchanged (FullGrad's test).
    Ties are taken in raster order, or in a random order drawn from ``generator`` when one is given (maps with many
    exactly equal values, e.g. input x gradient on a black background, are then not favoured by where the tied
    pixels sit).
    """
    fn = "pixel_perturbation"
    inputs = check_images(inputs, fn)
    if isinstance(fractions, (int, float)):
        fractions = (fractions,)
    fracs = [_check_fraction(f, "fractions", fn) for f in fractions]
    if not fracs:
        raise ValueError(f"The 'fractions' parameter of {fn} must hold at least one fraction. Got {fractions!r}.")
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    n, c, h, w = inputs.shape
    targets = targets_of(target, n, fn, inputs.device)
    rank = _pixel_order(saliency, inputs, fn, descending=False, generator=generator)  # 0 = least salient
    counts = torch.tensor([round(f * h * w) for f in fracs], device=inputs.device)
    fill = inputs.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    was = model.training
    model.eval()
    try:
        base = torch.cat([model(inputs[s]) for s in _slices(n, batch)]).double().gather(1, targets[:, None])[:, 0]
        total = n * len(fracs)
        out = torch.empty(total, dtype=torch.float64, device=inputs.device)
        for start in range(0, total, batch):
            flat = torch.arange(start, min(total, start + batch), device=inputs.device)
            img, k = flat // len(fracs), flat % len(fracs)
            hit = (rank[img] < counts[k, None]).reshape(-1, 1, h, w)  # (b, 1, H, W): pixels replaced
            x = torch.where(hit, fill[img], inputs[img])
            out[start : start + flat.numel()] = model(x).double().gather(1, targets[img, None])[:, 0]
    finally:
        model.train(was)
    return (out.reshape(n, len(fracs)) - base[:, None]).abs() / base.abs().clamp_min(1e-12)[:, None]


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def remove_top_pixels(inputs: torch.Tensor, saliency: torch.Tensor, fraction: float, *, fill: float = 0.0,
                      generator: torch.Generator | int | None = None) -> torch.Tensor:
    """A copy of ``inputs`` with the ``round(fraction * H * W)`` *most* salient pixels (all channels) set to ``fill``
    (ROAR's removal; ties in raster order, or random with ``generator``)."""
    fn = "remove_top_pixels"
    inputs = check_images(inputs, fn)
    fraction = _check_fraction(fraction, "fraction", fn)
    n, _, h, w = inputs.shape
    rank = _pixel_order(saliency, inputs, fn, descending=True, generator=generator)
    hit = (rank < round(fraction * h * w)).reshape(n, 1, h, w)
    return torch.where(hit, torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device), inputs)


def remove_and_retrain(
    make_model: Callable[[int], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    fraction: float,
    fill: float = 0.0,
    seeds: tuple[int, ...] | list[int] = (0,),
    generator: torch.Generator | int | None = None,
    **fit_kwargs: Any,
) -> torch.Tensor:
    """ROAR: test accuracy of models retrained after the top ``fraction`` of pixels was removed, one per seed, (S,).

    Parameters
    ----------
    make_model : callable
        ``make_model(seed)`` returns a freshly initialised model (the initialisation is seeded by the caller).
    train, test : (images, labels, saliency)
        Saliency maps (N, H, W) of the *original* model, computed before retraining.
    fraction : float in [0, 1]
        Share of pixels removed from every train and test image (set to ``fill``, e.g. the background value).
    seeds : sequence of int
        One retraining per seed: ``make_model(seed)`` and the data order of :func:`nnsens.training.fit`.
    generator : torch.Generator or int, optional
        Random tie-breaking of the removal order (default: raster order).
    **fit_kwargs
        Passed to :func:`nnsens.training.fit` (epochs, lr, batch_size, ...).
    """
    from nnsens.training import accuracy, fit  # measures do not import training at module level

    fn = "remove_and_retrain"
    if not callable(make_model):
        raise TypeError(f"The 'make_model' parameter of {fn} must be a callable seed -> model. Got {make_model!r}.")
    seeds = list(seeds)
    if not seeds:
        raise ValueError(f"The 'seeds' parameter of {fn} must hold at least one seed. Got {seeds!r} instead.")
    gen = None if generator is None else torch_generator(generator)
    xtr = remove_top_pixels(train[0], train[2], fraction, fill=fill, generator=gen)
    xte = remove_top_pixels(test[0], test[2], fraction, fill=fill, generator=gen)
    accs = []
    for seed in seeds:
        model = make_model(int(seed)).to(xtr.device)
        fit(model, xtr, train[1], generator=int(seed), **fit_kwargs)
        accs.append(accuracy(model, xte, test[1]))
    return torch.tensor(accs, dtype=torch.float64)


# --- P07: pointing game and µFidelity (issue 4) ---------------------------------------------------------------------
def pointing_game(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    *,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Pointing game: is the saliency maximum inside the ground-truth mask? (N,) bool.

    Parameters
    ----------
    saliency : Tensor, (N, H, W) or (N, 1, H, W); larger = more important.
    masks : Tensor, same shape, bool (or 0/1): the ground-truth object pixels.
    generator : torch.Generator or int, optional
        Breaks ties: among the pixels sharing the maximum, one is drawn uniformly at random (so a constant map
        hits with probability = the mask's area share).
    """
    fn = "pointing_game"
    if not isinstance(saliency, torch.Tensor) or saliency.ndim not in (3, 4):
        got = tuple(saliency.shape) if isinstance(saliency, torch.Tensor) else type(saliency).__name__
        raise ValueError(f"The 'saliency' parameter of {fn} must be a tensor of shape (N, H, W). Got {got} instead.")
    if not isinstance(masks, torch.Tensor) or masks.shape != saliency.shape:
        got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"The 'masks' parameter of {fn} must have the shape of saliency {tuple(saliency.shape)}. "
                         f"Got {got} instead.")
    n = saliency.shape[0]
    s = saliency.reshape(n, -1).double()
    gen = torch_generator(generator)
    keys = torch.rand(s.shape, generator=gen, dtype=torch.float64).to(s.device)  # random order among the maxima
    top = s == s.max(dim=1, keepdim=True).values
    pick = torch.where(top, keys, torch.full_like(keys, -1.0)).argmax(dim=1)  # (N,)
    return masks.reshape(n, -1).bool().gather(1, pick[:, None])[:, 0]


@torch.no_grad()
def mu_fidelity(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: torch.Tensor,
    *,
    target: TargetType,
    grid_size: int = 8,
    subset_size: int | None = None,
    n_samples: int = 128,
    generator: torch.Generator | int | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """µFidelity (Bhatt et al. 2020, arXiv 2005.00631): per image, the Pearson correlation over random subsets S of
    grid cells between the attribution mass in S and the drop of the target's softmax probability when S is set to
    0, ``corr_S( sum_{i in S} a_i , f(x) - f(x_[S = 0]) )``. (N,) float64; NaN where either side is constant.

    Parameters
    ----------
    grid_size : int
        Cells of H / grid_size pixels (must divide H and W; ``grid_size = H`` makes subsets of pixels).
    subset_size : int, optional
        Cells per subset (default: 20 % of the cells, at least 1, as in Xplique's MuFidelity).
    n_samples : int
        Random subsets, shared by all images.
    generator : torch.Generator or int, optional
        Draws the subsets.
    """
    from nnsens.measures.perturbation import masked_scores  # the chunked masked-forward loop

    fn = "mu_fidelity"
    inputs = check_images(inputs, fn)
    sal = _check_saliency(saliency, inputs, fn)
    n, _, h, w = inputs.shape
    check_int(grid_size, "grid_size", fn, high=min(h, w))
    if h % grid_size or w % grid_size:
        raise ValueError(f"The 'grid_size' parameter of {fn} must divide the image size {h}x{w}. "
                         f"Got {grid_size} instead.")
    cells = grid_size * grid_size
    k = max(1, round(0.2 * cells)) if subset_size is None else check_int(subset_size, "subset_size", fn, high=cells)
    check_int(n_samples, "n_samples", fn, low=2)
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    targets = targets_of(target, n, fn, inputs.device)
    gen = torch_generator(generator)
    chosen = torch.rand(n_samples, cells, generator=gen).argsort(dim=1)[:, :k]  # (S, k) cell indices
    subsets = torch.zeros(n_samples, cells, dtype=torch.bool).scatter_(1, chosen, True).to(inputs.device)
    up = (h // grid_size, w // grid_size)
    pixel = lambda m: m.reshape(-1, 1, grid_size, grid_size).repeat_interleave(  # noqa: E731
        up[0], dim=2).repeat_interleave(up[1], dim=3)  # (k, cells) -> (k, 1, H, W)
    p, _ = masked_scores(model, inputs, targets, lambda j: pixel(~subsets[j]), n_samples, batch)  # (N, S)
    p0 = torch.cat([torch.softmax(model(inputs[i: i + batch]).double(), dim=1)
                    for i in range(0, n, batch)]).gather(1, targets[:, None])  # (N, 1)
    cell_mass = F.avg_pool2d(sal.reshape(n, 1, h, w).double(), up)[:, 0].reshape(n, cells) * (up[0] * up[1])
    mass = cell_mass @ subsets.double().T  # (N, S) attribution summed over each subset
    drop = p0 - p
    a, b = mass - mass.mean(1, keepdim=True), drop - drop.mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))
