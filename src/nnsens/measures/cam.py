"""Grad-CAM++ (Chattopadhay et al., arXiv 1710.11063) and Smooth Grad-CAM++ (Omeiza et al., arXiv 1908.01224).

Both weight the feature maps ``A^k`` of a convolutional ``layer`` by how the class score depends on them. With
``S`` the model's output for the target class (a logit) and the score written as ``Y = exp(S)``, a network that is
piecewise linear after the layer (ReLU, max pooling, linear maps) has ``d^pY / dA^p = exp(S) g^p`` entrywise, where
``g = dS/dA``. Grad-CAM++'s pixel weights then have the closed form

    alpha_ij^k = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab^k) g_ij^3)        (0 where the denominator is 0)

(``exp(S)`` cancels), the channel weights are ``w_k = sum_ij alpha_ij^k relu(g_ij^k)`` (up to the positive factor
``exp(S)``, dropped) and the map is ``relu(sum_k w_k A^k)``.

Smooth Grad-CAM++ averages the three derivative terms over ``n_samples`` copies of the input with Gaussian noise of
standard deviation ``stdev x (max - min)`` of each image (SmoothGrad's convention): ``D1, D2, D3`` are the means of
``g, g^2, g^3`` over the noisy copies, ``alpha = D2 / (2 D2 + (sum_ab A_ab) D3)``, ``w_k = sum_ij alpha relu(D1)``,
with the activations ``A`` of the clean input. It is not an average of per-copy Grad-CAM++ maps. With one copy and
no noise it is Grad-CAM++ exactly. (The ``exp(S)`` factor of each copy is dropped as in common implementations, so
every copy counts equally.)

Maps are returned in Captum's layer-attribution shape (N, 1, h, w), upsampled to the input size with Captum's
``LayerAttribution.interpolate`` unless ``upsample="none"``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from nnsens.measures._checks import as_generator, check_internal_batch_size, eval_mode
from nnsens.measures.perturbation import TargetType, check_images, check_int, default_batch, targets_of

with warnings.catch_warnings():  # captum imports tqdm.auto, which warns in a notebook without ipywidgets
    warnings.simplefilter("ignore")
    from captum.attr import LayerAttribution

UPSAMPLE = ("bilinear", "bicubic", "nearest", "none")


def _check_layer(model: object, layer: object, fn: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
        raise ValueError(f"The 'layer' parameter of {fn} must be a submodule of the model. Got {layer!r} instead.")
    return layer


def _check_upsample(upsample: object, fn: str) -> str:
    if upsample not in UPSAMPLE:
        raise ValueError(f"The 'upsample' parameter of {fn} must be one of {', '.join(map(repr, UPSAMPLE))}. "
                         f"Got {upsample!r} instead.")
    return str(upsample)


def _forward_at_layer(model: nn.Module, x: torch.Tensor, layer: nn.Module, fn: str,
                      replace: torch.Tensor | None = None,
                      detach: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model(x)``; return (output, the layer's output as a fresh leaf). ``replace`` substitutes the layer's
    output (the rest of the forward then sees it), which is how scores are read off as functions of ``A``; with
    ``detach=False`` it is passed on as it is (forward-mode derivatives flow through it)."""
    store: list[torch.Tensor] = []

    def hook(_module, _inp, out):
        if store:
            raise ValueError(f"The 'layer' parameter of {fn} must be a module called once per forward; it was called "
                             "again (a reused module, e.g. one ReLU applied twice).")
        a = out if replace is None else replace
        if detach:
            a = a.detach().requires_grad_(True)
        store.append(a)
        return a

    handle = layer.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    if not store:
        raise ValueError(f"The 'layer' parameter of {fn} must be used in the model's forward pass; it was not called.")
    return out, store[0]


