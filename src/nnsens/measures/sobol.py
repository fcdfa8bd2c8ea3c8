"""Variance-based (Sobol) sensitivity: the estimators, and the Sobol attribution method (arXiv 2111.04138).

``sobol_indices`` estimates first-order (Saltelli et al. 2010) and total-order (Jansen 1999) indices of a function of
independent U[0, 1] inputs from a scrambled Sobol QMC design: A and B are the two halves of one 2d-dimensional draw,
AB_i is A with column i taken from B, and the n (d + 2) evaluations are f(A), f(B), f(AB_1..d). The estimators are
the ones SALib's ``analyze.sobol`` uses (outputs centred, variance of f over A and B pooled), so that both agree to
rounding on the same design.

``sobol_attribution`` (Fel et al. 2021) treats the grid_size x grid_size cells of an image as the inputs: a design
row is a mask of cell values in [0, 1], upsampled (nearest) to the image and applied as ``x * mask`` ("inpainting"
with a zero baseline, the official code's default), and the output is the softmax probability of the target class.
The attribution of a cell is its total-order index (Jansen), upsampled to the image size (bicubic, as the official
code resizes its maps, or nearest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import qmc
from torch import nn

from nnsens.measures.perturbation import (
    TargetType,
    check_images,
    check_int,
    default_batch,
    masked_scores,
    targets_of,
)

UPSAMPLE_MODES = ("bicubic", "nearest", "none")


@dataclass(frozen=True)
class SobolIndices:
    """First-order and total-order Sobol indices, (n_dims,) float64 tensors, from ``n_samples`` base points."""

    first: torch.Tensor
    total: torch.Tensor
    n_samples: int


def _check_pow2(value: object, name: str, fn: str) -> int:
    check_int(value, name, fn, low=2)
    if value & (value - 1):  # type: ignore[operator]
        raise ValueError(f"The {name!r} parameter of {fn} must be a power of two int in [2, inf). "
                         f"Got {value!r} instead.")
    return int(value)  # type: ignore[arg-type]


def _numpy_seed(generator: torch.Generator | int | None) -> int | None:
    """An int seed for numpy/scipy: the int itself, or one drawn from a torch.Generator (None stays None)."""
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    if isinstance(generator, int) and not isinstance(generator, bool):
        return generator
    raise TypeError(f"The 'generator' parameter must be an int, a torch.Generator or None. Got {generator!r}.")


def saltelli_design(n_dims: int, n_samples: int, seed: int | None) -> np.ndarray:
    """The (n_samples * (n_dims + 2), n_dims) design, ordered [A; B; AB_1; ...; AB_d] block by block.

    A and B are the two halves of one scrambled Sobol draw of dimension 2 * n_dims (``scipy.stats.qmc.Sobol``
    seeded with ``seed``, as SALib's ``sample.sobol`` draws its base sequence).
    """
    ab = qmc.Sobol(d=2 * n_dims, scramble=True, seed=seed).random(n_samples)  # (n, 2d)
    a, b = ab[:, :n_dims], ab[:, n_dims:]
    ab_i = np.repeat(a[None], n_dims, axis=0)  # (d, n, d): AB_i = A with column i from B
    idx = np.arange(n_dims)
    ab_i[idx, :, idx] = b[:, idx].T
    return np.concatenate([a, b, ab_i.reshape(-1, n_dims)], axis=0)


def _estimators(y: torch.Tensor, n_dims: int, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Saltelli-2010 first-order and Jansen total-order indices from outputs (..., n (d + 2)) in design order.

    Outputs are centred on their mean over all evaluations first, as SALib does: the first-order estimator is not
    shift-invariant (only its expectation is), and centring lowers its variance.
    """
    y = y - y.mean(dim=-1, keepdim=True)
    f_a = y[..., :n_samples]  # (..., n)
    f_b = y[..., n_samples : 2 * n_samples]
    f_ab = y[..., 2 * n_samples :].unflatten(-1, (n_dims, n_samples))  # (..., d, n)
    var = torch.cat([f_a, f_b], dim=-1).var(dim=-1, correction=0)[..., None]  # (..., 1): A and B pooled
    first = (f_b[..., None, :] * (f_ab - f_a[..., None, :])).mean(-1)
    total = 0.5 * ((f_a[..., None, :] - f_ab) ** 2).mean(-1)
    # No variance means no sensitivity: define the indices as 0 rather than 0/0.
    y_ab = torch.cat([f_a, f_b], dim=-1)
    ptp = y_ab.amax(-1, keepdim=True) - y_ab.amin(-1, keepdim=True)
    flat = ptp <= torch.finfo(y.dtype).eps * y_ab.abs().amax(-1, keepdim=True).clamp_min(1.0)
    safe = torch.where(flat, torch.ones_like(var), var)
    zero = torch.zeros_like(first)
    return torch.where(flat, zero, first / safe), torch.where(flat, zero, total / safe)


def sobol_indices(
    func: Callable[[torch.Tensor], torch.Tensor],
    n_dims: int,
    *,
    n_samples: int,
    generator: torch.Generator | int | None = None,
) -> SobolIndices:
    """First-order and total Sobol indices of ``func`` for independent U[0, 1] inputs.

    Parameters
    ----------
    func : callable
        Vectorized: a (m, n_dims) float64 tensor of points to an (m,) tensor of outputs.
    n_dims : int
        Number of inputs d.
    n_samples : int
        Base points n (a power of two, as Sobol sequences need); ``func`` is evaluated n (d + 2) times.
    generator : torch.Generator or int, optional
        Seeds the scrambling. An int is passed to scipy unchanged, so ``sobol_indices(f, d, n_samples=n,
        generator=s)`` uses the same design as ``SALib.sample.sobol.sample(problem, n, seed=s,
        calc_second_order=False)``.

    Returns
    -------
    SobolIndices
        ``first`` (Saltelli et al. 2010) and ``total`` (Jansen 1999), normalized by the variance of f over A and B.
    """
    fn = "sobol_indices"
    if not callable(func):
        raise TypeError(f"The 'func' parameter of {fn} must be callable. Got {type(func).__name__} instead.")
    check_int(n_dims, "n_dims", fn)
    _check_pow2(n_samples, "n_samples", fn)
    x = torch.from_numpy(saltelli_design(n_dims, n_samples, _numpy_seed(generator)))
    y = torch.as_tensor(func(x)).to(torch.float64).reshape(-1)
    if y.numel() != x.shape[0]:
        raise ValueError(f"The 'func' parameter of {fn} must map (m, {n_dims}) points to (m,) outputs. "
                         f"Got {y.numel()} outputs for m = {x.shape[0]} instead.")
    first, total = _estimators(y, n_dims, n_samples)
    return SobolIndices(first=first, total=total, n_samples=n_samples)


def upsample_cells(cells: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Upsample per-cell scores (N, g, g) to (N, H, W) (``"bicubic"``, ``"nearest"``; ``"none"`` returns cells)."""
    if mode == "none":
        return cells
    kw = {"align_corners": False} if mode == "bicubic" else {}
    return F.interpolate(cells[:, None], size=size, mode=mode, **kw)[:, 0]


def sobol_attribution(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    grid_size: int = 8,
    n_designs: int = 32,
    upsample: str = "bicubic",
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Sobol attribution (Fel et al. 2021): total-order Sobol index of each grid cell for the target's probability.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits; the score is ``softmax(model(x * mask))[target]``. Its training flag is left
        as it is (call ``model.eval()`` first for dropout/batch-norm models).
    inputs : Tensor, (N, C, H, W)
    target : int or sequence of N ints
    grid_size : int
        The image is cut into grid_size x grid_size cells, one Sobol input each.
    n_designs : int
        Base points of the QMC design (a power of two): n_designs * (grid_size**2 + 2) forwards per image.
    upsample : {"bicubic", "nearest", "none"}
        How the (grid, grid) indices become an (H, W) map: ``"bicubic"`` as the official code resizes them,
        ``"nearest"`` (piecewise constant per cell), ``"none"`` returns the (N, grid, grid) indices themselves.
    internal_batch_size : int, optional
        Perturbed copies per forward (default about 256 copies of a 1x32x32 image).
    generator : torch.Generator or int, optional
        Seeds the scrambled Sobol design (one design serves all images).

    Returns
    -------
    Tensor, (N, H, W) (or (N, grid, grid) with ``upsample="none"``), dtype of ``inputs``; larger = more important.
    """
    fn = "sobol_attribution"
    inputs = check_images(inputs, fn)
    check_int(grid_size, "grid_size", fn)
    _check_pow2(n_designs, "n_designs", fn)
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"The 'upsample' parameter of {fn} must be one of {UPSAMPLE_MODES}. Got {upsample!r} instead.")
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    n, _, h, w = inputs.shape
    targets = targets_of(target, n, fn, inputs.device)
    d = grid_size * grid_size
    design = torch.from_numpy(saltelli_design(d, n_designs, _numpy_seed(generator)))
    design = design.to(inputs.device).reshape(-1, 1, grid_size, grid_size)  # (n (d + 2), 1, g, g)
    scores, _ = masked_scores(
        model, inputs, targets, lambda j: F.interpolate(design[j], size=(h, w), mode="nearest"),
        design.shape[0], batch,
    )  # (N, n (d + 2))
    _, total = _estimators(scores, d, n_designs)  # (N, d)
    cells = total.reshape(n, grid_size, grid_size).to(inputs.dtype)
    return upsample_cells(cells, (h, w), upsample)
