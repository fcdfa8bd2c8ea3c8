"""OSA-DAS (arXiv 2311.15022): occlusion sensitivity scored by the distance between augmentation subspaces.

Each occluded copy of an image is augmented K times (the identity plus K - 1 random ones: integer shifts with zero
fill, a brightness factor, Gaussian noise); the K feature vectors of a chosen layer (the penultimate one) span a
subspace whose rank-r SVD basis is compared with that of the un-occluded image under the *same* K augmentations.
The score of an occlusion is the subspace distance ``d = 1 - mean_i cos^2(theta_i)`` over the r canonical angles,
and a pixel's saliency is the occlusion-weighted average of d. The method never looks at a class score.

With orthonormal bases U, V (D, r), ``cos theta_i`` are the singular values of ``U^T V``, so
``mean_i cos^2 theta_i = ||U^T V||_F^2 / r``: one batched SVD per subspace and no SVD of the product.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nnsens.measures._checks import as_generator, eval_mode
from nnsens.measures.perturbation import (
    TargetType,
    check_images,
    check_int,
    default_batch,
    rise_masks,
    rise_upsample,
)

__all__ = ["augmentations", "grid_masks", "osa_das", "subspace_basis", "subspace_distance"]


def grid_masks(size: tuple[int, int], window: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Non-overlapping ``window`` x ``window`` occlusion windows (the last row / column truncated when ``window``
    does not divide the side): (M, H, W) float, 1 inside the occluded window."""
    h, w = size
    rows, cols = math.ceil(h / window), math.ceil(w / window)
    cell_r = torch.arange(h, device=device) // window  # (H,) window row of each pixel row
    cell_c = torch.arange(w, device=device) // window
    j = torch.arange(rows * cols, device=device)
    return ((cell_r[None, :, None] == (j // cols)[:, None, None])
            & (cell_c[None, None, :] == (j % cols)[:, None, None])).float()  # (M, H, W)


def augmentations(n_augment: int, *, shift: int = 2, brightness: float = 0.1,
                  generator: torch.Generator | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_augment`` augmentations; the first is the identity.

    Returns ``(shifts, gains)``: (K, 2) integer shifts in [-shift, shift] and (K,) brightness factors in
    [1 - brightness, 1 + brightness]; the noise fields are drawn by :func:`osa_das` from the same generator.
    """
    gen = as_generator(generator, "augmentations")
    shifts = torch.randint(-shift, shift + 1, (n_augment, 2), generator=gen)
    gains = 1 + brightness * (2 * torch.rand(n_augment, generator=gen, dtype=torch.float64) - 1)
    shifts[0], gains[0] = 0, 1.0
    return shifts, gains


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate (..., H, W) by (dy, dx) pixels with zero fill."""
    if dy == 0 and dx == 0:
        return x
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        x[..., max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    return out


def subspace_basis(features: torch.Tensor, rank: int) -> torch.Tensor:
    """Orthonormal basis of the top-``rank`` left singular vectors: (..., D, K) → (..., D, rank)."""
    u, _, _ = torch.linalg.svd(features, full_matrices=False)
    return u[..., :rank]


def subspace_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``1 - mean cos^2`` of the canonical angles between the spans of orthonormal (..., D, r) bases u and v."""
    cos2 = (u.transpose(-1, -2) @ v).square().sum(dim=(-2, -1))  # ||U^T V||_F^2 = sum_i cos^2 theta_i
    return 1.0 - cos2 / u.shape[-1]


class _Features:
    """Capture the output of ``layer`` (flattened to (B, D)); the model's output when ``layer`` is None."""

    def __init__(self, model: nn.Module, layer: nn.Module | None) -> None:
        self.model, self.layer, self.out = model, layer, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(x).flatten(1)
        handle = self.layer.register_forward_hook(lambda _m, _i, o: setattr(self, "out", o))
        try:
            self.model(x)
        finally:
            handle.remove()
        out, self.out = self.out, None
        return out.flatten(1)


@torch.no_grad()
def osa_das(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType | None = None,
    layer: nn.Module | None = None,
    window: int = 4,
    n_augment: int = 8,
    rank: int = 3,
    masks: str | torch.Tensor | None = None,
    n_masks: int = 500,
    shift: int = 2,
    brightness: float = 0.1,
    noise: float = 0.05,
    generator: torch.Generator | int | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """OSA-DAS saliency: how far occluding a region moves the augmentation subspace in feature space.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (its training flag is restored).
    inputs : Tensor, (N, C, H, W)
    target : ignored
        Accepted for the common signature; the method is class-agnostic.
    layer : nn.Module, optional
        The feature layer (the penultimate one); its output is flattened to (D,). Default: the model's output,
        which has few dimensions (the classes) and makes low-rank subspaces overlap by construction.
    window : int
        Side of the non-overlapping occlusion windows when ``masks`` is ``None`` or ``"grid"``.
    n_augment : int
        K, augmented copies per occluded image, the first being the identity (K = 1: no augmentation).
    rank : int
        r; subspaces have rank min(r, K).
    masks : None, "grid", "rise" or Tensor
        ``"grid"`` (default): occlusion windows; ``"rise"``: ``n_masks`` RISE masks (8 x 8 grids, p = 0.5,
        bilinear, random shift), occluding where the RISE mask is 0; a (M, H, W) tensor of occlusion weights in
        [0, 1] (1 = fully occluded).
    shift, brightness, noise : augmentation strengths: integer shifts in [-shift, shift] px, brightness factor in
        [1 - brightness, 1 + brightness], Gaussian noise of standard deviation noise x the image's value range.
    generator : torch.Generator or int, optional
        Draws the augmentations (shared by all images and occlusions) and the RISE masks.
    internal_batch_size : int, optional
        Perturbed copies per forward (default: :func:`~nnsens.measures.perturbation.default_batch`).

    Returns
    -------
    Tensor, (N, H, W), dtype of ``inputs``: the occlusion-weighted mean of d; larger = more important.
    Costs (M + 1) K forwards per image.
    """
    fn = "osa_das"
    inputs = check_images(inputs, fn)
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    if layer is not None and not isinstance(layer, nn.Module):
        raise TypeError(f"The 'layer' parameter of {fn} must be a torch.nn.Module or None. "
                        f"Got {type(layer).__name__} instead.")
    n, c, h, w = inputs.shape
    check_int(window, "window", fn, high=min(h, w))
    k_aug = check_int(n_augment, "n_augment", fn)
    r = min(check_int(rank, "rank", fn), k_aug)
    check_int(shift, "shift", fn, low=0)
    for name, v in (("brightness", brightness), ("noise", noise)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
            raise ValueError(f"The {name!r} parameter of {fn} must be a float in [0, 1). Got {v!r} instead.")
    batch = default_batch(inputs) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    gen = as_generator(generator, fn)
    device = inputs.device

    if masks is None or (isinstance(masks, str) and masks == "grid"):
        occ = grid_masks((h, w), window, device=device)
    elif isinstance(masks, str) and masks == "rise":
        check_int(n_masks, "n_masks", fn)
        grids, offs = rise_masks(n_masks, (h, w), grid_size=8, p=0.5, generator=gen, device=device)
        occ = 1.0 - rise_upsample(grids, offs, (h, w))[:, 0].float()  # occluded where the RISE mask is 0
    elif isinstance(masks, torch.Tensor) and masks.ndim == 3 and masks.shape[1:] == (h, w):
        occ = masks.to(device=device, dtype=torch.float32)
    else:
        got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else repr(masks)
        raise ValueError(f"The 'masks' parameter of {fn} must be None, 'grid', 'rise' or a (M, {h}, {w}) tensor. "
                         f"Got {got} instead.")
    occ = occ.to(inputs.dtype)
    m = occ.shape[0]

    shifts, gains = augmentations(k_aug, shift=shift, brightness=float(brightness), generator=gen)
    z = torch.randn(k_aug, c, h, w, generator=gen, dtype=torch.float64).to(device=device, dtype=inputs.dtype)
    z[0] = 0.0  # the identity has no noise
    span = (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3)))  # (N,) value range of each image
    gains = gains.to(device=device, dtype=inputs.dtype)

    def augment(x: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) copies of images ``img`` → (B, K, C, H, W) augmented copies."""
        out = torch.stack([_shift(x, int(dy), int(dx)) for dy, dx in shifts.tolist()], dim=1)  # (B, K, C, H, W)
        return out * gains[None, :, None, None, None] + float(noise) * span[img, None, None, None, None] * z[None]

    feats = _Features(model, layer)
    per = max(1, batch // k_aug)  # occluded images per forward (K copies each)

    def bases(img: torch.Tensor, mask_idx: torch.Tensor | None) -> torch.Tensor:
        """Rank-r bases (B, D, r) of the augmented, occluded copies of images ``img`` (no occlusion: None)."""
        x = inputs[img]
        if mask_idx is not None:
            x = x * (1 - occ[mask_idx])[:, None]  # (B, C, H, W), zero fill inside the window
        f = feats(augment(x, img).flatten(0, 1))  # (B * K, D)
        return subspace_basis(f.double().unflatten(0, (x.shape[0], k_aug)).transpose(1, 2), r)  # (B, D, r)

    with eval_mode(model):
        idx = torch.arange(n, device=device)
        ref = torch.cat([bases(idx[s: s + per], None) for s in range(0, n, per)])  # (N, D, r)
        pairs = n * m
        d = torch.empty(pairs, dtype=torch.float64, device=device)
        for s in range(0, pairs, per):
            flat = torch.arange(s, min(pairs, s + per), device=device)
            img, j = flat // m, flat % m
            d[s: s + flat.numel()] = subspace_distance(ref[img], bases(img, j))
    d = d.reshape(n, m)
    weight = occ.double().sum(0)  # (H, W) total occlusion weight per pixel
    sal = torch.einsum("nm,mhw->nhw", d, occ.double()) / weight.clamp_min(1e-12)
    return torch.where(weight > 0, sal, torch.zeros_like(sal)).to(inputs.dtype)