def layer_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    layer: nn.Module,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations ``A`` and the gradient ``g = dS/dA`` of each image's target output ``S``.

    Returns
    -------
    (A, g) : two (N, K, h, w) tensors; ``g`` is zero where ``S`` does not depend on ``A``.
    """
    fn = "layer_gradients"
    inputs = check_images(inputs, fn)
    _check_layer(model, layer, fn)
    batch = check_internal_batch_size(internal_batch_size, fn)
    targets = targets_of(target, inputs.shape[0], fn, inputs.device)
    acts, grads = [], []
    with eval_mode(model), torch.enable_grad():
        for start in range(0, inputs.shape[0], batch or inputs.shape[0]):
            sl = slice(start, start + (batch or inputs.shape[0]))
            a, g = _grads(model, inputs[sl].detach(), targets[sl], layer, fn)
            acts.append(a)
            grads.append(g)
    return torch.cat(acts), torch.cat(grads)


def _grads(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module,
           fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    out, a = _forward_at_layer(model, x, layer, fn)
    score = out.gather(1, targets[:, None]).sum()  # images are independent in eval mode: one backward for all
    if not score.requires_grad:  # the output does not depend on the layer at all (a constant model)
        return a.detach(), torch.zeros_like(a)
    (g,) = torch.autograd.grad(score, a, allow_unused=True)
    return a.detach(), torch.zeros_like(a) if g is None else g.detach()


def score_with_activations(model: nn.Module, inputs: torch.Tensor, activations: torch.Tensor, *,
                           target: TargetType, layer: nn.Module) -> torch.Tensor:
    """The target output ``S`` (N,) when ``layer`` outputs ``activations`` instead of its own values.

    Inputs only matter through what the model computes outside the layer's path; used to differentiate ``S`` with
    respect to ``A`` numerically (finite differences) and to check the closed forms.
    """
    fn = "score_with_activations"
    inputs = check_images(inputs, fn)
    _check_layer(model, layer, fn)
    targets = targets_of(target, inputs.shape[0], fn, inputs.device)
    with eval_mode(model), torch.no_grad():
        out, _ = _forward_at_layer(model, inputs, layer, fn, replace=activations)
    return out.gather(1, targets[:, None])[:, 0].detach()


def cam_from_derivatives(acts: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s map from the activations and the (averaged) first, second and third derivative terms.

    All four are (N, K, h, w); returns ``relu(sum_k w_k A^k)`` of shape (N, 1, h, w), with ``alpha = D2 / (2 D2 +
    sum_ab A_ab D3)`` (0 where the denominator is 0) and ``w_k = sum_ij alpha relu(D1)``.
    """
    alpha = gradcam_pp_alphas(acts, d2, d3)
    weights = (alpha * torch.relu(d1)).sum(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return torch.relu((weights * acts).sum(dim=1, keepdim=True))


def gradcam_pp_alphas(acts: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s pixel weights ``alpha = D2 / (2 D2 + (sum_ab A_ab) D3)``, 0 where the denominator is 0."""
    denom = 2 * d2 + acts.sum(dim=(2, 3), keepdim=True) * d3
    safe = torch.where(denom == 0, torch.ones_like(denom), denom)
    return torch.where(denom == 0, torch.zeros_like(denom), d2 / safe)


def _finish(cam: torch.Tensor, inputs: torch.Tensor, upsample: str) -> torch.Tensor:
    if upsample == "none":
        return cam
    return LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode=upsample)


def gradcam_pp(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    layer: nn.Module,
    upsample: str = "bilinear",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Grad-CAM++ map of ``target`` at ``layer``, (N, 1, H, W) (or (N, 1, h, w) with ``upsample="none"``).

    Parameters
    ----------
    model : nn.Module, evaluated in eval mode (its training flag is restored).
    inputs : Tensor, (N, C, H, W).
    target : int or sequence of N ints, the output explained (its logit, ``S``).
    layer : nn.Module, a submodule called once per forward (for a ReLU network, a ReLU after a convolution).
    upsample : {"bilinear", "bicubic", "nearest", "none"}, Captum's ``LayerAttribution.interpolate`` mode.
    internal_batch_size : images per forward (default: all at once).
    """
    fn = "gradcam_pp"
    upsample = _check_upsample(upsample, fn)
    acts, g = layer_gradients(model, inputs, target=target, layer=layer, internal_batch_size=internal_batch_size)
    return _finish(cam_from_derivatives(acts, g, g**2, g**3), inputs, upsample)


def smooth_gradcam_pp(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    layer: nn.Module,
    n_samples: int = 16,
    stdev: float = 0.15,
    upsample: str = "bilinear",
    generator: torch.Generator | int | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Smooth Grad-CAM++ map of ``target`` at ``layer``, (N, 1, H, W) (or (N, 1, h, w) with ``upsample="none"``).

    Parameters
    ----------
    n_samples : int, noisy copies per image.
    stdev : float >= 0, noise standard deviation as a fraction of each image's value range (max - min).
    generator : torch.Generator or int, the noise (copy ``m`` of every image is drawn in one call, in order
        ``m = 0, 1, ...``, so the result does not depend on ``internal_batch_size``).
    internal_batch_size : noisy copies per forward (default: about 128 copies of a 1x32x32 image on CPU).

    The other parameters are those of :func:`gradcam_pp`; the activations come from the clean inputs.
    """
    fn = "smooth_gradcam_pp"
    inputs = check_images(inputs, fn)
    _check_layer(model, layer, fn)
    upsample = _check_upsample(upsample, fn)
    check_int(n_samples, "n_samples", fn)
    if isinstance(stdev, bool) or not isinstance(stdev, (int, float)) or not 0 <= stdev < float("inf"):
        raise ValueError(f"The 'stdev' parameter of {fn} must be a float in [0, inf). Got {stdev!r} instead.")
    batch = check_internal_batch_size(internal_batch_size, fn) or default_batch(inputs)
    gen = as_generator(generator, fn, device=inputs.device)
    n = inputs.shape[0]
    targets = targets_of(target, n, fn, inputs.device)
    x = inputs.detach()
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).reshape(n, *([1] * (x.ndim - 1)))  # (N, 1, 1, 1)
    sigma = float(stdev) * span
    acts, _ = layer_gradients(model, x, target=targets, layer=layer, internal_batch_size=batch)
    sums = [torch.zeros_like(acts) for _ in range(3)]  # running sums of g, g^2, g^3 per image
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (noisy copies, their image indices)

    def flush() -> None:
        if not pending:
            return
        xs, idx = torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending])
        pending.clear()
        _, g = _grads(model, xs, targets[idx], layer, fn)
        for p, s in enumerate(sums, start=1):
            s.index_add_(0, idx, g**p)

    with eval_mode(model), torch.enable_grad():
        size = 0
        for _ in range(n_samples):
            noisy = x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            for start in range(0, n, batch):
                sl = slice(start, min(n, start + batch))
                if size + (sl.stop - sl.start) > batch:
                    flush()
                    size = 0
                pending.append((noisy[sl], torch.arange(sl.start, sl.stop, device=x.device)))
                size += sl.stop - sl.start
        flush()
    d1, d2, d3 = (s / n_samples for s in sums)
    return _finish(cam_from_derivatives(acts, d1, d2, d3), inputs, upsample)


@dataclass(frozen=True)
class AlphaCheck:
    """Grad-CAM++ alphas in closed form against finite differences, at sampled entries ``(image, k, i, j)``."""

    entries: torch.Tensor  # (E, 4) long
    closed: torch.Tensor  # (E,) float64, from g = dS/dA
    numeric: torch.Tensor  # (E,) float64, from central differences of Y = exp(S) along A[image, k, i, j]
    rel_error: torch.Tensor  # (E,) |numeric - closed| / |closed|
    rejected: int  # sampled entries replaced: S not linear over the stencil (a kink within 2 steps)


def finite_difference_alphas(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    layer: nn.Module,
    n_entries: int = 100,
    h: float = 1e-3,
    method: str = "finite_difference",
    generator: torch.Generator | int | None = None,
) -> AlphaCheck:
    """Check Grad-CAM++'s closed-form alphas against float64 central differences of ``Y = exp(S)``.

    For each sampled entry ``A[n, k, i, j]`` the score is evaluated with that entry moved by ``-2h, -h, 0, h, 2h``
    (the model copied to float64); the second derivative is ``(Y(h) - 2 Y(0) + Y(-h)) / h^2``, the third
    ``(Y(2h) - 2 Y(h) + 2 Y(-h) - Y(-2h)) / (2 h^3)``, and alpha = second / (2 second + (sum_ab A[n, k]) third).
    ``Y`` is taken as ``exp(S - S(0))``: a constant factor, which alpha does not see, keeps the exponential in range.
    Entries are drawn uniformly among those with ``g != 0`` (elsewhere alpha is 0/0) and ``A > 2h`` (away from the
    layer's own ReLU kink at 0); an entry where ``S`` is not linear over the stencil (a ReLU or max-pooling kink of
    the layers above within 2h) is redrawn.

    With a fixed step the third difference of ``Y`` is of order ``(g h)^3``, which float64 rounding of ``S`` (about
    1e-15) swamps when ``|g|`` is small (at |g| ~ 0.1 the error is already ~1e-4, and it grows as |g|^-3).
    ``method="autodiff"`` computes the
    second and third derivatives of ``Y(t) = exp(S(A + t e) - S(A))`` at ``t = 0`` by nested forward-mode automatic
    differentiation in float64 instead (``torch.func.jvp`` three times through the network above the layer), which
    has no step and no rounding amplification; no entry is redrawn then.
    """
    fn = "finite_difference_alphas"
    inputs = check_images(inputs, fn)
    _check_layer(model, layer, fn)
    check_int(n_entries, "n_entries", fn)
    if method not in ("finite_difference", "autodiff"):
        raise ValueError(f"The 'method' parameter of {fn} must be 'finite_difference' or 'autodiff'. "
                         f"Got {method!r} instead.")
    if not (isinstance(h, float) and 0 < h < 1):
        raise ValueError(f"The 'h' parameter of {fn} must be a float in (0, 1). Got {h!r} instead.")
    gen = as_generator(generator, fn, device="cpu")
    name = next(n for n, m in model.named_modules() if m is layer)
    model64 = copy.deepcopy(model).double().eval()
    layer64 = model64.get_submodule(name)
    x = inputs.detach().double()
    targets = targets_of(target, x.shape[0], fn, x.device)
    acts, g = layer_gradients(model64, x, target=targets, layer=layer64)
    closed_all = gradcam_pp_alphas(acts, g**2, g**3)
    stencil = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64, device=x.device)
    # candidates: g != 0 (elsewhere alpha is 0/0) and A > 2h (A = 0 is the layer's own ReLU kink; it is also where a
    # max pooling above splits its gradient between tied zeros, and moving one of them makes it the maximum)
    nonzero = ((g != 0) & (acts > 2 * h)).nonzero()  # (M, 4)
    if len(nonzero) == 0:
        raise ValueError(f"{fn} needs entries with A > 2h and dS/dA != 0; there are none.")
    kept: list[torch.Tensor] = []
    numeric: list[torch.Tensor] = []
    rejected, n_kept = 0, 0
    for _ in range(50):  # 50 rounds of n_entries draws: enough unless nearly every candidate sits at a kink
        if n_kept >= n_entries:
            break
        e = nonzero[torch.randint(0, len(nonzero), (n_entries,), generator=gen).to(x.device)]
        if method == "autodiff":
            kept.append(e)
            numeric.append(_autodiff_alphas(model64, layer64, x, acts, targets, e))
            n_kept += len(e)
            continue
        step = torch.full((len(e),), h, dtype=torch.float64, device=x.device)
        a = acts[e[:, 0]].repeat_interleave(5, 0)  # (5E, K, h, w): entry e moved by each of the 5 steps
        idx = [torch.arange(5 * len(e), device=x.device)] + [e[:, d].repeat_interleave(5) for d in (1, 2, 3)]
        a[tuple(idx)] += (step[:, None] * stencil).reshape(-1)
        s = score_with_activations(model64, x[e[:, 0]].repeat_interleave(5, 0), a,
                                   target=targets[e[:, 0]].repeat_interleave(5), layer=layer64).reshape(-1, 5)
        bend = (s[:, [0, 1]] - 2 * s[:, [2, 2]] + s[:, [4, 3]]).abs().amax(1)  # 0 where S is linear
        ok = bend <= 1e-10 * (1 + s[:, 2].abs())
        y = torch.exp(s - s[:, 2:3])  # (E, 5): Y / Y(0)
        y2 = (y[:, 3] - 2 * y[:, 2] + y[:, 1]) / step**2
        y3 = (y[:, 4] - 2 * y[:, 3] + 2 * y[:, 1] - y[:, 0]) / (2 * step**3)
        total = acts[e[:, 0], e[:, 1]].sum(dim=(1, 2))
        alpha = y2 / (2 * y2 + total * y3)
        take = ok.nonzero()[:, 0][: n_entries - n_kept]
        seen = int(take.max()) + 1 if n_kept + len(take) >= n_entries else len(ok)
        rejected += int((~ok[:seen]).sum())
        kept.append(e[take])
        numeric.append(alpha[take])
        n_kept += len(take)
    if n_kept < n_entries:
        raise ValueError(f"{fn} found only {n_kept} of {n_entries} entries away from kinks.")
    entries = torch.cat(kept)
    closed = closed_all[entries[:, 0], entries[:, 1], entries[:, 2], entries[:, 3]]
    num = torch.cat(numeric)
    return AlphaCheck(entries=entries, closed=closed, numeric=num, rel_error=(num - closed).abs() / closed.abs(),
                      rejected=rejected)


def _autodiff_alphas(model: nn.Module, layer: nn.Module, x: torch.Tensor, acts: torch.Tensor, targets: torch.Tensor,
                     e: torch.Tensor) -> torch.Tensor:
    """Alphas at entries ``e`` (E, 4) from the 2nd and 3rd derivatives of ``exp(S(A + t e) - S(A))`` (nested jvp)."""
    from torch.func import jvp

    n = len(e)
    base = acts[e[:, 0]]  # (E, K, h, w)
    onehot = torch.zeros_like(base)
    onehot[torch.arange(n, device=x.device), e[:, 1], e[:, 2], e[:, 3]] = 1.0
    xin, tg = x[e[:, 0]], targets[e[:, 0]]
    s0 = score_with_activations(model, xin, base, target=tg, layer=layer)

    def y(t: torch.Tensor) -> torch.Tensor:  # (E,) -> (E,): entry i moves by t[i] in copy i
        out, _ = _forward_at_layer(model, xin, layer, "finite_difference_alphas",
                                   replace=base + t[:, None, None, None] * onehot, detach=False)
        return torch.exp(out.gather(1, tg[:, None])[:, 0] - s0)

    ones = torch.ones(n, dtype=x.dtype, device=x.device)
    d1 = lambda t: jvp(y, (t,), (ones,))[1]  # noqa: E731
    d2 = lambda t: jvp(d1, (t,), (ones,))[1]  # noqa: E731
    t0 = torch.zeros(n, dtype=x.dtype, device=x.device)
    y2, y3 = jvp(d2, (t0,), (ones,))
    return (y2 / (2 * y2 + acts[e[:, 0], e[:, 1]].sum(dim=(1, 2)) * y3)).detach()
