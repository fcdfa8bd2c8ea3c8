"""Extremal perturbations with smooth masks and a rank-based area constraint, and the 2017 objective they replace.

- arXiv 1910.08485, Fong, Patrick, Vedaldi (ICCV 2019), *Understanding Deep Networks via Extremal Perturbations and
  Smooth Masks*: for a fixed area ``a``, the smooth mask of area ``a`` whose preserved (or deleted) region keeps the
  most (or removes the most) class evidence. Our own port of the method as TorchRay implements it
  (facebookresearch/TorchRay, ``attribution/extremal_perturbation.py``): a perturbation pyramid (the image blurred at
  ``n_levels`` widths, or faded to 0), mask parameters on a grid of pitch ``step`` turned into a smooth mask by a
  smooth max of flat-topped Gaussian bumps (softmax pooling at ``coldness`` 20), the area imposed by matching the sorted
  values of the margin-padded mask to a step vector with a weight that grows every iteration, SGD with momentum.
- arXiv 1704.03296, Fong & Vedaldi (ICCV 2017), *Interpretable Explanations of Black Boxes by Meaningful
  Perturbation*: the earlier objective, score + lambda * mean(mask) + a total-variation penalty, whose mask area
  depends on lambda and on the image (:func:`meaningful_perturbation`).
- Channel extremal perturbations: the same rank-constrained optimisation over the channels of an intermediate layer
  (:func:`channel_extremal_perturbation`).

Every optimisation here maximises the target *logit* (TorchRay's "simple reward"); model parameters get no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnsens.measures._checks import as_generator, check_internal_batch_size, chunks, eval_mode
from nnsens.measures.perturbation import TargetType, check_images, check_int, targets_of

VARIANTS = ("preserve", "delete")
PERTURBATIONS = ("blur", "fade")
INITS = ("constant", "random")


def _check_float(value: object, name: str, fn: str, low: float = 0.0, *, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        bound = "(" if strict else "["
        raise ValueError(f"The {name!r} parameter of {fn} must be a float in {bound}{low:g}, inf). Got {value!r} "
                         "instead.")
    return float(value)


def _check_choice(value: object, name: str, fn: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"The {name!r} parameter of {fn} must be one of {', '.join(map(repr, choices))}. "
                         f"Got {value!r} instead.")
    return str(value)


# --------------------------------------------------------------------------------------------------------------------
# The perturbation pyramid
# --------------------------------------------------------------------------------------------------------------------
def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images with reflected borders (radius ``ceil(4 sigma)``, clipped to
    the image); ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    r = min(math.ceil(4 * sigma), h - 1, w - 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # rows
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # columns


def perturbation_pyramid(inputs: torch.Tensor, *, n_levels: int = 8, max_blur: float = 3.0,
                         kind: str = "blur") -> torch.Tensor:
    """The images at ``n_levels`` strengths of perturbation, (N, L, C, H, W): level 0 is the strongest (blur of width
    ``max_blur``, or the all-zero image for ``"fade"``), level L - 1 the image itself; widths (or fading factors)
    are equally spaced in between."""
    fn = "perturbation_pyramid"
    check_int(n_levels, "n_levels", fn, low=2)
    _check_choice(kind, "kind", fn, PERTURBATIONS)
    levels = []
    for i in range(n_levels):
        keep = i / (n_levels - 1)  # 0 at the strongest level, 1 at the image
        levels.append(gaussian_blur(inputs, (1 - keep) * max_blur) if kind == "blur" else inputs * keep)
    return torch.stack(levels, dim=1)


def apply_pyramid(pyramid: torch.Tensor, masks: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Perturbed images: mask value m in [0, 1] reads level m (L - 1) of the pyramid, linearly between levels.

    ``pyramid`` (N, L, C, H, W), ``masks`` (B, 1, H, W), ``index`` (B,) the image of each mask; returns (B, C, H, W).
    """
    n_levels = pyramid.shape[1]
    pos = masks.clamp(0, 1) * (n_levels - 1)  # (B, 1, H, W)
    low = pos.detach().floor().clamp(max=n_levels - 2)
    frac = pos - low
    pyr = pyramid[index]  # (B, L, C, H, W)
    k = low.long()[:, None].expand(-1, 1, pyr.shape[2], -1, -1)  # (B, 1, C, H, W)
    y0 = pyr.gather(1, k)[:, 0]
    y1 = pyr.gather(1, k + 1)[:, 0]
    return y0 + frac * (y1 - y0)


