"""Privacy sensitivity: per-sample gradients (torch.func), their norms, and opacus's RDP accounting.

The sensitivity of DP-SGD is the largest norm a single example's gradient can have. Here it is *measured*
(:func:`per_sample_gradients`, :func:`per_sample_gradient_norms`, vmap over ``grad`` of the one-sample loss, the
same quantities opacus's ``GradSampleModule`` stores in ``p.grad_sample``) and *accounted* with opacus's Rényi
accountant (:func:`noise_multiplier_for_epsilon`, :func:`epsilon_spent`): nothing of the accounting is rewritten.
Used by P10 (clipless DP-SGD, arXiv 2305.16202) to check an analytic sensitivity bound against measured norms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from nnsens.measures._checks import check_internal_batch_size, chunks, eval_mode, select_params

__all__ = ["epsilon_spent", "noise_multiplier_for_epsilon", "per_sample_gradient_norms", "per_sample_gradients"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_inputs(model: object, inputs: object, target: object, fn: str) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or not inputs.is_floating_point():
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"The 'inputs' parameter of {fn} must be a floating tensor of shape (N, ...). "
                         f"Got {got} instead.")
    if target is None:
        raise ValueError(f"The 'target' parameter of {fn} must be a tensor of N targets. Got None instead.")
    t = torch.as_tensor(target, device=inputs.device)
    if t.ndim == 0 or t.shape[0] != inputs.shape[0]:
        raise ValueError(f"The 'target' parameter of {fn} must hold one target per input ({inputs.shape[0]}). "
                         f"Got shape {tuple(t.shape)} instead.")
    return t


def per_sample_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | Sequence[int],
    loss: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    internal_batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of each example's own loss with respect to the parameters: ``{name: (N, *param.shape)}``.

    ``g_i = ∇_θ loss(model(x_i), y_i)``, computed with ``torch.func.vmap(grad(...))`` over the examples (the model
    is called on a batch of one for each, so BatchNorm must be in eval mode, which this function ensures).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (its training flag is restored); no ``.grad`` is left behind.
    inputs : Tensor, (N, ...) floating
    target : Tensor or sequence, (N, ...)
        Whatever ``loss`` takes as its second argument, one entry per example (class indices by default).
    loss : callable, optional
        ``loss(logits, target) -> scalar`` for a batch of one (default: cross-entropy). Its value for one example is
        differentiated, so a ``"mean"`` or ``"sum"`` reduction gives the same result.
    params : str or sequence of str, optional
        Parameter names to differentiate (default: every parameter with ``requires_grad``).
    internal_batch_size : int, optional
        Examples per vmap call (default: all at once); memory is ``internal_batch_size × n_params`` floats.

    Returns
    -------
    dict
        Parameter name → (N, *shape) tensor on the device and in the dtype of the parameter.
    """
    fn = "per_sample_gradients"
    y = _check_inputs(model, inputs, target, fn)
    size = check_internal_batch_size(internal_batch_size, fn)
    if loss is not None and not callable(loss):
        raise TypeError(f"The 'loss' parameter of {fn} must be a callable (logits, target) -> scalar or None. "
                        f"Got {type(loss).__name__} instead.")
    loss = loss or nn.functional.cross_entropy
    chosen_names = [n for n, _ in select_params(model, params, fn)]
    named = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    chosen = {k: named[k] for k in chosen_names}
    rest = {k: v for k, v in named.items() if k not in chosen}

    def one(ps: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**rest, **ps}, buffers), (xi.unsqueeze(0),))
        return loss(out, yi.unsqueeze(0))

    per = vmap(grad(one), in_dims=(None, 0, 0))
    with eval_mode(model):
        parts = [per(chosen, inputs[s], y[s]) for s in chunks(inputs.shape[0], size)]
    return {k: torch.cat([p[k] for p in parts]) for k in chosen_names}


