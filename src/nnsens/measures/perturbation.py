"""Black-box perturbation attributions: RISE (arXiv 1806.07421) and single-cell occlusion (Captum's Occlusion).

Both score a perturbed copy of an image by the softmax probability of the target class, and perturb by zeroing:
``x * mask``. The helpers here (argument checks, generator handling, the batched masked-forward loop) are shared
with :mod:`nnsens.measures.sobol`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnsens.measures._checks import as_generator, check_int

TargetType = int | Sequence[int] | torch.Tensor


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------
def check_images(inputs: object, fn: str) -> torch.Tensor:
    """``inputs`` must be a floating (N, C, H, W) tensor."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or not inputs.is_floating_point():
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"The 'inputs' parameter of {fn} must be a floating tensor of shape (N, C, H, W). "
                         f"Got {got} instead.")
    return inputs


def targets_of(target: TargetType | None, n: int, fn: str, device: torch.device) -> torch.Tensor:
    """Broadcast ``target`` (int, sequence or tensor) to a (n,) long tensor on ``device``."""
    if target is None:
        raise ValueError(f"The 'target' parameter of {fn} must be an int or a sequence of n ints. Got None instead.")
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1).to(device)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"The 'target' parameter of {fn} must hold 1 or {n} class indices. Got {t.numel()} instead.")
    return t