# --------------------------------------------------------------------------------------------------------------------
# Smooth masks
# --------------------------------------------------------------------------------------------------------------------
def bump(z: torch.Tensor) -> torch.Tensor:
    """The flat-topped Gaussian profile of one mask parameter: 1 up to half a width, then exp(-2 (z - 1/2)^2)."""
    return torch.exp(-2 * (z - 0.5).clamp(min=0) ** 2)


class SmoothMaskGenerator:
    """Smooth masks of ``shape`` (H, W) from parameters on a grid of pitch ``step``.

    Parameter ``k`` sits at pixel ``step * k`` and spreads as the bump ``v_k * bump(|u - p_k| / sigma)``; a pixel takes
    the smooth max (softmax pooling at ``coldness``) of the bumps of the (2R + 1)^2 nearest parameters, R = 1 +
    ceil(sigma / step), parameters outside the grid being 0; the result is clamped to [0, 1]. The mask is computed
    on the image grown by a margin of ceil(sigma) pixels on each side (the area constraint acts on that padded mask,
    so that a mask cannot hide area outside the image) and cropped to the image.

    Call it on parameters (B, 1, ceil(H / step), ceil(W / step)); it returns ``(cropped, padded)``, (B, 1, H, W) and
    (B, 1, H + 2 margin, W + 2 margin).
    """

    def __init__(self, shape: tuple[int, int], *, step: int = 1, sigma: float = 3.0, coldness: float = 20.0,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        fn = "SmoothMaskGenerator"
        check_int(step, "step", fn)
        _check_float(sigma, "sigma", fn)
        self.shape, self.step, self.sigma, self.coldness = tuple(shape), step, float(sigma), float(coldness)
        self.margin = math.ceil(sigma)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = tuple(math.ceil(s / step) for s in self.shape)
        self.shape_out = tuple(s + 2 * self.margin for s in self.shape)
        axes = [self._axis(n_out, n_in) for n_out, n_in in zip(self.shape_out, self.shape_in, strict=True)]
        (self.pad_y, self.win_y, dy), (self.pad_x, self.win_x, dx) = axes
        self.win_y, self.win_x = self.win_y.to(device), self.win_x.to(device)
        # weight[ky * (2R + 1) + kx, uy, ux] = bump(distance from pixel u to the parameter at offset (ky, kx) / sigma)
        dist = torch.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)  # (2R+1, 2R+1, Hout, Wout)
        self.weight = bump(dist / self.sigma).flatten(0, 1).to(device=device, dtype=dtype)
        if step == 1:  # every pixel is a grid point: neighbour k of pixel u is padded parameter u + (ky, kx)
            self.win_y = self.win_x = None
            self.weight = self.weight[:, 0, 0].contiguous()  # (K,): the weights do not vary with u

    def _axis(self, n_out: int, n_in: int) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor]:
        """Grid padding, the unfold window of each output coordinate, and the offsets u - p_k (2R + 1, n_out)."""
        r, s, m = self.radius, self.step, self.margin
        u = torch.arange(n_out)
        base = torch.div(u - m, s, rounding_mode="floor")  # the grid point at or before u
        lo = r + math.ceil(m / s)  # zero parameters before the grid, enough for every window
        hi = max(0, int(base.max()) - n_in + r + 1)
        win = base + lo - r  # window j of the padded grid is centred on grid index j + r - lo
        offsets = torch.arange(-r, r + 1)
        delta = u[None, :] - (m + s * (base[None, :] + offsets[:, None]))  # (2R+1, n_out)
        return (lo, hi), win, delta.double()

    def __call__(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = params.shape[0]
        k = 2 * self.radius + 1
        p = F.pad(params, (*self.pad_x, *self.pad_y))  # zeros outside the grid
        if self.win_y is None:  # step 1: loop over the K shifts, each (B, 1, Hout, Wout) stays in cache
            mask = _ShiftedSmoothMax.apply(p, self.weight.to(params.dtype), self.shape_out, self.coldness)
        else:
            ny, nx = p.shape[-2] - k + 1, p.shape[-1] - k + 1
            cols = F.unfold(p, k).view(b, k * k, ny, nx)  # (B, K, ny, nx): the K neighbours of each window
            cols = cols.index_select(2, self.win_y).index_select(3, self.win_x)  # (B, K, Hout, Wout)
            mask = _SmoothMax.apply(cols * self.weight.to(params.dtype), self.coldness)  # (B, 1, Hout, Wout)
        mask = mask.clamp(0, 1)
        m = self.margin
        return mask[..., m : m + self.shape[0], m : m + self.shape[1]], mask


class _SmoothMax(torch.autograd.Function):
    """sum_k v_k softmax(c v)_k over dim 1, keeping dims; backward s_k (1 + c (v_k - out)) without autograd's
    intermediate copies (the (B, K, H, W) tensors dominate the cost of mask generation)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, coldness: float) -> torch.Tensor:
        s = torch.softmax(coldness * v, dim=1)
        out = (v * s).sum(1, keepdim=True)
        ctx.save_for_backward(v, s, out)
        ctx.coldness = coldness
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        v, s, out = ctx.saved_tensors
        g = (v - out).mul_(ctx.coldness).add_(1.0).mul_(s).mul_(grad)
        return g, None


class _ShiftedSmoothMax(torch.autograd.Function):
    """The smooth max for step 1: value k of pixel u is w_k p[u + (ky, kx)] with p the padded parameters.

    Parameters and weights lie in [0, 1], so exp(c v) <= exp(c) needs no max-subtraction for c up to ~80 in float32;
    a loop over the K shifts keeps each (B, 1, H, W) slice in cache, where a (B, K, H, W) tensor would not fit.
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor, w: torch.Tensor, shape: tuple[int, int], coldness: float) -> torch.Tensor:
        h, wd = shape
        k = math.isqrt(w.numel())
        num = p.new_zeros(p.shape[0], 1, h, wd)
        den = torch.zeros_like(num)
        e = torch.empty_like(num)
        for j, wj in enumerate(w.tolist()):
            ky, kx = divmod(j, k)
            sl = p[..., ky : ky + h, kx : kx + wd]
            torch.mul(sl, wj * coldness, out=e).exp_()  # e = exp(c v), v = w_j p
            den += e
            num.addcmul_(sl, e, value=wj)  # num += v e
        out = num / den
        ctx.save_for_backward(p, den, out)
        ctx.w, ctx.k, ctx.shape, ctx.coldness = w.tolist(), k, shape, coldness
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        # d out / d v_j = s_j (1 + c (v_j - out)) with s_j = e_j / den, so grad_v_j = e_j (a + b v_j) with
        # a = grad (1 - c out) / den and b = c grad / den
        p, den, out = ctx.saved_tensors
        h, wd = ctx.shape
        c = ctx.coldness
        gd = grad / den
        a, b = gd * (1 - c * out), gd * c
        gp = torch.zeros_like(p)
        e, t = torch.empty_like(out), torch.empty_like(out)
        for j, wj in enumerate(ctx.w):
            ky, kx = divmod(j, ctx.k)
            sl = p[..., ky : ky + h, kx : kx + wd]
            torch.mul(sl, wj * c, out=e).exp_()
            torch.addcmul(a, sl, b, value=wj, out=t)  # a + b v_j
            gp[..., ky : ky + h, kx : kx + wd].addcmul_(e, t, value=wj)
        return gp, None, None, None