def per_sample_gradient_norms(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor | Sequence[int],
    loss: LossFn | None = None,
    params: Sequence[str] | str | None = None,
    reduce: str = "param",
    internal_batch_size: int | None = None,
) -> dict[str, torch.Tensor] | torch.Tensor:
    """Euclidean norms of the per-sample gradients of :func:`per_sample_gradients`.

    Parameters
    ----------
    reduce : {"param", "total"}
        ``"param"``: ``{name: (N,)}``, the norm of each example's gradient with respect to each parameter tensor
        (a layer's sensitivity); ``"total"``: one (N,) tensor, the norm of the whole concatenated gradient (what
        DP-SGD clips).

    Other parameters are those of :func:`per_sample_gradients`; chunks of ``internal_batch_size`` examples are
    reduced as they come, so the full (N, n_params) gradients are never held at once.
    """
    fn = "per_sample_gradient_norms"
    if reduce not in ("param", "total"):
        raise ValueError(f"The 'reduce' parameter of {fn} must be one of 'param', 'total'. Got {reduce!r} instead.")
    y = _check_inputs(model, inputs, target, fn)
    size = check_internal_batch_size(internal_batch_size, fn)
    parts: list[dict[str, torch.Tensor]] = []
    for s in chunks(inputs.shape[0], size):
        g = per_sample_gradients(model, inputs[s], target=y[s], loss=loss, params=params)
        parts.append({k: v.flatten(1).norm(dim=1) for k, v in g.items()})  # (n_chunk,) per parameter
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    if reduce == "total":
        return torch.stack(list(out.values())).square().sum(0).sqrt()
    return out


def _check_rate(sample_rate: object, steps: object, delta: object, fn: str) -> None:
    ok = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool) and 0 < sample_rate <= 1
    if not ok:
        raise ValueError(f"The 'sample_rate' parameter of {fn} must be a float in (0, 1]. Got {sample_rate!r} instead.")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"The 'steps' parameter of {fn} must be an int in [1, inf). Got {steps!r} instead.")
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool) and 0 < delta < 1):
        raise ValueError(f"The 'delta' parameter of {fn} must be a float in (0, 1). Got {delta!r} instead.")


def noise_multiplier_for_epsilon(
    epsilon: float, *, delta: float, sample_rate: float, steps: int, epsilon_tolerance: float = 0.01
) -> float:
    """The smallest noise multiplier σ (noise std / sensitivity) that keeps ``steps`` Poisson-subsampled Gaussian
    steps at rate ``sample_rate`` within (ε, δ), by opacus's ``get_noise_multiplier`` with the RDP accountant.

    The returned σ reaches an ε within ``epsilon_tolerance`` below the target (opacus's binary search).
    """
    fn = "noise_multiplier_for_epsilon"
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and math.isfinite(epsilon)
            and epsilon > 0):
        raise ValueError(f"The 'epsilon' parameter of {fn} must be a float in (0, inf). Got {epsilon!r} instead.")
    _check_rate(sample_rate, steps, delta, fn)
    return _noise_multiplier(float(epsilon), float(delta), float(sample_rate), int(steps), float(epsilon_tolerance))


@lru_cache(maxsize=256)
def _noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, tol: float) -> float:
    # opacus's binary search over σ evaluates the RDP of fractional orders in pure Python (~1 s a call): cached
    import warnings

    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound stays valid, only looser
        warnings.simplefilter("ignore")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant="rdp", epsilon_tolerance=tol))


def epsilon_spent(noise_multiplier: float, *, delta: float, sample_rate: float, steps: int) -> float:
    """ε after ``steps`` subsampled Gaussian steps with ``noise_multiplier`` at ``sample_rate``, at ``delta``
    (opacus's ``RDPAccountant``)."""
    fn = "epsilon_spent"
    ok = isinstance(noise_multiplier, (int, float)) and not isinstance(noise_multiplier, bool)
    if not (ok and math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"The 'noise_multiplier' parameter of {fn} must be a float in (0, inf). "
                         f"Got {noise_multiplier!r} instead.")
    _check_rate(sample_rate, steps, delta, fn)
    return _epsilon(float(noise_multiplier), float(delta), float(sample_rate), int(steps))


@lru_cache(maxsize=256)
def _epsilon(noise_multiplier: float, delta: float, sample_rate: float, steps: int) -> float:
    import warnings

    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound stays valid, only looser
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))
