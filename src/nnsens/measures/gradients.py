"""Gradient attributions: SmoothGrad (Smilkov et al. 2017, arXiv 1706.03825), chunked over noisy copies.

Captum's ``NoiseTunnel(Saliency(model))`` computes the same quantity; this version evaluates the noisy copies in
chunks of an automatically chosen size (:func:`nnsens.measures.perturbation.default_batch`) and draws the noise
from a ``generator``, so a result can be reproduced without touching the global seed.
"""

from __future__ import annotations

import torch
from torch import nn

from nnsens.measures._checks import as_generator, eval_mode
from nnsens.measures.perturbation import TargetType, check_int, default_batch, targets_of

__all__ = ["smoothgrad"]


def smoothgrad(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: TargetType,
    n_samples: int = 16,
    stdev: float = 0.15,
    absolute: bool = False,
    generator: torch.Generator | int | None = None,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad: the mean gradient of the target logit over ``n_samples`` copies of each input with Gaussian noise.

    ``S(x) = (1/n) sum_s grad_x f_t(x + eps_s)``, ``eps_s ~ N(0, stdev^2)`` (``absolute``: mean of |grad|, which
    is Captum's ``Saliency`` default inside ``NoiseTunnel``).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (its training flag is restored); no ``.grad`` is left behind.
    inputs : Tensor, (N, ...) floating
    target : int or sequence of N ints
        The logit differentiated.
    n_samples : int
        Noisy copies per input.
    stdev : float
        Standard deviation of the noise in input units (Captum's ``stdevs``).
    generator : torch.Generator or int, optional
        Draws the noise (a fresh nondeterministic generator when None).
    internal_batch_size : int, optional
        Noisy copies per forward/backward pass (default: ``default_batch(inputs)``).

    Returns
    -------
    Tensor shaped like ``inputs``.
    """
    fn = "smoothgrad"
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or not inputs.is_floating_point():
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"The 'inputs' parameter of {fn} must be a floating tensor of shape (N, ...). "
                         f"Got {got} instead.")
    check_int(n_samples, "n_samples", fn)
    if not isinstance(stdev, (int, float)) or isinstance(stdev, bool) or not stdev >= 0.0:
        raise ValueError(f"The 'stdev' parameter of {fn} must be a float in [0, inf). Got {stdev!r} instead.")
    batch = (default_batch(inputs) if inputs.ndim == 4 else 1024) if internal_batch_size is None else check_int(
        internal_batch_size, "internal_batch_size", fn)
    gen = as_generator(generator, fn, device=inputs.device)
    n = inputs.shape[0]
    targets = targets_of(target, n, fn, inputs.device)
    total = n * n_samples
    out = torch.zeros(n, *inputs.shape[1:], dtype=torch.float64, device=inputs.device)
    # copy q = i * n_samples + s is sample s of image i; all noise is drawn up front (total x input size values),
    # so the result does not depend on the chunk size
    noise = torch.randn(total, *inputs.shape[1:], generator=gen, device=inputs.device, dtype=inputs.dtype)
    with eval_mode(model), torch.enable_grad():
        for start in range(0, total, batch):
            q = torch.arange(start, min(total, start + batch), device=inputs.device)
            img = q // n_samples
            x = (inputs.detach()[img] + float(stdev) * noise[q]).requires_grad_(True)
            logit = model(x).gather(1, targets[img, None]).sum()
            (g,) = torch.autograd.grad(logit, x)
            out.index_add_(0, img, (g.abs() if absolute else g).double())
    return (out / n_samples).to(inputs.dtype)