def area_rank_loss(masks: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between each mask's sorted values and the step vector of its area, (B,).

    The reference of area ``a`` over n values holds floor(n (1 - a)) zeros, then ones: the loss is 0 exactly when
    the mask is binary with that many ones.
    """
    flat = masks.flatten(1)
    n = flat.shape[1]
    ranks = torch.arange(n, device=flat.device)
    ref = (ranks[None] >= torch.floor(n * (1 - areas.to(flat.dtype)))[:, None]).to(flat.dtype)  # (B, n)
    return ((flat.sort(dim=1).values - ref) ** 2).mean(dim=1)


# --------------------------------------------------------------------------------------------------------------------
# Extremal perturbations
# --------------------------------------------------------------------------------------------------------------------
def extremal_perturbation(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    areas: Sequence[float] = (0.05, 0.1, 0.2),
    variant: str = "preserve",
    perturbation: str = "blur",
    n_iter: int = 300,
    step: int = 1,
    sigma: float = 3.0,
    n_levels: int = 8,
    max_blur: float = 3.0,
    lr: float = 0.01,
    momentum: float = 0.9,
    area_weight: float = 300.0,
    area_growth: float | None = None,
    coldness: float = 20.0,
    jitter: bool = False,
    init: str = "constant",
    return_padded: bool = False,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Extremal perturbation masks of every (image, area) pair, optimised together.

    Parameters
    ----------
    model : nn.Module returning logits; evaluated in eval mode, its training flag restored.
    inputs : Tensor, (N, C, H, W)
    target : int or sequence of N ints, the class whose logit is preserved (or deleted).
    areas : the target areas a in (0, 1), fraction of the margin-padded mask.
    variant : ``"preserve"`` keeps the masked region intact and perturbs the rest (maximises the logit);
        ``"delete"`` perturbs the masked region (minimises it).
    perturbation : ``"blur"`` (pyramid of Gaussian blurs up to ``max_blur`` pixels) or ``"fade"`` (towards 0).
    n_iter, lr, momentum : SGD steps (momentum with equal dampening, as TorchRay).
    step, sigma, coldness : the mask family (:class:`SmoothMaskGenerator`); TorchRay's step 7 / sigma 21 at 224 pixels
        is step 1 / sigma 3 at 32 pixels.
    area_weight, area_growth : weight of :func:`area_rank_loss`, multiplied by ``area_growth`` each iteration;
        default growth 1.0035 ** (800 / n_iter), TorchRay's final weight after its 800 iterations.
    jitter : flip the perturbed images horizontally every other iteration (TorchRay's default; off here, because it
        assumes mirror-symmetric classes, which digits are not).
    init : ``"constant"`` parameters start at 0.5 (TorchRay); ``"random"`` uniform in [0, 1] from ``generator``.
    return_padded : also return the margin-padded masks the area loss constrains.
    internal_batch_size : (image, area) pairs optimised per batch; None = all in one batch.
    generator : torch.Generator or int, used by ``init="random"`` only.

    Returns
    -------
    Tensor, (N, A, H, W) masks in [0, 1] (1 = preserved region for ``"preserve"``, deleted region for ``"delete"``),
    and with ``return_padded`` the (N, A, H + 2 margin, W + 2 margin) padded masks.
    """
    fn = "extremal_perturbation"
    inputs = check_images(inputs, fn)
    _check_choice(variant, "variant", fn, VARIANTS)
    _check_choice(perturbation, "perturbation", fn, PERTURBATIONS)
    _check_choice(init, "init", fn, INITS)
    check_int(n_iter, "n_iter", fn, low=0)
    area_list = [float(a) for a in (areas if isinstance(areas, Sequence) else [areas])]
    if not area_list or not all(0.0 < a < 1.0 for a in area_list):
        raise ValueError(f"The 'areas' parameter of {fn} must be a non-empty sequence of floats in (0, 1). "
                         f"Got {areas!r} instead.")
    for name, value in (("lr", lr), ("area_weight", area_weight), ("max_blur", max_blur), ("coldness", coldness)):
        _check_float(value, name, fn)
    growth = 1.0035 ** (800 / max(n_iter, 1)) if area_growth is None else _check_float(area_growth, "area_growth", fn)
    ibs = check_internal_batch_size(internal_batch_size, fn)
    n, _, h, w = inputs.shape
    targets = targets_of(target, n, fn, inputs.device)
    gen = SmoothMaskGenerator((h, w), step=step, sigma=sigma, coldness=coldness, device=inputs.device,
                              dtype=inputs.dtype)
    n_areas = len(area_list)
    # pair j = image j // A, area j % A
    img_of = torch.arange(n, device=inputs.device).repeat_interleave(n_areas)
    area_of = torch.tensor(area_list, dtype=inputs.dtype, device=inputs.device).repeat(n)
    if init == "random":
        g = as_generator(generator, fn)
        start = torch.rand(n * n_areas, 1, *gen.shape_in, generator=g).to(inputs.device, inputs.dtype)
    else:
        start = torch.full((n * n_areas, 1, *gen.shape_in), 0.5, dtype=inputs.dtype, device=inputs.device)
    crops, pads = [], []
    with eval_mode(model):
        pyramid = perturbation_pyramid(inputs.detach(), n_levels=n_levels, max_blur=max_blur, kind=perturbation)
        for sl in chunks(n * n_areas, ibs):
            c, p = _optimise_masks(model, pyramid, gen, start[sl], img_of[sl], targets[img_of[sl]], area_of[sl],
                                   variant=variant, n_iter=n_iter, lr=lr, momentum=momentum, weight=area_weight,
                                   growth=growth, jitter=jitter)
            crops.append(c)
            pads.append(p)
    crop = torch.cat(crops).view(n, n_areas, h, w)
    if return_padded:
        return crop, torch.cat(pads).view(n, n_areas, *gen.shape_out)
    return crop


def _optimise_masks(model, pyramid, gen, start, index, targets, areas, *, variant, n_iter, lr, momentum, weight,
                    growth, jitter):
    """SGD on the mask parameters of one batch of (image, area) pairs; returns the final (cropped, padded) masks."""
    params = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([params], lr=lr, momentum=momentum, dampening=momentum)
    sign = 1.0 if variant == "preserve" else -1.0
    for t in range(n_iter):
        crop, pad = gen(params)
        x = apply_pyramid(pyramid, crop if variant == "preserve" else 1 - crop, index)
        if jitter and t % 2 == 1:
            x = x.flip(-1)
        reward = sign * model(x).gather(1, targets[:, None])[:, 0]
        energy = -reward.sum() + weight * area_rank_loss(pad, areas).sum()
        (grad,) = torch.autograd.grad(energy, params)
        params.grad = grad
        opt.step()
        params.grad = None
        with torch.no_grad():
            params.clamp_(0, 1)
        weight *= growth
    with torch.no_grad():
        crop, pad = gen(params)
    return crop[:, 0].detach(), pad[:, 0].detach()


# --------------------------------------------------------------------------------------------------------------------
# The 2017 meaningful-perturbation objective
# --------------------------------------------------------------------------------------------------------------------
def total_variation(masks: torch.Tensor, beta: float = 3.0) -> torch.Tensor:
    """Mean over pixels of |grad m|^beta with forward differences, (B,) for (B, H, W) or (B, 1, H, W) masks."""
    m = masks.reshape(-1, *masks.shape[-2:])
    dy = (m[:, 1:, :-1] - m[:, :-1, :-1]) ** 2
    dx = (m[:, :-1, 1:] - m[:, :-1, :-1]) ** 2
    return ((dy + dx + 1e-12) ** (beta / 2)).mean(dim=(1, 2))


def meaningful_perturbation(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    l1_weight: float = 5.0,
    tv_weight: float = 2.0,
    tv_beta: float = 3.0,
    upsample: int = 4,
    perturbation: str = "blur",
    n_iter: int = 300,
    lr: float = 0.1,
    n_levels: int = 8,
    max_blur: float = 3.0,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Preservation masks of the 2017 objective: maximise logit(m * x) - l1_weight mean(m) - tv_weight TV_beta(m).

    The mask lives on a grid ``upsample`` times coarser than the image (the paper's 28 x 28 mask for 224 pixels is a
    factor 8), is upsampled bilinearly, starts at 0.5 and is optimised with Adam, clamped to [0, 1]. Its area is
    whatever the trade-off gives: that depends on ``l1_weight`` and on the image, the problem extremal perturbations
    remove. Returns (N, H, W) masks in [0, 1].
    """
    fn = "meaningful_perturbation"
    inputs = check_images(inputs, fn)
    _check_choice(perturbation, "perturbation", fn, PERTURBATIONS)
    check_int(n_iter, "n_iter", fn, low=0)
    check_int(upsample, "upsample", fn)
    for name, value in (("l1_weight", l1_weight), ("tv_weight", tv_weight)):
        _check_float(value, name, fn, strict=False)
    _check_float(lr, "lr", fn)
    ibs = check_internal_batch_size(internal_batch_size, fn)
    n, _, h, w = inputs.shape
    if h % upsample or w % upsample:
        raise ValueError(f"The 'upsample' parameter of {fn} must divide the image size {h}x{w}. Got {upsample!r}.")
    targets = targets_of(target, n, fn, inputs.device)
    out = []
    with eval_mode(model):
        pyramid = perturbation_pyramid(inputs.detach(), n_levels=n_levels, max_blur=max_blur, kind=perturbation)
        for sl in chunks(n, ibs):
            idx = torch.arange(n, device=inputs.device)[sl]
            params = torch.full((len(idx), 1, h // upsample, w // upsample), 0.5, dtype=inputs.dtype,
                                device=inputs.device, requires_grad=True)
            opt = torch.optim.Adam([params], lr=lr)
            for _ in range(n_iter + 1):
                m = F.interpolate(params, size=(h, w), mode="bilinear", align_corners=False)
                if _ == n_iter:
                    break
                logit = model(apply_pyramid(pyramid, m, idx)).gather(1, targets[idx, None])[:, 0]
                energy = (-logit + l1_weight * m.mean(dim=(1, 2, 3)) + tv_weight * total_variation(m, tv_beta)).sum()
                (grad,) = torch.autograd.grad(energy, params)
                params.grad = grad
                opt.step()
                params.grad = None
                with torch.no_grad():
                    params.clamp_(0, 1)
            out.append(m[:, 0].detach())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------------------------
# Channel extremal perturbations
# --------------------------------------------------------------------------------------------------------------------
def channel_masked_logits(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
                          channel_mask: torch.Tensor) -> torch.Tensor:
    """Logits with the output of ``layer`` multiplied channel-wise by ``channel_mask`` (N, C) (0 = channel removed)."""
    def hook(_module, _inp, out):
        return out * channel_mask.to(out.dtype).view(*channel_mask.shape, *([1] * (out.ndim - 2)))

    handle = layer.register_forward_hook(hook)
    try:
        return model(inputs)
    finally:
        handle.remove()


def channel_extremal_perturbation(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    layer: nn.Module,
    area: float = 0.1,
    n_iter: int = 300,
    lr: float = 0.01,
    momentum: float = 0.9,
    area_weight: float = 1.0,
    area_growth: float | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Channel masks (N, C) in [0, 1] of ``layer``'s output that keep the target logit with a fraction ``area`` of
    the channels: the rank loss of :func:`area_rank_loss` on the C mask values, the logit as reward, SGD as in
    :func:`extremal_perturbation`; removed channels are set to 0.

    The area weight starts at 1, not 300: the rank loss is a mean over C values, so with C = 64 channels instead of
    ~1,400 pixels each value's share of its gradient is 20x larger, and at 300 it would sort the channels by index
    (all start tied at 0.5) before the reward could order them.
    """
    fn = "channel_extremal_perturbation"
    inputs = check_images(inputs, fn)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"The 'layer' parameter of {fn} must be a torch.nn.Module. Got {type(layer).__name__}.")
    if not isinstance(area, (int, float)) or not 0.0 < area < 1.0:
        raise ValueError(f"The 'area' parameter of {fn} must be a float in (0, 1). Got {area!r} instead.")
    check_int(n_iter, "n_iter", fn, low=0)
    _check_float(lr, "lr", fn)
    growth = 1.0035 ** (800 / max(n_iter, 1)) if area_growth is None else _check_float(area_growth, "area_growth", fn)
    ibs = check_internal_batch_size(internal_batch_size, fn)
    n = inputs.shape[0]
    targets = targets_of(target, n, fn, inputs.device)
    out = []
    with eval_mode(model):
        with torch.no_grad():  # the channel count, from one forward of one image
            seen = []
            handle = layer.register_forward_hook(lambda _m, _i, o: seen.append(o.shape[1]))
            try:
                model(inputs[:1])
            finally:
                handle.remove()
        n_channels = seen[0]
        for sl in chunks(n, ibs):
            x, t = inputs[sl].detach(), targets[sl]
            params = torch.full((x.shape[0], n_channels), 0.5, dtype=inputs.dtype, device=inputs.device,
                                requires_grad=True)
            opt = torch.optim.SGD([params], lr=lr, momentum=momentum, dampening=momentum)
            weight = area_weight
            areas = torch.full((x.shape[0],), float(area), dtype=inputs.dtype, device=inputs.device)
            for _ in range(n_iter):
                logit = channel_masked_logits(model, x, layer, params).gather(1, t[:, None])[:, 0]
                energy = -logit.sum() + weight * area_rank_loss(params, areas).sum()
                (grad,) = torch.autograd.grad(energy, params)
                params.grad = grad
                opt.step()
                params.grad = None
                with torch.no_grad():
                    params.clamp_(0, 1)
                weight *= growth
            out.append(params.detach().clone())
    return torch.cat(out)