def torch_generator(generator: torch.Generator | int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator from an int seed or a generator (None → a fresh, nondeterministic generator)."""
    return as_generator(generator, device=device)


def default_batch(inputs: torch.Tensor) -> int:
    """Perturbed copies per forward when the caller gives none: 128 copies of a 1x32x32 image on CPU (at most
    1,024 whatever the size), 8,192 on GPU.

    Measured on one CPU thread with a two-conv SmallCNN at 32x32: 128 copies per forward ran about twice as fast as
    256 (the activations of 256 copies no longer fit in cache), and 64 no faster than 128. The benchmark
    ``benchmarks/bench_attribution.py`` (SmallCNN 8-16-fc64, one thread) finds the best per-copy cost at 128-256
    copies at 28x28 and 32x32 (this rule's choice within 10 %) and at 1,024 copies at 8x8, where 2,048 was about
    10 % slower: hence the cap. On a GPU, large batches amortize the per-launch cost.
    """
    if inputs.device.type == "cuda":
        return max(16, (8192 * 1024) // max(1, math.prod(inputs.shape[1:])))
    return min(1024, max(16, (128 * 1024) // max(1, math.prod(inputs.shape[1:]))))


@torch.no_grad()
def masked_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    masks: Callable[[torch.Tensor], torch.Tensor],
    n_masks: int,
    batch: int,
    *,
    weighted_sum: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probability of ``targets`` for every (image, mask) pair: ``p[i, j] = softmax(model(x_i * m_j))[t_i]``.

    ``masks(j)`` maps a (k,) index tensor to (k, 1 or C, H, W) masks. Masks are built once per chunk of at most
    ``batch`` and applied to every image (several images per forward when there are fewer masks than ``batch``),
    so memory stays bounded whatever N and n_masks are.

    Returns
    -------
    (p, s) : (N, n_masks) float64 scores, and, with ``weighted_sum``, ``s[i] = sum_j p[i, j] m_j`` as (N, C or 1,
    H, W) float64 (else None).
    """
    n = inputs.shape[0]
    mb = min(n_masks, batch)  # masks per chunk
    ib = max(1, batch // mb)  # images per forward
    out = torch.empty(n, n_masks, dtype=torch.float64, device=inputs.device)
    acc = None
    for start in range(0, n_masks, mb):
        j = torch.arange(start, min(n_masks, start + mb), device=inputs.device)
        m = masks(j).to(inputs.dtype)  # (k, 1 or C, H, W)
        k = m.shape[0]
        if weighted_sum and acc is None:
            acc = torch.zeros(n, *m.shape[1:], dtype=torch.float64, device=inputs.device)
        for i0 in range(0, n, ib):
            x = inputs[i0 : i0 + ib]
            copies = (x[:, None] * m[None]).flatten(0, 1)  # (b, k, C, H, W) -> (b * k, C, H, W)
            prob = torch.softmax(model(copies).double(), dim=1).unflatten(0, (x.shape[0], k))  # (b, k, classes)
            p = prob.gather(2, targets[i0 : i0 + ib, None, None].expand(-1, k, 1))[..., 0]  # (b, k)
            out[i0 : i0 + x.shape[0], start : start + k] = p
            if acc is not None:
                acc[i0 : i0 + x.shape[0]] += torch.einsum("bk,k...->b...", p, m.double())
    return out, acc


# --------------------------------------------------------------------------------------------------------------------
# RISE
# --------------------------------------------------------------------------------------------------------------------
def rise_masks(
    n_masks: int, size: tuple[int, int], *, grid_size: int = 8, p: float = 0.5,
    generator: torch.Generator | int | None = None, device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """RISE's random masks, drawn as small grids and shifts (upsampled lazily by :func:`rise_upsample`).

    Returns ``(grids, shifts)``: (n_masks, 1, grid, grid) binary grids with P(1) = p, and (n_masks, 2) integer
    shifts in [0, cell) for the random crop.
    """
    gen = torch_generator(generator)
    h, w = size
    cell = (math.ceil(h / grid_size), math.ceil(w / grid_size))
    grids = (torch.rand(n_masks, 1, grid_size, grid_size, generator=gen) < p).double()
    shifts = torch.stack(
        [torch.randint(0, cell[0], (n_masks,), generator=gen), torch.randint(0, cell[1], (n_masks,), generator=gen)],
        dim=1,
    )
    return grids.to(device), shifts.to(device)


def rise_upsample(grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample (k, 1, g, g) grids to (g + 1) cells and crop ``size`` at the given shifts: (k, 1, H, W)."""
    h, w = size
    g = grids.shape[-1]
    ch, cw = math.ceil(h / g), math.ceil(w / g)
    big = F.interpolate(grids, size=((g + 1) * ch, (g + 1) * cw), mode="bilinear", align_corners=False)
    rows = shifts[:, 0, None] + torch.arange(h, device=grids.device)  # (k, H)
    cols = shifts[:, 1, None] + torch.arange(w, device=grids.device)  # (k, W)
    k = torch.arange(grids.shape[0], device=grids.device)[:, None, None]
    return big[k, 0, rows[:, :, None], cols[:, None, :]][:, None]  # (k, 1, H, W)


def rise(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    n_masks: int = 4000,
    grid_size: int = 8,
    p: float = 0.5,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """RISE saliency (Petsiuk et al. 2018): ``S = sum_j f(x * M_j) M_j / (n_masks * p)``.

    Masks are binary ``grid_size x grid_size`` grids (P(1) = p), bilinearly upsampled to ``grid_size + 1`` cells
    and cropped at a random shift; one set of masks serves all images. ``f`` is the softmax probability of the
    target class. Costs ``n_masks`` forwards per image.

    Returns
    -------
    Tensor, (N, H, W), dtype of ``inputs``; larger = more important.
    """
    fn = "rise"
    inputs = check_images(inputs, fn)
    check_int(n_masks, "n_masks", fn)
    check_int(grid_size, "grid_size", fn, low=1)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 < p < 1.0:
        raise ValueError(f"The 'p' parameter of {fn} must be a float in (0, 1). Got {p!r} instead.")
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    n, _, h, w = inputs.shape
    targets = targets_of(target, n, fn, inputs.device)
    grids, shifts = rise_masks(n_masks, (h, w), grid_size=grid_size, p=float(p), generator=generator,
                               device=inputs.device)
    _, sal = masked_scores(model, inputs, targets, lambda j: rise_upsample(grids[j], shifts[j], (h, w)), n_masks,
                           batch, weighted_sum=True)  # sal: (N, 1, H, W) = sum_j f(x * M_j) M_j
    return (sal[:, 0] / (n_masks * p)).to(inputs.dtype)


# --------------------------------------------------------------------------------------------------------------------
# Occlusion of grid cells (Captum)
# --------------------------------------------------------------------------------------------------------------------
class SoftmaxProbability(nn.Module):
    """Wrap a classifier so that its outputs are softmax probabilities (what the perturbation methods score)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def occlusion_cells(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    grid_size: int = 8,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Single-cell occlusion: drop in the target's softmax probability when one grid cell is set to 0.

    The quantity of ``captum.attr.Occlusion`` with a window and stride of one cell (H / grid_size pixels) over
    all channels and a zero baseline, summed over channels (so C x the drop), computed here with the chunked
    masked-forward loop of :func:`masked_scores` (several images and cells per forward, softmax in float64).
    Costs grid_size**2 + 1 forwards per image.

    Returns
    -------
    Tensor, (N, H, W); larger = more important.
    """
    fn = "occlusion_cells"
    inputs = check_images(inputs, fn)
    check_int(grid_size, "grid_size", fn)
    n, c, h, w = inputs.shape
    if h % grid_size or w % grid_size:
        raise ValueError(f"The 'grid_size' parameter of {fn} must divide the image size {h}x{w}. "
                         f"Got {grid_size} instead.")
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    targets = targets_of(target, n, fn, inputs.device)
    ch, cw = h // grid_size, w // grid_size
    cells = grid_size * grid_size
    row = torch.arange(h, device=inputs.device) // ch  # (H,) cell row of each pixel row
    col = torch.arange(w, device=inputs.device) // cw

    def keep(j: torch.Tensor) -> torch.Tensor:  # (k,) cell indices -> (k, 1, H, W), 0 inside the cell
        inside = (row[None, :, None] == (j // grid_size)[:, None, None]) & (
            col[None, None, :] == (j % grid_size)[:, None, None])
        return (~inside)[:, None].to(inputs.dtype)

    p, _ = masked_scores(model, inputs, targets, keep, cells, batch)  # (N, cells)
    with torch.no_grad():
        p0 = torch.cat([torch.softmax(model(inputs[i: i + batch]).double(), dim=1)
                        for i in range(0, n, batch)]).gather(1, targets[:, None])  # (N, 1)
    drop = (c * (p0 - p)).reshape(n, grid_size, grid_size)
    return drop.repeat_interleave(ch, dim=1).repeat_interleave(cw, dim=2).to(inputs.dtype)  # (N, H, W)
